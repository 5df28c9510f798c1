package archive

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// WhiteoutMode says how Apply represents the deletions a layer records.
type WhiteoutMode int

const (
	// WhiteoutOverlay: dir is a fresh, empty layer directory used as an
	// overlayfs lower layer. A ".wh.NAME" entry becomes a 0:0 character
	// device NAME; ".wh..wh..opq" in D sets the xattr
	// trusted.overlay.opaque="y" on D (creating D if needed). Entries of the
	// same tar that come after/before an opaque marker in D are kept (the
	// opaque marker hides only lower layers).
	WhiteoutOverlay WhiteoutMode = iota
	// WhiteoutDelete: dir already holds the union of lower layers (vfs
	// driver copy). ".wh.NAME" removes NAME (recursively); ".wh..wh..opq"
	// in D removes every child of D that came from lower layers (i.e. not
	// created by this same tar stream).
	WhiteoutDelete
	// WhiteoutNone: a plain tar, not a layer (`cp -` into a container):
	// ".wh." names are ordinary names, and whatever the tar holds is
	// written over what dir holds.
	WhiteoutNone
)

// ApplyOptions tune Apply.
type ApplyOptions struct {
	Whiteouts WhiteoutMode
	// NoLchown skips ownership changes (tests as non-root); default false =
	// preserve uid/gid.
	NoLchown bool
}

// copyBufSize is the size of the buffer file contents go through: large
// enough that big files take few read/write round trips.
const copyBufSize = 1 << 20

// typeVolumeLabel is the GNU volume header: it names the archive and
// carries no file.
const typeVolumeLabel = 'V'

// Apply unpacks the uncompressed tar stream r into dir (which must exist)
// and returns the number of bytes consumed from r (the layer's uncompressed
// size = size of the tar stream, read to EOF including trailing padding).
//
// Every entry is created relative to a directory fd obtained inside dir, so
// neither ".." in names, absolute names nor symlinks (in the tar or already
// in dir) can make it write outside dir. Entries whose name escapes dir are
// rejected with an error wrapping ErrEscape; absolute names are taken
// relative to dir.
func Apply(dir string, r io.Reader, opts ApplyOptions) (int64, error) {
	if opts.Whiteouts != WhiteoutOverlay && opts.Whiteouts != WhiteoutDelete && opts.Whiteouts != WhiteoutNone {
		return 0, fmt.Errorf("unpack layer: unknown whiteout mode %d", opts.Whiteouts)
	}
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("unpack layer: open %s: %w", dir, err)
	}
	a := &applier{
		root:   root,
		opts:   opts,
		buf:    make([]byte, copyBufSize),
		dirIdx: make(map[string]int),
	}
	if opts.Whiteouts == WhiteoutDelete {
		a.written = make(map[string]struct{})
	}
	defer a.close()

	cr := &countingReader{r: r}
	// Headers are read 512 bytes at a time; the buffer saves a read call
	// on r for each of them. Large content reads bypass it.
	br := bufio.NewReaderSize(cr, 64<<10)
	tr := tar.NewReader(br)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		// With GODEBUG=tarinsecurepath=0 the reader flags names like
		// "../x" but still returns them; they get our own checks below.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return cr.n, fmt.Errorf("unpack layer: truncated tar: %w", err)
			}
			return cr.n, fmt.Errorf("unpack layer: read tar header: %w", err)
		}
		if err := a.entry(hdr, tr); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return cr.n, fmt.Errorf("unpack layer: truncated tar: %w", err)
			}
			return cr.n, err
		}
	}
	if err := a.setDirTimes(); err != nil {
		return cr.n, err
	}
	// The tar reader stops after the end-of-archive blocks; the rest of
	// the stream (record padding) is part of the layer's size and digest.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return cr.n, fmt.Errorf("unpack layer: read padding after tar end: %w", err)
	}
	return cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type applier struct {
	root int // O_PATH fd of the layer directory
	opts ApplyOptions
	buf  []byte

	// names and fds cache the directories on the path of the last parent
	// looked up: fds[i] is the directory names[0]/.../names[i]. Layers list
	// siblings together and parents before children, so most lookups are
	// a cache hit or one openat of a single component. Anything that
	// removes entries truncates the cache below the directory it works in.
	names []string
	fds   []int

	// dirs are directory entries whose times are set once all entries are
	// written, since creating children changes a directory's mtime.
	dirs   []dirTimes
	dirIdx map[string]int

	// written holds the paths this stream created and their ancestors
	// (WhiteoutDelete only): whiteouts and opaque markers hide lower
	// layers, never entries of their own layer.
	written map[string]struct{}
}

