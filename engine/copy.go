package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/hullproject/hull/runtime/rootfs"
	"github.com/hullproject/hull/storage/archive"
	"golang.org/x/sys/unix"
)

// withRoot runs fn with an O_PATH descriptor of the container's root
// filesystem, mounting it for the time being when the container is not
// running. Every path inside is resolved against that descriptor, so a
// symlink in the container never leads to the host's files.
func (e *Engine) withRoot(ref string, fn func(rootFd int) error) error {
	c, err := e.Resolve(ref)
	if err != nil {
		return err
	}
	st := e.State(c)
	// Only a container nobody runs or is about to run gets its root
	// unmounted again afterwards.
	inUse := st.Running || st.Restarting || e.monitorAlive(c.ID)
	root, err := e.Images.Layers.Mount(c.ID)
	if err != nil {
		return err
	}
	if !inUse {
		defer e.Images.Layers.Unmount(c.ID)
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootFd)
	return fn(rootFd)
}

// CopyFrom copies a file or directory of the container to the host, as
// `docker cp CONTAINER:SRC DEST`: into DEST when it is a directory, else
// as DEST.
func (e *Engine) CopyFrom(ref, src, dest string) error {
	return e.withRoot(ref, func(rootFd int) error {
		fd, err := rootfs.OpenInRoot(rootFd, src, unix.O_PATH)
		if err != nil {
			return fmt.Errorf("could not find the file %s in container %s", src, ref)
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		target := dest
		if fi, err := os.Stat(dest); err == nil && fi.IsDir() {
			target = filepath.Join(dest, path.Base(path.Clean("/"+src)))
		} else if strings.HasSuffix(dest, "/") {
			return fmt.Errorf("destination directory %s does not exist", dest)
		}
		proc := rootfs.ProcFd(fd)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := os.MkdirAll(target, os.FileMode(st.Mode&0o7777)); err != nil {
				return err
			}
			return pipeTree(proc, target)
		case unix.S_IFREG:
			in, err := os.Open(proc)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(st.Mode&0o777))
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		case unix.S_IFLNK:
			link, err := readlinkFd(fd)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		}
		return fmt.Errorf("%s: cannot copy this file type", src)
	})
}

// CopyTo copies a host file or directory into the container, as
// `docker cp SRC CONTAINER:DEST`. What is written is resolved inside the
// container's root: a symlink there pointing at / points at the
// container's root, not the host's.
func (e *Engine) CopyTo(ref, src, dest string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("could not find the file %s: %w", src, err)
	}
	return e.withRoot(ref, func(rootFd int) error {
		dir, name := dest, path.Base(filepath.Clean(src))
		dfd, err := rootfs.OpenInRoot(rootFd, dest, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			// DEST does not exist (or is a file): it is the new name, in
			// its parent directory.
			if strings.HasSuffix(dest, "/") {
				return fmt.Errorf("destination directory %s does not exist in the container", dest)
			}
			dir, name = path.Dir(path.Clean("/"+dest)), path.Base(path.Clean("/"+dest))
			if dfd, err = rootfs.OpenInRoot(rootFd, dir, unix.O_PATH|unix.O_DIRECTORY); err != nil {
				return fmt.Errorf("destination directory %s does not exist in the container", dir)
			}
		}
		defer unix.Close(dfd)
		switch {
		case fi.IsDir():
			if err := unix.Mkdirat(dfd, name, uint32(fi.Mode().Perm())); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("mkdir %s: %w", name, err)
			}
			sub, err := rootfs.OpenInRoot(dfd, name, unix.O_PATH|unix.O_DIRECTORY)
			if err != nil {
				return fmt.Errorf("%s is not a directory in the container", name)
			}
			defer unix.Close(sub)
			return pipeTree(src, rootfs.ProcFd(sub))
		case fi.Mode().IsRegular():
			in, err := os.Open(src)
			if err != nil {
				return err
			}
			defer in.Close()
			// Never through a symlink at the name: O_NOFOLLOW after unlink.
			unix.Unlinkat(dfd, name, 0)
			ofd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(fi.Mode().Perm()))
			if err != nil {
				return fmt.Errorf("create %s: %w", dest, err)
			}
			out := os.NewFile(uintptr(ofd), name)
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		case fi.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(src)
			if err != nil {
				return err
			}
			unix.Unlinkat(dfd, name, 0)
			return unix.Symlinkat(link, dfd, name)
		}
		return fmt.Errorf("%s: cannot copy this file type", src)
	})
}

// pipeTree copies a directory tree through the layer tar writer and the
// contained unpacker, which keeps every entry inside dst.
func pipeTree(src, dst string) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.WriteDir(pw, src)) }()
	_, err := archive.Apply(dst, pr, archive.ApplyOptions{Whiteouts: archive.WhiteoutDelete})
	pr.CloseWithError(err)
	return err
}

func readlinkFd(fd int) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(fd, "", buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
