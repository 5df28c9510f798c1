package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"strings"
)

// userHZ is the tick rate of cpuacct.stat. It is part of the kernel ABI
// (USER_HZ), not the configured CONFIG_HZ, and is 100 on every architecture
// Go supports for Linux.
const userHZ = 100

// hugepagesSysDir lists the huge page sizes of the machine.
const hugepagesSysDir = "/sys/kernel/mm/hugepages"

// statReader reads counters and keeps the first real error. Missing files
// are not errors: kernels differ in what they offer and the spec for Stats
// is "fill what the kernel offers".
type statReader struct{ err error }

func (r *statReader) note(err error) {
	if err != nil && r.err == nil && !errors.Is(err, fs.ErrNotExist) {
		r.err = err
	}
}

func (r *statReader) uint(dir, name string) uint64 {
	v, err := readUint(dir, name)
	r.note(err)
	return v
}

func (r *statReader) keyed(dir, name string) map[string]uint64 {
	m, err := readKeyed(dir, name)
	r.note(err)
	if m == nil {
		m = map[string]uint64{}
	}
	return m
}

func (r *statReader) text(dir, name string) string {
	s, err := readFile(dir, name)
	r.note(err)
	return s
}

func (m *manager) Stats() (*Stats, error) {
	if d := m.pidsDir(); d == "" || !dirExists(d) {
		return nil, fmt.Errorf("cgroup %s does not exist", d)
	}
	st := &Stats{Hugetlb: map[string]struct{ Usage, MaxUsage, Failcnt uint64 }{}}
	r := &statReader{}
	if d, v2, skip, err := m.target("memory", "memory", true); err == nil && !skip {
		if v2 {
			memoryStatsV2(r, d, st)
		} else {
			memoryStatsV1(r, d, st)
		}
	}
	if d := m.v1Dir("cpuacct"); d != "" {
		cpuacctStatsV1(r, d, st)
		if c := m.v1Dir("cpu"); c != "" {
			throttleStats(r.keyed(c, "cpu.stat"), false, st)
		}
	} else if m.v2 != "" {
		// cpu.stat's usage part is a core cgroup2 file, present even
		// when the cpu controller is not enabled.
		cpuStatsV2(r.keyed(m.v2, "cpu.stat"), st)
	}
	if d, _, skip, err := m.target("pids", "pids", true); err == nil && !skip {
		st.Pids.Current = r.uint(d, "pids.current")
		if lim := r.uint(d, "pids.max"); lim != math.MaxUint64 {
			st.Pids.Limit = lim
		}
	}
	if d, v2, skip, err := m.target("blkio", "io", true); err == nil && !skip {
		if v2 {
			ioStatsV2(r.text(d, "io.stat"), st)
		} else {
			blkioStatsV1(r, d, st)
		}
	}
	if d, v2, skip, err := m.target("hugetlb", "hugetlb", true); err == nil && !skip {
		hugetlbStats(r, d, v2, hugePageSizes(hugepagesSysDir), st)
	}
	if r.err != nil {
		return nil, r.err
	}
	return st, nil
}

func memoryStatsV1(r *statReader, d string, st *Stats) {
	st.Memory.Usage = r.uint(d, "memory.usage_in_bytes")
	st.Memory.MaxUsage = r.uint(d, "memory.max_usage_in_bytes")
	st.Memory.Limit = r.uint(d, "memory.limit_in_bytes")
	st.Memory.Failcnt = r.uint(d, "memory.failcnt")
	ms := r.keyed(d, "memory.stat")
	// total_* include sub-cgroups the container may have created.
	st.Memory.Cache = firstKey(ms, "total_cache", "cache")
	st.Memory.RSS = firstKey(ms, "total_rss", "rss")
	if fileExists(d, "memory.memsw.usage_in_bytes") {
		// memsw counts memory+swap; report swap alone.
		if sw := r.uint(d, "memory.memsw.usage_in_bytes"); sw > st.Memory.Usage {
			st.Memory.Swap = sw - st.Memory.Usage
		}
		st.Memory.SwapLimit = r.uint(d, "memory.memsw.limit_in_bytes")
	}
	// v1 has no OOM event counter, only the kill count.
	st.Memory.OOMKillEvents = r.keyed(d, "memory.oom_control")["oom_kill"]
}

