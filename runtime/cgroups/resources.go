package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// This file holds the per-controller writers. They take the target directory
// so tests can run them against fixture directories.

func i64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func u64(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

func memoryRequested(m *specs.LinuxMemory) bool {
	return i64(m.Limit) > 0 || i64(m.Reservation) > 0 || i64(m.Swap) > 0 ||
		u64(m.Swappiness) != 0 || (m.DisableOOMKiller != nil && *m.DisableOOMKiller) ||
		(m.UseHierarchy != nil && *m.UseHierarchy)
}

func cpuRequested(c *specs.LinuxCPU) bool {
	return u64(c.Shares) != 0 || i64(c.Quota) > 0 || u64(c.Period) != 0 || u64(c.Burst) != 0 ||
		i64(c.RealtimeRuntime) != 0 || u64(c.RealtimePeriod) != 0 || i64(c.Idle) != 0
}

func blkioRequested(b *specs.LinuxBlockIO) bool {
	return (b.Weight != nil && *b.Weight != 0) || (b.LeafWeight != nil && *b.LeafWeight != 0) ||
		len(b.WeightDevice) > 0 || len(b.ThrottleReadBpsDevice) > 0 || len(b.ThrottleWriteBpsDevice) > 0 ||
		len(b.ThrottleReadIOPSDevice) > 0 || len(b.ThrottleWriteIOPSDevice) > 0
}

// limitString formats a v1 byte limit; v1 takes -1 for "unlimited".
func limitString(v int64) string {
	if v < 0 {
		return "-1"
	}
	return strconv.FormatInt(v, 10)
}

// maxString formats a v2 limit, where "max" means unlimited.
func maxString(v int64) string {
	if v < 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

func pidsMaxValue(limit int64) string { return maxString(limit) }

func setCpusetFiles(dir, cpus, mems string) error {
	// mems first: an empty-to-set transition of mems never conflicts with
	// cpus, and both are independent otherwise.
	if mems != "" {
		if err := writeFile(dir, "cpuset.mems", mems); err != nil {
			return err
		}
	}
	if cpus != "" {
		if err := writeFile(dir, "cpuset.cpus", cpus); err != nil {
			return err
		}
	}
	return nil
}

// ---- memory ----

func setMemoryV1(dir string, m *specs.LinuxMemory) error {
	if err := setMemoryAndSwapV1(dir, i64(m.Limit), i64(m.Swap)); err != nil {
		return err
	}
	if v := i64(m.Reservation); v != 0 {
		if err := writeFile(dir, "memory.soft_limit_in_bytes", limitString(v)); err != nil {
			return err
		}
	}
	// Kernel memory limits are deprecated: newer kernels drop the files or
	// accept and ignore writes. Write them where they exist, skip quietly
	// where they do not.
	for _, k := range []struct {
		file string
		v    int64
	}{{"memory.kmem.limit_in_bytes", i64(m.Kernel)}, {"memory.kmem.tcp.limit_in_bytes", i64(m.KernelTCP)}} {
		if k.v == 0 || !fileExists(dir, k.file) {
			continue
		}
		if err := writeFile(dir, k.file, limitString(k.v)); err != nil && !errors.Is(err, syscall.EOPNOTSUPP) {
			return err
		}
	}
	if m.Swappiness != nil {
		if *m.Swappiness > 100 {
			return fmt.Errorf("invalid swappiness %d: must be 0-100", *m.Swappiness)
		}
		if err := writeFile(dir, "memory.swappiness", strconv.FormatUint(*m.Swappiness, 10)); err != nil {
			return err
		}
	}
	if m.DisableOOMKiller != nil {
		if err := writeFile(dir, "memory.oom_control", boolString(*m.DisableOOMKiller)); err != nil {
			return err
		}
	}
	if m.UseHierarchy != nil {
		if err := writeFile(dir, "memory.use_hierarchy", boolString(*m.UseHierarchy)); err != nil {
			return err
		}
	}
	return nil
}

func boolString(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// setMemoryAndSwapV1 writes memory.limit_in_bytes and
// memory.memsw.limit_in_bytes. The kernel insists on memsw >= memory at every
// moment, so memsw goes first when the new memsw still covers the current
// memory limit (raising), and last otherwise (lowering).
func setMemoryAndSwapV1(dir string, limit, swap int64) error {
	const memFile, swFile = "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"
	if limit == 0 && swap == 0 {
		return nil
	}
	haveSw := fileExists(dir, swFile)
	if limit < 0 && swap == 0 && haveSw {
		// An unlimited memory limit cannot stay below a finite memsw,
		// so "unlimited memory" implies unlimited memory+swap.
		swap = -1
	}
	if swap != 0 && !haveSw {
		if swap < 0 {
			swap = 0 // unlimited is the default without swap accounting
		} else {
			return fmt.Errorf("swap limit requested but %s is missing (swap accounting disabled?)", swFile)
		}
	}
	if limit < 0 && swap > 0 {
		return fmt.Errorf("memory+swap limit %d with unlimited memory", swap)
	}
	if limit > 0 && swap > 0 && swap < limit {
		return fmt.Errorf("memory+swap limit %d must be >= memory limit %d", swap, limit)
	}
	if swap == 0 {
		if limit == 0 {
			return nil // only an unlimited swap was asked for, and it is moot
		}
		return writeFile(dir, memFile, limitString(limit))
	}
	swapFirst := true
	if swap > 0 {
		cur, err := readUint(dir, memFile)
		if err != nil {
			return err
		}
		swapFirst = uint64(swap) >= cur
	}
	order := []struct{ file, v string }{{swFile, limitString(swap)}, {memFile, limitString(limit)}}
	if !swapFirst {
		order[0], order[1] = order[1], order[0]
	}
	for _, w := range order {
		if w.file == memFile && limit == 0 {
			continue
		}
		if err := writeFile(dir, w.file, w.v); err != nil {
			return err
		}
	}
	return nil
}

// swapV2 converts the OCI memory+swap total to cgroup v2's swap-only
// memory.swap.max. ok is false when nothing is to be written.
func swapV2(limit, swap int64) (value string, ok bool, err error) {
	switch {
	case swap == 0 && limit < 0:
		// As on v1, unlimited memory with unset swap means unlimited
		// swap too.
		return "max", true, nil
	case swap == 0:
		return "", false, nil
	case swap < 0:
		return "max", true, nil
	case limit <= 0:
		return "", false, errors.New("a swap limit needs a memory limit")
	case swap < limit:
		return "", false, fmt.Errorf("memory+swap limit %d must be >= memory limit %d", swap, limit)
	}
	return strconv.FormatInt(swap-limit, 10), true, nil
}

func setMemoryV2(dir string, m *specs.LinuxMemory) error {
	limit, swap := i64(m.Limit), i64(m.Swap)
	if m.CheckBeforeUpdate != nil && *m.CheckBeforeUpdate && limit > 0 {
		// v2 would OOM-kill instead of refusing; the spec asks runtimes
		// to refuse like v1 does.
		cur, err := readUint(dir, "memory.current")
		if err != nil {
			return err
		}
		if uint64(limit) < cur {
			return fmt.Errorf("memory limit %d is below current usage %d", limit, cur)
		}
	}
	sw, setSwap, err := swapV2(limit, swap)
	if err != nil {
		return err
	}
	if setSwap {
		if fileExists(dir, "memory.swap.max") {
			if err := writeFile(dir, "memory.swap.max", sw); err != nil {
				return err
			}
		} else if sw != "max" {
			return errors.New("swap limit requested but memory.swap.max is missing (swap accounting disabled?)")
		}
	}
	if limit != 0 {
		if err := writeFile(dir, "memory.max", maxString(limit)); err != nil {
			return err
		}
	}
	if v := i64(m.Reservation); v != 0 {
		if err := writeFile(dir, "memory.low", maxString(v)); err != nil {
			return err
		}
	}
	// Settings v2 cannot express must fail rather than pass silently (the
	// spec requires an error when a v1 value cannot be converted). Kernel
	// memory limits are the exception: deprecated, ignored everywhere.
	if m.Swappiness != nil {
		return errors.New("memory swappiness cannot be set with cgroup v2")
	}
	if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
		return errors.New("disabling the OOM killer is not supported with cgroup v2")
	}
	if m.UseHierarchy != nil && !*m.UseHierarchy {
		return errors.New("cgroup v2 memory accounting is always hierarchical")
	}
	return nil
}

// ---- cpu ----

func setCPUV1(dir string, c *specs.LinuxCPU) error {
	// Idle first: the kernel rejects shares on an idle group, so a
	// 1 -> 0 transition must happen before shares are written.
	if c.Idle != nil && fileExists(dir, "cpu.idle") {
		if err := writeFile(dir, "cpu.idle", strconv.FormatInt(*c.Idle, 10)); err != nil {
			return err
		}
	}
	if s := u64(c.Shares); s != 0 && i64(c.Idle) != 1 {
		if err := writeFile(dir, "cpu.shares", strconv.FormatUint(s, 10)); err != nil {
			return err
		}
	}
	if err := setCFSV1(dir, i64(c.Quota), u64(c.Period)); err != nil {
		return err
	}
	if c.Burst != nil && fileExists(dir, "cpu.cfs_burst_us") {
		if err := writeFile(dir, "cpu.cfs_burst_us", strconv.FormatUint(*c.Burst, 10)); err != nil {
			return err
		}
	}
	rtRuntime, rtPeriod := i64(c.RealtimeRuntime), u64(c.RealtimePeriod)
	if rtRuntime != 0 || rtPeriod != 0 {
		if !fileExists(dir, "cpu.rt_runtime_us") {
			return errors.New("realtime scheduling limits need a kernel with CONFIG_RT_GROUP_SCHED")
		}
		// The period goes first because runtime is validated against it.
		if rtPeriod != 0 {
			if err := writeFile(dir, "cpu.rt_period_us", strconv.FormatUint(rtPeriod, 10)); err != nil {
				return err
			}
		}
		if rtRuntime != 0 {
			if err := writeFile(dir, "cpu.rt_runtime_us", strconv.FormatInt(rtRuntime, 10)); err != nil {
				return err
			}
		}
	}
	return nil
}

// setCFSV1 writes period and quota. The kernel validates the pair
// (quota/period against the parent's bandwidth, quota >= 1ms), so if the
// period does not fit with the old quota, the quota goes first.
func setCFSV1(dir string, quota int64, period uint64) error {
	if quota == 0 && period == 0 {
		return nil
	}
	q := limitString(quota)
	if period != 0 {
		perr := writeFile(dir, "cpu.cfs_period_us", strconv.FormatUint(period, 10))
		if perr == nil {
			if quota == 0 {
				return nil
			}
			return writeFile(dir, "cpu.cfs_quota_us", q)
		}
		if quota == 0 {
			return perr
		}
		if err := writeFile(dir, "cpu.cfs_quota_us", q); err != nil {
			return errors.Join(perr, err)
		}
		return writeFile(dir, "cpu.cfs_period_us", strconv.FormatUint(period, 10))
	}
	return writeFile(dir, "cpu.cfs_quota_us", q)
}

// sharesToWeight converts v1 cpu.shares [2, 262144] to v2 cpu.weight
// [1, 10000] linearly, the conversion OCI runtimes agree on.
func sharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

// cpuMaxValue formats cpu.max. Without a period only the quota is written,
// which keeps the current period.
func cpuMaxValue(quota int64, period uint64) (string, bool) {
	if quota == 0 && period == 0 {
		return "", false
	}
	s := "max"
	if quota > 0 {
		s = strconv.FormatInt(quota, 10)
	}
	if period != 0 {
		s += " " + strconv.FormatUint(period, 10)
	}
	return s, true
}

func setCPUV2(dir string, c *specs.LinuxCPU) error {
	if i64(c.RealtimeRuntime) != 0 || u64(c.RealtimePeriod) != 0 {
		return errors.New("realtime scheduling limits are not supported with cgroup v2")
	}
	if c.Idle != nil && fileExists(dir, "cpu.idle") {
		if err := writeFile(dir, "cpu.idle", strconv.FormatInt(*c.Idle, 10)); err != nil {
			return err
		}
	}
	if s := u64(c.Shares); s != 0 && i64(c.Idle) != 1 {
		if err := writeFile(dir, "cpu.weight", strconv.FormatUint(sharesToWeight(s), 10)); err != nil {
			return err
		}
	}
	if v, ok := cpuMaxValue(i64(c.Quota), u64(c.Period)); ok {
		if err := writeFile(dir, "cpu.max", v); err != nil {
			return err
		}
	}
	if c.Burst != nil && fileExists(dir, "cpu.max.burst") {
		if err := writeFile(dir, "cpu.max.burst", strconv.FormatUint(*c.Burst, 10)); err != nil {
			return err
		}
	}
	return nil
}

// ---- block io ----

func devString(d specs.LinuxBlockIODevice) string {
	return fmt.Sprintf("%d:%d", d.Major, d.Minor)
}

func setBlkioV1(dir string, b *specs.LinuxBlockIO) error {
	// Legacy CFQ had blkio.weight; BFQ (the only proportional scheduler
	// since 5.0) names it blkio.bfq.weight with the same range.
	weightFile, weightDevFile := "blkio.weight", "blkio.weight_device"
	if !fileExists(dir, weightFile) {
		weightFile, weightDevFile = "blkio.bfq.weight", "blkio.bfq.weight_device"
	}
	if b.Weight != nil && *b.Weight != 0 {
		if !fileExists(dir, weightFile) {
			return errors.New("blkio weight needs the BFQ or CFQ I/O scheduler (no blkio.weight or blkio.bfq.weight)")
		}
		if err := writeFile(dir, weightFile, strconv.Itoa(int(*b.Weight))); err != nil {
			return err
		}
	}
	// leaf_weight existed only with CFQ, which is gone from current
	// kernels; like kernel memory it is skipped where the file is missing.
	if b.LeafWeight != nil && *b.LeafWeight != 0 && fileExists(dir, "blkio.leaf_weight") {
		if err := writeFile(dir, "blkio.leaf_weight", strconv.Itoa(int(*b.LeafWeight))); err != nil {
			return err
		}
	}
	for _, wd := range b.WeightDevice {
		if wd.Weight != nil {
			if !fileExists(dir, weightDevFile) {
				return errors.New("blkio weight_device needs the BFQ or CFQ I/O scheduler")
			}
			if err := writeFile(dir, weightDevFile, fmt.Sprintf("%s %d", devString(wd.LinuxBlockIODevice), *wd.Weight)); err != nil {
				return err
			}
		}
		if wd.LeafWeight != nil && fileExists(dir, "blkio.leaf_weight_device") {
			if err := writeFile(dir, "blkio.leaf_weight_device", fmt.Sprintf("%s %d", devString(wd.LinuxBlockIODevice), *wd.LeafWeight)); err != nil {
				return err
			}
		}
	}
	for _, t := range []struct {
		file string
		devs []specs.LinuxThrottleDevice
	}{
		{"blkio.throttle.read_bps_device", b.ThrottleReadBpsDevice},
		{"blkio.throttle.write_bps_device", b.ThrottleWriteBpsDevice},
		{"blkio.throttle.read_iops_device", b.ThrottleReadIOPSDevice},
		{"blkio.throttle.write_iops_device", b.ThrottleWriteIOPSDevice},
	} {
		for _, d := range t.devs {
			// Rate 0 removes the device's limit in v1.
			if err := writeFile(dir, t.file, fmt.Sprintf("%s %d", devString(d.LinuxBlockIODevice), d.Rate)); err != nil {
				return err
			}
		}
	}
	return nil
}

// blkioToIOWeight maps blkio weight [10, 1000] linearly onto io.weight
// [1, 10000].
func blkioToIOWeight(w uint16) uint64 {
	if w == 0 {
		return 0
	}
	v := uint64(w)
	if v < 10 {
		v = 10
	}
	if v > 1000 {
		v = 1000
	}
	return 1 + (v-10)*9999/990
}

func setIOV2(dir string, b *specs.LinuxBlockIO) error {
	// io.bfq.weight uses the blkio range directly; io.weight (the
	// io.cost/iocost controller) needs the converted value.
	bfq := fileExists(dir, "io.bfq.weight")
	if b.Weight != nil && *b.Weight != 0 {
		var err error
		if bfq {
			err = writeFile(dir, "io.bfq.weight", strconv.Itoa(int(*b.Weight)))
		} else {
			err = writeFile(dir, "io.weight", fmt.Sprintf("default %d", blkioToIOWeight(*b.Weight)))
		}
		if err != nil {
			return err
		}
	}
	for _, wd := range b.WeightDevice {
		if wd.Weight == nil {
			continue
		}
		var err error
		if bfq {
			err = writeFile(dir, "io.bfq.weight", fmt.Sprintf("%s %d", devString(wd.LinuxBlockIODevice), *wd.Weight))
		} else {
			err = writeFile(dir, "io.weight", fmt.Sprintf("%s %d", devString(wd.LinuxBlockIODevice), blkioToIOWeight(*wd.Weight)))
		}
		if err != nil {
			return err
		}
	}
	for _, t := range []struct {
		key  string
		devs []specs.LinuxThrottleDevice
	}{
		{"rbps", b.ThrottleReadBpsDevice},
		{"wbps", b.ThrottleWriteBpsDevice},
		{"riops", b.ThrottleReadIOPSDevice},
		{"wiops", b.ThrottleWriteIOPSDevice},
	} {
		for _, d := range t.devs {
			if err := writeFile(dir, "io.max", ioMaxLine(d, t.key)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ioMaxLine formats one io.max entry. v2 rejects 0 where v1 used it to
// remove a limit, so 0 becomes "max".
func ioMaxLine(d specs.LinuxThrottleDevice, key string) string {
	v := "max"
	if d.Rate != 0 {
		v = strconv.FormatUint(d.Rate, 10)
	}
	return fmt.Sprintf("%s %s=%s", devString(d.LinuxBlockIODevice), key, v)
}

// ---- hugetlb ----

func setHugetlb(dir string, v2 bool, limits []specs.LinuxHugepageLimit) error {
	limitSuffix, rsvdSuffix := "limit_in_bytes", "rsvd.limit_in_bytes"
	if v2 {
		limitSuffix, rsvdSuffix = "max", "rsvd.max"
	}
	for _, l := range limits {
		if l.Pagesize == "" || strings.ContainsAny(l.Pagesize, "/.") {
			return fmt.Errorf("invalid hugepage size %q", l.Pagesize)
		}
		file := "hugetlb." + l.Pagesize + "." + limitSuffix
		if !fileExists(dir, file) {
			return fmt.Errorf("hugepage size %q not supported (%s missing in %s)", l.Pagesize, file, dir)
		}
		v := strconv.FormatUint(l.Limit, 10)
		if err := writeFile(dir, file, v); err != nil {
			return err
		}
		// The spec prefers reservation limits where the kernel has them:
		// they fail at mmap time instead of SIGBUS at fault time.
		rsvd := "hugetlb." + l.Pagesize + "." + rsvdSuffix
		if fileExists(dir, rsvd) {
			if err := writeFile(dir, rsvd, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- rdma ----

func setRdma(dir string, limits map[string]specs.LinuxRdma) error {
	names := make([]string, 0, len(limits))
	for n := range limits {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if line, ok := rdmaLine(n, limits[n]); ok {
			if err := writeFile(dir, "rdma.max", line); err != nil {
				return err
			}
		}
	}
	return nil
}

func rdmaLine(dev string, l specs.LinuxRdma) (string, bool) {
	var parts []string
	if l.HcaHandles != nil {
		parts = append(parts, fmt.Sprintf("hca_handle=%d", *l.HcaHandles))
	}
	if l.HcaObjects != nil {
		parts = append(parts, fmt.Sprintf("hca_object=%d", *l.HcaObjects))
	}
	if len(parts) == 0 {
		return "", false
	}
	return dev + " " + strings.Join(parts, " "), true
}

// ---- unified ----

// setUnified writes raw cgroup2 files. The controller a key belongs to is
// its prefix before the first dot; it must be enabled for the directory,
// otherwise the file would not exist and the error would be obscure. All
// keys are checked before the first write so a bad key changes nothing.
func setUnified(dir string, files map[string]string) error {
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var enabled map[string]bool
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "/") || strings.HasPrefix(k, ".") {
			return fmt.Errorf("invalid unified key %q", k)
		}
		if fileExists(dir, k) {
			continue
		}
		ctrl, _, _ := strings.Cut(k, ".")
		if ctrl != "cgroup" {
			if enabled == nil {
				var err error
				if enabled, err = readControllers(dir, "cgroup.controllers"); err != nil {
					return err
				}
			}
			if !enabled[ctrl] {
				return &ControllerError{Controller: ctrl, Reason: fmt.Sprintf("unified key %q: controller not enabled for %s", k, dir)}
			}
		}
		return fmt.Errorf("unified key %q: %s: %w", k, dir, fs.ErrNotExist)
	}
	for _, k := range keys {
		if err := writeFile(dir, k, files[k]); err != nil {
			return err
		}
	}
	return nil
}

// pagesizeName names a huge page size the way the kernel's hugetlb
// controller does in file names ("2MB", "1GB", "64KB").
func pagesizeName(bytes uint64) string {
	switch {
	case bytes >= 1<<30:
		return strconv.FormatUint(bytes>>30, 10) + "GB"
	case bytes >= 1<<20:
		return strconv.FormatUint(bytes>>20, 10) + "MB"
	}
	return strconv.FormatUint(bytes>>10, 10) + "KB"
}

// hugePageSizes lists the huge page sizes of the machine from
// /sys/kernel/mm/hugepages ("hugepages-2048kB" -> "2MB").
func hugePageSizes(sysDir string) []string {
	entries, err := readDirNames(sysDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		s, ok := strings.CutPrefix(e, "hugepages-")
		if !ok {
			continue
		}
		s, ok = strings.CutSuffix(s, "kB")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(s, 10, 64)
		if err != nil || kb > math.MaxUint64>>10 {
			continue
		}
		out = append(out, pagesizeName(kb<<10))
	}
	return out
}
