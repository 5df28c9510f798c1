package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hullproject/hull/internal/fstest"
	"golang.org/x/sys/unix"
)

func TestApplyRejectsDotDot(t *testing.T) {
	for _, name := range []string{"../x", "a/../../x", "..", "./../x"} {
		t.Run(name, func(t *testing.T) {
			parent, root := layerDirs(t)
			err := applyTar(root, mkTar(t, reg("ok", "fine"), reg(name, "pwned")), WhiteoutOverlay)
			if !errors.Is(err, ErrEscape) {
				t.Fatalf("Apply = %v, want ErrEscape", err)
			}
			if !strings.Contains(err.Error(), "unpack "+name+": path escapes the layer") {
				t.Errorf("error %q does not name the entry", err)
			}
			assertOnly(t, parent, "root")
		})
	}
}

func TestApplyDotDotInsideIsCleaned(t *testing.T) {
	_, root := layerDirs(t)
	if err := applyTar(root, mkTar(t, reg("a/../b", "x"), reg("./c", "y")), WhiteoutOverlay); err != nil {
		t.Fatal(err)
	}
	if fstest.ReadFile(t, filepath.Join(root, "b")) != "x" || fstest.ReadFile(t, filepath.Join(root, "c")) != "y" {
		t.Fatal("cleaned names not unpacked where expected")
	}
}

func TestApplyAbsoluteNamesAreContained(t *testing.T) {
	parent, root := layerDirs(t)
	before := fstest.ReadFile(t, "/etc/passwd")
	data := mkTar(t, reg("/etc/passwd", "root:x:0:0::/root:/bin/sh\n"), reg("/../../escaped", "z"), reg("//double", "d"))
	if err := applyTar(root, data, WhiteoutOverlay); err != nil {
		t.Fatal(err)
	}
	if got := fstest.ReadFile(t, filepath.Join(root, "etc/passwd")); got != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("root/etc/passwd = %q", got)
	}
	if fstest.ReadFile(t, filepath.Join(root, "escaped")) != "z" || fstest.ReadFile(t, filepath.Join(root, "double")) != "d" {
		t.Error("absolute names not taken relative to the root")
	}
	if fstest.ReadFile(t, "/etc/passwd") != before {
		t.Fatal("host /etc/passwd changed")
	}
	assertOnly(t, parent, "root")
}

func TestApplySymlinkParentsStayInside(t *testing.T) {
	cases := []struct {
		name   string
		target func(parent string) string
		inside string // where the file lands if it is written, relative to root
	}{
		{"to-slash", func(string) string { return "/" }, "pwned"},
		{"dotdot", func(string) string { return "../.." }, "pwned"},
		{"dotdot-deep", func(string) string { return "../../../../../../.." }, "pwned"},
		{"absolute-outside", func(p string) string { return filepath.Join(p, "outside") }, ""},
		{"relative-outside", func(string) string { return "../outside" }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			requireRoot(t)
			parent, root := layerDirs(t)
			outside := filepath.Join(parent, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			data := mkTar(t, fstest.Symlink("link", c.target(parent)), reg("link/pwned", "x"), reg("link/etc/passwd", "y"))
			err := applyTar(root, data, WhiteoutOverlay)
			t.Logf("Apply: %v", err)
			if fstest.Exists(filepath.Join(outside, "pwned")) || fstest.Exists(filepath.Join(parent, "pwned")) || fstest.Exists(filepath.Join(parent, "etc")) {
				t.Fatal("wrote through a symlink to outside the layer")
			}
			if des, _ := os.ReadDir(outside); len(des) != 0 {
				t.Fatalf("outside dir got %d entries", len(des))
			}
			if c.inside != "" {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if fstest.ReadFile(t, filepath.Join(root, c.inside)) != "x" || fstest.ReadFile(t, filepath.Join(root, "etc/passwd")) != "y" {
					t.Fatal("files through the re-rooted symlink not written inside the layer")
				}
			}
			assertOnly(t, parent, "root", "outside")
		})
	}
}

