package rootfs

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Finish masks and write-protects the configured paths, switches into the
// new root and applies root.readonly and the root propagation.
func (r *Root) Finish() error {
	defer unix.Close(r.fd)
	s := r.cfg.Spec
	if len(s.Linux.MaskedPaths) > 0 {
		if err := r.maskPaths(s.Linux.MaskedPaths); err != nil {
			return err
		}
	}
	for _, p := range s.Linux.ReadonlyPaths {
		if err := r.readonlyPath(p); err != nil {
			return err
		}
	}
	if r.cfg.NoPivot {
		if err := moveRoot(r.cfg); err != nil {
			return err
		}
	} else if err := pivotRoot(r.cfg.Rootfs); err != nil {
		return err
	}
	if s.Root != nil && s.Root.Readonly {
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
		if r.cfg.InUserNS {
			root, err := unix.Open("/", unix.O_PATH|unix.O_CLOEXEC, 0)
			if err == nil {
				flags |= lockedFlags(root)
				unix.Close(root)
			}
		}
		if err := unix.Mount("", "/", "", flags, ""); err != nil {
			return fmt.Errorf("make root read-only: %w", err)
		}
	}
	if p := s.Linux.RootfsPropagation; p != "" {
		f, _ := ParsePropagation(p)
		if err := unix.Mount("", "/", "", f, ""); err != nil {
			return fmt.Errorf("set propagation %s of the new root: %w", p, err)
		}
	}
	return nil
}

// maskPaths hides files behind /dev/null and directories behind an empty
// read-only tmpfs. The container's /dev/null is checked to be the real 1:3
// character device first: an image could have made it a symlink or another
// node, and masking would then expose that instead (CVE-2025-31133).
func (r *Root) maskPaths(paths []string) error {
	null, err := OpenInRoot(r.fd, "/dev/null", unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return fmt.Errorf("open /dev/null for masking: %w", err)
	}
	defer unix.Close(null)
	if err := CheckNullDevice(null); err != nil {
		return err
	}
	for _, p := range paths {
		fd, err := OpenInRoot(r.fd, p, unix.O_PATH|unix.O_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = unix.Mount("tmpfs", ProcFd(fd), "tmpfs", unix.MS_RDONLY, "size=0k")
		} else {
			err = unix.Mount(ProcFd(null), ProcFd(fd), "", unix.MS_BIND, "")
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	return nil
}

// CheckNullDevice reports whether fd is the character device 1:3.
func CheckNullDevice(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat /dev/null: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		return fmt.Errorf("/dev/null in the container is not the null device (mode %o, device %d:%d): refusing to mask with it",
			st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return nil
}

func (r *Root) readonlyPath(p string) error {
	fd, err := OpenInRoot(r.fd, p, unix.O_PATH|unix.O_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("readonly path %s: %w", p, err)
	}
	err = unix.Mount(ProcFd(fd), ProcFd(fd), "", unix.MS_BIND|unix.MS_REC, "")
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("bind %s read-only: %w", p, err)
	}
	return r.remount(p, unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
}

// pivotRoot makes rootfs the root and detaches the old one without needing
// a directory for it inside the new root: after pivot_root(".", ".") the old
// root sits on top of the new one at "/", and unmounting it there leaves the
// new root.
func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open old root: %w", err)
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open new root: %w", err)
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return fmt.Errorf("chdir to new root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", rootfs, err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return fmt.Errorf("chdir to old root: %w", err)
	}
	// Keep the unmount from propagating to the host.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// moveRoot is --no-pivot: move the rootfs over / and chroot into it, for
// setups (initramfs) where pivot_root is not allowed.
func moveRoot(cfg *Config) error {
	rootfs := cfg.Rootfs
	if err := unix.Chdir(rootfs); err != nil {
		return fmt.Errorf("chdir %s: %w", rootfs, err)
	}
	if cfg.BeforeMove != nil {
		if err := cfg.BeforeMove(); err != nil {
			return err
		}
	}
	if err := unix.Mount(rootfs, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move rootfs to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if cfg.AfterMove != nil {
		if err := cfg.AfterMove(); err != nil {
			return err
		}
	}
	return unix.Chdir("/")
}
