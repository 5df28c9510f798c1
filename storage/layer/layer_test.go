package layer_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hullproject/hull/internal/fstest"
	"github.com/hullproject/hull/storage/archive"
	"github.com/hullproject/hull/storage/layer"
	"github.com/hullproject/hull/storage/meta"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sys/unix"
)

// bigBody is a file large enough to take several copy buffers' worth of
// reads through the tar stream.
var bigBody = strings.Repeat("0123456789abcdef", 200<<10/16)

// chainTars is a three layer image:
//
//	layer 1: files, directories, owners, modes, a setuid file;
//	layer 2: deletes etc/del (".wh.del"), makes opq opaque and adds
//	         opq/new, replaces etc/conf, adds a fifo;
//	layer 3: a hardlink, symlinks, new metadata for bin/.
func chainTars(t testing.TB) [][]byte {
	l1 := mkTar(t, 10240,
		dir("etc/", 0o755),
		file("etc/conf", 0o644, "conf v1\n"),
		file("etc/del", 0o600, "to be deleted"),
		file("etc/new2", 0o644, "new2\n"),
		dir("opq/", 0o755),
		file("opq/old1", 0o644, "old1"),
		dir("opq/sub/", 0o750),
		file("opq/sub/old2", 0o644, "old2"),
		dir("bin/", 0o755),
		file("bin/tool", 0o755, "#!/bin/sh\necho tool\n"),
		file("bin/suid", 0o4755, "setuid"),
		owned(dir("data/", 0o750), 1000, 1000),
		owned(file("data/big", 0o644, bigBody), 1000, 1001),
		file("data/empty", 0o400, ""),
		file("keep", 0o644, "keep me"),
		symlink("abs", "/etc/conf"),
		dir("mv/", 0o755),
		file("mv/a", 0o644, "moved along"),
	)
	l2 := mkTar(t, 0,
		dir("etc/", 0o755),
		whiteout("etc/del"),
		file("etc/conf", 0o640, "conf v2\n"),
		dir("opq/", 0o755),
		opaque("opq/"),
		file("opq/new", 0o644, "new in layer 2"),
		fifo("fifo", 0o600),
	)
	l3 := mkTar(t, 0,
		dir("bin/", 0o711),
		file("bin/hl-src", 0o755, "hardlinked"),
		hardlink("bin/hl", "bin/hl-src"),
		symlink("etc/link", "conf"),
	)
	return [][]byte{l1, l2, l3}
}

// createChain stores the layers in order and checks what Create reports.
func createChain(t *testing.T, s *testStore, tars [][]byte) []*meta.Layer {
	t.Helper()
	var diffIDs []digest.Digest
	for _, b := range tars {
		diffIDs = append(diffIDs, digest.FromBytes(b))
	}
	// ChainIDs writes into the slice it is given.
	chainIDs := identity.ChainIDs(slices.Clone(diffIDs))
	var out []*meta.Layer
	parent := digest.Digest("")
	for i, b := range tars {
		l, err := s.Create(parent, bytes.NewReader(b), layer.CreateOptions{DiffID: diffIDs[i]})
		if err != nil {
			t.Fatalf("Create layer %d: %v", i+1, err)
		}
		if l.ChainID != chainIDs[i] || l.DiffID != diffIDs[i] || l.Parent != parent {
			t.Errorf("layer %d: chain %s diff %s parent %s; want %s %s %s",
				i+1, l.ChainID, l.DiffID, l.Parent, chainIDs[i], diffIDs[i], parent)
		}
		if l.Size != int64(len(b)) {
			t.Errorf("layer %d: size %d, want the stream length %d", i+1, l.Size, len(b))
		}
		if l.Refs != 0 || l.Dir != l.ChainID.Encoded() {
			t.Errorf("layer %d: refs %d dir %q", i+1, l.Refs, l.Dir)
		}
		got, err := s.Get(l.ChainID)
		if err != nil || got.ChainID != l.ChainID || got.Size != l.Size {
			t.Errorf("Get(layer %d) = %+v, %v", i+1, got, err)
		}
		if !s.Has(l.ChainID) {
			t.Errorf("Has(layer %d) = false", i+1)
		}
		out = append(out, l)
		parent = l.ChainID
	}
	if top := identity.ChainID(diffIDs); out[len(out)-1].ChainID != top {
		t.Errorf("top chain ID %s, want %s", out[len(out)-1].ChainID, top)
	}
	return out
}

