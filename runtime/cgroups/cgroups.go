// Package cgroups places container processes into Linux control groups and
// configures their resource limits. It supports the legacy (v1), hybrid
// (v1 controllers plus a cgroup2 mount) and unified (v2 only) layouts. The
// layout is discovered from /proc/self/mountinfo and /proc/self/cgroup, so no
// mount point is assumed.
package cgroups

import (
	"fmt"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Mode is the cgroup layout of the host.
type Mode int

const (
	// Legacy means only cgroup v1 hierarchies are mounted.
	Legacy Mode = iota
	// Hybrid means v1 hierarchies and a cgroup2 hierarchy are mounted.
	Hybrid
	// Unified means only the cgroup2 hierarchy is mounted.
	Unified
)

func (m Mode) String() string {
	switch m {
	case Legacy:
		return "legacy"
	case Hybrid:
		return "hybrid"
	case Unified:
		return "unified"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

var (
	modeOnce   sync.Once
	cachedMode Mode
)

// DetectMode reports the cgroup layout of the host. The result is cached
// because the layout does not change while a runtime process lives (only new
// v1 hierarchies may appear, which does not change the mode).
func DetectMode() Mode {
	modeOnce.Do(func() {
		l, err := loadLayout()
		if err != nil {
			// Without readable mount information nothing works anyway;
			// Legacy is the most conservative answer.
			cachedMode = Legacy
			return
		}
		cachedMode = l.mode()
	})
	return cachedMode
}

// Manager controls the cgroup (one directory per hierarchy) of one container.
type Manager interface {
	// Apply creates the cgroup in every hierarchy and moves pid into it.
	// It is idempotent, so exec can use it to join a running container.
	// A pid <= 0 only creates the directories.
	Apply(pid int) error
	// Set writes resource limits. A nil r is a no-op.
	Set(r *specs.LinuxResources) error
	// Freeze stops every process in the cgroup and waits until the kernel
	// reports the cgroup as frozen.
	Freeze() error
	// Thaw resumes a frozen cgroup.
	Thaw() error
	// Paused reports whether the cgroup is frozen.
	Paused() (bool, error)
	// Pids lists every process in the cgroup subtree.
	Pids() ([]int, error)
	// Stats reads usage counters.
	Stats() (*Stats, error)
	// Destroy removes the cgroup directories (children first). It does not
	// fail if they are already gone.
	Destroy() error
	// Path returns the directory for a controller ("memory", "cpu", ...);
	// "" or "unified" returns the cgroup2 directory. It returns "" when the
	// controller is not available.
	Path(controller string) string
	// Exists reports whether any directory of the cgroup exists.
	Exists() bool
}

// Stats holds the counters the kernel offers. Fields the kernel does not
// provide in the current mode stay zero.
type Stats struct {
	Memory struct {
		// Limit is math.MaxUint64 for "max" on cgroup v2; v1 reports its
		// own large "unlimited" number. Swap is swap usage alone.
		// SwapLimit is the memory+swap limit on v1 (memsw) and the
		// swap-only memory.swap.max on v2. OOMEvents exists on v2 only.
		Usage, MaxUsage, Limit, Cache, RSS, Swap, SwapLimit uint64
		Failcnt, OOMEvents, OOMKillEvents                   uint64
	}
	CPU struct {
		// UsageTotal, UsageUser, UsageSystem are in nanoseconds.
		UsageTotal, UsageUser, UsageSystem uint64
		// PerCPU is per-CPU usage in nanoseconds (cgroup v1 only).
		PerCPU                                   []uint64
		ThrottledPeriods, ThrottledTime, Periods uint64 // ThrottledTime in ns
	}
	Pids struct {
		// Limit is 0 when unlimited.
		Current, Limit uint64
	}
	IO struct {
		ReadBytes, WriteBytes, ReadOps, WriteOps uint64
	}
	// Hugetlb is keyed by page size as the kernel names it ("2MB", "1GB").
	Hugetlb map[string]struct{ Usage, MaxUsage, Failcnt uint64 }
}

// New returns a manager for an OCI cgroupsPath. An absolute path is taken
// from each hierarchy's root; a relative one is relative to the calling
// process's own cgroup in that hierarchy. Nothing is created until Apply.
func New(cgroupsPath string) (Manager, error) {
	l, err := loadLayout()
	if err != nil {
		return nil, err
	}
	m, err := newManager(l, cgroupsPath)
	if err != nil {
		// A nil *manager in a non-nil interface would defeat callers'
		// nil checks.
		return nil, err
	}
	return m, nil
}
