// Package rootfs builds a container's root filesystem inside its new mount
// namespace: the OCI mounts, device nodes, /dev symlinks, masked and read-only
// paths, and the switch into the new root with pivot_root(2).
//
// Every mount target is resolved inside the rootfs with openat2 and mounted
// through its /proc/self/fd path, so symlinks in the image cannot redirect a
// mount to the host. This runs in the container's init before pivot_root,
// while the host's /proc is still visible.
package rootfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Config is what Prepare and Finish need.
type Config struct {
	Pid         int    // the container process (0: the caller is inside)
	Rootfs      string // absolute host path of root.path
	Spec        *specs.Spec
	NoPivot     bool
	InUserNS    bool // a new or joined user namespace: no mknod, locked flags
	NewCgroupNS bool
	NewNetNS    bool
	// BeforeCgroupMount, if set, runs before the first cgroup filesystem
	// is mounted: the caller makes sure the process is in its cgroups (and
	// its cgroup namespace) by then.
	BeforeCgroupMount func() error
	// MountProc mounts procfs on the O_PATH descriptor target. A proc
	// instance shows the pid namespace of the process that mounts it, so
	// when the caller is outside the container's pid namespace it must ask
	// a process inside. Nil: mount it ourselves.
	MountProc func(target int, flags uintptr, data string) error
	// BeforeMove and AfterMove let the container process follow a
	// --no-pivot switch of the root (chroot is per process): they run
	// before the MS_MOVE and after our own chroot.
	BeforeMove, AfterMove func() error
}

// Root is the container root while it is being built.
type Root struct {
	cfg     *Config
	fd      int // O_PATH of the rootfs directory (after the self bind mount)
	bindDev bool
}

// Prepare sets root propagation, makes the rootfs a mount point, and performs
// every mount, device node and /dev symlink. The caller then runs the
// createContainer hooks and calls Finish.
func Prepare(cfg *Config) (*Root, error) {
	// Nothing mounted here may reach the host: everything starts as a
	// slave; the requested rootfsPropagation is applied to the new root
	// after pivot_root (see Finish).
	if p := cfg.Spec.Linux.RootfsPropagation; p != "" {
		if _, ok := ParsePropagation(p); !ok {
			return nil, fmt.Errorf("unknown rootfsPropagation %q", p)
		}
	}
	// This also satisfies pivot_root, which refuses a new root whose parent
	// mount is shared: after a recursive MS_SLAVE no mount here is.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("set propagation of /: %w", err)
	}
	if err := unix.Mount(cfg.Rootfs, cfg.Rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("bind mount rootfs %s: %w", cfg.Rootfs, err)
	}
	fd, err := unix.Open(cfg.Rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs: %w", err)
	}
	r := &Root{cfg: cfg, fd: fd}
	for _, m := range cfg.Spec.Mounts {
		if m.Destination == "/dev" && (m.Type == "bind" || ParseOptions(m.Options).Bind) {
			r.bindDev = true
		}
	}
	for i := range cfg.Spec.Mounts {
		if err := r.mount(&cfg.Spec.Mounts[i]); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	if !r.bindDev {
		if err := r.createDevices(); err != nil {
			unix.Close(fd)
			return nil, err
		}
		if err := r.devSymlinks(); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	return r, nil
}

func (r *Root) mount(m *specs.Mount) error {
	if !filepath.IsAbs(m.Destination) {
		// runtime-spec 1.0 allowed relative destinations; treat them as
		// relative to "/", as runc does.
		m.Destination = "/" + m.Destination
	}
	o := ParseOptions(m.Options)
	if m.Type == "bind" {
		o.Bind = true
		o.Flags |= unix.MS_BIND
	}
	switch {
	case o.Bind:
		return r.bindMount(m, o)
	case m.Type == "cgroup":
		return r.mountCgroup(m, o)
	}
	target, err := MkdirAllInRoot(r.fd, m.Destination, 0o755)
	if err != nil {
		return err
	}
	defer unix.Close(target)
	if m.Type == "proc" || m.Type == "sysfs" {
		if err := checkProcTarget(target, m.Destination); err != nil {
			return err
		}
	}
	if m.Type == "proc" && r.cfg.MountProc != nil {
		err = r.cfg.MountProc(target, o.Flags, o.Data)
	} else {
		err = unix.Mount(m.Source, ProcFd(target), m.Type, o.Flags, o.Data)
	}
	if err != nil && m.Type == "sysfs" && errors.Is(err, unix.EPERM) && r.cfg.InUserNS && !r.cfg.NewNetNS {
		// A user namespace may not mount sysfs for a network namespace it
		// does not own; fall back to the host's, as runc does.
		err = unix.Mount("/sys", ProcFd(target), "", unix.MS_BIND|unix.MS_REC|o.Flags, "")
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s (type %s, options %q): %w", m.Source, m.Destination, m.Type, strings.Join(m.Options, ","), err)
	}
	return r.propagate(m.Destination, o.Propagation)
}

// checkProcTarget refuses to mount procfs or sysfs anywhere but on a plain
// directory of the rootfs (a mount there could expose host information).
func checkProcTarget(fd int, dest string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", dest, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("mount destination %s is not a directory", dest)
	}
	return nil
}

