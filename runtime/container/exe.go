package container

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// sealedSelf returns a descriptor of this program that nothing can write
// through, to execute as the container's init or exec process.
//
// While our binary runs inside a container, /proc/<pid>/exe points at it; a
// process in the container could reopen it for writing once we have exec'd
// and overwrite the host's runtime binary (CVE-2019-5736). We execute from a
// detached, read-only clone of the mount holding the binary (open_tree +
// mount_setattr): /proc/<pid>/exe then resolves through that mount, and any
// write fails with EROFS. It costs two syscalls, unlike copying the binary;
// a sealed memfd copy is the fallback for kernels without open_tree.
func sealedSelf(minFd int) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, "/proc/self/exe", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err == nil {
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
		if err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err == nil {
			return highFd(fd, minFd, "hull-exe")
		}
		unix.Close(fd)
	}
	return memfdSelf(minFd)
}

func memfdSelf(minFd int) (*os.File, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("open own executable: %w", err)
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("hull-runc", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "hull-exe")
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("copy own executable: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal executable copy: %w", err)
	}
	defer f.Close()
	return highFd(int(f.Fd()), minFd, "hull-exe")
}

// highFd moves fd above the range os/exec shuffles ExtraFiles through, so
// the child can still name it as /proc/self/fd/N when it execs. It stays low
// otherwise: growing the descriptor table of a multi-threaded process waits
// for an RCU grace period, which costs milliseconds.
func highFd(fd, minFd int, name string) (*os.File, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, minFd)
	if fd != nfd {
		unix.Close(fd)
	}
	if err != nil {
		return nil, fmt.Errorf("dup executable fd: %w", err)
	}
	return os.NewFile(uintptr(nfd), name), nil
}