func TestApplyDoesNotWriteThroughFinalSymlink(t *testing.T) {
	parent, root := layerDirs(t)
	victim := filepath.Join(parent, "victim")
	writeFile(t, victim, "original", 0o644)
	victimDir := filepath.Join(parent, "victimdir")
	if err := os.Mkdir(victimDir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := mkTar(t,
		fstest.Symlink("f", victim), reg("f", "replaced"),
		fstest.Symlink("d", victimDir), dirEnt("d/"), reg("d/inside", "i"),
		fstest.Symlink("n", victim), ent{Hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "n", Mode: 0o600}},
	)
	if err := applyTar(root, data, WhiteoutOverlay); err != nil {
		t.Fatal(err)
	}
	if fstest.ReadFile(t, victim) != "original" {
		t.Fatal("regular file entry wrote through an existing symlink")
	}
	if fstest.Exists(filepath.Join(victimDir, "inside")) {
		t.Fatal("directory entry followed an existing symlink")
	}
	if st := lstat(t, filepath.Join(root, "f")); st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("f is not a regular file: %o", st.Mode)
	}
	if st := lstat(t, filepath.Join(root, "d")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Errorf("d is not a directory: %o", st.Mode)
	}
	if fstest.ReadFile(t, filepath.Join(root, "d/inside")) != "i" {
		t.Error("d/inside not written")
	}
}

func TestApplyHardlinkEscapes(t *testing.T) {
	cases := []struct {
		name    string
		entries func(parent string) []ent
	}{
		{"dotdot", func(string) []ent { return []ent{fstest.Hardlink("h", "../outside/secret")} }},
		{"dotdot-deep", func(string) []ent { return []ent{fstest.Hardlink("h", "../../outside/secret")} }},
		{"through-absolute-symlink", func(p string) []ent {
			return []ent{fstest.Symlink("esc", filepath.Join(p, "outside")), fstest.Hardlink("h", "esc/secret")}
		}},
		{"through-dotdot-symlink", func(string) []ent {
			return []ent{fstest.Symlink("esc", "../outside"), fstest.Hardlink("h", "esc/secret")}
		}},
		{"through-nested-symlink", func(string) []ent {
			return []ent{dirEnt("a/"), fstest.Symlink("a/up", "../.."), fstest.Hardlink("h", "a/up/outside/secret")}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent, root := layerDirs(t)
			secret := filepath.Join(parent, "outside", "secret")
			writeFile(t, secret, "secret", 0o600)
			err := applyTar(root, mkTar(t, c.entries(parent)...), WhiteoutOverlay)
			if err == nil {
				t.Fatal("hardlink to a file outside the layer was accepted")
			}
			if !errors.Is(err, ErrEscape) {
				t.Errorf("error %v does not wrap ErrEscape", err)
			}
			if fstest.Exists(filepath.Join(root, "h")) {
				t.Error("link created")
			}
			if st := lstat(t, secret); st.Nlink != 1 {
				t.Errorf("outside file has %d links", st.Nlink)
			}
		})
	}
}

func TestApplyHardlinksAndSymlinks(t *testing.T) {
	requireRoot(t)
	_, root := layerDirs(t)
	data := mkTar(t,
		dirEnt("d/"),
		reg("d/f", "content"),
		fstest.Hardlink("d/h", "d/f"),
		fstest.Hardlink("abs", "/d/f"),
		fstest.Symlink("d/s", "f"),
		fstest.Hardlink("hs", "d/s"),
		fstest.Symlink("dangling", "/nowhere/at/all"),
		fstest.Symlink("up", "../../../etc"),
		ent{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "owned-link", Linkname: "d", Uid: 1234, Gid: 5678, ModTime: time.Unix(1_500_000_000, 7)}},
	)
	if err := applyTar(root, data, WhiteoutOverlay); err != nil {
		t.Fatal(err)
	}
	f := lstat(t, filepath.Join(root, "d/f"))
	for _, n := range []string{"d/h", "abs"} {
		if st := lstat(t, filepath.Join(root, n)); st.Ino != f.Ino {
			t.Errorf("%s is not a hardlink of d/f", n)
		}
	}
	if f.Nlink != 3 {
		t.Errorf("d/f has %d links, want 3", f.Nlink)
	}
	s := lstat(t, filepath.Join(root, "d/s"))
	hs := lstat(t, filepath.Join(root, "hs"))
	if hs.Mode&unix.S_IFMT != unix.S_IFLNK || hs.Ino != s.Ino {
		t.Error("hardlink to a symlink did not link the symlink itself")
	}
	for name, want := range map[string]string{"d/s": "f", "dangling": "/nowhere/at/all", "up": "../../../etc"} {
		if got, err := os.Readlink(filepath.Join(root, name)); err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", name, got, err, want)
		}
	}
	ol := lstat(t, filepath.Join(root, "owned-link"))
	if ol.Uid != 1234 || ol.Gid != 5678 {
		t.Errorf("symlink owner %d:%d", ol.Uid, ol.Gid)
	}
	if ol.Mtim.Sec != 1_500_000_000 {
		t.Errorf("symlink mtime %d", ol.Mtim.Sec)
	}
	if st := lstat(t, filepath.Join(root, "d")); st.Uid != 0 {
		t.Error("symlink chown followed the link")
	}
}