// imageTree unpacks the layers one over the other into a plain directory:
// the tree a container of the image must see.
func imageTree(t *testing.T, tars [][]byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "image")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, b := range tars {
		if _, err := archive.Apply(dir, bytes.NewReader(b), archive.ApplyOptions{Whiteouts: archive.WhiteoutDelete}); err != nil {
			t.Fatalf("apply layer %d to the reference tree: %v", i+1, err)
		}
	}
	return dir
}

func layerSnapshots(t *testing.T, s *testStore, layers []*meta.Layer) []map[string]fstest.FileState {
	var out []map[string]fstest.FileState
	for _, l := range layers {
		out = append(out, snapshot(t, s.DiffDir(l), true))
	}
	return out
}

// mutate changes a container's tree in every way a layer can record.
func mutate(t *testing.T, root string) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(root, rel) }
	steps := []struct {
		what string
		err  error
	}{
		{"new file", os.WriteFile(p("newfile"), []byte("brand new"), 0o640)},
		{"chmod new file", os.Chmod(p("newfile"), 0o640)},
		{"rewrite lower file", os.WriteFile(p("etc/conf"), []byte("conf v3, longer than before\n"), 0o644)},
		{"remove lower file", os.Remove(p("etc/new2"))},
		{"remove lower dir", os.RemoveAll(p("data"))},
		{"recreate dir", os.Mkdir(p("data"), 0o700)},
		{"file in recreated dir", os.WriteFile(p("data/fresh"), []byte("fresh"), 0o600)},
		{"remove file of opaque dir", os.Remove(p("opq/new"))},
		{"add file to opaque dir", os.WriteFile(p("opq/newer"), []byte("newer"), 0o644)},
		{"chmod lower file", os.Chmod(p("bin/tool"), 0o700)},
		{"chown lower file", os.Lchown(p("keep"), 1234, 4321)},
		{"new symlink", os.Symlink("keep", p("newlink"))},
		{"remove lower symlink", os.Remove(p("abs"))},
		{"hardlink to lower file", os.Link(p("bin/hl-src"), p("bin/hl2"))},
		{"new deep dir", os.MkdirAll(p("new/deep/dir"), 0o755)},
		{"file in new deep dir", os.WriteFile(p("new/deep/dir/f"), []byte("deep"), 0o644)},
		{"new fifo", unix.Mkfifo(p("new/fifo"), 0o644)},
	}
	for _, s := range steps {
		if s.err != nil {
			t.Fatalf("%s: %v", s.what, s.err)
		}
	}
	// Renaming a lower directory: overlayfs without redirect_dir refuses
	// with EXDEV and mv copies instead, as done here. With redirect_dir
	// the rename would succeed and leave a redirect no layer tar can
	// express, which Diff must then not be asked to write.
	err := os.Rename(p("mv"), p("moved"))
	if errors.Is(err, unix.EXDEV) {
		err = errors.Join(
			os.Mkdir(p("moved"), 0o755),
			os.WriteFile(p("moved/a"), []byte("moved along"), 0o644),
			os.RemoveAll(p("mv")),
		)
	}
	if err != nil {
		t.Fatalf("rename a lower directory: %v", err)
	}
}

