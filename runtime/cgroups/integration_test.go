package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestDetectModeMatchesStatfs(t *testing.T) {
	// An independent check with the conventional mount points (the code
	// under test reads mountinfo instead).
	var root unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &root); err != nil {
		t.Skipf("no /sys/fs/cgroup: %v", err)
	}
	want := Legacy
	var uni unix.Statfs_t
	switch {
	case root.Type == unix.CGROUP2_SUPER_MAGIC:
		want = Unified
	case unix.Statfs("/sys/fs/cgroup/unified", &uni) == nil && uni.Type == unix.CGROUP2_SUPER_MAGIC:
		want = Hybrid
	}
	if got := DetectMode(); got != want {
		t.Errorf("DetectMode() = %v, statfs says %v", got, want)
	}
	if DetectMode() != DetectMode() {
		t.Error("DetectMode not stable")
	}
}

// ownCgroups parses /proc/<pid>/cgroup into "controllers" -> path, without
// the package's parser, so the test does not check the code with itself.
func ownCgroups(t *testing.T, pid string) map[string]string {
	t.Helper()
	f, err := os.Open("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.SplitN(sc.Text(), ":", 3)
		out[p[1]] = p[2]
	}
	return out
}

func TestApplyJoinsEveryHierarchy(t *testing.T) {
	f := hostFixture(t)
	m := f.m
	name := filepath.Base(m.dirs()[0])
	if m.Exists() {
		t.Fatal("exists before Apply")
	}
	p1 := f.start("exec sleep 100")
	if err := m.Apply(p1.pid); err != nil {
		t.Fatal(err)
	}
	// Idempotent: applying again (as exec does) must work.
	if err := m.Apply(p1.pid); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if !m.Exists() {
		t.Fatal("Exists() = false after Apply")
	}
	for ctrls, path := range ownCgroups(t, fmt.Sprint(p1.pid)) {
		// Hierarchies that are not mounted cannot be joined.
		mounted := ctrls == "" && m.v2 != ""
		for _, d := range m.v1 {
			mounted = mounted || strings.Join(d.controllers, ",") == ctrls
		}
		if mounted && path != "/"+name {
			t.Errorf("process is in %q:%q, want /%s", ctrls, path, name)
		}
	}
	if d := m.v1Dir("cpuset"); d != "" && readT(t, d, "cpuset.cpus") == "" {
		t.Error("cpuset.cpus not inherited")
	}
	// A second process joins like an exec'd process.
	p2 := f.start("exec sleep 100")
	if err := m.Apply(p2.pid); err != nil {
		t.Fatal(err)
	}
	pids, err := m.Pids()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(pids)
	want := []int{p1.pid, p2.pid}
	slices.Sort(want)
	if !slices.Equal(pids, want) {
		t.Errorf("Pids() = %v, want %v", pids, want)
	}
	for _, c := range []string{"memory", "cpu", "freezer", "devices", ""} {
		if m.Path(c) == "" {
			t.Errorf("Path(%q) empty", c)
		}
	}
}

func TestRelativePathUnderOwnCgroup(t *testing.T) {
	requireRoot(t)
	l, err := loadLayout()
	if err != nil {
		t.Fatal(err)
	}
	name := uniqueName()
	f := newFixture(t, l, name)
	own := ownCgroups(t, "self")
	for _, d := range f.m.v1 {
		want := filepath.Join(d.mountpoint, own[strings.Join(d.controllers, ",")], name)
		if d.dir != want {
			t.Errorf("%v: dir %s, want %s", d.controllers, d.dir, want)
		}
	}
	if f.m.v2 != "" {
		if want := filepath.Join(f.m.v2mount, own[""], name); f.m.v2 != want {
			t.Errorf("v2 dir %s, want %s", f.m.v2, want)
		}
	}
	p := f.start("exec sleep 100")
	if err := f.m.Apply(p.pid); err != nil {
		t.Fatal(err)
	}
	for _, d := range f.m.dirs() {
		if !dirExists(d) {
			t.Errorf("%s not created", d)
		}
	}
}