type dirTimes struct {
	name     string
	dev, ino uint64
	ts       [2]unix.Timespec
}

func (a *applier) close() {
	a.truncate(0)
	unix.Close(a.root)
}

// cleanName turns a tar entry name into a path relative to the layer root
// ("" for the root itself). Absolute names are contained in the root the
// way the container will see them; relative names that climb out of it
// are rejected.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("name contains a NUL byte")
	}
	if strings.HasPrefix(name, "/") {
		// Clean resolves ".." against the absolute root, where it stays.
		return strings.TrimLeft(path.Clean(name), "/"), nil
	}
	name = path.Clean(name)
	if name == "." {
		return "", nil
	}
	if name == ".." || strings.HasPrefix(name, "../") {
		return "", ErrEscape
	}
	return name, nil
}

// splitName splits a cleaned name into its directory ("" at the root) and
// last component.
func splitName(name string) (string, string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

func joinName(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}

func (a *applier) entry(hdr *tar.Header, content io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader, typeVolumeLabel:
		return nil // no file behind these
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont, tar.TypeDir, tar.TypeSymlink,
		tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("unpack %s: unsupported tar entry type %q", hdr.Name, hdr.Typeflag)
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return fmt.Errorf("unpack %s: %w", hdr.Name, err)
	}
	if name == "" {
		// The root directory belongs to the caller (a layer directory or
		// the parent's copy): its mode and owner are not the layer's.
		if hdr.Typeflag == tar.TypeDir {
			return nil
		}
		return fmt.Errorf("unpack %s: cannot replace the layer root with a non-directory", hdr.Name)
	}
	dirpath, base := splitName(name)
	if strings.HasPrefix(base, whiteoutPrefix) && a.opts.Whiteouts != WhiteoutNone {
		if err := a.whiteout(dirpath, base); err != nil {
			return fmt.Errorf("unpack %s: %w", hdr.Name, err)
		}
		return nil
	}
	pfd, depth, err := a.parent(dirpath, true)
	if err != nil {
		return fmt.Errorf("unpack %s: %w", hdr.Name, err)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = a.mkdir(pfd, depth, base, name, hdr)
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		err = a.regular(pfd, depth, base, hdr, content)
	case tar.TypeSymlink:
		err = a.symlink(pfd, depth, base, hdr)
	case tar.TypeLink:
		err = a.hardlink(pfd, depth, base, hdr)
	default: // char, block, fifo
		err = a.mknod(pfd, depth, base, hdr)
	}
	if err != nil {
		return fmt.Errorf("unpack %s: %w", hdr.Name, err)
	}
	a.markWritten(name)
	return nil
}

// markWritten records name and its ancestors as part of this layer.
func (a *applier) markWritten(name string) {
	if a.written == nil {
		return
	}
	for name != "" {
		if _, ok := a.written[name]; ok {
			return // so are its ancestors
		}
		a.written[name] = struct{}{}
		name, _ = splitName(name)
	}
}

func (a *applier) isWritten(name string) bool {
	_, ok := a.written[name]
	return ok
}

func (a *applier) fdAt(depth int) int {
	if depth == 0 {
		return a.root
	}
	return a.fds[depth-1]
}

// truncate closes the cached directories deeper than depth.
func (a *applier) truncate(depth int) {
	for _, fd := range a.fds[depth:] {
		unix.Close(fd)
	}
	a.fds = a.fds[:depth]
	a.names = a.names[:depth]
}