func TestApplyDevicesAndFifo(t *testing.T) {
	requireRoot(t)
	_, root := layerDirs(t)
	data := mkTar(t,
		ent{Hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		ent{Hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop9", Mode: 0o660, Devmajor: 7, Devminor: 9, Gid: 6}},
		ent{Hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620}},
	)
	if err := applyTar(root, data, WhiteoutOverlay); err != nil {
		t.Fatal(err)
	}
	null := lstat(t, filepath.Join(root, "dev/null"))
	if null.Mode != unix.S_IFCHR|0o666 || unix.Major(null.Rdev) != 1 || unix.Minor(null.Rdev) != 3 {
		t.Errorf("dev/null mode %o rdev %d:%d", null.Mode, unix.Major(null.Rdev), unix.Minor(null.Rdev))
	}
	loop := lstat(t, filepath.Join(root, "dev/loop9"))
	if loop.Mode != unix.S_IFBLK|0o660 || unix.Major(loop.Rdev) != 7 || unix.Minor(loop.Rdev) != 9 || loop.Gid != 6 {
		t.Errorf("dev/loop9 mode %o rdev %d:%d gid %d", loop.Mode, unix.Major(loop.Rdev), unix.Minor(loop.Rdev), loop.Gid)
	}
	if fifo := lstat(t, filepath.Join(root, "run/fifo")); fifo.Mode != unix.S_IFIFO|0o620 {
		t.Errorf("fifo mode %o", fifo.Mode)
	}
}

func TestApplyXattrs(t *testing.T) {
	_, root := layerDirs(t)
	if !userXattrs(t, root) {
		t.Skip("filesystem of the test directory lacks user xattrs")
	}
	h := reg("f", "x")
	h.Hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.user.foo":               "bar",
		"SCHILY.xattr.user.bin":               "\x00\x01\xff",
		"SCHILY.xattr.trusted.overlay.opaque": "y", // never taken from a tar
	}
	d := dirEnt("d/")
	d.Hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.dir": "yes"}
	s := fstest.Symlink("s", "f")
	// The kernel refuses user xattrs on symlinks: ignored, not fatal.
	s.Hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.foo": "bar"}
	if err := applyTar(root, mkTar(t, h, d, s), WhiteoutOverlay); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for _, c := range []struct{ path, name, want string }{
		{"f", "user.foo", "bar"},
		{"f", "user.bin", "\x00\x01\xff"},
		{"d", "user.dir", "yes"},
	} {
		n, err := unix.Lgetxattr(filepath.Join(root, c.path), c.name, buf)
		if err != nil || string(buf[:n]) != c.want {
			t.Errorf("%s %s = %q, %v; want %q", c.path, c.name, buf[:max(n, 0)], err, c.want)
		}
	}
	if _, err := unix.Lgetxattr(filepath.Join(root, "f"), "trusted.overlay.opaque", buf); err == nil {
		t.Error("trusted.overlay.* xattr taken from the tar")
	}
}