func TestNestedPathInheritsCpusetAndDestroyRemovesParents(t *testing.T) {
	requireRoot(t)
	l, err := loadLayout()
	if err != nil {
		t.Fatal(err)
	}
	top := "/" + uniqueName()
	f := newFixture(t, l, top+"/a/b")
	p := f.start("exec sleep 100")
	// The kernel refuses tasks in a v1 cpuset cgroup with empty cpus or
	// mems, so a successful Apply already proves the inheritance.
	if err := f.m.Apply(p.pid); err != nil {
		t.Fatal(err)
	}
	if d := f.m.v1Dir("cpuset"); d != "" {
		for _, lvl := range []string{filepath.Dir(d), d} {
			if readT(t, lvl, "cpuset.cpus") == "" || readT(t, lvl, "cpuset.mems") == "" {
				t.Errorf("%s has an empty cpuset", lvl)
			}
		}
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	if err := f.m.Destroy(); err != nil {
		t.Fatal(err)
	}
	for _, d := range f.m.dirs() {
		topDir := strings.TrimSuffix(d, "/a/b")
		if dirExists(topDir) {
			t.Errorf("parent %s created by Apply survived Destroy", topDir)
		}
	}
}

func TestDestroy(t *testing.T) {
	f := hostFixture(t)
	m := f.m
	p := f.start("exec sleep 100")
	if err := m.Apply(p.pid); err != nil {
		t.Fatal(err)
	}
	// Sub-cgroups a container made for itself must go too.
	for _, d := range m.dirs() {
		if err := os.MkdirAll(filepath.Join(d, "child", "grandchild"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A live process keeps the cgroup busy: Destroy must give up, not hang.
	if err := m.Destroy(); !errors.Is(err, unix.EBUSY) {
		t.Errorf("Destroy with a live process: %v, want EBUSY", err)
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	if m.Exists() {
		t.Error("Exists() after Destroy")
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestSetMemoryV1(t *testing.T) {
	f := hostFixture(t)
	d := f.m.v1Dir("memory")
	if d == "" {
		t.Skip("memory controller is not on cgroup v1 here")
	}
	if err := f.m.Apply(f.start("exec sleep 100").pid); err != nil {
		t.Fatal(err)
	}
	haveSwap := fileExists(d, "memory.memsw.limit_in_bytes")
	set := func(mem specs.LinuxMemory) {
		t.Helper()
		if !haveSwap {
			mem.Swap = nil
		}
		if err := f.m.Set(&specs.LinuxResources{Memory: &mem}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(limit, swap string) {
		t.Helper()
		expectFile(t, d, "memory.limit_in_bytes", limit)
		if haveSwap {
			expectFile(t, d, "memory.memsw.limit_in_bytes", swap)
		}
	}
	set(specs.LinuxMemory{Limit: ptr(int64(256 << 20)), Swap: ptr(int64(512 << 20)), Reservation: ptr(int64(128 << 20)),
		Swappiness: ptr(uint64(30)), DisableOOMKiller: ptr(true), UseHierarchy: ptr(true),
		Kernel: ptr(int64(64 << 20)), KernelTCP: ptr(int64(32 << 20))})
	check("268435456", "536870912")
	expectFile(t, d, "memory.soft_limit_in_bytes", "134217728")
	expectFile(t, d, "memory.swappiness", "30")
	expectFile(t, d, "memory.use_hierarchy", "1")
	if oc := parseKeyed(readT(t, d, "memory.oom_control")); oc["oom_kill_disable"] != 1 {
		t.Errorf("oom_kill_disable = %d", oc["oom_kill_disable"])
	}
	if fileExists(d, "memory.kmem.tcp.limit_in_bytes") {
		expectFile(t, d, "memory.kmem.tcp.limit_in_bytes", "33554432")
	}
	// Lowering needs memory before memsw, raising memsw before memory;
	// the wrong order makes the kernel return EINVAL.
	set(specs.LinuxMemory{Limit: ptr(int64(64 << 20)), Swap: ptr(int64(96 << 20))})
	check("67108864", "100663296")
	set(specs.LinuxMemory{Limit: ptr(int64(1 << 30)), Swap: ptr(int64(2 << 30))})
	check("1073741824", "2147483648")
	// Unlimited memory takes swap with it (memsw >= memory).
	set(specs.LinuxMemory{Limit: ptr(int64(-1))})
	unlimited := readT(t, filepath.Dir(d), "memory.limit_in_bytes")
	check(unlimited, unlimited)
	set(specs.LinuxMemory{DisableOOMKiller: ptr(false)})
	if oc := parseKeyed(readT(t, d, "memory.oom_control")); oc["oom_kill_disable"] != 0 {
		t.Errorf("oom_kill_disable = %d after re-enabling", oc["oom_kill_disable"])
	}
	if err := f.m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(100 << 20)), Swap: ptr(int64(50 << 20))}}); err == nil && haveSwap {
		t.Error("swap below limit accepted")
	}
}

func TestSetCPUV1(t *testing.T) {
	f := hostFixture(t)
	d, cs := f.m.v1Dir("cpu"), f.m.v1Dir("cpuset")
	if d == "" || cs == "" {
		t.Skip("cpu/cpuset controllers are not on cgroup v1 here")
	}
	if err := f.m.Apply(f.start("exec sleep 100").pid); err != nil {
		t.Fatal(err)
	}
	firstCPU := strings.FieldsFunc(readT(t, filepath.Dir(cs), "cpuset.effective_cpus"), func(r rune) bool { return r == ',' || r == '-' })[0]
	firstMem := strings.FieldsFunc(readT(t, filepath.Dir(cs), "cpuset.effective_mems"), func(r rune) bool { return r == ',' || r == '-' })[0]
	cpu := &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(25000)), Period: ptr(uint64(50000)),
		Burst: ptr(uint64(1000)), Cpus: firstCPU, Mems: firstMem}
	if err := f.m.Set(&specs.LinuxResources{CPU: cpu}); err != nil {
		t.Fatal(err)
	}
	expectFile(t, d, "cpu.shares", "512")
	expectFile(t, d, "cpu.cfs_quota_us", "25000")
	expectFile(t, d, "cpu.cfs_period_us", "50000")
	if fileExists(d, "cpu.cfs_burst_us") {
		expectFile(t, d, "cpu.cfs_burst_us", "1000")
	}
	expectFile(t, cs, "cpuset.cpus", firstCPU)
	expectFile(t, cs, "cpuset.mems", firstMem)

	if err := f.m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(-1)), Period: ptr(uint64(200000))}}); err != nil {
		t.Fatal(err)
	}
	expectFile(t, d, "cpu.cfs_quota_us", "-1")
	expectFile(t, d, "cpu.cfs_period_us", "200000")

	if fileExists(d, "cpu.idle") {
		if err := f.m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{Idle: ptr(int64(1)), Shares: ptr(uint64(2048))}}); err != nil {
			t.Fatal(err)
		}
		expectFile(t, d, "cpu.idle", "1")
		// Leaving idle and setting shares in one update needs idle first.
		if err := f.m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{Idle: ptr(int64(0)), Shares: ptr(uint64(1024))}}); err != nil {
			t.Fatal(err)
		}
		expectFile(t, d, "cpu.idle", "0")
		expectFile(t, d, "cpu.shares", "1024")
	}
	if fileExists(d, "cpu.rt_runtime_us") {
		if err := f.m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimePeriod: ptr(uint64(500000)), RealtimeRuntime: ptr(int64(5000))}}); err != nil {
			t.Fatal(err)
		}
		expectFile(t, d, "cpu.rt_period_us", "500000")
		expectFile(t, d, "cpu.rt_runtime_us", "5000")
	} else {
		t.Log("kernel without CONFIG_RT_GROUP_SCHED: realtime not checked")
	}
}

