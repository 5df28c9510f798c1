package cgroups

import (
	"math"
	"reflect"
	"testing"
)

func newStats() *Stats {
	return &Stats{Hugetlb: map[string]struct{ Usage, MaxUsage, Failcnt uint64 }{}}
}

func TestParseKeyedAndLists(t *testing.T) {
	m := parseKeyed("cache 10\nrss 20\nbad line here\nfrozen 1\nlimit max\n")
	if m["cache"] != 10 || m["rss"] != 20 || m["frozen"] != 1 || m["limit"] != math.MaxUint64 || len(m) != 4 {
		t.Errorf("parseKeyed = %v", m)
	}
	if got := parseUintList("1 2 3 \n"); !reflect.DeepEqual(got, []uint64{1, 2, 3}) {
		t.Errorf("parseUintList = %v", got)
	}
	if v, err := parseUint("-1"); err != nil || v != math.MaxUint64 {
		t.Errorf("parseUint(-1) = %d, %v", v, err)
	}
	if _, err := parseUint("x"); err == nil {
		t.Error("parseUint(x) succeeded")
	}
}

func TestParseBlkio(t *testing.T) {
	const bytes = `254:0 Read 4096
254:0 Write 8192
254:0 Sync 12288
254:0 Async 0
254:0 Discard 0
254:0 Total 12288
8:0 Read 100
8:0 Write 1
Total 12389
`
	r, w := parseBlkioRW(bytes)
	if r != 4196 || w != 8193 {
		t.Errorf("parseBlkioRW = %d, %d", r, w)
	}
	st := newStats()
	ioStatsV2("254:0 rbytes=4096 wbytes=512 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=4 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n", st)
	if st.IO.ReadBytes != 4100 || st.IO.WriteBytes != 512 || st.IO.ReadOps != 2 || st.IO.WriteOps != 2 {
		t.Errorf("ioStatsV2 = %+v", st.IO)
	}
}

func TestMemoryStatsFixtures(t *testing.T) {
	v1 := fixtureDir(t, map[string]string{
		"memory.usage_in_bytes":        "1000",
		"memory.max_usage_in_bytes":    "2000",
		"memory.limit_in_bytes":        "9223372036854771712",
		"memory.failcnt":               "3",
		"memory.stat":                  "cache 1\nrss 2\ntotal_cache 10\ntotal_rss 20\n",
		"memory.memsw.usage_in_bytes":  "1500",
		"memory.memsw.limit_in_bytes":  "4000",
		"memory.oom_control":           "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
		"memory.kmem.usage_in_bytes":   "7",
		"memory.soft_limit_in_bytes":   "0",
		"memory.move_charge_at_immigr": "0",
	})
	r := &statReader{}
	st := newStats()
	memoryStatsV1(r, v1, st)
	if r.err != nil {
		t.Fatal(r.err)
	}
	mem := st.Memory
	if mem.Usage != 1000 || mem.MaxUsage != 2000 || mem.Limit != 9223372036854771712 || mem.Failcnt != 3 ||
		mem.Cache != 10 || mem.RSS != 20 || mem.Swap != 500 || mem.SwapLimit != 4000 || mem.OOMKillEvents != 4 {
		t.Errorf("v1 memory stats = %+v", mem)
	}

	v2 := fixtureDir(t, map[string]string{
		"memory.current":      "1000",
		"memory.peak":         "3000",
		"memory.max":          "max",
		"memory.stat":         "anon 11\nfile 22\nkernel 5\n",
		"memory.swap.current": "7",
		"memory.swap.max":     "100",
		"memory.events":       "low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n",
	})
	st = newStats()
	memoryStatsV2(r, v2, st)
	mem = st.Memory
	if mem.Usage != 1000 || mem.MaxUsage != 3000 || mem.Limit != math.MaxUint64 || mem.RSS != 11 || mem.Cache != 22 ||
		mem.Swap != 7 || mem.SwapLimit != 100 || mem.Failcnt != 5 || mem.OOMEvents != 2 || mem.OOMKillEvents != 1 {
		t.Errorf("v2 memory stats = %+v", mem)
	}
}

func TestCPUStatsFixtures(t *testing.T) {
	acct := fixtureDir(t, map[string]string{
		"cpuacct.usage":         "5000",
		"cpuacct.usage_percpu":  "2000 3000",
		"cpuacct.usage_user":    "4000",
		"cpuacct.usage_sys":     "1000",
		"cpuacct.stat":          "user 1\nsystem 1\n",
		"cpuacct.usage_all":     "",
		"cpuacct.usage_percpu_": "",
	})
	r := &statReader{}
	st := newStats()
	cpuacctStatsV1(r, acct, st)
	if st.CPU.UsageTotal != 5000 || !reflect.DeepEqual(st.CPU.PerCPU, []uint64{2000, 3000}) || st.CPU.UsageUser != 4000 || st.CPU.UsageSystem != 1000 {
		t.Errorf("cpuacct = %+v", st.CPU)
	}
	// Old kernels only have cpuacct.stat, in USER_HZ ticks.
	old := fixtureDir(t, map[string]string{"cpuacct.usage": "1", "cpuacct.stat": "user 3\nsystem 2\n"})
	st = newStats()
	cpuacctStatsV1(r, old, st)
	if st.CPU.UsageUser != 30_000_000 || st.CPU.UsageSystem != 20_000_000 {
		t.Errorf("cpuacct.stat conversion = %+v", st.CPU)
	}
	throttleStats(parseKeyed("nr_periods 10\nnr_throttled 4\nthrottled_time 999\n"), false, st)
	if st.CPU.Periods != 10 || st.CPU.ThrottledPeriods != 4 || st.CPU.ThrottledTime != 999 {
		t.Errorf("v1 throttling = %+v", st.CPU)
	}
	st = newStats()
	cpuStatsV2(parseKeyed("usage_usec 7\nuser_usec 5\nsystem_usec 2\nnr_periods 3\nnr_throttled 1\nthrottled_usec 9\n"), st)
	if st.CPU.UsageTotal != 7000 || st.CPU.UsageUser != 5000 || st.CPU.UsageSystem != 2000 ||
		st.CPU.Periods != 3 || st.CPU.ThrottledPeriods != 1 || st.CPU.ThrottledTime != 9000 {
		t.Errorf("v2 cpu = %+v", st.CPU)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
}

func TestHugetlbStatsFixtures(t *testing.T) {
	v1 := fixtureDir(t, map[string]string{
		"hugetlb.2MB.usage_in_bytes":     "4194304",
		"hugetlb.2MB.max_usage_in_bytes": "6291456",
		"hugetlb.2MB.failcnt":            "1",
	})
	r := &statReader{}
	st := newStats()
	hugetlbStats(r, v1, false, []string{"2MB", "1GB"}, st)
	if len(st.Hugetlb) != 1 || st.Hugetlb["2MB"].Usage != 4194304 || st.Hugetlb["2MB"].MaxUsage != 6291456 || st.Hugetlb["2MB"].Failcnt != 1 {
		t.Errorf("v1 hugetlb = %+v", st.Hugetlb)
	}
	v2 := fixtureDir(t, map[string]string{
		"hugetlb.1GB.current": "0",
		"hugetlb.1GB.events":  "max 3\n",
	})
	st = newStats()
	hugetlbStats(r, v2, true, []string{"2MB", "1GB"}, st)
	if len(st.Hugetlb) != 1 || st.Hugetlb["1GB"].Failcnt != 3 {
		t.Errorf("v2 hugetlb = %+v", st.Hugetlb)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
}