func TestApplyOwnersModesTimes(t *testing.T) {
	requireRoot(t)
	_, root := layerDirs(t)
	mtime := time.Unix(1_234_567_890, 123456789)
	atime := time.Unix(1_111_111_111, 5)
	suid := reg("bin/su", "#!/bin/sh\n")
	suid.Hdr.Mode, suid.Hdr.Uid, suid.Hdr.Gid = 0o4755, 1234, 5678
	suid.Hdr.ModTime, suid.Hdr.AccessTime, suid.Hdr.Format = mtime, atime, tar.FormatPAX
	sgid := dirEnt("shared/")
	sgid.Hdr.Mode, sgid.Hdr.Uid, sgid.Hdr.Gid, sgid.Hdr.ModTime, sgid.Hdr.Format = 0o2775, 1234, 5678, mtime, tar.FormatPAX
	tmp := dirEnt("tmp/")
	tmp.Hdr.Mode = 0o1777
	ro := dirEnt("ro/")
	ro.Hdr.Mode, ro.Hdr.ModTime = 0o555, time.Unix(1_000_000_000, 0)
	data := mkTar(t,
		suid, sgid, tmp, ro,
		// Children written after their directory's entry: the directory
		// times must still be the entry's.
		reg("shared/child", "c"),
		reg("ro/file", "r"),
	)
	if err := applyTar(root, data, WhiteoutOverlay); err != nil {
		t.Fatal(err)
	}
	st := lstat(t, filepath.Join(root, "bin/su"))
	if st.Mode&0o7777 != 0o4755 || st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("bin/su mode %o owner %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if st.Mtim.Sec != mtime.Unix() || st.Mtim.Nsec != 123456789 {
		t.Errorf("bin/su mtime %d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
	}
	if st.Atim.Sec != atime.Unix() || st.Atim.Nsec != 5 {
		t.Errorf("bin/su atime %d.%09d", st.Atim.Sec, st.Atim.Nsec)
	}
	sh := lstat(t, filepath.Join(root, "shared"))
	if sh.Mode&0o7777 != 0o2775 || sh.Uid != 1234 || sh.Gid != 5678 {
		t.Errorf("shared mode %o owner %d:%d", sh.Mode&0o7777, sh.Uid, sh.Gid)
	}
	if sh.Mtim.Sec != mtime.Unix() || sh.Mtim.Nsec != 123456789 {
		t.Errorf("shared mtime %d.%09d (children changed it after it was set?)", sh.Mtim.Sec, sh.Mtim.Nsec)
	}
	if m := lstat(t, filepath.Join(root, "tmp")).Mode & 0o7777; m != 0o1777 {
		t.Errorf("tmp mode %o", m)
	}
	r := lstat(t, filepath.Join(root, "ro"))
	if r.Mode&0o7777 != 0o555 || r.Mtim.Sec != 1_000_000_000 {
		t.Errorf("ro mode %o mtime %d", r.Mode&0o7777, r.Mtim.Sec)
	}
	if fstest.ReadFile(t, filepath.Join(root, "ro/file")) != "r" {
		t.Error("file in read-only directory not written")
	}
}

func TestApplyNoLchown(t *testing.T) {
	_, root := layerDirs(t)
	f := reg("f", "x")
	f.Hdr.Uid, f.Hdr.Gid = 4242, 4242
	if _, err := Apply(root, bytes.NewReader(mkTar(t, f)), ApplyOptions{NoLchown: true}); err != nil {
		t.Fatal(err)
	}
	if st := lstat(t, filepath.Join(root, "f")); int(st.Uid) != os.Geteuid() {
		t.Errorf("owner %d with NoLchown", st.Uid)
	}
}

func TestApplyReplacing(t *testing.T) {
	_, root := layerDirs(t)
	keep := dirEnt("keep/")
	keep.Hdr.Mode = 0o700
	data := mkTar(t,
		dirEnt("keep/"), reg("keep/child", "c"),
		keep, // directory over directory: kept, metadata updated
		dirEnt("gone/"), reg("gone/a/b", "x"),
		reg("gone", "now a file"), // non-directory over a directory tree
		reg("f", "first"), reg("f", "second"),
		reg("l", "file"), fstest.Symlink("l", "f"),
		fstest.Symlink("s", "f"), dirEnt("s/"),
	)
	if err := applyTar(root, data, WhiteoutOverlay); err != nil {
		t.Fatal(err)
	}
	if fstest.ReadFile(t, filepath.Join(root, "keep/child")) != "c" {
		t.Error("directory entry over a directory lost its content")
	}
	if m := lstat(t, filepath.Join(root, "keep")).Mode & 0o7777; m != 0o700 {
		t.Errorf("keep mode %o", m)
	}
	if fstest.ReadFile(t, filepath.Join(root, "gone")) != "now a file" {
		t.Error("file did not replace directory")
	}
	if fstest.ReadFile(t, filepath.Join(root, "f")) != "second" {
		t.Error("file did not replace file")
	}
	if tgt, _ := os.Readlink(filepath.Join(root, "l")); tgt != "f" {
		t.Error("symlink did not replace file")
	}
	if st := lstat(t, filepath.Join(root, "s")); st.Mode&unix.S_IFMT != unix.S_IFDIR {
		t.Error("directory did not replace symlink")
	}
}

// The parent directory cache must notice entries that replace a cached
// directory.
func TestApplyParentCacheInvalidation(t *testing.T) {
	_, root := layerDirs(t)
	data := mkTar(t,
		dirEnt("a/"), dirEnt("a/sub/"), reg("a/sub/x", "1"),
		dirEnt("b/"),
		fstest.Symlink("a", "b"), // replaces the cached directory a
		reg("a/y", "2"),          // now lands in b
		reg("b/z", "3"),
		dirEnt("c/"), reg("c/1", "1"),
		reg("c", "file"), // replaces the cached c
		dirEnt("c/"), reg("c/2", "2"),
	)
	if err := applyTar(root, data, WhiteoutOverlay); err != nil {
		t.Fatal(err)
	}
	if fstest.ReadFile(t, filepath.Join(root, "b/y")) != "2" {
		t.Error("a/y not written through the new symlink a -> b")
	}
	if fstest.Exists(filepath.Join(root, "b/sub")) {
		t.Error("old a content leaked into b")
	}
	if fstest.Exists(filepath.Join(root, "c/1")) || fstest.ReadFile(t, filepath.Join(root, "c/2")) != "2" {
		t.Error("c not recreated properly")
	}
}

func TestApplyWhiteoutsOverlay(t *testing.T) {
	requireRoot(t)
	_, root := layerDirs(t)
	data := mkTar(t,
		dirEnt("a/"),
		reg("a/.wh.b", ""),
		reg(".wh.c", ""),
		dirEnt("d/"),
		reg("d/before", "1"),
		reg("d/.wh..wh..opq", ""),
		reg("d/after", "2"),
		reg("e/.wh..wh..opq", ""), // directory not declared: created
		dirEnt(".wh..wh.plnk/"),   // aufs metadata: ignored
		reg("k/.wh.keep", ""),     // whiteout of an entry of this same layer
		reg("k/keep", "kept"),
		dirEnt("w/"), reg("w/x", "x"), reg(".wh.w", ""), // dir of this layer whited out: kept, opaque
		reg(".wh.r", ""), dirEnt("r/"), reg("r/new", "n"), // whiteout then directory: opaque
	)
	if err := applyTar(root, data, WhiteoutOverlay); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a/b", "c"} {
		st := lstat(t, filepath.Join(root, n))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s: mode %o rdev %d, want 0:0 char device", n, st.Mode, st.Rdev)
		}
	}
	buf := make([]byte, 8)
	for _, n := range []string{"d", "e", "w", "r"} {
		sz, err := unix.Lgetxattr(filepath.Join(root, n), "trusted.overlay.opaque", buf)
		if err != nil || string(buf[:sz]) != "y" {
			t.Errorf("%s: trusted.overlay.opaque = %q, %v", n, buf[:max(sz, 0)], err)
		}
	}
	if _, err := unix.Lgetxattr(filepath.Join(root, "a"), "trusted.overlay.opaque", buf); err == nil {
		t.Error("a marked opaque")
	}
	for _, n := range []string{"d/before", "d/after", "k/keep", "w/x", "r/new"} {
		if st := lstat(t, filepath.Join(root, n)); st.Mode&unix.S_IFMT != unix.S_IFREG {
			t.Errorf("%s not kept as a file", n)
		}
	}
	if fstest.Exists(filepath.Join(root, ".wh..wh.plnk")) || fstest.Exists(filepath.Join(root, "a/.wh.b")) {
		t.Error("whiteout entries written as files")
	}
}