// parent returns an fd of the directory dirpath (cleaned, relative to the
// root) and its depth in the cache. The fd belongs to the cache: it stays
// valid until the cache is truncated to a smaller depth. Missing
// directories are created when create is set.
func (a *applier) parent(dirpath string, create bool) (int, int, error) {
	if dirpath == "" {
		return a.root, 0, nil
	}
	depth := 0
	start := 0
	for {
		end := strings.IndexByte(dirpath[start:], '/')
		if end < 0 {
			end = len(dirpath)
		} else {
			end += start
		}
		comp := dirpath[start:end]
		if depth >= len(a.names) || a.names[depth] != comp {
			a.truncate(depth)
			fd, err := a.openDir(a.fdAt(depth), comp, dirpath[:end], create)
			if err != nil {
				return -1, 0, err
			}
			a.names = append(a.names, comp)
			a.fds = append(a.fds, fd)
		}
		depth++
		if end == len(dirpath) {
			return a.fds[depth-1], depth, nil
		}
		start = end + 1
	}
}

// openDir opens directory comp of prev, the directory of prefix minus its
// last component. A plain directory is opened with O_NOFOLLOW, one
// component at a time, from a directory already known to be inside the
// root. A symlink is resolved with openat2(RESOLVE_IN_ROOT) from the root,
// so absolute targets and ".." stay inside the layer, as they will in the
// container.
func (a *applier) openDir(prev int, comp, prefix string, create bool) (int, error) {
	for attempt := 0; attempt < 3; attempt++ {
		fd, err := unix.Openat(prev, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == nil {
			return fd, nil
		}
		switch {
		case errors.Is(err, unix.ENOENT):
			if !create {
				return -1, fmt.Errorf("open %s: %w", prefix, err)
			}
			// Layers may omit parent directory entries.
			if err := unix.Mkdirat(prev, comp, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				return -1, fmt.Errorf("create parent %s: %w", prefix, err)
			}
			continue
		case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
		default:
			return -1, fmt.Errorf("open %s: %w", prefix, err)
		}
		var st unix.Stat_t
		if err := unix.Fstatat(prev, comp, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return -1, fmt.Errorf("stat %s: %w", prefix, err)
		}
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			fd, err := unix.Openat2(a.root, prefix, &unix.OpenHow{
				Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
				Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
			})
			if err != nil {
				return -1, fmt.Errorf("open %s through symlink: %w", prefix, err)
			}
			return fd, nil
		case create && a.opts.Whiteouts == WhiteoutOverlay && isWhiteout(&st):
			// An earlier ".wh." entry hid the lower comp; the directory this
			// layer puts in its place must hide the lower one's content too.
			if err := unix.Unlinkat(prev, comp, 0); err != nil {
				return -1, fmt.Errorf("replace whiteout %s: %w", prefix, err)
			}
			if err := unix.Mkdirat(prev, comp, 0o755); err != nil {
				return -1, fmt.Errorf("create parent %s: %w", prefix, err)
			}
			if err := setOpaqueAt(prev, comp); err != nil {
				return -1, fmt.Errorf("%s: %w", prefix, err)
			}
			continue
		}
		return -1, fmt.Errorf("open %s: %w", prefix, unix.ENOTDIR)
	}
	return -1, fmt.Errorf("open %s: directory keeps changing", prefix)
}

func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// setOpaqueAt marks directory name of dirfd opaque for overlayfs.
func setOpaqueAt(dirfd int, name string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open to set opaque: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Fsetxattr(fd, overlayOpaque, []byte("y"), 0); err != nil {
		return fmt.Errorf("set %s: %w", overlayOpaque, err)
	}
	return nil
}

// clear makes room for a new entry base in pfd (at cache depth depth). An
// existing directory is kept when keepDir is set (kept is then true).
// wasWhiteout reports that an overlay whiteout device was removed.
func (a *applier) clear(pfd, depth int, base string, keepDir bool) (kept, wasWhiteout bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, false, nil
		}
		return false, false, fmt.Errorf("stat existing: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if keepDir {
			return true, false, nil
		}
		a.truncate(depth)
		return false, false, removeAllAt(pfd, base)
	}
	// Cached directories may have been reached through this entry if it
	// is a symlink.
	a.truncate(depth)
	if err := unix.Unlinkat(pfd, base, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, false, fmt.Errorf("remove existing: %w", err)
	}
	return false, isWhiteout(&st), nil
}

