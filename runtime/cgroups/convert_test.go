package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 0, 1: 1, 2: 1, 1024: 39, 262144: 10000, 1 << 30: 10000} {
		if got := sharesToWeight(shares); got != want {
			t.Errorf("sharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestBlkioToIOWeight(t *testing.T) {
	for w, want := range map[uint16]uint64{0: 0, 10: 1, 500: 4950, 1000: 10000, 5: 1, 2000: 10000} {
		if got := blkioToIOWeight(w); got != want {
			t.Errorf("blkioToIOWeight(%d) = %d, want %d", w, got, want)
		}
	}
}

func TestSwapV2(t *testing.T) {
	cases := []struct {
		limit, swap int64
		want        string
		set, err    bool
	}{
		{0, 0, "", false, false},
		{100, 0, "", false, false},
		{-1, 0, "max", true, false},
		{100, -1, "max", true, false},
		{100, 300, "200", true, false},
		{100, 100, "0", true, false},
		{100, 50, "", false, true},
		{0, 50, "", false, true},
		{-1, 50, "", false, true},
	}
	for _, c := range cases {
		got, set, err := swapV2(c.limit, c.swap)
		if got != c.want || set != c.set || (err != nil) != c.err {
			t.Errorf("swapV2(%d, %d) = %q, %v, %v", c.limit, c.swap, got, set, err)
		}
	}
}

func TestSmallFormatters(t *testing.T) {
	if v, ok := cpuMaxValue(0, 0); ok {
		t.Errorf("cpuMaxValue(0,0) = %q", v)
	}
	for _, c := range []struct {
		q    int64
		p    uint64
		want string
	}{{50000, 100000, "50000 100000"}, {-1, 100000, "max 100000"}, {20000, 0, "20000"}, {0, 25000, "max 25000"}} {
		if v, _ := cpuMaxValue(c.q, c.p); v != c.want {
			t.Errorf("cpuMaxValue(%d,%d) = %q, want %q", c.q, c.p, v, c.want)
		}
	}
	// runtime-spec 1.3: -1 is "max", 0 is a real limit.
	if pidsMaxValue(-1) != "max" || pidsMaxValue(0) != "0" || pidsMaxValue(64) != "64" {
		t.Error("pidsMaxValue")
	}
	for b, want := range map[uint64]string{2 << 20: "2MB", 1 << 30: "1GB", 64 << 10: "64KB", 16 << 30: "16GB", 32 << 20: "32MB"} {
		if got := pagesizeName(b); got != want {
			t.Errorf("pagesizeName(%d) = %q, want %q", b, got, want)
		}
	}
	d := specs.LinuxThrottleDevice{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 16}, Rate: 0}
	if got := ioMaxLine(d, "rbps"); got != "8:16 rbps=max" {
		t.Errorf("ioMaxLine = %q", got)
	}
	d.Rate = 1024
	if got := ioMaxLine(d, "wiops"); got != "8:16 wiops=1024" {
		t.Errorf("ioMaxLine = %q", got)
	}
	h, o := uint32(2), uint32(2000)
	if got, _ := rdmaLine("mlx4_0", specs.LinuxRdma{HcaHandles: &h, HcaObjects: &o}); got != "mlx4_0 hca_handle=2 hca_object=2000" {
		t.Errorf("rdmaLine = %q", got)
	}
	if _, ok := rdmaLine("mlx4_0", specs.LinuxRdma{}); ok {
		t.Error("empty rdma entry produced a line")
	}
}

func TestHugePageSizes(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"hugepages-2048kB", "hugepages-1048576kB", "hugepages-64kB", "other"} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Join(hugePageSizes(dir), ",")
	if got != "1GB,2MB,64KB" {
		t.Errorf("hugePageSizes = %q", got)
	}
}

