// Package fstest holds helpers for tests that build layer tarballs and
// compare directory trees: crafted tar entries, snapshots of a tree (stat,
// xattrs and contents) with a comparison that reports every difference, and
// mount-point bookkeeping so that a failed test leaves no mount behind.
//
// The tarballs are written verbatim, without any name checks, because the
// tests feeding them to an unpacker want to try hostile names too.
package fstest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/mountinfo"
)

// Entry is one entry of a crafted tarball. Tests change Hdr freely
// (owners, PAX records...) before passing the entry to Tar.
type Entry struct {
	Hdr  tar.Header
	Body string
}

// EntryTime is the modification time of the entries built here: a fixed
// whole second, so that trees unpacked from them compare equal whenever the
// test runs and at the precision a tar carries.
var EntryTime = time.Unix(1_600_000_000, 0)

// File is a regular file holding body.
func File(name string, mode int64, body string) Entry {
	return Entry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: EntryTime}, Body: body}
}

// Dir is a directory.
func Dir(name string, mode int64) Entry {
	return Entry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: EntryTime}}
}

// Symlink is a symbolic link to target.
func Symlink(name, target string) Entry {
	return Entry{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: EntryTime}}
}

// Hardlink is a hard link to the earlier entry target.
func Hardlink(name, target string) Entry {
	return Entry{Hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: EntryTime}}
}

// Fifo is a named pipe.
func Fifo(name string, mode int64) Entry {
	return Entry{Hdr: tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: mode, ModTime: EntryTime}}
}

// Tar builds a tar stream of entries, written verbatim. padTo > 0 pads it
// with zeros to a multiple of padTo bytes, as tar tools pad to their record
// size, so that readers can be tested on what follows the end marker.
func Tar(t testing.TB, padTo int, entries ...Entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.Hdr // WriteHeader may change the header it is given
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.Body); err != nil {
			t.Fatalf("tar body %s: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if padTo > 0 && b.Len()%padTo != 0 {
		b.Write(make([]byte, padTo-b.Len()%padTo))
	}
	return b.Bytes()
}

// TarNames lists the entry names of a tar stream, in order.
func TarNames(t testing.TB, data []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatalf("read back tar: %v", err)
		}
		names = append(names, h.Name)
	}
}

// FileState is what tree comparisons look at for one entry. It is
// comparable, so two snapshots are equal when their maps are.
type FileState struct {
	Type     uint32
	Mode     uint32
	UID, GID uint32
	Size     int64  // regular files
	Content  string // sha256 of regular files
	Target   string // symlinks
	Rdev     uint64
	Mtime    unix.Timespec // as SnapshotOptions.Mtime says
	Xattrs   string        // with SnapshotOptions.Xattrs
}

// MtimePrecision is how much of the modification times a snapshot keeps.
type MtimePrecision int

const (
	// MtimeNone leaves times out: trees built at different moments can
	// still compare equal.
	MtimeNone MtimePrecision = iota
	// MtimeSeconds keeps whole seconds, all a tar header is sure to carry.
	MtimeSeconds
	// MtimeExact keeps nanoseconds, to prove that nothing was touched.
	MtimeExact
)

// SnapshotOptions choose what Snapshot records besides types, modes,
// owners, device numbers, link targets and contents, which it always does.
type SnapshotOptions struct {
	Mtime  MtimePrecision
	Xattrs bool
	// SkipXattr, if set, leaves out the attributes it returns true for,
	// such as those one filesystem adds and another hides.
	SkipXattr func(name string) bool
}

