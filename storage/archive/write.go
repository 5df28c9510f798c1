package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// WriteDir writes a tar of the whole tree at dir (paths relative, no
// leading "./" or "/", directories end with "/").
//
// Like every writer here, it emits entries depth first, the entries of a
// directory sorted by name after its whiteouts, so parents precede
// children and the output only depends on the tree. Times are whole
// seconds (sub-second times would need a PAX header for nearly every
// file), uname/gname are empty, and files hardlinked within the layer are
// written once and then as links to the first path. Links are never made
// to files outside the layer: extractors working on a fresh layer
// directory (overlayfs) could not create them.
func WriteDir(w io.Writer, dir string) error {
	lw := newLayerWriter(w, false)
	if err := lw.walk(dir, ""); err != nil {
		return err
	}
	return lw.close()
}

// WriteDiff writes to w an OCI layer tar of the changes recorded in an
// overlayfs upper directory: 0:0 char devices become ".wh.NAME" entries;
// directories with xattr trusted.overlay.opaque=y get a ".wh..wh..opq"
// entry after the directory entry; everything else as is.
//
// The overlay must not use redirect_dir or metacopy: renamed directories
// and metadata-only copies cannot be expressed in a layer, so WriteDiff
// fails on them.
func WriteDiff(w io.Writer, upper string) error {
	lw := newLayerWriter(w, true)
	if err := lw.walk(upper, ""); err != nil {
		return err
	}
	return lw.close()
}

// WriteTreeDiff writes an OCI layer tar that turns tree lower into tree
// upper (both full trees; for the vfs driver): added/changed entries
// (compare type, mode, uid/gid, size, mtime, link target, xattrs) and
// ".wh." entries for removed ones.
//
// Changes are detected from metadata (times to the nanosecond), not by
// reading contents. Unchanged directories are written when something below
// them changes, so that applying the layer restores their times.
func WriteTreeDiff(w io.Writer, lower, upper string) error {
	lw := newLayerWriter(w, false)
	if err := lw.diff(lower, upper, ""); err != nil {
		return err
	}
	return lw.close()
}

type fileID struct{ dev, ino uint64 }

type layerWriter struct {
	tw  *tar.Writer
	buf []byte
	// links maps hardlinked inodes to the first path they were seen at.
	links map[fileID]string
	// overlay translates overlayfs whiteouts and opaque directories.
	overlay bool
	names   []byte // listxattr buffer
	value   []byte // getxattr buffer
	// pending are unchanged directories a tree diff is inside of; they are
	// written before the first change below them, so that applying the
	// layer restores their times after creating or replacing children.
	pending []pendingDir
}

type pendingDir struct {
	path, rel string
	n         *node
}

func newLayerWriter(w io.Writer, overlay bool) *layerWriter {
	return &layerWriter{
		tw:      tar.NewWriter(w),
		buf:     make([]byte, copyBufSize),
		links:   make(map[fileID]string),
		overlay: overlay,
		names:   make([]byte, 1024),
		value:   make([]byte, 1024),
	}
}

func (lw *layerWriter) close() error {
	if err := lw.tw.Close(); err != nil {
		return fmt.Errorf("write layer: finish tar: %w", err)
	}
	return nil
}

// node is one file of a tree being written.
type node struct {
	name   string // in its directory
	st     unix.Stat_t
	xattrs map[string]string // those a layer carries
	target string            // symlink target
	opaque bool              // overlay opaque directory
}

