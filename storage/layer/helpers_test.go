package layer_test

import (
	"archive/tar"
	"bufio"
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

	"github.com/hullproject/hull/storage/layer"
	"github.com/hullproject/hull/storage/meta"
	"golang.org/x/sys/unix"
)

var drivers = []string{layer.Overlay, layer.VFS}

// forEachDriver runs fn as subtests "overlay" and "vfs".
func forEachDriver(t *testing.T, fn func(t *testing.T, driver string)) {
	for _, drv := range drivers {
		t.Run(drv, func(t *testing.T) { fn(t, drv) })
	}
}

type testStore struct {
	*layer.Store
	db   *meta.DB
	root string // the store's directory
}

// newStore makes a layer store with its database in a fresh directory.
// Anything mounted below it is unmounted when the test ends, also when it
// failed half way.
func newStore(t *testing.T, driver string) *testStore {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (ownership, whiteout devices, mounts)")
	}
	if driver == layer.Overlay && !layer.OverlaySupported() {
		t.Skip("kernel has no overlayfs")
	}
	base := t.TempDir()
	cleanupMounts(t, base)
	db, err := meta.Open(filepath.Join(base, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "store")
	s, err := layer.Open(root, db, driver)
	if err != nil {
		t.Fatalf("layer.Open(%s): %v", driver, err)
	}
	if s.Driver() != driver || s.Root() != root {
		t.Fatalf("store driver %q root %q", s.Driver(), s.Root())
	}
	return &testStore{Store: s, db: db, root: root}
}

// mountPoints lists the mount points at or below dir, deepest last.
func mountPoints(t testing.TB, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 for space...) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cleanupMounts detaches everything mounted below dir at the end of the
// test. Registered after t.TempDir, so it runs before the removal.
func cleanupMounts(t *testing.T, dir string) {
	t.Cleanup(func() {
		mps := mountPoints(t, dir)
		for i := len(mps) - 1; i >= 0; i-- {
			if err := unix.Unmount(mps[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				t.Errorf("unmount leftover %s: %v", mps[i], err)
			}
		}
	})
}

// mountCount is how many mounts sit exactly at path.
func mountCount(t testing.TB, path string) int {
	n := 0
	for _, mp := range mountPoints(t, path) {
		if mp == path {
			n++
		}
	}
	return n
}

// tent is one entry of a tar built by a test.
type tent struct {
	hdr  tar.Header
	body string
}

var entryTime = time.Unix(1_600_000_000, 0)

func file(name string, mode int64, body string) tent {
	return tent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: entryTime}, body: body}
}

func dir(name string, mode int64) tent {
	return tent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: entryTime}}
}

func symlink(name, target string) tent {
	return tent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: entryTime}}
}

func hardlink(name, target string) tent {
	return tent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: entryTime}}
}

func fifo(name string, mode int64) tent {
	return tent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: mode, ModTime: entryTime}}
}

// whiteout is the OCI marker deleting path from lower layers.
func whiteout(path string) tent {
	d, b := filepath.Split(path)
	return file(d+".wh."+b, 0o644, "")
}

// opaque is the OCI marker hiding the lower content of directory d.
func opaque(d string) tent { return file(strings.TrimSuffix(d, "/")+"/.wh..wh..opq", 0o644, "") }

func owned(e tent, uid, gid int) tent {
	e.hdr.Uid, e.hdr.Gid = uid, gid
	return e
}

// mkTar builds a tar stream; padTo > 0 pads it with zeros to a multiple of
// padTo bytes, as tar tools pad to their record size.
func mkTar(t testing.TB, padTo int, entries ...tent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
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

// tarNames lists the entry names of a tar stream.
func tarNames(t testing.TB, data []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read tar: %v", err)
			}
			return names
		}
		names = append(names, h.Name)
	}
}

// fstate is what tree comparisons look at.
type fstate struct {
	Type     uint32
	Mode     uint32
	UID, GID uint32
	Size     int64  // regular files
	Content  string // sha256 of regular files
	Target   string // symlinks
	Rdev     uint64
	// Only with full snapshots:
	Mtime  int64
	Xattrs string
}

// snapshot describes every entry below dir (not dir itself). A full
// snapshot also records mtimes (ns) and xattrs, to prove that nothing
// changed at all.
func snapshot(t testing.TB, dir string, full bool) map[string]fstate {
	t.Helper()
	out := map[string]fstate{}
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
		s := fstate{Type: st.Mode & unix.S_IFMT, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, Rdev: st.Rdev}
		switch s.Type {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			s.Size, s.Content = int64(len(b)), hex.EncodeToString(sum[:])
			if int64(len(b)) != st.Size {
				return fmt.Errorf("%s: read %d bytes, stat says %d", rel, len(b), st.Size)
			}
		case unix.S_IFLNK:
			s.Mode = 0
			if s.Target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if full {
			s.Mtime = st.Mtim.Nano()
			s.Xattrs = xattrs(t, p)
		}
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

func xattrs(t testing.TB, p string) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return ""
		}
		t.Fatalf("listxattr %s: %v", p, err)
	}
	var parts []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		parts = append(parts, name+"="+string(v[:m]))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// sameTree fails the test with every difference between two snapshots.
func sameTree(t testing.TB, what string, got, want map[string]fstate) {
	t.Helper()
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			t.Errorf("%s: %s missing", what, k)
		case !wok:
			t.Errorf("%s: %s unexpected: %+v", what, k, g)
		case g != w:
			t.Errorf("%s: %s differs:\n got  %+v\n want %+v", what, k, g, w)
		}
	}
}

// dirEntries lists the names in a directory (nil when it does not exist).
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func readString(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