func TestChainUnionAndDiff(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := newStore(t, driver)
		tars := chainTars(t)
		layers := createChain(t, s, tars)
		top := layers[2].ChainID
		want := imageTree(t, tars)

		// What each layer directory holds with this driver.
		l2 := s.DiffDir(layers[1])
		if driver == layer.Overlay {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(l2, "etc/del"), &st); err != nil ||
				st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("overlay layer 2: etc/del is not a 0:0 whiteout device (%v)", err)
			}
			if x := fstest.Xattrs(t, filepath.Join(l2, "opq"), nil); !strings.Contains(x, "trusted.overlay.opaque=y") {
				t.Errorf("overlay layer 2: opq xattrs %q, want opaque", x)
			}
			if fstest.Exists(filepath.Join(l2, "keep")) {
				t.Error("overlay layer 2 holds a file of layer 1")
			}
		} else {
			// vfs keeps the full tree at each layer.
			fstest.CompareTrees(t, "vfs top layer", snapshot(t, s.DiffDir(layers[2]), false), snapshot(t, want, false))
		}

		if _, err := s.CreateRootfs("c1", digest.FromString("image"), top); err != nil {
			t.Fatalf("CreateRootfs: %v", err)
		}
		merged, err := s.Mount("c1")
		if err != nil {
			t.Fatalf("Mount: %v", err)
		}
		t.Cleanup(func() { s.Unmount("c1") })
		if want := filepath.Join(s.root, "rootfs", "c1", "merged"); merged != want {
			t.Errorf("Mount = %s, want %s", merged, want)
		}
		if driver == layer.Overlay && mountCount(t, merged) != 1 {
			t.Fatalf("%s is not mounted", merged)
		}

		// The union, spelled out.
		if fstest.Exists(filepath.Join(merged, "etc/del")) {
			t.Error("whited-out etc/del is visible")
		}
		if got := dirEntries(t, filepath.Join(merged, "opq")); !slices.Equal(got, []string{"new"}) {
			t.Errorf("opaque dir opq holds %v, want [new]", got)
		}
		if got := fstest.ReadFile(t, filepath.Join(merged, "etc/conf")); got != "conf v2\n" {
			t.Errorf("etc/conf = %q, want layer 2's", got)
		}
		if got := fstest.ReadFile(t, filepath.Join(merged, "data/big")); got != bigBody {
			t.Errorf("data/big from layer 1 has %d bytes, want %d", len(got), len(bigBody))
		}
		if got := fstest.ReadFile(t, filepath.Join(merged, "keep")); got != "keep me" {
			t.Errorf("keep = %q", got)
		}
		if tgt, err := os.Readlink(filepath.Join(merged, "etc/link")); err != nil || tgt != "conf" {
			t.Errorf("etc/link -> %q, %v", tgt, err)
		}
		a, errA := os.Lstat(filepath.Join(merged, "bin/hl"))
		b, errB := os.Lstat(filepath.Join(merged, "bin/hl-src"))
		if errA != nil || errB != nil || !os.SameFile(a, b) {
			t.Errorf("bin/hl and bin/hl-src are not one file (%v, %v)", errA, errB)
		}
		if st, err := os.Lstat(filepath.Join(merged, "bin")); err != nil || st.Mode().Perm() != 0o711 {
			t.Errorf("bin/ should carry layer 3's mode 0711: %v, %v", st, err)
		}
		if st, err := os.Lstat(filepath.Join(merged, "fifo")); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("fifo: %v, %v", st, err)
		}
		// And entry by entry, the same tree as the layers unpacked one
		// over the other.
		fstest.CompareTrees(t, "merged view", snapshot(t, merged, false), snapshot(t, want, false))

		// Writing in the container touches no layer.
		before := layerSnapshots(t, s, layers)
		mutate(t, merged)
		for i, snap := range layerSnapshots(t, s, layers) {
			fstest.CompareTrees(t, fmt.Sprintf("layer %d after writes in the container", i+1), snap, before[i])
		}
		if got := fstest.ReadFile(t, filepath.Join(merged, "etc/conf")); got != "conf v3, longer than before\n" {
			t.Errorf("etc/conf after writing = %q", got)
		}

		// The diff turns the image into the container's tree.
		var diff bytes.Buffer
		if err := s.Diff("c1", &diff); err != nil {
			t.Fatalf("Diff: %v", err)
		}
		names := fstest.TarNames(t, diff.Bytes())
		for _, n := range []string{"newfile", "etc/conf", "etc/.wh.new2", ".wh.abs", "opq/newer", "keep", "new/deep/dir/f"} {
			if !slices.Contains(names, n) {
				t.Errorf("diff lacks %s: %v", n, names)
			}
		}
		for _, n := range []string{"bin/suid", "etc/link", "opq/old1", "data/big"} {
			if slices.Contains(names, n) {
				t.Errorf("diff holds unchanged or deleted %s", n)
			}
		}
		if _, err := archive.Apply(want, bytes.NewReader(diff.Bytes()), archive.ApplyOptions{Whiteouts: archive.WhiteoutDelete}); err != nil {
			t.Fatalf("apply the diff to the image: %v", err)
		}
		fstest.CompareTrees(t, "image + diff vs container", snapshot(t, want, false), snapshot(t, merged, false))
		if fstest.Exists(filepath.Join(want, "data/big")) || !fstest.Exists(filepath.Join(want, "data/fresh")) {
			t.Error("the recreated data/ did not hide the old content")
		}

		if err := s.RemoveRootfs("c1"); err != nil {
			t.Fatalf("RemoveRootfs: %v", err)
		}
		if mountCount(t, merged) != 0 || fstest.Exists(filepath.Join(s.root, "rootfs", "c1")) {
			t.Error("RemoveRootfs left the mount or the directory")
		}
	})
}