func (n *node) isDir() bool { return n.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// inspect reads what a layer entry needs of path.
func (lw *layerWriter) inspect(path, name string) (*node, error) {
	n := &node{name: name}
	if err := unix.Lstat(path, &n.st); err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	if n.st.Mode&unix.S_IFMT == unix.S_IFLNK {
		t, err := os.Readlink(path)
		if err != nil {
			return nil, err
		}
		n.target = t
	}
	if err := lw.readXattrs(path, n); err != nil {
		return nil, err
	}
	return n, nil
}

func (lw *layerWriter) readXattrs(path string, n *node) error {
	var list []byte
	for {
		sz, err := unix.Llistxattr(path, lw.names)
		if errors.Is(err, unix.ERANGE) {
			if sz, err = unix.Llistxattr(path, nil); err != nil {
				return fmt.Errorf("list xattrs: %w", err)
			}
			lw.names = make([]byte, sz*2)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list xattrs: %w", err)
		}
		list = lw.names[:sz]
		break
	}
	for len(list) > 0 {
		i := slices.Index(list, 0)
		if i < 0 {
			i = len(list)
		}
		name := string(list[:i])
		list = list[min(i+1, len(list)):]
		if lw.overlay && (name == overlayPrefix+"redirect" || name == overlayPrefix+"metacopy") {
			return fmt.Errorf("overlay upper uses %s, which a layer cannot express (mount without redirect_dir and metacopy)", name)
		}
		opaque := lw.overlay && name == overlayOpaque
		// The SELinux label belongs to the host's policy, not the image.
		if !opaque && (strings.HasPrefix(name, overlayPrefix) || name == "security.selinux") {
			continue
		}
		v, err := lw.getXattr(path, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("get xattr %s: %w", name, err)
		}
		if opaque {
			n.opaque = v == "y"
			continue
		}
		if n.xattrs == nil {
			n.xattrs = make(map[string]string)
		}
		n.xattrs[name] = v
	}
	return nil
}

func (lw *layerWriter) getXattr(path, name string) (string, error) {
	for {
		sz, err := unix.Lgetxattr(path, name, lw.value)
		if errors.Is(err, unix.ERANGE) {
			if sz, err = unix.Lgetxattr(path, name, nil); err != nil {
				return "", err
			}
			lw.value = make([]byte, sz*2)
			continue
		}
		if err != nil {
			return "", err
		}
		return string(lw.value[:sz]), nil
	}
}

// readNames lists directory path, sorted. Below the top directory it
// does not follow symlinks, in case a directory was swapped for one since
// it was inspected.
func readNames(path string, top bool) ([]string, error) {
	flags := os.O_RDONLY | unix.O_DIRECTORY
	if !top {
		flags |= unix.O_NOFOLLOW
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// children inspects the entries of directory path and returns them sorted
// by the name their entry gets in the tar.
func (lw *layerWriter) children(path, rel string) ([]*node, error) {
	names, err := readNames(path, rel == "")
	if err != nil {
		return nil, fmt.Errorf("write layer: %s: %w", rel, err)
	}
	nodes := make([]*node, 0, len(names))
	for _, name := range names {
		n, err := lw.inspect(path+"/"+name, name)
		if err != nil {
			return nil, fmt.Errorf("write layer: %s: %w", join(rel, name), err)
		}
		if lw.overlay && isWhiteout(&n.st) {
			n.name = whiteoutPrefix + name
		} else if strings.HasPrefix(name, whiteoutPrefix) {
			return nil, fmt.Errorf("write layer: %s: names starting with %s are reserved for whiteouts", join(rel, name), whiteoutPrefix)
		}
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, entryOrder)
	return nodes, nil
}

// entryOrder sorts the entries of a directory: whiteouts first, as the
// layer spec recommends (an extractor streaming the layer then never sees
// a sibling before the deletions), then by name.
func entryOrder(a, b *node) int {
	aw, bw := strings.HasPrefix(a.name, whiteoutPrefix), strings.HasPrefix(b.name, whiteoutPrefix)
	switch {
	case aw && !bw:
		return -1
	case bw && !aw:
		return 1
	}
	return strings.Compare(a.name, b.name)
}

// walk writes everything below path (rel in the tar).
func (lw *layerWriter) walk(path, rel string) error {
	nodes, err := lw.children(path, rel)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		crel := join(rel, n.name)
		if lw.overlay && isWhiteout(&n.st) {
			if err := lw.marker(crel); err != nil {
				return err
			}
			continue
		}
		if err := lw.emit(path+"/"+n.name, crel, n); err != nil {
			return err
		}
		if !n.isDir() {
			continue
		}
		if n.opaque {
			if err := lw.marker(crel + "/" + whiteoutOpaque); err != nil {
				return err
			}
		}
		if err := lw.walk(path+"/"+n.name, crel); err != nil {
			return err
		}
	}
	return nil
}

// marker writes a whiteout or opaque marker: an empty file whose metadata
// means nothing, so it is fixed to keep layers reproducible.
func (lw *layerWriter) marker(name string) error {
	if err := lw.flushPending(); err != nil {
		return err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, ModTime: time.Unix(0, 0)}
	if err := lw.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write layer: %s: %w", name, err)
	}
	return nil
}

// emit writes the entry for n, found at path, as rel.
func (lw *layerWriter) emit(path, rel string, n *node) error {
	if err := lw.flushPending(); err != nil {
		return err
	}
	st := &n.st
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
	case unix.S_IFLNK:
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = n.target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		// Sockets: tar cannot hold them, and they only mean something
		// to the process listening on them.
		return nil
	}
	if len(n.xattrs) > 0 {
		hdr.PAXRecords = make(map[string]string, len(n.xattrs))
		for k, v := range n.xattrs {
			hdr.PAXRecords[paxXattr+k] = v
		}
	}
	if hdr.Typeflag != tar.TypeDir && st.Nlink > 1 {
		id := fileID{st.Dev, st.Ino}
		if first, ok := lw.links[id]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			hdr.Size = 0
			hdr.Devmajor, hdr.Devminor = 0, 0
			hdr.PAXRecords = nil // the inode's xattrs come with the first entry
		} else {
			lw.links[id] = rel
		}
	}
	if err := lw.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write layer: %s: %w", rel, err)
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		if err := lw.copyFile(path, hdr.Size); err != nil {
			return fmt.Errorf("write layer: %s: %w", rel, err)
		}
	}
	return nil
}

