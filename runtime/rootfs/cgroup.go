package rootfs

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/cgroups"
)

// hierarchy is one cgroup filesystem mounted on the host.
type hierarchy struct {
	mountPoint string // e.g. /sys/fs/cgroup/memory
	root       string // the mount's root within the hierarchy
	v2         bool
	options    string // v1: the controllers, "memory" or "none,name=systemd"
	key        string // the name /proc/self/cgroup uses: "memory", "name=systemd", ""
}

// hostHierarchies lists the cgroup hierarchies mounted on the host.
func hostHierarchies() ([]hierarchy, error) {
	hs, err := cgroups.Hierarchies()
	if err != nil {
		return nil, err
	}
	out := make([]hierarchy, 0, len(hs))
	for _, h := range hs {
		v := hierarchy{mountPoint: h.Mountpoint, root: h.Root, v2: h.Controllers == nil}
		if !v.v2 {
			v.key = strings.Join(h.Controllers, ",")
			v.options = v.key
			if strings.HasPrefix(v.key, "name=") {
				v.options = "none," + v.key
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// mountCgroup gives the container a view of its own cgroups at m.Destination.
// With a new cgroup namespace each hierarchy is mounted afresh (the namespace
// makes the container's cgroup its root); otherwise the container's
// directories are bind mounted from the host.
func (r *Root) mountCgroup(m *specs.Mount, o MountOpts) error {
	if r.cfg.BeforeCgroupMount != nil {
		if err := r.cfg.BeforeCgroupMount(); err != nil {
			return err
		}
	}
	hs, err := hostHierarchies()
	if err != nil {
		return fmt.Errorf("read cgroup hierarchies: %w", err)
	}
	// Bind mounts show the process's own cgroups; a new cgroup namespace
	// makes fresh mounts rooted there without being told.
	var own map[string]string
	if !r.cfg.NewCgroupNS {
		if own, err = cgroups.ProcessPaths(r.cfg.Pid); err != nil {
			return fmt.Errorf("read own cgroups: %w", err)
		}
	}
	flags := o.Flags &^ unix.MS_RDONLY
	ro := o.Flags&unix.MS_RDONLY != 0
	// Bind mounts get their flags from one recursive mount_setattr over
	// the whole tree at the end, instead of a remount each: a dozen
	// syscalls fewer on every container start. Not in a user namespace,
	// whose locked flags need remount's care (see remount).
	attrs, attrsOK := mountAttrs(o.Flags)
	oneSetattr := attrsOK && !r.cfg.NewCgroupNS && !r.cfg.InUserNS && o.Flags != 0
	bindFlags, bindRO := flags, ro
	if oneSetattr {
		bindFlags, bindRO = 0, false
	}
	var unified *hierarchy
	var v1 []hierarchy
	for i := range hs {
		if hs[i].v2 {
			if unified == nil {
				unified = &hs[i]
			}
		} else {
			v1 = append(v1, hs[i])
		}
	}
	if len(v1) == 0 && unified != nil {
		// Pure cgroup v2: one filesystem at the destination.
		if err := r.mountHierarchy(m.Destination, *unified, own, bindFlags, bindRO); err != nil {
			return err
		}
		if oneSetattr {
			return r.setattrTree(m.Destination, attrs)
		}
		return nil
	}
	// v1 or hybrid: a tmpfs with one directory per hierarchy.
	target, err := MkdirAllInRoot(r.fd, m.Destination, 0o755)
	if err != nil {
		return err
	}
	err = unix.Mount("tmpfs", ProcFd(target), "tmpfs", flags, "mode=755")
	unix.Close(target)
	if err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", m.Destination, err)
	}
	for _, h := range v1 {
		dest := filepath.Join(m.Destination, filepath.Base(h.mountPoint))
		if err := r.mountHierarchy(dest, h, own, bindFlags, bindRO); err != nil {
			return err
		}
		// Co-mounted controllers ("cpu,cpuacct") get a link per name.
		if base := filepath.Base(h.mountPoint); strings.Contains(base, ",") {
			for _, c := range strings.Split(base, ",") {
				link := filepath.Join(m.Destination, c)
				parent, err := OpenInRoot(r.fd, m.Destination, unix.O_PATH|unix.O_DIRECTORY)
				if err != nil {
					return err
				}
				_ = unix.Symlinkat(base, parent, filepath.Base(link))
				unix.Close(parent)
			}
		}
	}
	if unified != nil {
		dest := filepath.Join(m.Destination, filepath.Base(unified.mountPoint))
		if err := r.mountHierarchy(dest, *unified, own, bindFlags, bindRO); err != nil {
			return err
		}
	}
	if oneSetattr {
		if err := r.setattrTree(m.Destination, attrs); err != nil {
			return err
		}
	} else if ro {
		if err := r.remount(m.Destination, flags|unix.MS_RDONLY); err != nil {
			return err
		}
	}
	return r.propagate(m.Destination, o.Propagation)
}

func (r *Root) mountHierarchy(dest string, h hierarchy, own map[string]string, flags uintptr, ro bool) error {
	target, err := MkdirAllInRoot(r.fd, dest, 0o755)
	if err != nil {
		return err
	}
	defer unix.Close(target)
	if ro {
		flags |= unix.MS_RDONLY
	}
	if r.cfg.NewCgroupNS {
		fstype, data := "cgroup", h.options
		if h.v2 {
			fstype, data = "cgroup2", ""
		}
		if err := unix.Mount("cgroup", ProcFd(target), fstype, flags, data); err != nil {
			return fmt.Errorf("mount %s cgroup on %s: %w", h.key, dest, err)
		}
		return nil
	}
	rel, ok := own[h.key]
	if !ok {
		rel = "/"
	}
	rel = strings.TrimPrefix(rel, h.root)
	src := filepath.Join(h.mountPoint, rel)
	if err := unix.Mount(src, ProcFd(target), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount cgroup %s on %s: %w", src, dest, err)
	}
	if flags != 0 {
		return r.remount(dest, flags|unix.MS_BIND)
	}
	return nil
}

// mountAttrs translates mount(2) flags into mount_setattr(2) attributes
// that replace a mount's per-mount flags as MS_REMOUNT|MS_BIND would: the
// four boolean flags and the atime mode are cleared and set anew. It
// reports false for flags it cannot express.
func mountAttrs(flags uintptr) (unix.MountAttr, bool) {
	const known = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC |
		unix.MS_NOATIME | unix.MS_RELATIME | unix.MS_STRICTATIME | unix.MS_NODIRATIME
	if flags&^known != 0 {
		return unix.MountAttr{}, false
	}
	a := unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID |
		unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NODIRATIME | unix.MOUNT_ATTR__ATIME}
	for ms, attr := range map[uintptr]uint64{
		unix.MS_RDONLY: unix.MOUNT_ATTR_RDONLY, unix.MS_NOSUID: unix.MOUNT_ATTR_NOSUID,
		unix.MS_NODEV: unix.MOUNT_ATTR_NODEV, unix.MS_NOEXEC: unix.MOUNT_ATTR_NOEXEC,
		unix.MS_NODIRATIME: unix.MOUNT_ATTR_NODIRATIME,
	} {
		if flags&ms != 0 {
			a.Attr_set |= attr
		}
	}
	// remount without an atime flag means relatime, the kernel's default.
	switch {
	case flags&unix.MS_NOATIME != 0:
		a.Attr_set |= unix.MOUNT_ATTR_NOATIME
	case flags&unix.MS_STRICTATIME != 0:
		a.Attr_set |= unix.MOUNT_ATTR_STRICTATIME
	default:
		a.Attr_set |= unix.MOUNT_ATTR_RELATIME
	}
	return a, true
}

// setattrTree applies attrs to the mount at dest and every mount below it.
func (r *Root) setattrTree(dest string, attrs unix.MountAttr) error {
	fd, err := OpenInRoot(r.fd, dest, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attrs); err != nil {
		return fmt.Errorf("set mount flags of %s: %w", dest, err)
	}
	return nil
}