// fixtureDir creates plain files standing in for cgroup control files.
func fixtureDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, v := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func wantFile(t *testing.T, dir, name, want string) {
	t.Helper()
	got, err := readFile(dir, name)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if got != want {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

func TestSetV2Fixture(t *testing.T) {
	dir := fixtureDir(t, map[string]string{
		"cgroup.controllers": "cpu io memory pids hugetlb",
		"memory.max":         "max", "memory.swap.max": "max", "memory.low": "0", "memory.current": "1000",
		"cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0",
		"io.weight": "default 100", "io.max": "",
		"hugetlb.2MB.max": "max", "hugetlb.2MB.rsvd.max": "max",
		"pids.max": "max",
	})
	limit, swap, res := int64(1<<20), int64(3<<20), int64(1<<19)
	shares, quota, period, burst, idle := uint64(1024), int64(50000), uint64(100000), uint64(1000), int64(0)
	if err := setMemoryV2(dir, &specs.LinuxMemory{Limit: &limit, Swap: &swap, Reservation: &res, Kernel: &limit}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, dir, "memory.max", "1048576")
	wantFile(t, dir, "memory.swap.max", "2097152")
	wantFile(t, dir, "memory.low", "524288")

	low := int64(10)
	check := true
	if err := setMemoryV2(dir, &specs.LinuxMemory{Limit: &low, CheckBeforeUpdate: &check}); err == nil {
		t.Error("limit below usage accepted with checkBeforeUpdate")
	}
	sw := uint64(10)
	if err := setMemoryV2(dir, &specs.LinuxMemory{Swappiness: &sw}); err == nil {
		t.Error("swappiness accepted on v2")
	}

	if err := setCPUV2(dir, &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period, Burst: &burst, Idle: &idle}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, dir, "cpu.weight", "39")
	wantFile(t, dir, "cpu.max", "50000 100000")
	wantFile(t, dir, "cpu.max.burst", "1000")
	rt := int64(1000)
	if err := setCPUV2(dir, &specs.LinuxCPU{RealtimeRuntime: &rt}); err == nil {
		t.Error("realtime accepted on v2")
	}

	w := uint16(500)
	b := &specs.LinuxBlockIO{Weight: &w, ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 100}}}
	if err := setIOV2(dir, b); err != nil {
		t.Fatal(err)
	}
	wantFile(t, dir, "io.weight", "default 4950")
	wantFile(t, dir, "io.max", "8:0 rbps=100")
	// With BFQ the blkio range is used unconverted.
	if err := os.WriteFile(filepath.Join(dir, "io.bfq.weight"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := setIOV2(dir, &specs.LinuxBlockIO{Weight: &w}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, dir, "io.bfq.weight", "500")

	if err := setHugetlb(dir, true, []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, dir, "hugetlb.2MB.max", "4194304")
	wantFile(t, dir, "hugetlb.2MB.rsvd.max", "4194304")
	if err := setHugetlb(dir, true, []specs.LinuxHugepageLimit{{Pagesize: "3MB", Limit: 1}}); err == nil {
		t.Error("unknown page size accepted")
	}
	if err := setHugetlb(dir, true, []specs.LinuxHugepageLimit{{Pagesize: "../x", Limit: 1}}); err == nil {
		t.Error("path in page size accepted")
	}

	if err := setUnified(dir, map[string]string{"pids.max": "7", "memory.high": "1G"}); err == nil {
		// memory.high does not exist in the fixture while memory is
		// enabled: reported as a missing file, not a missing controller.
		t.Error("missing unified file accepted")
	}
	wantFile(t, dir, "pids.max", "max") // nothing written after a bad key
	if err := setUnified(dir, map[string]string{"pids.max": "7", "memory.max": "1G"}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, dir, "pids.max", "7")
	wantFile(t, dir, "memory.max", "1G")
	err := setUnified(dir, map[string]string{"rdma.max": "x"})
	var ce *ControllerError
	if !errors.As(err, &ce) || ce.Controller != "rdma" {
		t.Errorf("unified key of a disabled controller: %v", err)
	}
	if err := setUnified(dir, map[string]string{"../pids.max": "1"}); err == nil {
		t.Error("unified key with a path accepted")
	}
}

func TestTargetSelection(t *testing.T) {
	v2 := fixtureDir(t, map[string]string{"cgroup.controllers": "hugetlb"})
	m := &manager{
		mode:    Hybrid,
		v1:      []v1dir{{controllers: []string{"memory"}, dir: "/v1/memory/x"}},
		v2:      v2,
		v2avail: map[string]bool{"hugetlb": true, "io": true},
	}
	if d, isV2, _, err := m.target("memory", "memory", true); err != nil || isV2 || d != "/v1/memory/x" {
		t.Errorf("memory -> %q %v %v", d, isV2, err)
	}
	if d, isV2, _, err := m.target("hugetlb", "hugetlb", true); err != nil || !isV2 || d != v2 {
		t.Errorf("hugetlb -> %q %v %v", d, isV2, err)
	}
	// Offered by the v2 root but not delegated to this cgroup.
	_, _, _, err := m.target("blkio", "io", true)
	var ce *ControllerError
	if !errors.As(err, &ce) || ce.Controller != "io" {
		t.Errorf("undelegated io: %v", err)
	}
	_, _, _, err = m.target("net_cls", "", true)
	if err == nil || err.Error() != "cgroup controller net_cls not available" {
		t.Errorf("net_cls: %v", err)
	}
	if _, _, skip, err := m.target("net_cls", "", false); !skip || err != nil {
		t.Errorf("zero value for a missing controller must be skipped: %v %v", skip, err)
	}
	// Zero values are skipped, non-zero ones for missing controllers fail.
	zero := uint32(0)
	if err := m.Set(&specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: &zero}}); err != nil {
		t.Errorf("classID 0: %v", err)
	}
	one := uint32(1)
	if err := m.Set(&specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: &one}}); err == nil ||
		!strings.Contains(err.Error(), "cgroup controller net_cls not available") {
		t.Errorf("classID 1: %v", err)
	}
	if err := m.Set(nil); err != nil {
		t.Errorf("Set(nil) = %v", err)
	}
}

func TestMemorySwapV1WithoutSwapAccounting(t *testing.T) {
	dir := fixtureDir(t, map[string]string{"memory.limit_in_bytes": "1000"})
	// Unlimited swap without memsw files is the default: nothing to do,
	// and above all the memory limit must stay untouched.
	if err := setMemoryAndSwapV1(dir, 0, -1); err != nil {
		t.Fatal(err)
	}
	wantFile(t, dir, "memory.limit_in_bytes", "1000")
	if err := setMemoryAndSwapV1(dir, 2000, -1); err != nil {
		t.Fatal(err)
	}
	wantFile(t, dir, "memory.limit_in_bytes", "2000")
	if err := setMemoryAndSwapV1(dir, 2000, 4000); err == nil {
		t.Error("finite swap accepted without swap accounting")
	}
}