func TestApplyWhiteoutsDelete(t *testing.T) {
	_, root := layerDirs(t)
	// The union of lower layers.
	for _, p := range []string{"a/b", "a/b2", "c/deep/file", "d/old1", "d/old2/sub/file", "d/keepdir/old", "e/x", "f/lower"} {
		writeFile(t, filepath.Join(root, p), p, 0o644)
	}
	if err := os.Symlink("/etc", filepath.Join(root, "lnk")); err != nil {
		t.Fatal(err)
	}
	data := mkTar(t,
		reg("a/.wh.b", ""),
		reg(".wh.c", ""),
		reg(".wh.lnk", ""), // removes the symlink, not its target
		reg("d/new1", "1"),
		dirEnt("d/keepdir/"),
		reg("d/keepdir/new", "n"),
		reg("d/.wh..wh..opq", ""),
		reg("d/new2", "2"),
		reg("a/.wh.nonexistent", ""),
		reg("nodir/.wh.x", ""),
		reg("nodir2/.wh..wh..opq", ""),
		reg("f/mine", "m"),
		reg(".wh.f", ""), // lower f goes, this layer's f/mine stays
	)
	if err := applyTar(root, data, WhiteoutDelete); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"a/b": false, "a/b2": true, "c": false, "lnk": false,
		"d/old1": false, "d/old2": false, "d/keepdir/old": false,
		"d/new1": true, "d/new2": true, "d/keepdir/new": true,
		"e/x": true, "nodir": false, "nodir2": false,
		"f/lower": false, "f/mine": true,
	}
	for p, w := range want {
		if fstest.Exists(filepath.Join(root, p)) != w {
			t.Errorf("%s exists = %v, want %v", p, !w, w)
		}
	}
	if !fstest.Exists("/etc/passwd") {
		t.Fatal("whiteout of a symlink followed it")
	}
}