func (r *Root) bindMount(m *specs.Mount, o MountOpts) error {
	src := m.Source
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return fmt.Errorf("bind mount source %s: %w", src, err)
	}
	var target int
	var err error
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		target, err = MkdirAllInRoot(r.fd, m.Destination, 0o755)
	} else {
		target, err = CreateFileInRoot(r.fd, m.Destination, 0o644)
	}
	if err != nil {
		return err
	}
	defer unix.Close(target)
	flags := uintptr(unix.MS_BIND)
	if o.Recursive {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(src, ProcFd(target), "", flags, ""); err != nil {
		return fmt.Errorf("bind mount %s on %s: %w", src, m.Destination, err)
	}
	if extra := o.Flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); extra != 0 {
		if err := r.remount(m.Destination, extra|unix.MS_BIND); err != nil {
			return err
		}
	}
	return r.propagate(m.Destination, o.Propagation)
}

// remount changes the flags of the mount now at dest. Flags the kernel has
// locked (inherited into a user namespace) are kept so the call can succeed.
func (r *Root) remount(dest string, flags uintptr) error {
	fd, err := OpenInRoot(r.fd, dest, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if r.cfg.InUserNS {
		flags |= lockedFlags(fd)
	}
	if err := unix.Mount("", ProcFd(fd), "", flags|unix.MS_REMOUNT, ""); err != nil {
		return fmt.Errorf("remount %s: %w", dest, err)
	}
	return nil
}

func lockedFlags(fd int) uintptr {
	var s unix.Statfs_t
	if unix.Fstatfs(fd, &s) != nil {
		return 0
	}
	var f uintptr
	for st, ms := range map[int64]uintptr{
		unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV,
		unix.ST_NOEXEC: unix.MS_NOEXEC, unix.ST_RDONLY: unix.MS_RDONLY,
		unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME,
		unix.ST_RELATIME: unix.MS_RELATIME,
	} {
		if s.Flags&st != 0 {
			f |= ms
		}
	}
	return f
}

func (r *Root) propagate(dest string, props []uintptr) error {
	if len(props) == 0 {
		return nil
	}
	fd, err := OpenInRoot(r.fd, dest, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, p := range props {
		if err := unix.Mount("", ProcFd(fd), "", p, ""); err != nil {
			return fmt.Errorf("set propagation of %s: %w", dest, err)
		}
	}
	return nil
}

// Fd returns the O_PATH descriptor of the rootfs (valid until Finish).
func (r *Root) Fd() int { return r.fd }