// removeAllAt removes name in dirfd and, for a directory, everything in it.
// It never follows symlinks.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s to remove it: %w", name, err)
	}
	names, err := readDirFd(fd, name)
	if err == nil {
		for _, n := range names {
			if err = removeAllAt(fd, n); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// readDirFd lists directory fd. fd stays open (it is duplicated for the
// os.File that reads it).
func readDirFd(fd int, name string) ([]string, error) {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(dfd), name)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", name, err)
	}
	return names, nil
}

func (a *applier) whiteout(dirpath, base string) error {
	if base == whiteoutOpaque {
		return a.opaque(dirpath)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // aufs bookkeeping (.wh..wh.plnk...), not part of the tree
	}
	target := base[len(whiteoutPrefix):]
	if target == "" || target == "." || target == ".." {
		return errors.New("invalid whiteout name")
	}
	if a.opts.Whiteouts == WhiteoutOverlay {
		pfd, _, err := a.parent(dirpath, true)
		if err != nil {
			return err
		}
		err = unix.Mknodat(pfd, target, unix.S_IFCHR, 0)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create whiteout: %w", err)
		}
		// The layer directory started empty, so target came from this
		// tar, and a whiteout only hides lower layers: target stays. A
		// directory must still hide its lower counterpart's content.
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, target, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat whited-out entry: %w", err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return setOpaqueAt(pfd, target)
		}
		return nil
	}

	pfd, depth, err := a.parent(dirpath, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil // nothing below to hide
		}
		return err
	}
	name := joinName(dirpath, target)
	if a.isWritten(name) {
		// Part of this layer: only what lower layers put inside goes.
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, target, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat whited-out entry: %w", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil
		}
		fd, err := unix.Openat(pfd, target, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open whited-out directory: %w", err)
		}
		a.truncate(depth)
		err = a.removeLower(fd, name)
		unix.Close(fd)
		return err
	}
	a.truncate(depth)
	return removeAllAt(pfd, target)
}