func TestSetPidsV1(t *testing.T) {
	f := hostFixture(t)
	d := f.m.Path("pids")
	if d == "" {
		t.Skip("kernel has no pids controller mounted")
	}
	if err := f.m.Apply(f.start("exec sleep 100").pid); err != nil {
		t.Fatal(err)
	}
	for limit, want := range map[int64]string{10: "10", 0: "0", -1: "max"} {
		if err := f.m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(limit)}}); err != nil {
			t.Fatal(err)
		}
		expectFile(t, d, "pids.max", want)
	}
}

// blockDevice returns "major:minor" of a disk the throttle files accept.
func blockDevice(t *testing.T) (string, specs.LinuxBlockIODevice) {
	t.Helper()
	entries, _ := os.ReadDir("/sys/block")
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		s, err := readFile("/sys/block/"+n, "size")
		if err != nil || s == "0" {
			continue
		}
		dev, err := readFile("/sys/block/"+n, "dev")
		if err != nil {
			continue
		}
		var d specs.LinuxBlockIODevice
		if _, err := fmt.Sscanf(dev, "%d:%d", &d.Major, &d.Minor); err == nil {
			return n, d
		}
	}
	t.Skip("no block device found")
	return "", specs.LinuxBlockIODevice{}
}

func TestSetBlkioV1(t *testing.T) {
	f := hostFixture(t)
	d := f.m.v1Dir("blkio")
	if d == "" {
		t.Skip("blkio controller is not on cgroup v1 here")
	}
	_, dev := blockDevice(t)
	if err := f.m.Apply(f.start("exec sleep 100").pid); err != nil {
		t.Fatal(err)
	}
	td := func(rate uint64) []specs.LinuxThrottleDevice {
		return []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev, Rate: rate}}
	}
	b := &specs.LinuxBlockIO{ThrottleReadBpsDevice: td(1 << 20), ThrottleWriteBpsDevice: td(2 << 20),
		ThrottleReadIOPSDevice: td(100), ThrottleWriteIOPSDevice: td(200)}
	haveWeight := fileExists(d, "blkio.weight") || fileExists(d, "blkio.bfq.weight")
	if haveWeight {
		b.Weight = ptr(uint16(500))
		b.LeafWeight = ptr(uint16(300)) // CFQ only: skipped quietly elsewhere
	}
	if err := f.m.Set(&specs.LinuxResources{BlockIO: b}); err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("%d:%d", dev.Major, dev.Minor)
	for file, rate := range map[string]string{"read_bps_device": "1048576", "write_bps_device": "2097152", "read_iops_device": "100", "write_iops_device": "200"} {
		expectFile(t, d, "blkio.throttle."+file, key+" "+rate)
	}
	if haveWeight {
		wf := "blkio.weight"
		if !fileExists(d, wf) {
			wf = "blkio.bfq.weight"
		}
		if got := readT(t, d, wf); !strings.HasSuffix(got, "500") {
			t.Errorf("%s = %q", wf, got)
		}
	} else {
		t.Log("no proportional I/O scheduler: weight not checked")
	}
	// Rate 0 removes a v1 throttle.
	if err := f.m.Set(&specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{ThrottleReadBpsDevice: td(0)}}); err != nil {
		t.Fatal(err)
	}
	expectFile(t, d, "blkio.throttle.read_bps_device", "")
}