// TestApplyWhiteoutsNone: a plain tar (cp -) gives ".wh." names no
// meaning: they are files like any other, and nothing is removed.
func TestApplyWhiteoutsNone(t *testing.T) {
	_, root := layerDirs(t)
	writeFile(t, filepath.Join(root, "a/b"), "old", 0o644)
	data := mkTar(t,
		reg("a/.wh.b", "plain"),
		reg("d/.wh..wh..opq", "also plain"),
		reg("a/c", "new"),
	)
	if err := applyTar(root, data, WhiteoutNone); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"a/b": "old", "a/.wh.b": "plain", "d/.wh..wh..opq": "also plain", "a/c": "new"} {
		raw, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || string(raw) != want {
			t.Errorf("%s: %q %v, want %q", p, raw, err, want)
		}
	}
}

func TestApplyTruncated(t *testing.T) {
	full := mkTar(t, reg("a", strings.Repeat("x", 2000)), reg("b", "y"))
	for _, cut := range []int{100, 512 + 700, 512 + 2048 + 100} {
		_, root := layerDirs(t)
		_, err := Apply(root, bytes.NewReader(full[:cut]), ApplyOptions{})
		if err == nil {
			t.Fatalf("cut at %d: no error", cut)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.HasPrefix(err.Error(), "unpack layer: truncated tar: ") {
			t.Errorf("cut at %d: error %q", cut, err)
		}
	}
}

func TestApplyCorruptHeader(t *testing.T) {
	data := mkTar(t, reg("a", "x"))
	data[148] ^= 0xff // checksum field
	_, root := layerDirs(t)
	if _, err := Apply(root, bytes.NewReader(data), ApplyOptions{}); err == nil {
		t.Fatal("corrupt header accepted")
	}
}

func TestApplyEntryTypes(t *testing.T) {
	_, root := layerDirs(t)
	data := mkTar(t,
		ent{Hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "global", PAXRecords: map[string]string{"comment": "hi"}}},
		reg("a", "x"),
	)
	if err := applyTar(root, data, WhiteoutOverlay); err != nil {
		t.Fatalf("global header: %v", err)
	}
	bad := mkTar(t, ent{Hdr: tar.Header{Typeflag: 'Z', Name: "weird", Mode: 0o644}})
	if err := applyTar(root, bad, WhiteoutOverlay); err == nil || !strings.Contains(err.Error(), "unsupported") {
		t.Fatalf("unknown type: %v", err)
	}
	nonDirRoot := mkTar(t, reg(".", ""))
	if err := applyTar(root, nonDirRoot, WhiteoutOverlay); err == nil {
		t.Fatal("file entry for the root accepted")
	}
	dirRoot := mkTar(t, dirEnt("./"), dirEnt("/"))
	if err := applyTar(root, dirRoot, WhiteoutOverlay); err != nil {
		t.Fatalf("root directory entry: %v", err)
	}
}