func (a *applier) opaque(dirpath string) error {
	if a.opts.Whiteouts == WhiteoutOverlay {
		pfd, _, err := a.parent(dirpath, true)
		if err != nil {
			return err
		}
		// Reopen the O_PATH fd: xattrs need a real open file.
		fd, err := unix.Openat(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open opaque directory: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Fsetxattr(fd, overlayOpaque, []byte("y"), 0); err != nil {
			return fmt.Errorf("set %s: %w", overlayOpaque, err)
		}
		return nil
	}
	pfd, depth, err := a.parent(dirpath, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		return err
	}
	a.truncate(depth)
	return a.removeLower(pfd, dirpath)
}

// removeLower removes what lower layers put in directory dirfd (named
// name): children this stream did not write, and recursively the lower
// content of the directories it did.
func (a *applier) removeLower(dirfd int, name string) error {
	children, err := readDirFd(dirfd, name)
	if err != nil {
		return err
	}
	for _, c := range children {
		p := joinName(name, c)
		if !a.isWritten(p) {
			if err := removeAllAt(dirfd, c); err != nil {
				return err
			}
			continue
		}
		fd, err := unix.Openat(dirfd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				continue // not a directory: nothing inside
			}
			return fmt.Errorf("open %s: %w", p, err)
		}
		err = a.removeLower(fd, p)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) mkdir(pfd, depth int, base, name string, hdr *tar.Header) error {
	opaque := false
	err := unix.Mkdirat(pfd, base, 0o755)
	if errors.Is(err, unix.EEXIST) {
		var kept, wasWhiteout bool
		kept, wasWhiteout, err = a.clear(pfd, depth, base, true)
		if err != nil {
			return err
		}
		if !kept {
			// Replacing a whiteout of the same layer: the directory takes
			// over its job of hiding the lower one.
			opaque = wasWhiteout && a.opts.Whiteouts == WhiteoutOverlay
			err = unix.Mkdirat(pfd, base, 0o755)
		}
	}
	if err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	if err := a.fdMeta(fd, hdr); err != nil {
		unix.Close(fd)
		return err
	}
	if opaque {
		if err := unix.Fsetxattr(fd, overlayOpaque, []byte("y"), 0); err != nil {
			unix.Close(fd)
			return fmt.Errorf("set %s: %w", overlayOpaque, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("stat directory: %w", err)
	}
	dt := dirTimes{name: name, dev: st.Dev, ino: st.Ino, ts: times(hdr)}
	if i, ok := a.dirIdx[name]; ok {
		a.dirs[i] = dt
	} else {
		a.dirIdx[name] = len(a.dirs)
		a.dirs = append(a.dirs, dt)
	}
	// Its children most likely come next: the fd becomes the cache top.
	a.truncate(depth)
	a.names = append(a.names, base)
	a.fds = append(a.fds, fd)
	return nil
}

func (a *applier) regular(pfd, depth int, base string, hdr *tar.Header, content io.Reader) error {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, 0o600)
	if errors.Is(err, unix.EEXIST) {
		if _, _, err := a.clear(pfd, depth, base, false); err != nil {
			return err
		}
		fd, err = unix.Openat(pfd, base, flags, 0o600)
	}
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	err = a.copyTo(fd, content)
	if err == nil {
		// After the content: writing would drop security.capability.
		err = a.fdMeta(fd, hdr)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		return err
	}
	return setTimesAt(pfd, base, hdr)
}

// copyTo writes the rest of content to fd through the shared buffer.
func (a *applier) copyTo(fd int, content io.Reader) error {
	for {
		n, rerr := content.Read(a.buf)
		for b := a.buf[:n]; len(b) > 0; {
			w, err := unix.Write(fd, b)
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				return fmt.Errorf("write content: %w", err)
			}
			b = b[w:]
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read content: %w", rerr)
		}
	}
}

func (a *applier) symlink(pfd, depth int, base string, hdr *tar.Header) error {
	err := unix.Symlinkat(hdr.Linkname, pfd, base)
	if errors.Is(err, unix.EEXIST) {
		if _, _, err := a.clear(pfd, depth, base, false); err != nil {
			return err
		}
		err = unix.Symlinkat(hdr.Linkname, pfd, base)
	}
	if err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	return a.pathMeta(pfd, base, hdr, true)
}

func (a *applier) mknod(pfd, depth int, base string, hdr *tar.Header) error {
	var typ uint32
	switch hdr.Typeflag {
	case tar.TypeChar:
		typ = unix.S_IFCHR
	case tar.TypeBlock:
		typ = unix.S_IFBLK
	default:
		typ = unix.S_IFIFO
	}
	if hdr.Devmajor < 0 || hdr.Devmajor > 0xfff || hdr.Devminor < 0 || hdr.Devminor > 0xfffff {
		return fmt.Errorf("device number %d:%d out of range", hdr.Devmajor, hdr.Devminor)
	}
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	err := unix.Mknodat(pfd, base, typ|0o600, dev)
	if errors.Is(err, unix.EEXIST) {
		if _, _, err := a.clear(pfd, depth, base, false); err != nil {
			return err
		}
		err = unix.Mknodat(pfd, base, typ|0o600, dev)
	}
	if err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	return a.pathMeta(pfd, base, hdr, false)
}

func (a *applier) hardlink(pfd, depth int, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink target %s: %w", hdr.Linkname, err)
	}
	if target == "" {
		return fmt.Errorf("hardlink target %s: is the layer root", hdr.Linkname)
	}
	tdir, tbase := splitName(target)
	tfd := a.root
	if tdir != "" {
		// Unlike parents of new entries, the target's directory may not
		// pass through symlinks leaving the root even if they could be
		// re-rooted: a tar writer records the real path of the file it
		// links to, so such a target is an attack.
		tfd, err = unix.Openat2(a.root, tdir, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
		})
		if errors.Is(err, unix.EXDEV) {
			return fmt.Errorf("hardlink target %s: %w", hdr.Linkname, ErrEscape)
		}
		if err != nil {
			return fmt.Errorf("hardlink target %s: %w", hdr.Linkname, err)
		}
		defer unix.Close(tfd)
	}
	// Flags 0: a target that is a symlink is linked itself, not followed.
	err = unix.Linkat(tfd, tbase, pfd, base, 0)
	if errors.Is(err, unix.EEXIST) {
		var ts, es unix.Stat_t
		if unix.Fstatat(tfd, tbase, &ts, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			unix.Fstatat(pfd, base, &es, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			ts.Dev == es.Dev && ts.Ino == es.Ino {
			return nil // already the same file
		}
		if _, _, err := a.clear(pfd, depth, base, false); err != nil {
			return err
		}
		err = unix.Linkat(tfd, tbase, pfd, base, 0)
	}
	if err != nil {
		return fmt.Errorf("hardlink to %s: %w", hdr.Linkname, err)
	}
	// The inode's metadata is the target's, set by its own entry.
	return nil
}

// fdMeta sets owner, mode and xattrs of an open file or directory, in that
// order: chown clears setuid/setgid and security.capability.
func (a *applier) fdMeta(fd int, hdr *tar.Header) error {
	if !a.opts.NoLchown {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return fmt.Errorf("chmod %o: %w", hdr.Mode&0o7777, err)
	}
	if len(hdr.PAXRecords) == 0 {
		return nil
	}
	return setXattrs(hdr, true, func(name string, value []byte) error {
		return unix.Fsetxattr(fd, name, value, 0)
	})
}

// pathMeta sets the metadata of symlinks and device nodes, which cannot
// be opened for writing, by name in their parent, never following a
// symlink.
func (a *applier) pathMeta(pfd int, base string, hdr *tar.Header, symlink bool) error {
	if !a.opts.NoLchown {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if !symlink { // symlink permissions are meaningless and cannot be set
		mode := uint32(hdr.Mode & 0o7777)
		err := unix.Fchmodat(pfd, base, mode, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.EOPNOTSUPP) {
			// No fchmodat2 (Linux < 6.6). base is the node just created,
			// not a symlink, so following is moot.
			err = unix.Fchmodat(pfd, base, mode, 0)
		}
		if err != nil {
			return fmt.Errorf("chmod %o: %w", mode, err)
		}
	}
	if len(hdr.PAXRecords) > 0 {
		// lsetxattr through the parent's /proc magic link: the parent is
		// already pinned inside the root and the last component is not
		// followed.
		p := "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base
		err := setXattrs(hdr, false, func(name string, value []byte) error {
			return unix.Lsetxattr(p, name, value, 0)
		})
		if err != nil {
			return err
		}
	}
	return setTimesAt(pfd, base, hdr)
}

// setXattrs applies the SCHILY.xattr records of hdr. regOrDir tells
// whether the file may carry user.* xattrs (the kernel refuses them on
// symlinks and devices).
func setXattrs(hdr *tar.Header, regOrDir bool, set func(name string, value []byte) error) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok || strings.HasPrefix(name, overlayPrefix) {
			continue
		}
		err := set(name, []byte(v))
		if err == nil || xattrErrIgnorable(name, err, regOrDir) {
			continue
		}
		return fmt.Errorf("set xattr %s: %w", name, err)
	}
	return nil
}

