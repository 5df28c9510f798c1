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

func loadLayout() (layout, error) {
	mi, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return layout{}, fmt.Errorf("open mountinfo: %w", err)
	}
	defer mi.Close()
	mounts, err := parseMountinfo(mi)
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
	return buildLayout(mounts, cgs), nil
}

// parseMountinfo keeps only cgroup and cgroup2 mounts.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		// The optional fields have variable length; " - " separates them
		// from the filesystem type, source and super options.
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		p := strings.Fields(post)
		if len(f) < 5 || len(p) < 1 {
			return nil, fmt.Errorf("parse mountinfo line %q: too few fields", line)
		}
		if p[0] != "cgroup" && p[0] != "cgroup2" {
			continue
		}
		e := mountEntry{
			root:       unescapeMount(f[3]),
			mountpoint: unescapeMount(f[4]),
			fstype:     p[0],
		}
		if len(p) >= 3 {
			e.superOpts = strings.Split(p[2], ",")
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMount undoes the octal escaping (\040 for space etc.) the kernel
// applies to paths in mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
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
