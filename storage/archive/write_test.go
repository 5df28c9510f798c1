package archive

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hullproject/hull/internal/fstest"
	"golang.org/x/sys/unix"
)

// setTimes gives every file below dir (children before parents) a fixed
// mtime with a sub-second part.
func setTimes(t testing.TB, dir string, sec int64) {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(paths)
	ts := []unix.Timespec{{Sec: sec, Nsec: 123456789}, {Sec: sec, Nsec: 123456789}}
	for _, p := range paths {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatalf("utimes %s: %v", p, err)
		}
	}
}

func mkdirs(t testing.TB, root string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// buildRich fills dir with every kind of entry a layer can hold.
func buildRich(t *testing.T, dir string) {
	t.Helper()
	p := func(s string) string { return filepath.Join(dir, s) }
	mkdirs(t, dir, "bin", "etc/ssl", "shared", "tmp", "a/b/c", "a-c", "empty")
	writeFile(t, p("etc/hostname"), "box\n", 0o644)
	writeFile(t, p("etc/empty"), "", 0o600)
	writeFile(t, p("bin/su"), "#!/bin/sh\n", 0o755)
	must(t, os.Chown(p("bin/su"), 1234, 5678))
	must(t, unix.Chmod(p("bin/su"), 0o4755)) // chown cleared setuid: set it after
	must(t, unix.Chmod(p("shared"), 0o2775))
	must(t, os.Chown(p("shared"), 0, 5678))
	must(t, unix.Chmod(p("tmp"), 0o1777))
	writeFile(t, p("big"), strings.Repeat("0123456789abcdef", 200000), 0o644) // > copy buffer
	writeFile(t, p("a/b/c/deep"), "deep", 0o444)
	writeFile(t, p("a-c/x"), "x", 0o644)
	must(t, os.Link(p("etc/hostname"), p("etc/hostname.link")))
	must(t, os.Link(p("etc/hostname"), p("a/b/hostname")))
	must(t, os.Symlink("../etc/hostname", p("bin/rel")))
	must(t, os.Symlink("/etc/passwd", p("bin/abs")))
	must(t, os.Symlink("nowhere", p("bin/dangling")))
	must(t, unix.Linkat(unix.AT_FDCWD, p("bin/rel"), unix.AT_FDCWD, p("bin/rel.hardlink"), 0))
	must(t, unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(p("loop"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 42))))
	must(t, unix.Mkfifo(p("fifo"), 0o640))
	long := strings.Repeat("long-name-", 15)
	writeFile(t, p(long+"/"+long+"/"+long), "long", 0o644)
	writeFile(t, p("ünïcødé ☃/file with spaces"), "u", 0o644)
	// A file capability (set after chown, which clears it).
	must(t, unix.Lsetxattr(p("bin/su"), "security.capability", []byte("\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), 0))
	if userXattrs(t, dir) {
		must(t, unix.Lsetxattr(p("etc/hostname"), "user.foo", []byte("bar"), 0))
		must(t, unix.Lsetxattr(p("etc"), "user.dir", []byte("\x00binary\xff"), 0))
	}
	// A socket: tar has no type for it, so layers leave it out.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	must(t, err)
	must(t, unix.Bind(fd, &unix.SockaddrUnix{Name: p("sock")}))
	unix.Close(fd)
	setTimes(t, dir, 1_600_000_000)
}

func TestWriteDirRoundTrip(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	buildRich(t, src)

	var first, second bytes.Buffer
	must(t, WriteDir(&first, src))
	must(t, WriteDir(&second, src))
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Error("WriteDir is not deterministic")
	}

	// The tar's shape.
	seen := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(first.Bytes()))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		names = append(names, h.Name)
		if strings.HasPrefix(h.Name, "/") || strings.HasPrefix(h.Name, "./") {
			t.Errorf("%s: not relative", h.Name)
		}
		if (h.Typeflag == tar.TypeDir) != strings.HasSuffix(h.Name, "/") {
			t.Errorf("%s: directories and only they end with /", h.Name)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: uname %q gname %q", h.Name, h.Uname, h.Gname)
		}
		if parent := filepath.Dir(strings.TrimSuffix(h.Name, "/")); parent != "." && !seen[parent+"/"] {
			t.Errorf("%s comes before its parent", h.Name)
		}
		seen[h.Name] = true
		switch h.Name {
		case "bin/su":
			if h.Mode != 0o4755 || h.Uid != 1234 || h.Gid != 5678 {
				t.Errorf("bin/su: mode %o owner %d:%d", h.Mode, h.Uid, h.Gid)
			}
		case "etc/hostname.link", "etc/hostname":
			// a/b/hostname comes first in the walk: the others link to it.
			if h.Typeflag != tar.TypeLink || h.Linkname != "a/b/hostname" {
				t.Errorf("%s: type %q -> %s", h.Name, h.Typeflag, h.Linkname)
			}
		case "sock":
			t.Error("socket written")
		}
	}
	if names[0] != "a/" {
		t.Errorf("first entry %q", names[0])
	}

	dst := t.TempDir()
	n, err := Apply(dst, bytes.NewReader(first.Bytes()), ApplyOptions{})
	must(t, err)
	if n != int64(first.Len()) {
		t.Errorf("Apply consumed %d of %d bytes", n, first.Len())
	}
	want := snapshot(t, src)
	delete(want, "sock")
	fstest.CompareTrees(t, "", snapshot(t, dst), want)
	h := lstat(t, filepath.Join(dst, "etc/hostname"))
	if h.Nlink != 3 || lstat(t, filepath.Join(dst, "a/b/hostname")).Ino != h.Ino || lstat(t, filepath.Join(dst, "etc/hostname.link")).Ino != h.Ino {
		t.Error("hardlinks not preserved")
	}
	if lstat(t, filepath.Join(dst, "bin/rel.hardlink")).Ino != lstat(t, filepath.Join(dst, "bin/rel")).Ino {
		t.Error("hardlinked symlink not preserved")
	}
}

