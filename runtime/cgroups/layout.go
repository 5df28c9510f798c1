package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hullproject/hull/runtime/mountinfo"
)

// mountEntry is the part of a /proc/self/mountinfo line we need.
type mountEntry struct {
	root       string // path inside the mounted filesystem that is visible
	mountpoint string
	fstype     string
	superOpts  []string
}

// procCgroup is one line of /proc/self/cgroup.
type procCgroup struct {
	id          int
	controllers []string // empty for the cgroup2 line
	path        string
}

// hierarchy is one mounted cgroup hierarchy together with the calling
// process's cgroup in it.
type hierarchy struct {
	controllers []string // v1 controllers incl. "name=..." entries; nil for v2
	mountpoint  string
	root        string // mount root inside the hierarchy
	own         string // the caller's cgroup path, relative to the hierarchy root
}

// layout is every cgroup hierarchy visible to the calling process.
type layout struct {
	v1 []hierarchy
	v2 *hierarchy
}

func (l layout) mode() Mode {
	switch {
	case len(l.v1) > 0 && l.v2 != nil:
		return Hybrid
	case len(l.v1) == 0 && l.v2 != nil:
		return Unified
	}
	return Legacy
}

// layoutCache keeps the layout for a moment: one container start needs it
// three or four times (cgroup creation, the cgroup mount, deletion), and
// each read of mountinfo costs the kernel tens of microseconds per mount.
// A second is shorter than any change of the host's cgroup mounts that a
// long-lived process should notice.
var layoutCache struct {
	sync.Mutex
	l  layout
	at time.Time
}

const layoutTTL = time.Second

func loadLayout() (layout, error) {
	layoutCache.Lock()
	defer layoutCache.Unlock()
	if !layoutCache.at.IsZero() && time.Since(layoutCache.at) < layoutTTL {
		return layoutCache.l, nil
	}
	l, err := readLayout()
	if err != nil {
		return layout{}, err
	}
	layoutCache.l, layoutCache.at = l, time.Now()
	return l, nil
}

func readLayout() (layout, error) {
	mounts, err := mountinfo.Read(isCgroupMount)
	if err != nil {
		return layout{}, err
	}
	pc, err := os.Open("/proc/thread-self/cgroup")
	if err != nil {
		return layout{}, fmt.Errorf("open /proc/self/cgroup: %w", err)
	}
	defer pc.Close()
	cgs, err := parseProcCgroup(pc)
	if err != nil {
		return layout{}, err
	}
	return buildLayout(toEntries(mounts), cgs), nil
}

func isCgroupMount(m *mountinfo.Mount) bool { return m.FSType == "cgroup" || m.FSType == "cgroup2" }

func toEntries(ms []mountinfo.Mount) []mountEntry {
	out := make([]mountEntry, 0, len(ms))
	for _, m := range ms {
		out = append(out, mountEntry{root: m.Root, mountpoint: m.Mountpoint, fstype: m.FSType, superOpts: m.SuperOpts})
	}
	return out
}

// parseMountinfo keeps only cgroup and cgroup2 mounts.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	ms, err := mountinfo.Parse(r, isCgroupMount)
	if err != nil {
		return nil, err
	}
	return toEntries(ms), nil
}

func parseProcCgroup(r io.Reader) ([]procCgroup, error) {
	var out []procCgroup
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		// The path itself may contain ':', so split at most twice.
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("parse /proc/self/cgroup line %q: want 3 fields", line)
		}
		id, err := strconv.Atoi(parts[0])
		if err != nil {
			return nil, fmt.Errorf("parse /proc/self/cgroup line %q: %w", line, err)
		}
		e := procCgroup{id: id, path: parts[2]}
		if parts[1] != "" {
			e.controllers = strings.Split(parts[1], ",")
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	return out, nil
}

