package engine

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hullproject/hull/runtime/rootfs"
	"github.com/hullproject/hull/storage/archive"
	"golang.org/x/sys/unix"
)

// withRoot runs fn with an O_PATH descriptor of the tree that holds the
// container path p and p's path inside that tree, as docker cp sees them.
// A running container is reached through its own root (/proc/PID/root), so
// its volumes, bind mounts and tmpfs mounts are there as it sees them, and
// a read-only mount refuses writes by itself. For a stopped one: the host
// directory of the volume or bind mount p lies in, else its root
// filesystem, mounted for the time being. Every path is then resolved
// against that descriptor, so a symlink in the container never leads to
// the host's files. forWrite refuses read-only mounts.
func (e *Engine) withRoot(ref, p string, forWrite bool, fn func(rootFd int, rel string) error) error {
	c, err := e.Resolve(ref)
	if err != nil {
		return err
	}
	if fd, ok := e.liveRoot(c); ok {
		defer unix.Close(fd)
		return fn(fd, p)
	}
	if m, rel, ok := e.mountFor(c, p); ok {
		if forWrite && m.ReadOnly {
			return fmt.Errorf("cannot copy to %s: the %s mounted at %s is read-only", p, m.Type, m.Destination)
		}
		return withHostDir(m, rel, fn)
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
	return fn(rootFd, p)
}

// liveRoot opens the root of a running container's init as it sees it.
// The state is checked again after the open: had the container exited in
// between, its pid could name another process by then.
func (e *Engine) liveRoot(c *Container) (int, bool) {
	st := e.State(c)
	if !st.Running || st.Pid <= 0 {
		return -1, false
	}
	fd, err := unix.Open("/proc/"+strconv.Itoa(st.Pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false
	}
	if again := e.State(c); !again.Running || again.Pid != st.Pid {
		unix.Close(fd)
		return -1, false
	}
	return fd, true
}

// mountFor finds the volume or bind mount of c that holds the container
// path p (the deepest one), and p's path inside it. tmpfs mounts live only
// in the container's mount namespace and are not looked into.
func (e *Engine) mountFor(c *Container, p string) (Mount, string, bool) {
	clean := path.Clean("/" + p)
	var best Mount
	found := false
	for _, m := range c.Host.Mounts {
		if m.Type != "bind" && m.Type != "volume" {
			continue
		}
		d := path.Clean(m.Destination)
		if (clean == d || strings.HasPrefix(clean, strings.TrimSuffix(d, "/")+"/")) && (!found || len(d) > len(best.Destination)) {
			best, found = m, true
			best.Destination = d
		}
	}
	if !found {
		return Mount{}, "", false
	}
	if best.Type == "volume" {
		best.Source = e.volumePath(best.Name)
	}
	rel := "/" + strings.TrimPrefix(strings.TrimPrefix(clean, best.Destination), "/")
	return best, rel, true
}

// withHostDir runs fn on the host side of a mount: its directory, or for a
// mounted file the directory that holds it.
func withHostDir(m Mount, rel string, fn func(rootFd int, rel string) error) error {
	src := m.Source
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("the source of the %s mounted at %s: %w", m.Type, m.Destination, err)
	}
	if !fi.IsDir() {
		if rel != "/" {
			return fmt.Errorf("%s is a file mounted at %s", m.Source, m.Destination)
		}
		src, rel = filepath.Dir(src), "/"+filepath.Base(src)
	}
	fd, err := unix.Open(src, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn(fd, rel)
}

// CopyFrom copies a file or directory of the container to the host, as
// `docker cp CONTAINER:SRC DEST`: into DEST when it is a directory, else
// as DEST. As in Docker, the copies belong to the user at the destination
// (hull's) unless keepOwners (`-a`) keeps the container's uid and gid.
func (e *Engine) CopyFrom(ref, src, dest string, keepOwners bool) error {
	return e.withRoot(ref, src, false, func(rootFd int, rel string) error {
		fd, err := rootfs.OpenInRoot(rootFd, rel, unix.O_PATH)
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
			return pipeTree(proc, target, keepOwners)
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
			if keepOwners {
				if err := out.Chown(int(st.Uid), int(st.Gid)); err != nil {
					out.Close()
					return err
				}
			}
			return out.Close()
		case unix.S_IFLNK:
			link, err := readlinkFd(fd)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
			if keepOwners {
				return os.Lchown(target, int(st.Uid), int(st.Gid))
			}
			return nil
		}
		return fmt.Errorf("%s: cannot copy this file type", src)
	})
}

// CopyTo copies a host file or directory into the container, as
// `docker cp SRC CONTAINER:DEST`. What is written is resolved inside the
// container's root: a symlink there pointing at / points at the
// container's root, not the host's. The copies belong to the container's
// root unless keepOwners (`-a`) keeps the host's uid and gid.
func (e *Engine) CopyTo(ref, src, dest string, keepOwners bool) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("could not find the file %s: %w", src, err)
	}
	return e.withRoot(ref, dest, true, func(rootFd int, rel string) error {
		name := path.Base(filepath.Clean(src))
		dfd, err := rootfs.OpenInRoot(rootFd, rel, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			// DEST does not exist (or is a file): it is the new name, in
			// its parent directory.
			if strings.HasSuffix(dest, "/") {
				return fmt.Errorf("destination directory %s does not exist in the container", dest)
			}
			name = path.Base(path.Clean("/" + rel))
			if dfd, err = rootfs.OpenInRoot(rootFd, path.Dir(path.Clean("/"+rel)), unix.O_PATH|unix.O_DIRECTORY); err != nil {
				return fmt.Errorf("destination directory %s does not exist in the container", path.Dir(path.Clean("/"+dest)))
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
			return pipeTree(src, rootfs.ProcFd(sub), keepOwners)
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
			if uid, gid, ok := owner(fi); ok && keepOwners {
				if err := out.Chown(uid, gid); err != nil {
					out.Close()
					return err
				}
			}
			return out.Close()
		case fi.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(src)
			if err != nil {
				return err
			}
			unix.Unlinkat(dfd, name, 0)
			if err := unix.Symlinkat(link, dfd, name); err != nil {
				return err
			}
			if uid, gid, ok := owner(fi); ok && keepOwners {
				return unix.Fchownat(dfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
			}
			return nil
		}
		return fmt.Errorf("%s: cannot copy this file type", src)
	})
}

// owner returns the uid and gid of a file from Lstat.
func owner(fi os.FileInfo) (int, int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}

// pipeTree copies a directory tree through the layer tar writer and the
// contained unpacker, which keeps every entry inside dst. Without
// keepOwners the copies belong to the copying user.
func pipeTree(src, dst string, keepOwners bool) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.WriteDir(pw, src)) }()
	_, err := archive.Apply(dst, pr, archive.ApplyOptions{Whiteouts: archive.WhiteoutNone, NoLchown: !keepOwners})
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