func TestWriteRefusesReservedNames(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "d/.wh.foo"), "", 0o644)
	if err := WriteDir(io.Discard, dir); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("WriteDir = %v", err)
	}
}

// buildLower is the lower tree of the diff tests.
func buildLower(t *testing.T, dir string) {
	t.Helper()
	p := func(s string) string { return filepath.Join(dir, s) }
	for _, f := range []string{"keep.txt", "keep2.txt", "del.txt", "mod.txt", "chmod.txt", "deldir/a", "deldir/sub/b",
		"opq/old1", "opq/sub/old2", "dir/x", "dir/y", "replaced.txt", "dir2/inner", "nested/deeper/file", "samesec.txt"} {
		writeFile(t, p(f), "lower "+f, 0o644)
	}
	must(t, os.Symlink("keep.txt", p("link")))
	must(t, os.Link(p("keep.txt"), p("keep.hardlink")))
	must(t, unix.Mkfifo(p("fifo"), 0o600))
	if userXattrs(t, dir) {
		must(t, unix.Lsetxattr(p("keep2.txt"), "user.old", []byte("1"), 0))
	}
	setTimes(t, dir, 1_500_000_000)
}

// modify makes the same changes through an overlay mount or on a copy.
func modify(t *testing.T, root string) {
	t.Helper()
	p := func(s string) string { return filepath.Join(root, s) }
	must(t, os.Remove(p("del.txt")))
	must(t, os.RemoveAll(p("deldir")))
	must(t, os.RemoveAll(p("opq")))
	must(t, os.Mkdir(p("opq"), 0o750))
	writeFile(t, p("opq/new"), "new in opaque dir", 0o644)
	f, err := os.OpenFile(p("mod.txt"), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString(" appended")
	must(t, err)
	must(t, f.Close())
	must(t, os.Chown(p("chmod.txt"), 1234, 5678))
	must(t, os.Chmod(p("chmod.txt"), 0o600))
	writeFile(t, p("new.txt"), "brand new", 0o644)
	writeFile(t, p("-dash"), "sorts before .wh.", 0o644)
	writeFile(t, p("newdir/sub/file"), "nested new", 0o644)
	must(t, os.Link(p("new.txt"), p("newdir/hardlink")))
	must(t, os.Symlink("new.txt", p("newlink")))
	must(t, unix.Mkfifo(p("newfifo"), 0o644))
	must(t, unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, os.Remove(p("dir/x")))
	must(t, os.Rename(p("dir/y"), p("dir/y2")))
	must(t, os.Remove(p("replaced.txt")))
	must(t, os.Mkdir(p("replaced.txt"), 0o700))
	writeFile(t, p("replaced.txt/inside"), "i", 0o644)
	must(t, os.RemoveAll(p("dir2")))
	writeFile(t, p("dir2"), "dir2 is a file now", 0o644)
	writeFile(t, p("nested/deeper/file"), "rewritten", 0o644)
	if userXattrs(t, root) {
		must(t, unix.Lsetxattr(p("keep2.txt"), "user.new", []byte("2"), 0))
		must(t, unix.Lsetxattr(p("newdir"), "user.d", []byte("d"), 0))
	}
	// Times a tar can carry (whole seconds), so that the trees compare
	// equal at that precision whatever second the test runs in.
	for _, f := range []string{"mod.txt", "new.txt", "nested/deeper/file"} {
		must(t, os.Chtimes(p(f), time.Unix(1_700_000_000, 0), time.Unix(1_700_000_000, 0)))
	}
}

func TestWriteDiffOverlay(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	lower, upper, work, merged := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	mkdirs(t, base, "lower", "upper", "work", "merged")
	buildLower(t, lower)
	mountOverlay(t, lower, upper, work, merged)
	modify(t, merged)
	want := snapshot(t, merged)
	fstest.Unmount(t, merged)

	// The upper directory really uses overlayfs's representations.
	if st := lstat(t, filepath.Join(upper, "del.txt")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("upper/del.txt is not a whiteout: %o", st.Mode)
	}
	buf := make([]byte, 4)
	if n, err := unix.Lgetxattr(filepath.Join(upper, "opq"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Fatalf("upper/opq not opaque: %q %v", buf[:max(n, 0)], err)
	}

	var layer bytes.Buffer
	must(t, WriteDiff(&layer, upper))
	names := fstest.TarNames(t, layer.Bytes())
	t.Logf("diff entries: %q", names)
	checkWhiteoutsFirst(t, names)
	for _, n := range []string{".wh.del.txt", ".wh.deldir", "opq/", "opq/.wh..wh..opq", "opq/new", "dir/.wh.x", "dir/.wh.y", "dir/y2", "mod.txt", "null"} {
		if !slices.Contains(names, n) {
			t.Errorf("diff lacks %s", n)
		}
	}
	if i := slices.Index(names, "opq/"); i < 0 || i+1 >= len(names) || names[i+1] != "opq/.wh..wh..opq" {
		t.Error("opaque marker does not follow its directory entry")
	}
	for _, n := range []string{"keep.txt", "del.txt", "link"} {
		if slices.Contains(names, n) {
			t.Errorf("diff has unchanged or deleted %s", n)
		}
	}
	var again bytes.Buffer
	must(t, WriteDiff(&again, upper))
	if !bytes.Equal(layer.Bytes(), again.Bytes()) {
		t.Error("WriteDiff is not deterministic")
	}

	// vfs-style: the diff applied on a copy of lower gives the merged view.
	target := filepath.Join(base, "target")
	copyTree(t, lower, target)
	n, err := Apply(target, bytes.NewReader(layer.Bytes()), ApplyOptions{Whiteouts: WhiteoutDelete})
	must(t, err)
	if n != int64(layer.Len()) {
		t.Errorf("Apply consumed %d of %d bytes", n, layer.Len())
	}
	fstest.CompareTrees(t, "", snapshot(t, target), want)

	// overlay-style: the diff unpacked as a layer directory, stacked on
	// lower, looks the same through overlayfs.
	layerDir, merged2 := filepath.Join(base, "layer"), filepath.Join(base, "merged2")
	mkdirs(t, base, "layer", "merged2")
	_, err = Apply(layerDir, bytes.NewReader(layer.Bytes()), ApplyOptions{Whiteouts: WhiteoutOverlay})
	must(t, err)
	if err := unix.Mount("overlay", merged2, "overlay", unix.MS_RDONLY, "lowerdir="+layerDir+":"+lower); err != nil {
		t.Fatalf("mount read-only overlay: %v", err)
	}
	t.Cleanup(func() { fstest.Unmount(t, merged2) })
	fstest.CompareTrees(t, "", snapshot(t, merged2), want)
}

func TestWriteTreeDiff(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	lower, upper := filepath.Join(base, "lower"), filepath.Join(base, "upper")
	must(t, os.Mkdir(lower, 0o755))
	buildLower(t, lower)
	copyTree(t, lower, upper)

	var empty bytes.Buffer
	must(t, WriteTreeDiff(&empty, lower, upper))
	if names := fstest.TarNames(t, empty.Bytes()); len(names) != 0 {
		t.Errorf("identical trees give entries %q", names)
	}

	modify(t, upper)
	// A file rewritten within the same second and size: caught by the
	// nanosecond comparison.
	keep := filepath.Join(upper, "samesec.txt")
	must(t, os.WriteFile(keep, []byte("LOWER samesec.txt"), 0o644))
	ts := []unix.Timespec{{Sec: 1_500_000_000, Nsec: 999}, {Sec: 1_500_000_000, Nsec: 999}}
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, keep, ts, 0))
	// A new hardlink to an unchanged file: the layer cannot link to a file
	// outside it, so it holds a copy.
	must(t, os.Link(filepath.Join(upper, "keep.txt"), filepath.Join(upper, "newdir/keep.link")))
	want := snapshot(t, upper)

	var layer bytes.Buffer
	must(t, WriteTreeDiff(&layer, lower, upper))
	names := fstest.TarNames(t, layer.Bytes())
	t.Logf("tree diff entries: %q", names)
	checkWhiteoutsFirst(t, names)
	for _, n := range []string{".wh.del.txt", ".wh.deldir", "opq/", "opq/.wh.old1", "opq/.wh.sub", "opq/new", "dir/.wh.x", "dir/.wh.y", "dir/y2", "dir2", "replaced.txt/", "replaced.txt/inside", "keep2.txt", "samesec.txt", "newdir/keep.link", "nested/", "nested/deeper/"} {
		if !slices.Contains(names, n) {
			t.Errorf("diff lacks %s", n)
		}
	}
	// Unchanged directories are written only as parents of changes (their
	// times must be restored after the change is applied).
	for _, n := range []string{"keep.txt", "link", "fifo", "dir2/inner", "opq/sub/"} {
		if slices.Contains(names, n) {
			t.Errorf("diff has unchanged or removed %s", n)
		}
	}

	target := filepath.Join(base, "target")
	copyTree(t, lower, target)
	_, err := Apply(target, bytes.NewReader(layer.Bytes()), ApplyOptions{Whiteouts: WhiteoutDelete})
	must(t, err)
	fstest.CompareTrees(t, "", snapshot(t, target), want)
	// Within the layer, hardlinks are kept.
	if lstat(t, filepath.Join(target, "newdir/hardlink")).Ino != lstat(t, filepath.Join(target, "new.txt")).Ino {
		t.Error("hardlink within the layer not preserved")
	}
	tr := tar.NewReader(bytes.NewReader(layer.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if h.Typeflag == tar.TypeLink && !slices.Contains(names[:slices.Index(names, h.Name)], h.Linkname) {
			t.Errorf("%s links to %s, which is not in the layer before it", h.Name, h.Linkname)
		}
	}
}

func TestWriteDiffRefusesRedirect(t *testing.T) {
	requireRoot(t)
	upper := t.TempDir()
	mkdirs(t, upper, "moved")
	must(t, unix.Lsetxattr(filepath.Join(upper, "moved"), "trusted.overlay.redirect", []byte("/orig"), 0))
	if err := WriteDiff(io.Discard, upper); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("WriteDiff = %v", err)
	}
}

// checkWhiteoutsFirst checks that in each directory the whiteouts come
// before the other entries, as the layer spec recommends.
func checkWhiteoutsFirst(t *testing.T, names []string) {
	t.Helper()
	nonWhiteout := map[string]string{} // directory -> first other entry
	for _, n := range names {
		dir, base := filepath.Split(strings.TrimSuffix(n, "/"))
		if strings.HasPrefix(base, ".wh.") {
			if other, ok := nonWhiteout[dir]; ok {
				t.Errorf("whiteout %s comes after %s", n, other)
			}
		} else if _, ok := nonWhiteout[dir]; !ok {
			nonWhiteout[dir] = n
		}
	}
}