func TestSetHugetlbAndUnified(t *testing.T) {
	f := hostFixture(t)
	if err := f.m.Apply(f.start("exec sleep 100").pid); err != nil {
		t.Fatal(err)
	}
	d := f.m.Path("hugetlb")
	sizes := hugePageSizes(hugepagesSysDir)
	if d == "" || len(sizes) == 0 {
		t.Skip("kernel offers no hugetlb controller or huge pages")
	}
	var limits []specs.LinuxHugepageLimit
	for i, s := range sizes {
		limits = append(limits, specs.LinuxHugepageLimit{Pagesize: s, Limit: uint64(i+1) << 30})
	}
	if err := f.m.Set(&specs.LinuxResources{HugepageLimits: limits}); err != nil {
		t.Fatal(err)
	}
	suffix := "limit_in_bytes"
	if d == f.m.v2 {
		suffix = "max"
	}
	for _, l := range limits {
		expectFile(t, d, "hugetlb."+l.Pagesize+"."+suffix, fmt.Sprint(l.Limit))
	}
	err := f.m.Set(&specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "3MB", Limit: 1}}})
	if err == nil || !strings.Contains(err.Error(), "3MB") {
		t.Errorf("bad page size: %v", err)
	}

	if f.m.v2 == "" {
		return
	}
	if err := f.m.Set(&specs.LinuxResources{Unified: map[string]string{"cgroup.max.descendants": "7"}}); err != nil {
		t.Fatal(err)
	}
	expectFile(t, f.m.v2, "cgroup.max.descendants", "7")
	if f.m.v1Dir("memory") != "" {
		// memory lives on v1, so the unified hierarchy cannot offer it.
		err := f.m.Set(&specs.LinuxResources{Unified: map[string]string{"memory.high": "1G"}})
		var ce *ControllerError
		if !errors.As(err, &ce) || ce.Controller != "memory" {
			t.Errorf("unified memory.high in hybrid mode: %v", err)
		}
	}
}

