package layer_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hullproject/hull/internal/fstest"
	"github.com/hullproject/hull/storage/layer"
	"github.com/hullproject/hull/storage/meta"
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
	fstest.CleanupMounts(t, base)
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

// mountCount is how many mounts sit exactly at path.
func mountCount(t testing.TB, path string) int {
	n := 0
	for _, mp := range fstest.MountPoints(t, path) {
		if mp == path {
			n++
		}
	}
	return n
}

// Short names for the entry builders, which the tests use a lot.
var (
	file     = fstest.File
	dir      = fstest.Dir
	symlink  = fstest.Symlink
	hardlink = fstest.Hardlink
	fifo     = fstest.Fifo
	mkTar    = fstest.Tar
)

// whiteout is the OCI marker deleting path from lower layers.
func whiteout(path string) fstest.Entry {
	d, b := filepath.Split(path)
	return file(d+".wh."+b, 0o644, "")
}

// opaque is the OCI marker hiding the lower content of directory d.
func opaque(d string) fstest.Entry {
	return file(strings.TrimSuffix(d, "/")+"/.wh..wh..opq", 0o644, "")
}

func owned(e fstest.Entry, uid, gid int) fstest.Entry {
	e.Hdr.Uid, e.Hdr.Gid = uid, gid
	return e
}

// snapshot describes every entry below dir (not dir itself). A full
// snapshot also records mtimes (ns) and all xattrs, overlayfs's included, to
// prove that nothing changed at all.
func snapshot(t testing.TB, dir string, full bool) map[string]fstest.FileState {
	t.Helper()
	if full {
		return fstest.Snapshot(t, dir, fstest.SnapshotOptions{Mtime: fstest.MtimeExact, Xattrs: true})
	}
	return fstest.Snapshot(t, dir, fstest.SnapshotOptions{})
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