// xattrErrIgnorable: trusted.* and security.* xattrs are refused by some
// filesystems and in user namespaces; images carry them (file
// capabilities, SELinux labels) without needing them everywhere.
func xattrErrIgnorable(name string, err error, regOrDir bool) bool {
	privileged := strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.")
	switch {
	case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EPERM):
		if privileged {
			return true
		}
		return strings.HasPrefix(name, "user.") && !regOrDir && errors.Is(err, unix.EPERM)
	}
	return false
}

func times(hdr *tar.Header) [2]unix.Timespec {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return [2]unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func setTimesAt(pfd int, base string, hdr *tar.Header) error {
	ts := times(hdr)
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// setDirTimes sets the times of the directory entries, now that nothing
// more is created in them. A directory replaced or removed by a later
// entry (another inode at its path now) is skipped.
func (a *applier) setDirTimes() error {
	for i := range a.dirs {
		d := &a.dirs[i]
		dirpath, base := splitName(d.name)
		pfd, _, err := a.parent(dirpath, false)
		if err != nil {
			// A later entry removed the directory or put something else
			// on its path.
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				continue
			}
			return fmt.Errorf("unpack %s: set times: %w", d.name, err)
		}
		var st unix.Stat_t
		if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("unpack %s: set times: %w", d.name, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Dev != d.dev || st.Ino != d.ino {
			continue
		}
		if err := unix.UtimesNanoAt(pfd, base, d.ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("unpack %s: set times: %w", d.name, err)
		}
	}
	return nil
}