func TestUnavailableControllers(t *testing.T) {
	f := hostFixture(t)
	if err := f.m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	cases := map[string]*specs.LinuxResources{
		"net_cls":  {Network: &specs.LinuxNetwork{ClassID: ptr(uint32(0x100001))}},
		"net_prio": {Network: &specs.LinuxNetwork{Priorities: []specs.LinuxInterfacePriority{{Name: "lo", Priority: 1}}}},
		"rdma":     {Rdma: map[string]specs.LinuxRdma{"mlx4_0": {HcaHandles: ptr(uint32(1))}}},
	}
	tested := 0
	for ctrl, r := range cases {
		if f.m.Path(ctrl) != "" {
			continue // available here; nothing to prove
		}
		tested++
		err := f.m.Set(r)
		var ce *ControllerError
		if !errors.As(err, &ce) || ce.Controller != ctrl || !strings.Contains(err.Error(), "cgroup controller "+ctrl+" not available") {
			t.Errorf("%s: got %v", ctrl, err)
		}
	}
	// Zero values need no controller.
	if err := f.m.Set(&specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: ptr(uint32(0))}, Pids: &specs.LinuxPids{Limit: ptr(int64(-1))}}); err != nil {
		t.Errorf("zero values: %v", err)
	}
	if err := f.m.Set(nil); err != nil {
		t.Errorf("Set(nil): %v", err)
	}
	t.Logf("%d unavailable controllers checked", tested)
}

