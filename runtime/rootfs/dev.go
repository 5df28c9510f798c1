package rootfs

import (
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultDevices are created in every container whose /dev is not a bind
// mount of the host's, as the OCI spec requires.
var DefaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

// Devices returns the default devices merged with the spec's (the spec wins
// for a path both name).
func Devices(s *specs.Spec) []specs.LinuxDevice {
	var out []specs.LinuxDevice
	seen := map[string]bool{}
	if s.Linux != nil {
		for _, d := range s.Linux.Devices {
			seen[filepath.Clean(d.Path)] = true
			out = append(out, d)
		}
	}
	for _, d := range DefaultDevices {
		if !seen[d.Path] {
			out = append(out, d)
		}
	}
	return out
}

func (r *Root) createDevices() error {
	// Device modes must be exactly what the spec says.
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, d := range Devices(r.cfg.Spec) {
		if err := r.createDevice(d); err != nil {
			return err
		}
	}
	return nil
}

func deviceType(t string) (uint32, error) {
	switch t {
	case "c", "u":
		return unix.S_IFCHR, nil
	case "b":
		return unix.S_IFBLK, nil
	case "p":
		return unix.S_IFIFO, nil
	}
	return 0, fmt.Errorf("unknown device type %q", t)
}

func (r *Root) createDevice(d specs.LinuxDevice) error {
	typ, err := deviceType(d.Type)
	if err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	if !filepath.IsAbs(d.Path) || filepath.Clean(d.Path) == "/dev" {
		return fmt.Errorf("device path %q must be absolute and below /dev", d.Path)
	}
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(*d.FileMode) & 0o7777
	}
	parent, err := MkdirAllInRoot(r.fd, filepath.Dir(d.Path), 0o755)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	name := filepath.Base(d.Path)
	// Replace whatever the image left there; it may be a planted symlink.
	if err := unix.Unlinkat(parent, name, 0); err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove old %s: %w", d.Path, err)
	}
	if r.cfg.InUserNS {
		// mknod is not allowed in a user namespace: bind the host's node.
		fd, err := unix.Openat(parent, name, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o000)
		if err != nil {
			return fmt.Errorf("create %s: %w", d.Path, err)
		}
		unix.Close(fd)
		target, err := OpenInRoot(r.fd, d.Path, unix.O_PATH|unix.O_NOFOLLOW)
		if err != nil {
			return err
		}
		defer unix.Close(target)
		if err := unix.Mount(d.Path, ProcFd(target), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount device %s: %w", d.Path, err)
		}
		return nil
	}
	dev := unix.Mkdev(uint32(d.Major), uint32(d.Minor))
	if err := unix.Mknodat(parent, name, typ|mode, int(dev)); err != nil {
		return fmt.Errorf("mknod %s: %w", d.Path, err)
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Fchownat(parent, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", d.Path, err)
	}
	return nil
}

func (r *Root) devSymlinks() error {
	links := [][2]string{
		{"/proc/self/fd", "/dev/fd"},
		{"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"},
		{"/proc/self/fd/2", "/dev/stderr"},
		{"pts/ptmx", "/dev/ptmx"},
	}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		links = append(links, [2]string{"/proc/kcore", "/dev/core"})
	}
	dev, err := MkdirAllInRoot(r.fd, "/dev", 0o755)
	if err != nil {
		return err
	}
	defer unix.Close(dev)
	for _, l := range links {
		name := filepath.Base(l[1])
		if l[1] == "/dev/ptmx" {
			// The image or a spec device may already provide ptmx.
			_ = unix.Unlinkat(dev, name, 0)
		}
		if err := unix.Symlinkat(l[0], dev, name); err != nil && err != unix.EEXIST {
			return fmt.Errorf("symlink %s: %w", l[1], err)
		}
	}
	return nil
}