func TestApplySizeIncludesPadding(t *testing.T) {
	data := mkTar(t, reg("a", "hello"), dirEnt("d/"), reg("d/b", strings.Repeat("z", 10000)))
	// Writers pad to a record size (GNU tar: 10240 bytes).
	padded := append(bytes.Clone(data), make([]byte, 20480-len(data)%20480)...)
	for _, stream := range [][]byte{data, padded} {
		_, root := layerDirs(t)
		n, err := Apply(root, bytes.NewReader(stream), ApplyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(stream)) {
			t.Errorf("Apply returned %d, stream is %d bytes", n, len(stream))
		}
	}
	_, root := layerDirs(t)
	if n, err := Apply(root, bytes.NewReader(nil), ApplyOptions{}); err != nil || n != 0 {
		t.Errorf("empty stream: %d, %v", n, err)
	}
}

func TestApplyErrors(t *testing.T) {
	if _, err := Apply(filepath.Join(t.TempDir(), "missing"), bytes.NewReader(nil), ApplyOptions{}); err == nil {
		t.Error("missing directory accepted")
	}
	if _, err := Apply(t.TempDir(), bytes.NewReader(nil), ApplyOptions{Whiteouts: 7}); err == nil {
		t.Error("unknown whiteout mode accepted")
	}
	_, root := layerDirs(t)
	// A parent that is a file.
	err := applyTar(root, mkTar(t, reg("f", "x"), reg("f/g", "y")), WhiteoutOverlay)
	if err == nil || !strings.Contains(err.Error(), "unpack f/g") {
		t.Errorf("file as parent: %v", err)
	}
}

// Privileged xattrs, set on nodes that cannot be opened (through the
// parent's /proc/self/fd link), and a file capability, which chown would
// clear if it were set before the owner.
func TestApplyPrivilegedXattrs(t *testing.T) {
	requireRoot(t)
	_, root := layerDirs(t)
	// VFS_CAP_REVISION_2, effective, permitted = CAP_NET_BIND_SERVICE.
	capability := "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	f := reg("bin/ping", "elf")
	f.Hdr.Uid, f.Hdr.Gid, f.Hdr.Mode = 1234, 5678, 0o4755
	f.Hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": capability, "SCHILY.xattr.trusted.f": "file"}
	s := fstest.Symlink("link", "bin/ping")
	s.Hdr.Uid = 1234
	s.Hdr.PAXRecords = map[string]string{"SCHILY.xattr.trusted.s": "symlink"}
	fifo := ent{Hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o600, PAXRecords: map[string]string{"SCHILY.xattr.trusted.p": "pipe"}}}
	if err := applyTar(root, mkTar(t, f, s, fifo), WhiteoutOverlay); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for _, c := range []struct{ path, name, want string }{
		{"bin/ping", "security.capability", capability},
		{"bin/ping", "trusted.f", "file"},
		{"link", "trusted.s", "symlink"},
		{"fifo", "trusted.p", "pipe"},
	} {
		n, err := unix.Lgetxattr(filepath.Join(root, c.path), c.name, buf)
		if err != nil || string(buf[:n]) != c.want {
			t.Errorf("%s %s = %q, %v; want %q", c.path, c.name, buf[:max(n, 0)], err, c.want)
		}
	}
	if _, err := unix.Lgetxattr(filepath.Join(root, "bin/ping"), "trusted.s", buf); err == nil {
		t.Error("symlink xattr landed on its target")
	}
	if st := lstat(t, filepath.Join(root, "bin/ping")); st.Mode&0o7777 != 0o4755 || st.Uid != 1234 {
		t.Errorf("bin/ping mode %o uid %d", st.Mode&0o7777, st.Uid)
	}
}

func openFds(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(des)
}

// The directory fd cache is released on success and on error.
func TestApplyNoFdLeak(t *testing.T) {
	good := mkTar(t, dirEnt("a/"), dirEnt("a/b/"), reg("a/b/c", "x"), fstest.Symlink("l", "a/b"), reg("l/d", "y"), reg("a/.wh.gone", ""))
	bad := mkTar(t, dirEnt("a/"), dirEnt("a/b/"), reg("a/b/c", "x"), reg("../escape", ""))
	before := openFds(t)
	for i := 0; i < 5; i++ {
		_, root := layerDirs(t)
		if err := applyTar(root, good, WhiteoutDelete); err != nil {
			t.Fatal(err)
		}
		if err := applyTar(root, bad, WhiteoutOverlay); err == nil {
			t.Fatal("escape accepted")
		}
	}
	if after := openFds(t); after > before {
		t.Errorf("%d fds open after Apply, %d before", after, before)
	}
}