func TestDevicesV1Enforced(t *testing.T) {
	f := hostFixture(t)
	d := f.m.v1Dir("devices")
	if d == "" {
		t.Skip("devices controller is not on cgroup v1 here")
	}
	p := f.start(`head -c1 /dev/zero >/dev/null && echo zero-ok; head -c1 /dev/full >/dev/null || echo full-denied`)
	if err := f.m.Apply(p.pid); err != nil {
		t.Fatal(err)
	}
	// No rules: the parent's list stays.
	before := readT(t, d, "devices.list")
	if err := f.m.Set(&specs.LinuxResources{}); err != nil {
		t.Fatal(err)
	}
	expectFile(t, d, "devices.list", before)
	rules := []specs.LinuxDeviceCgroup{
		rule(false, "", nil, nil, "rwm"),
		rule(true, "c", num(1), num(3), "rwm"), // /dev/null
		rule(true, "c", num(1), num(5), "r"),   // /dev/zero
	}
	if err := f.m.Set(&specs.LinuxResources{Devices: rules}); err != nil {
		t.Fatal(err)
	}
	expectFile(t, d, "devices.list", "c 1:3 rwm\nc 1:5 r")
	p.release(t)
	out, errOut := p.finish(t)
	if out != "zero-ok\nfull-denied\n" || !strings.Contains(errOut, "Operation not permitted") {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
}

func TestStatsV1(t *testing.T) {
	f := hostFixture(t)
	// Direct writes bypass the page cache, so they reach the block layer
	// (and its counters) while the writer is in the cgroup. The marker
	// file tells whether the file system supported O_DIRECT.
	tmp := t.TempDir()
	data, marker := filepath.Join(tmp, "data"), filepath.Join(tmp, "ok")
	script := "dd if=/dev/zero of=" + data + " bs=4096 count=4 oflag=direct 2>/dev/null && : > " + marker + "; exec sleep 100"
	p := f.start(script)
	if err := f.m.Apply(p.pid); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Set(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr(int64(512 << 20))},
		Pids:   &specs.LinuxPids{Limit: ptr(int64(50))},
	}); err != nil {
		t.Fatal(err)
	}
	// The shell was moved before it did anything, so everything the
	// program does from here on is charged to the new cgroup.
	p.release(t)
	waitFor(t, "exec of sleep", func() bool { return comm(p.pid) == "sleep" })
	st, err := f.m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Memory.Usage == 0 || st.Memory.Limit != 512<<20 {
		t.Errorf("memory stats %+v", st.Memory)
	}
	if st.Pids.Current != 1 || st.Pids.Limit != 50 {
		t.Errorf("pids stats %+v", st.Pids)
	}
	// usage_user/usage_sys are tick-sampled, so only the total is exact.
	if st.CPU.UsageTotal == 0 {
		t.Errorf("cpu stats %+v", st.CPU)
	}
	if fileExists(tmp, "ok") {
		if st.IO.WriteBytes < 4*4096 || st.IO.WriteOps == 0 {
			t.Errorf("io stats %+v after writing 16KiB with O_DIRECT", st.IO)
		}
	} else {
		t.Logf("%s does not support O_DIRECT: I/O counters not checked", tmp)
	}
	if f.m.Path("hugetlb") != "" {
		for _, s := range hugePageSizes(hugepagesSysDir) {
			if _, ok := st.Hugetlb[s]; !ok {
				t.Errorf("no hugetlb stats for %s: %v", s, st.Hugetlb)
			}
		}
	}
	t.Logf("stats: %+v", *st)
}

// busyCPU reports whether pid consumes CPU time within a short window.
func busyCPU(t *testing.T, pid int) bool {
	_, a := procStat(t, pid)
	time.Sleep(300 * time.Millisecond)
	_, b := procStat(t, pid)
	return b > a
}

func checkFreeze(t *testing.T, f *fixture) {
	p := f.start("while :; do :; done")
	if err := f.m.Apply(p.pid); err != nil {
		t.Fatal(err)
	}
	p.release(t)
	waitFor(t, "busy loop to use CPU", func() bool { return busyCPU(t, p.pid) })
	if paused, err := f.m.Paused(); err != nil || paused {
		t.Fatalf("Paused() = %v, %v before Freeze", paused, err)
	}
	if err := f.m.Freeze(); err != nil {
		t.Fatal(err)
	}
	if paused, err := f.m.Paused(); err != nil || !paused {
		t.Fatalf("Paused() = %v, %v after Freeze", paused, err)
	}
	state, _ := procStat(t, p.pid)
	if busyCPU(t, p.pid) {
		t.Errorf("frozen process still runs (state %s)", state)
	}
	pids, err := f.m.Pids()
	if err != nil || !slices.Equal(pids, []int{p.pid}) {
		t.Errorf("Pids() while frozen = %v, %v", pids, err)
	}
	if err := f.m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if paused, err := f.m.Paused(); err != nil || paused {
		t.Fatalf("Paused() = %v, %v after Thaw", paused, err)
	}
	waitFor(t, "thawed process to run", func() bool { return busyCPU(t, p.pid) })
}

