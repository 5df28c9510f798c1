package rootfs

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// inRoot resolves paths with openat2(RESOLVE_IN_ROOT): ".." and symlinks are
// evaluated as if rootFd were "/", so nothing an image or a concurrently
// running container puts in the tree can point a mount outside it
// (CVE-2021-30465). Magic links (/proc/self/...) are refused outright.
const inRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// OpenInRoot opens path inside the tree whose root directory is rootFd.
func OpenInRoot(rootFd int, path string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: inRoot}
	for {
		fd, err := unix.Openat2(rootFd, clean(path), &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue // EAGAIN: a concurrent rename raced the lookup; retry
		}
		if err != nil {
			return -1, &pathError{op: "open", path: path, err: err}
		}
		return fd, nil
	}
}

// clean turns an absolute in-container path into one relative to the root.
func clean(path string) string {
	p := strings.TrimPrefix(filepath.Clean("/"+path), "/")
	if p == "" {
		return "."
	}
	return p
}

// MkdirAllInRoot creates path and its parents inside the tree and returns an
// O_PATH descriptor of the final directory. A dangling symlink on the way is
// followed inside the tree (its target is created there), as mkdir -p would
// from inside a chroot.
func MkdirAllInRoot(rootFd int, path string, mode uint32) (int, error) {
	return mkdirAll(rootFd, clean(path), mode, 0)
}

func mkdirAll(rootFd int, p string, mode uint32, links int) (int, error) {
	if links > 40 {
		return -1, &pathError{op: "mkdir", path: p, err: unix.ELOOP}
	}
	if fd, err := OpenInRoot(rootFd, p, unix.O_PATH|unix.O_DIRECTORY); err == nil {
		return fd, nil
	}
	if p == "." {
		return unix.Dup(rootFd)
	}
	parent, err := mkdirAll(rootFd, filepath.Dir(p), mode, links)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	name := filepath.Base(p)
	err = unix.Mkdirat(parent, name, mode)
	if err == unix.EEXIST {
		buf := make([]byte, 4096)
		if n, rerr := unix.Readlinkat(parent, name, buf); rerr == nil {
			target := string(buf[:n])
			if !filepath.IsAbs(target) {
				target = filepath.Join("/", filepath.Dir(p), target)
			}
			return mkdirAll(rootFd, clean(target), mode, links+1)
		}
	} else if err != nil {
		return -1, &pathError{op: "mkdir", path: p, err: err}
	}
	// Re-resolve from the root rather than the parent so that a symlink
	// planted at name meanwhile is still evaluated inside the tree.
	return OpenInRoot(rootFd, p, unix.O_PATH|unix.O_DIRECTORY)
}

// CreateFileInRoot makes sure a non-directory exists at path (for a file bind
// mount or a device) and returns an O_PATH descriptor of it.
func CreateFileInRoot(rootFd int, path string, mode uint32) (int, error) {
	p := clean(path)
	if fd, err := OpenInRoot(rootFd, p, unix.O_PATH); err == nil {
		return fd, nil
	}
	parent, err := MkdirAllInRoot(rootFd, filepath.Dir(p), 0o755)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	fd, err := unix.Openat(parent, filepath.Base(p), unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, mode)
	if err != nil && err != unix.EEXIST {
		return -1, &pathError{op: "create", path: path, err: err}
	}
	if err == nil {
		unix.Close(fd)
	}
	return OpenInRoot(rootFd, p, unix.O_PATH)
}

// ProcFd names an open descriptor so that mount(2) acts on exactly the inode
// that was resolved, not on whatever the path names by then.
func ProcFd(fd int) string {
	return "/proc/self/fd/" + strconv.Itoa(fd)
}

type pathError struct {
	op, path string
	err      error
}

func (e *pathError) Error() string {
	return fmt.Sprintf("%s %s in container root: %v", e.op, e.path, e.err)
}

func (e *pathError) Unwrap() error { return e.err }