func memoryStatsV2(r *statReader, d string, st *Stats) {
	st.Memory.Usage = r.uint(d, "memory.current")
	st.Memory.MaxUsage = r.uint(d, "memory.peak")
	st.Memory.Limit = r.uint(d, "memory.max")
	ms := r.keyed(d, "memory.stat")
	st.Memory.Cache = ms["file"]
	st.Memory.RSS = ms["anon"]
	st.Memory.Swap = r.uint(d, "memory.swap.current")
	st.Memory.SwapLimit = r.uint(d, "memory.swap.max")
	ev := r.keyed(d, "memory.events")
	st.Memory.Failcnt = ev["max"]
	st.Memory.OOMEvents = ev["oom"]
	st.Memory.OOMKillEvents = ev["oom_kill"]
}

func firstKey(m map[string]uint64, keys ...string) uint64 {
	for _, k := range keys {
		if v, ok := m[k]; ok {
			return v
		}
	}
	return 0
}

func cpuacctStatsV1(r *statReader, d string, st *Stats) {
	st.CPU.UsageTotal = r.uint(d, "cpuacct.usage")
	st.CPU.PerCPU = parseUintList(r.text(d, "cpuacct.usage_percpu"))
	if fileExists(d, "cpuacct.usage_user") {
		st.CPU.UsageUser = r.uint(d, "cpuacct.usage_user")
		st.CPU.UsageSystem = r.uint(d, "cpuacct.usage_sys")
		return
	}
	ticks := r.keyed(d, "cpuacct.stat")
	const nsPerTick = 1e9 / userHZ
	st.CPU.UsageUser = ticks["user"] * nsPerTick
	st.CPU.UsageSystem = ticks["system"] * nsPerTick
}

func cpuStatsV2(cs map[string]uint64, st *Stats) {
	st.CPU.UsageTotal = cs["usage_usec"] * 1000
	st.CPU.UsageUser = cs["user_usec"] * 1000
	st.CPU.UsageSystem = cs["system_usec"] * 1000
	throttleStats(cs, true, st)
}

func throttleStats(cs map[string]uint64, v2 bool, st *Stats) {
	st.CPU.Periods = cs["nr_periods"]
	st.CPU.ThrottledPeriods = cs["nr_throttled"]
	if v2 {
		st.CPU.ThrottledTime = cs["throttled_usec"] * 1000
	} else {
		st.CPU.ThrottledTime = cs["throttled_time"]
	}
}

func parseUintList(s string) []uint64 {
	var out []uint64
	for _, f := range strings.Fields(s) {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil
		}
		out = append(out, v)
	}
	return out
}

func blkioStatsV1(r *statReader, d string, st *Stats) {
	// The throttle layer sees every bio whatever the I/O scheduler, so its
	// counters are complete; the recursive variants include sub-cgroups.
	pick := func(names ...string) string {
		for _, n := range names {
			if fileExists(d, n) {
				return r.text(d, n)
			}
		}
		return ""
	}
	st.IO.ReadBytes, st.IO.WriteBytes = parseBlkioRW(pick(
		"blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes",
		"blkio.io_service_bytes_recursive", "blkio.bfq.io_service_bytes_recursive"))
	st.IO.ReadOps, st.IO.WriteOps = parseBlkioRW(pick(
		"blkio.throttle.io_serviced_recursive", "blkio.throttle.io_serviced",
		"blkio.io_serviced_recursive", "blkio.bfq.io_serviced_recursive"))
}

// parseBlkioRW sums the Read and Write lines ("8:0 Read 4096") over all
// devices of a v1 blkio stat file.
func parseBlkioRW(s string) (read, write uint64) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue // "Total N" summary lines have two fields
		}
		v, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		switch f[1] {
		case "Read":
			read += v
		case "Write":
			write += v
		}
	}
	return read, write
}

// ioStatsV2 sums io.stat lines ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...").
func ioStatsV2(s string, st *Stats) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for _, kv := range f[min(1, len(f)):] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				st.IO.ReadBytes += n
			case "wbytes":
				st.IO.WriteBytes += n
			case "rios":
				st.IO.ReadOps += n
			case "wios":
				st.IO.WriteOps += n
			}
		}
	}
}

func hugetlbStats(r *statReader, d string, v2 bool, sizes []string, st *Stats) {
	for _, size := range sizes {
		p := "hugetlb." + size + "."
		var h struct{ Usage, MaxUsage, Failcnt uint64 }
		if v2 {
			if !fileExists(d, p+"current") {
				continue
			}
			h.Usage = r.uint(d, p+"current")
			h.Failcnt = r.keyed(d, p+"events")["max"]
		} else {
			if !fileExists(d, p+"usage_in_bytes") {
				continue
			}
			h.Usage = r.uint(d, p+"usage_in_bytes")
			h.MaxUsage = r.uint(d, p+"max_usage_in_bytes")
			h.Failcnt = r.uint(d, p+"failcnt")
		}
		st.Hugetlb[size] = h
	}
}