func TestFreezeHost(t *testing.T) {
	checkFreeze(t, hostFixture(t))
}

func TestFreezeV2(t *testing.T) {
	f := v2Fixture(t)
	if err := f.m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	if !fileExists(f.m.v2, "cgroup.freeze") {
		t.Skip("kernel has no cgroup2 freezer (needs 5.2)")
	}
	checkFreeze(t, f)
}

func TestDeviceProgramsLoad(t *testing.T) {
	requireRoot(t)
	sets := [][]specs.LinuxDeviceCgroup{
		{rule(false, "a", nil, nil, "rwm")},
		{rule(true, "a", nil, nil, "rwm"), rule(false, "c", num(1), num(5), "w")},
		{rule(false, "a", nil, nil, "rwm"), rule(true, "c", nil, nil, "m"), rule(true, "b", num(8), nil, "rw"), rule(true, "c", num(1), num(3), "rwm")},
	}
	// The kernel verifier must accept every shape of program we emit.
	for i, rules := range sets {
		prog, err := loadDeviceProgram(rules)
		if err != nil {
			t.Errorf("set %d: %v", i, err)
			continue
		}
		_ = prog.Close()
	}
	// Attaching to something that is not a cgroup fails with an error.
	if err := setDevicesV2(t.TempDir(), sets[0]); err == nil {
		t.Error("attached to a plain directory")
	}
}

func TestDevicesV2Enforced(t *testing.T) {
	f := v2Fixture(t)
	script := `head -c1 /dev/zero >/dev/null; echo zero=$?; head -c1 /dev/null; echo null=$?`
	p := f.start(script)
	if err := f.m.Apply(p.pid); err != nil {
		t.Fatal(err)
	}
	onlyNull := []specs.LinuxDeviceCgroup{rule(false, "a", nil, nil, "rwm"), rule(true, "c", num(1), num(3), "rwm")}
	if err := f.m.Set(&specs.LinuxResources{Devices: onlyNull}); err != nil {
		t.Fatal(err)
	}
	p.release(t)
	out, errOut := p.finish(t)
	if out != "zero=1\nnull=0\n" || !strings.Contains(errOut, "/dev/zero") || !strings.Contains(errOut, "Operation not permitted") {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}

	// An update replaces the program instead of stacking a second one
	// (stacked programs would all have to allow).
	withZero := append(onlyNull, rule(true, "c", num(1), num(5), "r"))
	if err := f.m.Set(&specs.LinuxResources{Devices: withZero}); err != nil {
		t.Fatal(err)
	}
	if n := attachedDevicePrograms(t, f.m.v2); n != 1 {
		t.Errorf("%d device programs attached after update, want 1", n)
	}
	p2 := f.start(script)
	if err := f.m.Apply(p2.pid); err != nil {
		t.Fatal(err)
	}
	p2.release(t)
	if out, errOut := p2.finish(t); out != "zero=0\nnull=0\n" {
		t.Errorf("after update: stdout %q stderr %q", out, errOut)
	}
}

func TestV2ViewUnavailableControllers(t *testing.T) {
	f := v2Fixture(t)
	if err := f.m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	if f.m.v2avail["memory"] {
		t.Skip("memory is available on cgroup2 here")
	}
	err := f.m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 30))}})
	var ce *ControllerError
	if !errors.As(err, &ce) || ce.Controller != "memory" {
		t.Errorf("memory on a cgroup2 without it: %v", err)
	}
	pids, err := f.m.Pids()
	if err != nil || len(pids) != 0 {
		t.Errorf("Pids() of an empty cgroup = %v, %v", pids, err)
	}
}