// onlyLayer asserts the store's directories hold exactly the given layers
// and no temporary directory.
func onlyLayers(t *testing.T, s *testStore, want ...*meta.Layer) {
	t.Helper()
	var dirs []string
	for _, l := range want {
		dirs = append(dirs, l.Dir)
	}
	slices.Sort(dirs)
	if got := dirEntries(t, filepath.Join(s.root, "layers")); !slices.Equal(got, dirs) {
		t.Errorf("layers/ holds %v, want %v", got, dirs)
	}
	if got := dirEntries(t, filepath.Join(s.root, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ holds %v", got)
	}
	var records []string
	err := s.db.View(func(tx *meta.Tx) error {
		ls, err := tx.Layers()
		for _, l := range ls {
			records = append(records, l.Dir)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(records)
	if !slices.Equal(records, dirs) {
		t.Errorf("layer records %v, want %v", records, dirs)
	}
}

func TestCreateWrongDiffID(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := newStore(t, driver)
		tars := chainTars(t)
		wrong := digest.FromString("not the layer")

		_, err := s.Create("", bytes.NewReader(tars[0]), layer.CreateOptions{DiffID: wrong})
		if err == nil || !strings.Contains(err.Error(), "mismatch") {
			t.Fatalf("Create with a wrong diff ID: %v", err)
		}
		if s.Has(digest.FromBytes(tars[0])) || s.Has(wrong) {
			t.Error("a layer was recorded")
		}
		onlyLayers(t, s)

		// Also for a child (vfs copies the parent into tmp/ first).
		base, err := s.Create("", bytes.NewReader(tars[0]), layer.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Create(base.ChainID, bytes.NewReader(tars[1]), layer.CreateOptions{DiffID: wrong})
		if err == nil || !strings.Contains(err.Error(), "mismatch") {
			t.Fatalf("Create child with a wrong diff ID: %v", err)
		}
		onlyLayers(t, s, base)

		// A broken stream fails the same clean way.
		_, err = s.Create(base.ChainID, bytes.NewReader(tars[1][:700]), layer.CreateOptions{})
		if err == nil {
			t.Fatal("Create from a truncated tar succeeded")
		}
		onlyLayers(t, s, base)

		// So does a parent the store does not hold.
		_, err = s.Create(digest.FromString("no such parent"), bytes.NewReader(tars[1]), layer.CreateOptions{})
		if !errors.Is(err, layer.ErrLayerUnknown) {
			t.Errorf("Create on a missing parent: %v, want ErrLayerUnknown", err)
		}
		onlyLayers(t, s, base)
	})
}

func TestCreateSameLayerTwice(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		tars := chainTars(t)
		t.Run("sequential", func(t *testing.T) {
			s := newStore(t, driver)
			a, err := s.Create("", bytes.NewReader(tars[0]), layer.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Create("", bytes.NewReader(tars[0]), layer.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if a.ChainID != b.ChainID || !a.Created.Equal(b.Created) {
				t.Errorf("second Create made a new record: %+v vs %+v", a, b)
			}
			onlyLayers(t, s, a)
			if got := fstest.ReadFile(t, filepath.Join(s.DiffDir(a), "keep")); got != "keep me" {
				t.Errorf("layer content after the second Create: %q", got)
			}
		})
		t.Run("concurrent", func(t *testing.T) {
			s := newStore(t, driver)
			base, err := s.Create("", bytes.NewReader(tars[0]), layer.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			res := make([]*meta.Layer, 2)
			errs := make([]error, 2)
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					res[i], errs[i] = s.Create(base.ChainID, bytes.NewReader(tars[1]), layer.CreateOptions{DiffID: digest.FromBytes(tars[1])})
				}()
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("Create %d: %v", i, err)
				}
			}
			if res[0].ChainID != res[1].ChainID || !res[0].Created.Equal(res[1].Created) {
				t.Errorf("two records for one layer: %+v, %+v", res[0], res[1])
			}
			onlyLayers(t, s, base, res[0])
			if driver == layer.Overlay {
				if !fstest.Exists(filepath.Join(s.DiffDir(res[0]), "opq", "new")) {
					t.Error("the kept layer directory is incomplete")
				}
			}
		})
	})
}

func TestDeepImage(t *testing.T) {
	s := newStore(t, layer.Overlay)
	const depth = 150
	var diffIDs []digest.Digest
	var top *meta.Layer
	var lowers []string
	for i := range depth {
		b := mkTar(t, 0, file(fmt.Sprintf("f%d", i), 0o644, fmt.Sprintf("file %d", i)))
		parent := digest.Digest("")
		if top != nil {
			parent = top.ChainID
		}
		l, err := s.Create(parent, bytes.NewReader(b), layer.CreateOptions{})
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		diffIDs = append(diffIDs, digest.FromBytes(b))
		lowers = append(lowers, s.DiffDir(l))
		top = l
	}
	if top.ChainID != identity.ChainID(diffIDs) {
		t.Fatalf("top chain ID %s, want %s", top.ChainID, identity.ChainID(diffIDs))
	}
	// The test is only meaningful if the classic option string overflows.
	if n := len("lowerdir=" + strings.Join(lowers, ":")); n < os.Getpagesize() {
		t.Fatalf("lowerdir option only %d bytes; the test needs more than a page", n)
	}
	if _, err := s.CreateRootfs("deep", "", top.ChainID); err != nil {
		t.Fatal(err)
	}
	merged, err := s.Mount("deep")
	if err != nil {
		t.Fatalf("Mount of %d layers: %v", depth, err)
	}
	t.Cleanup(func() { s.Unmount("deep") })
	names := dirEntries(t, merged)
	if len(names) != depth {
		t.Errorf("merged view holds %d entries, want %d", len(names), depth)
	}
	for i := range depth {
		p := filepath.Join(merged, fmt.Sprintf("f%d", i))
		if got, err := os.ReadFile(p); err != nil || string(got) != fmt.Sprintf("file %d", i) {
			t.Errorf("f%d: %q, %v", i, got, err)
		}
	}
	if err := s.RemoveRootfs("deep"); err != nil {
		t.Fatal(err)
	}
	if mountCount(t, merged) != 0 {
		t.Error("deep rootfs still mounted")
	}
}

func refs(t *testing.T, s *testStore, ls ...*meta.Layer) []int {
	t.Helper()
	var out []int
	for _, l := range ls {
		got, err := s.Get(l.ChainID)
		if errors.Is(err, layer.ErrLayerUnknown) {
			out = append(out, -1)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got.Refs)
	}
	return out
}

func TestRefCounts(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := newStore(t, driver)
		tars := chainTars(t)
		chain := createChain(t, s, tars)
		l1, l2, l3 := chain[0], chain[1], chain[2]
		// A second branch on layer 1.
		l2b, err := s.Create(l1.ChainID, bytes.NewReader(mkTar(t, 0, file("branch", 0o644, "b"))), layer.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		img := digest.FromString("image")
		check := func(what string, want ...int) {
			t.Helper()
			if got := refs(t, s, l1, l2, l3, l2b); !slices.Equal(got, want) {
				t.Errorf("%s: refs (l1 l2 l3 l2b; -1 = gone) %v, want %v", what, got, want)
			}
		}
		check("fresh", 0, 0, 0, 0)

		if _, err := s.CreateRootfs("c1", img, l3.ChainID); err != nil {
			t.Fatal(err)
		}
		check("c1 on l3", 1, 1, 1, 0)
		if _, err := s.CreateRootfs("c2", img, l2b.ChainID); err != nil {
			t.Fatal(err)
		}
		check("c2 on l2b", 2, 1, 1, 1)
		if _, err := s.CreateRootfs("c3", img, l3.ChainID); err != nil {
			t.Fatal(err)
		}
		check("c3 on l3", 3, 2, 2, 1)

		// Failures change nothing.
		if _, err := s.CreateRootfs("c1", img, l3.ChainID); err == nil {
			t.Error("CreateRootfs of an existing id succeeded")
		}
		if _, err := s.CreateRootfs("bad", img, digest.FromString("missing")); !errors.Is(err, layer.ErrLayerUnknown) {
			t.Errorf("CreateRootfs on a missing layer: %v", err)
		}
		if fstest.Exists(filepath.Join(s.root, "rootfs", "bad")) {
			t.Error("failed CreateRootfs left its directory")
		}
		if !fstest.Exists(filepath.Join(s.root, "rootfs", "c1", "upper")) {
			t.Error("failed CreateRootfs of an existing id removed the existing one")
		}
		if err := s.RemoveRootfs("nope"); !errors.Is(err, layer.ErrRootfsUnknown) {
			t.Errorf("RemoveRootfs of an unknown id: %v", err)
		}
		check("after failures", 3, 2, 2, 1)

		if err := s.RemoveRootfs("c3"); err != nil {
			t.Fatal(err)
		}
		check("c3 removed", 2, 1, 1, 1)
		onlyLayers(t, s, l1, l2, l3, l2b)

		// Mounted when removed (overlay): unmounted first.
		merged, err := s.Mount("c1")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveRootfs("c1"); err != nil {
			t.Fatal(err)
		}
		if mountCount(t, merged) != 0 || fstest.Exists(filepath.Join(s.root, "rootfs", "c1")) {
			t.Error("RemoveRootfs left c1 behind")
		}
		check("c1 removed", 1, -1, -1, 1)
		onlyLayers(t, s, l1, l2b)

		if err := s.RemoveRootfs("c2"); err != nil {
			t.Fatal(err)
		}
		check("c2 removed", -1, -1, -1, -1)
		onlyLayers(t, s)
		if got := dirEntries(t, filepath.Join(s.root, "rootfs")); len(got) != 0 {
			t.Errorf("rootfs/ holds %v", got)
		}
	})
}