// Snapshot describes every entry below dir (not dir itself), keyed by its
// path relative to dir.
func Snapshot(t testing.TB, dir string, opts SnapshotOptions) map[string]FileState {
	t.Helper()
	out := map[string]FileState{}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		s := FileState{Type: st.Mode & unix.S_IFMT, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, Rdev: st.Rdev}
		switch s.Type {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			// A size that disagrees with the data read would be a broken
			// filesystem view (say overlay copy-up gone wrong); hashing
			// alone would not notice it.
			if int64(len(b)) != st.Size {
				return fmt.Errorf("%s: read %d bytes, stat says %d", rel, len(b), st.Size)
			}
			sum := sha256.Sum256(b)
			s.Size, s.Content = st.Size, hex.EncodeToString(sum[:])
		case unix.S_IFLNK:
			// Symlink modes are always 0777 and meaningless on Linux.
			s.Mode = 0
			if s.Target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		switch opts.Mtime {
		case MtimeSeconds:
			s.Mtime.Sec = st.Mtim.Sec
		case MtimeExact:
			s.Mtime = st.Mtim
		}
		if opts.Xattrs {
			s.Xattrs = Xattrs(t, p, opts.SkipXattr)
		}
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

// xattrMax is the kernel's limit (XATTR_SIZE_MAX) for both the name list
// and one value, so one buffer of it never gets ERANGE.
const xattrMax = 64 << 10

// Xattrs lists the extended attributes of p (not following a symlink) as
// sorted "name=value" pairs joined by ";", leaving out the names skip
// returns true for (skip may be nil). A filesystem without xattr support
// gives "".
func Xattrs(t testing.TB, p string, skip func(name string) bool) string {
	t.Helper()
	buf := make([]byte, xattrMax)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return ""
		}
		t.Fatalf("listxattr %s: %v", p, err)
	}
	var parts []string
	v := make([]byte, xattrMax)
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || (skip != nil && skip(name)) {
			continue
		}
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		parts = append(parts, name+"="+string(v[:m]))
	}
	slices.Sort(parts)
	return strings.Join(parts, ";")
}

// CompareTrees reports, as test errors, every entry that is missing from,
// extra in or different in got compared to want, in path order; what (may
// be "") names the comparison in the messages. It does not stop at the
// first difference, so one run shows all that went wrong.
func CompareTrees(t testing.TB, what string, got, want map[string]FileState) {
	t.Helper()
	prefix := ""
	if what != "" {
		prefix = what + ": "
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		g, gok := got[n]
		w, wok := want[n]
		switch {
		case !gok:
			t.Errorf("%s%s: missing, want %+v", prefix, n, w)
		case !wok:
			t.Errorf("%s%s: unexpected %+v", prefix, n, g)
		case g != w:
			t.Errorf("%s%s differs:\n got  %+v\n want %+v", prefix, n, g, w)
		}
	}
}

// Exists reports whether p exists, without following a final symlink (a
// dangling link exists).
func Exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// ReadFile returns the contents of p, failing the test if it cannot.
func ReadFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// MountPoints lists the mount points at or below dir as
// /proc/self/mountinfo has them, in mount order (parents before the mounts
// on top of or below them).
func MountPoints(t testing.TB, dir string) []string {
	t.Helper()
	ms, err := mountinfo.Read(func(m *mountinfo.Mount) bool {
		return m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/")
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

// CleanupMounts detaches everything mounted at or below dir when the test
// ends, also when it failed half way. Call it after t.TempDir made dir:
// cleanups run last first, so the mounts go before the directory's removal,
// which would otherwise fail on them (or reach into what they show).
func CleanupMounts(t testing.TB, dir string) {
	t.Cleanup(func() {
		mps := MountPoints(t, dir)
		// Last mounted first: a mount on top of another hides it.
		for i := len(mps) - 1; i >= 0; i-- {
			if err := unix.Unmount(mps[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				t.Errorf("unmount leftover %s: %v", mps[i], err)
			}
		}
	})
}

// Unmount lazily detaches the mount at p. Nothing mounted there (EINVAL) or
// no p at all (ENOENT) is fine: callers use it both in the test and again in
// a cleanup, which must not fail when the test already unmounted.
func Unmount(t testing.TB, p string) {
	t.Helper()
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		t.Errorf("unmount %s: %v", p, err)
	}
}