func (lw *layerWriter) flushPending() error {
	pending := lw.pending
	lw.pending = lw.pending[:0]
	for _, d := range pending {
		if err := lw.emit(d.path, d.rel, d.n); err != nil {
			return err
		}
	}
	return nil
}

// copyFile writes size bytes of the file at path into the current entry.
func (lw *layerWriter) copyFile(path string, size int64) error {
	// O_NONBLOCK: should path have become a fifo since it was inspected,
	// opening it must not hang.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(fd)
	for done := int64(0); done < size; {
		n, err := unix.Read(fd, lw.buf[:min(int64(len(lw.buf)), size-done)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("file shrank to %d bytes while being archived (expected %d)", done, size)
		}
		if _, err := lw.tw.Write(lw.buf[:n]); err != nil {
			return err
		}
		done += int64(n)
	}
	return nil
}

// diff writes the changes from directory lower to directory upper (rel in
// the tar).
func (lw *layerWriter) diff(lower, upper, rel string) error {
	lnames, err := readNames(lower, rel == "")
	if err != nil {
		return fmt.Errorf("write layer: lower %s: %w", rel, err)
	}
	unodes, err := lw.children(upper, rel)
	if err != nil {
		return err
	}
	inUpper := make(map[string]bool, len(unodes))
	for _, n := range unodes {
		inUpper[n.name] = true
	}
	// Removed entries become whiteouts, sorted in with the rest.
	items := unodes
	for _, name := range lnames {
		if !inUpper[name] {
			items = append(items, &node{name: whiteoutPrefix + name})
		}
	}
	slices.SortFunc(items, entryOrder)
	lowerHas := make(map[string]bool, len(lnames))
	for _, name := range lnames {
		lowerHas[name] = true
	}

	for _, u := range items {
		crel := join(rel, u.name)
		if strings.HasPrefix(u.name, whiteoutPrefix) {
			if err := lw.marker(crel); err != nil {
				return err
			}
			continue
		}
		upath, lpath := upper+"/"+u.name, lower+"/"+u.name
		if !lowerHas[u.name] {
			if err := lw.emitTree(upath, crel, u); err != nil {
				return err
			}
			continue
		}
		l, err := lw.inspect(lpath, u.name)
		if err != nil {
			return fmt.Errorf("write layer: lower %s: %w", crel, err)
		}
		switch {
		case u.isDir() && l.isDir():
			depth := len(lw.pending)
			if sameNode(u, l) {
				lw.pending = append(lw.pending, pendingDir{upath, crel, u})
			} else if err := lw.emit(upath, crel, u); err != nil {
				return err
			}
			if err := lw.diff(lpath, upath, crel); err != nil {
				return err
			}
			// Nothing changed below: it stays out of the layer.
			lw.pending = lw.pending[:min(depth, len(lw.pending))]
		case u.st.Mode&unix.S_IFMT != l.st.Mode&unix.S_IFMT:
			// A new type replaces the old entry whole (Apply removes a
			// directory a non-directory replaces).
			if err := lw.emitTree(upath, crel, u); err != nil {
				return err
			}
		case !sameNode(u, l):
			if err := lw.emit(upath, crel, u); err != nil {
				return err
			}
		}
	}
	return nil
}

// emitTree writes n and, for a directory, everything in it.
func (lw *layerWriter) emitTree(path, rel string, n *node) error {
	if err := lw.emit(path, rel, n); err != nil {
		return err
	}
	if n.isDir() {
		return lw.walk(path, rel)
	}
	return nil
}

// sameNode compares what a layer entry records of two files of the same
// type. Times are compared to the nanosecond, which catches rewrites within
// the same second even though entries only carry seconds.
func sameNode(a, b *node) bool {
	sa, sb := &a.st, &b.st
	if sa.Mode != sb.Mode || sa.Uid != sb.Uid || sa.Gid != sb.Gid || sa.Mtim != sb.Mtim {
		return false
	}
	switch sa.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if sa.Size != sb.Size {
			return false
		}
	case unix.S_IFLNK:
		if a.target != b.target {
			return false
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if sa.Rdev != sb.Rdev {
			return false
		}
	}
	return maps.Equal(a.xattrs, b.xattrs)
}