func TestRefUnrefInTransaction(t *testing.T) {
	s := newStore(t, layer.VFS)
	chain := createChain(t, s, chainTars(t))
	top := chain[2].ChainID
	// An image holding the chain, as the image store does it.
	err := s.db.Update(func(tx *meta.Tx) error {
		if err := layer.Ref(tx, top); err != nil {
			return err
		}
		return layer.Ref(tx, top)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := refs(t, s, chain...); !slices.Equal(got, []int{2, 2, 2}) {
		t.Fatalf("refs %v", got)
	}
	if err := s.db.Update(func(tx *meta.Tx) error { return layer.Ref(tx, digest.FromString("x")) }); !errors.Is(err, layer.ErrLayerUnknown) {
		t.Errorf("Ref of a missing layer: %v", err)
	}
	var gone []*meta.Layer
	cleanup := func() {}
	unref := func() {
		t.Helper()
		err := s.db.Update(func(tx *meta.Tx) error {
			var err error
			gone, err = layer.Unref(tx, top)
			cleanup = s.Retire(gone)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	unref()
	if len(gone) != 0 {
		t.Errorf("first Unref dropped %v", gone)
	}
	unref()
	if len(gone) != 3 {
		t.Fatalf("second Unref dropped %d layers, want 3", len(gone))
	}
	// Retired directories wait in tmp/ until the cleanup runs.
	if got := dirEntries(t, filepath.Join(s.root, "tmp")); len(got) != 3 {
		t.Errorf("tmp/ holds %v, want the 3 retired layers", got)
	}
	if got := dirEntries(t, filepath.Join(s.root, "layers")); len(got) != 0 {
		t.Errorf("layers/ holds %v after Retire", got)
	}
	cleanup()
	onlyLayers(t, s)
}

func TestCollect(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := newStore(t, driver)
		tars := chainTars(t)
		chain := createChain(t, s, tars) // unreferenced
		used, err := s.Create("", bytes.NewReader(mkTar(t, 0, file("used", 0o644, "u"))), layer.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateRootfs("c", "", used.ChainID); err != nil {
			t.Fatal(err)
		}
		// A lease of this process protects a layer, one of a dead
		// process does not.
		live, err := meta.NewLease("live")
		if err != nil {
			t.Fatal(err)
		}
		dead := &meta.Lease{ID: "dead", PID: live.PID, Start: live.Start + 1}
		err = s.db.Update(func(tx *meta.Tx) error {
			if err := tx.PutLease(live); err != nil {
				return err
			}
			return tx.PutLease(dead)
		})
		if err != nil {
			t.Fatal(err)
		}
		leased, err := s.Create("", bytes.NewReader(mkTar(t, 0, file("leased", 0o644, "l"))), layer.CreateOptions{Lease: "live"})
		if err != nil {
			t.Fatal(err)
		}
		notLeased, err := s.Create("", bytes.NewReader(mkTar(t, 0, file("dead", 0o644, "d"))), layer.CreateOptions{Lease: "dead"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create("", bytes.NewReader(tars[0]), layer.CreateOptions{Lease: "no-such-lease"}); err == nil {
			t.Error("Create with an unknown lease succeeded")
		}

		// Leftovers of crashed processes: old ones go, fresh ones stay.
		old := time.Now().Add(-2 * time.Hour)
		mk := func(rel string, mtime time.Time) string {
			p := filepath.Join(s.root, rel)
			if err := os.MkdirAll(filepath.Join(p, "diff", "x"), 0o755); err != nil {
				t.Fatal(err)
			}
			// Read-only inside, as image content can be.
			if err := os.Chmod(filepath.Join(p, "diff", "x"), 0o500); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
			return p
		}
		oldLayerDir := mk("layers/"+digest.FromString("crashed").Encoded(), old)
		newLayerDir := mk("layers/"+digest.FromString("committing").Encoded(), time.Now())
		minuteAgo := mk("layers/"+digest.FromString("90s").Encoded(), time.Now().Add(-90*time.Second))
		oldTmp := mk("tmp/layer-old", old)
		newTmp := mk("tmp/layer-new", time.Now().Add(-30*time.Minute))

		freed, err := s.Collect()
		if err != nil {
			t.Fatalf("Collect: %v", err)
		}
		var want int64
		for _, l := range append(chain, notLeased) {
			want += l.Size
		}
		if freed != want {
			t.Errorf("Collect freed %d bytes, want %d", freed, want)
		}
		for i, l := range chain {
			if s.Has(l.ChainID) || fstest.Exists(filepath.Join(s.root, "layers", l.Dir)) {
				t.Errorf("unreferenced layer %d survived Collect", i+1)
			}
		}
		if s.Has(notLeased.ChainID) || fstest.Exists(filepath.Join(s.root, "layers", notLeased.Dir)) {
			t.Error("a layer held only by a dead lease survived Collect")
		}
		for _, l := range []*meta.Layer{used, leased} {
			if !s.Has(l.ChainID) || !fstest.Exists(s.DiffDir(l)) {
				t.Errorf("Collect removed held layer %s", l.ChainID)
			}
		}
		for _, p := range []string{oldLayerDir, minuteAgo, oldTmp} {
			if fstest.Exists(p) {
				t.Errorf("Collect left stale %s", p)
			}
		}
		for _, p := range []string{newLayerDir, newTmp} {
			if !fstest.Exists(p) {
				t.Errorf("Collect removed fresh %s", p)
			}
		}
		if got := dirEntries(t, filepath.Join(s.root, "tmp")); !slices.Equal(got, []string{"layer-new"}) {
			t.Errorf("tmp/ after Collect holds %v", got)
		}

		// A second run finds nothing more.
		if freed, err := s.Collect(); err != nil || freed != 0 {
			t.Errorf("second Collect freed %d, %v", freed, err)
		}
		if err := s.RemoveRootfs("c"); err != nil {
			t.Fatal(err)
		}
		if s.Has(used.ChainID) {
			t.Error("layer of the removed rootfs kept")
		}
	})
}

func TestMountUnmount(t *testing.T) {
	s := newStore(t, layer.Overlay)
	l, err := s.Create("", bytes.NewReader(mkTar(t, 0, file("hello", 0o644, "hi"))), layer.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRootfs("c", "", l.ChainID); err != nil {
		t.Fatal(err)
	}
	// Never mounted: unmounting is fine.
	if err := s.Unmount("c"); err != nil {
		t.Errorf("Unmount before Mount: %v", err)
	}
	if err := s.Unmount("never-created"); err != nil {
		t.Errorf("Unmount of a missing rootfs: %v", err)
	}
	p1, err := s.Mount("c")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := s.Mount("c")
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Errorf("second Mount returned %s, first %s", p2, p1)
	}
	if n := mountCount(t, p1); n != 1 {
		t.Errorf("%d mounts at %s after two Mounts, want 1", n, p1)
	}
	if got := fstest.ReadFile(t, filepath.Join(p1, "hello")); got != "hi" {
		t.Errorf("hello = %q", got)
	}
	if err := os.WriteFile(filepath.Join(p1, "written"), []byte("w"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Unmount("c"); err != nil {
		t.Fatal(err)
	}
	if n := mountCount(t, p1); n != 0 {
		t.Errorf("%d mounts left after Unmount", n)
	}
	if fstest.Exists(filepath.Join(p1, "hello")) {
		t.Error("layer content visible with the rootfs unmounted")
	}
	if err := s.Unmount("c"); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
	// Mounted again, the container's own writes are still there.
	if _, err := s.Mount("c"); err != nil {
		t.Fatal(err)
	}
	if got := fstest.ReadFile(t, filepath.Join(p1, "written")); got != "w" {
		t.Errorf("container write lost across remount: %q", got)
	}
	if up, err := s.UpperDir("c"); err != nil || fstest.ReadFile(t, filepath.Join(up, "written")) != "w" {
		t.Errorf("UpperDir = %s, %v", up, err)
	}
	// A busy mount (open directory inside) is detached, not refused.
	f, err := os.Open(p1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Unmount("c"); err != nil {
		t.Errorf("Unmount of a busy rootfs: %v", err)
	}
	if n := mountCount(t, p1); n != 0 {
		t.Errorf("busy mount still attached: %d", n)
	}

	if _, err := s.Mount("unknown"); !errors.Is(err, layer.ErrRootfsUnknown) {
		t.Errorf("Mount of an unknown rootfs: %v", err)
	}
	for _, id := range []string{"", ".", "..", "a/b", "../x", "x\x00y"} {
		if _, err := s.CreateRootfs(id, "", ""); err == nil {
			t.Errorf("CreateRootfs(%q) succeeded", id)
		}
		if _, err := s.Mount(id); err == nil {
			t.Errorf("Mount(%q) succeeded", id)
		}
		if err := s.RemoveRootfs(id); err == nil {
			t.Errorf("RemoveRootfs(%q) succeeded", id)
		}
	}
	if err := s.RemoveRootfs("c"); err != nil {
		t.Fatal(err)
	}
}

func TestRootfsWithoutLayers(t *testing.T) {
	forEachDriver(t, func(t *testing.T, driver string) {
		s := newStore(t, driver)
		if _, err := s.CreateRootfs("scratch", "", ""); err != nil {
			t.Fatal(err)
		}
		merged, err := s.Mount("scratch")
		if err != nil {
			t.Fatalf("Mount of an image without layers: %v", err)
		}
		t.Cleanup(func() { s.Unmount("scratch") })
		if got := dirEntries(t, merged); len(got) != 0 {
			t.Errorf("empty image shows %v", got)
		}
		if err := os.WriteFile(filepath.Join(merged, "only"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		var diff bytes.Buffer
		if err := s.Diff("scratch", &diff); err != nil {
			t.Fatal(err)
		}
		if got := fstest.TarNames(t, diff.Bytes()); !slices.Equal(got, []string{"only"}) {
			t.Errorf("diff of a scratch container = %v, want [only]", got)
		}
		if err := s.RemoveRootfs("scratch"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPrepareIndependent(t *testing.T) {
	s := newStore(t, layer.Overlay)
	if !s.Independent() {
		t.Fatal("overlay store is not Independent")
	}
	tars := chainTars(t)
	// Unpack all layers at once, record them in order.
	pend := make([]*layer.Pending, len(tars))
	errs := make([]error, len(tars))
	var wg sync.WaitGroup
	for i, b := range tars {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pend[i], errs[i] = s.Prepare(bytes.NewReader(b), layer.CreateOptions{DiffID: digest.FromBytes(b)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Prepare %d: %v", i, err)
		}
	}
	parent := digest.Digest("")
	var diffIDs []digest.Digest
	for i, p := range pend {
		diffIDs = append(diffIDs, p.DiffID)
		l, err := p.Commit(parent, "")
		if err != nil {
			t.Fatalf("Commit %d: %v", i, err)
		}
		if _, err := p.Commit(parent, ""); err == nil {
			t.Error("second Commit succeeded")
		}
		parent = l.ChainID
	}
	if parent != identity.ChainID(diffIDs) {
		t.Errorf("top %s, want %s", parent, identity.ChainID(diffIDs))
	}
	// A discarded layer leaves nothing.
	p, err := s.Prepare(bytes.NewReader(mkTar(t, 0, file("x", 0o644, "x"))), layer.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Discard()
	if _, err := p.Commit("", ""); err == nil {
		t.Error("Commit after Discard succeeded")
	}
	if got := dirEntries(t, filepath.Join(s.root, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ holds %v", got)
	}
	if got := dirEntries(t, filepath.Join(s.root, "layers")); len(got) != 3 {
		t.Errorf("layers/ holds %v, want 3", got)
	}

	v := newStore(t, layer.VFS)
	if v.Independent() {
		t.Error("vfs store claims Independent")
	}
	if _, err := v.Prepare(bytes.NewReader(tars[0]), layer.CreateOptions{}); err == nil {
		t.Error("Prepare on vfs succeeded")
	}
}

func TestOpenDriverMismatch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, c := range []struct{ made, other string }{{layer.Overlay, layer.VFS}, {layer.VFS, layer.Overlay}} {
		t.Run(c.made, func(t *testing.T) {
			s := newStore(t, c.made)
			if _, err := layer.Open(s.root, s.db, c.other); err == nil {
				t.Fatalf("store made with %s opened with %s", c.made, c.other)
			}
			again, err := layer.Open(s.root, s.db, "")
			if err != nil || again.Driver() != c.made {
				t.Errorf("Open without a driver: %v, %v; want %s", again, err, c.made)
			}
			again, err = layer.Open(s.root, s.db, c.made)
			if err != nil || again.Driver() != c.made {
				t.Errorf("Open with the same driver: %v", err)
			}
			if _, err := layer.Open(s.root, s.db, "zfs"); err == nil {
				t.Error("unknown driver accepted")
			}
		})
	}
}