// buildLayout matches each hierarchy the process belongs to with a mount of
// it. Hierarchies that are not mounted are left out.
func buildLayout(mounts []mountEntry, cgs []procCgroup) layout {
	var l layout
	for _, cg := range cgs {
		if cg.id == 0 && len(cg.controllers) == 0 {
			if m := pickMount(mounts, "cgroup2", nil); m != nil {
				l.v2 = &hierarchy{mountpoint: m.mountpoint, root: m.root, own: cg.path}
			}
			continue
		}
		if len(cg.controllers) == 0 {
			continue
		}
		if m := pickMount(mounts, "cgroup", cg.controllers); m != nil {
			l.v1 = append(l.v1, hierarchy{
				controllers: cg.controllers,
				mountpoint:  m.mountpoint,
				root:        m.root,
				own:         cg.path,
			})
		}
	}
	return l
}

// pickMount chooses the mount of a hierarchy. When a hierarchy is mounted
// several times (bind mounts of sub-directories), the one closest to the
// hierarchy root wins, because absolute cgroupsPaths must be reachable.
func pickMount(mounts []mountEntry, fstype string, controllers []string) *mountEntry {
	var best *mountEntry
	for i := range mounts {
		m := &mounts[i]
		if m.fstype != fstype || !hasAll(m.superOpts, controllers) {
			continue
		}
		if best == nil || len(m.root) < len(best.root) {
			best = m
		}
	}
	return best
}

func hasAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (h hierarchy) has(controller string) bool {
	for _, c := range h.controllers {
		if c == controller {
			return true
		}
	}
	return false
}

// resolve maps an OCI cgroupsPath to a directory of this hierarchy. Cleaning
// the path as a rooted path keeps ".." from climbing above the mount point.
// Paths naming the hierarchy root or the caller's own cgroup are refused:
// Destroy removes the whole subtree of the directory.
func (h hierarchy) resolve(cgroupsPath string) (string, error) {
	if cgroupsPath == "" {
		return "", errors.New("empty cgroups path")
	}
	base := h.own
	if h.root != "/" {
		if r, ok := strings.CutPrefix(base, h.root); ok && (r == "" || r[0] == '/') {
			base = r
		}
	}
	ownDir := path.Join(h.mountpoint, path.Clean("/"+base))
	var dir string
	if path.IsAbs(cgroupsPath) {
		dir = path.Join(h.mountpoint, path.Clean(cgroupsPath))
	} else {
		// Rooting the relative part before joining keeps it below the
		// caller's cgroup.
		dir = path.Join(ownDir, path.Clean("/"+cgroupsPath))
	}
	if dir == path.Clean(h.mountpoint) {
		return "", fmt.Errorf("cgroups path %q is the root of the hierarchy at %s", cgroupsPath, h.mountpoint)
	}
	if !path.IsAbs(cgroupsPath) && dir == ownDir {
		return "", fmt.Errorf("cgroups path %q is the caller's own cgroup", cgroupsPath)
	}
	return dir, nil
}

// Hierarchy is one mounted cgroup hierarchy, as a container's view of
// /sys/fs/cgroup is made from them.
type Hierarchy struct {
	Mountpoint  string
	Root        string   // mount root inside the hierarchy
	Controllers []string // v1 controllers incl. "name=..."; nil for cgroup v2
}

// Hierarchies lists the hierarchies mounted in the calling thread's mount
// namespace, v1 first.
func Hierarchies() ([]Hierarchy, error) {
	l, err := loadLayout()
	if err != nil {
		return nil, err
	}
	var out []Hierarchy
	for _, h := range l.v1 {
		out = append(out, Hierarchy{Mountpoint: h.mountpoint, Root: h.root, Controllers: h.controllers})
	}
	if l.v2 != nil {
		out = append(out, Hierarchy{Mountpoint: l.v2.mountpoint, Root: l.v2.root})
	}
	return out, nil
}

// ProcessPaths returns the cgroup of process pid in each hierarchy, keyed
// by its controllers as /proc/<pid>/cgroup lists them ("cpu,cpuacct",
// "name=systemd"; "" for cgroup v2).
func ProcessPaths(pid int) (map[string]string, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cgs, err := parseProcCgroup(f)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(cgs))
	for _, cg := range cgs {
		out[strings.Join(cg.controllers, ",")] = cg.path
	}
	return out, nil
}