// CopyFromTar writes SRC of the container to w as a tar stream, as
// `docker cp CONTAINER:SRC -` does: one entry named after SRC's last
// element, and for a directory everything under it, below that name. The
// entries carry the container's uid and gid: whoever extracts them decides.
func (e *Engine) CopyFromTar(ref, src string, w io.Writer) error {
	return e.withRoot(ref, src, false, func(rootFd int, rel string) error {
		fd, err := rootfs.OpenInRoot(rootFd, rel, unix.O_PATH)
		if err != nil {
			return fmt.Errorf("could not find the file %s in container %s", src, ref)
		}
		defer unix.Close(fd)
		proc := rootfs.ProcFd(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		name := path.Base(path.Clean("/" + src))
		if name == "/" {
			name = "."
		}
		tw := tar.NewWriter(w)
		hdr := &tar.Header{
			Name: name, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
			ModTime: time.Unix(st.Mtim.Unix()).Truncate(time.Second), Format: tar.FormatPAX,
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if err := prefixTree(tw, proc, name); err != nil {
				return err
			}
		case unix.S_IFREG:
			hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
			in, err := os.Open(proc)
			if err != nil {
				return err
			}
			defer in.Close()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := io.CopyN(tw, in, st.Size); err != nil {
				return err
			}
		case unix.S_IFLNK:
			link, err := readlinkFd(fd)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, link
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: cannot copy this file type", src)
		}
		return tw.Close()
	})
}

// prefixTree appends the tree at dir to tw with every name (and hardlink
// target) under prefix, through the layer tar writer.
func prefixTree(tw *tar.Writer, dir, prefix string) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.WriteDir(pw, dir)) }()
	tr := tar.NewReader(pr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			pr.CloseWithError(err)
			return err
		}
		hdr.Name = path.Join(prefix, hdr.Name)
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = path.Join(prefix, hdr.Linkname)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			pr.CloseWithError(err)
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			pr.CloseWithError(err)
			return err
		}
	}
}

// CopyToTar unpacks the tar stream r (plain or compressed) into DEST, a
// directory of the container, as `docker cp - CONTAINER:DEST` does. Every
// entry is resolved inside the container's root. The files belong to the
// container's root unless keepOwners (`-a`) keeps the tar's uid and gid.
func (e *Engine) CopyToTar(ref string, r io.Reader, dest string, keepOwners bool) error {
	return e.withRoot(ref, dest, true, func(rootFd int, rel string) error {
		dfd, err := rootfs.OpenInRoot(rootFd, rel, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("destination directory %s does not exist in the container", dest)
		}
		defer unix.Close(dfd)
		dr, _, err := archive.Decompress(r)
		if err != nil {
			return fmt.Errorf("read the tar stream: %w", err)
		}
		defer dr.Close()
		if _, err := archive.Apply(rootfs.ProcFd(dfd), dr, archive.ApplyOptions{Whiteouts: archive.WhiteoutNone, NoLchown: !keepOwners}); err != nil {
			return fmt.Errorf("copy into %s: %w", dest, err)
		}
		return nil
	})
}
