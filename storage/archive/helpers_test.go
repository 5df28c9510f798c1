package archive

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
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one entry of a crafted tarball.
type ent struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1_600_000_000, 0)}, body: body}
}

func dirEnt(name string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: time.Unix(1_600_000_000, 0)}}
}

func symlinkEnt(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: time.Unix(1_600_000_000, 0)}}
}

func linkEnt(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: time.Unix(1_600_000_000, 0)}}
}

// mkTar builds a tar of entries, written verbatim (no name checks).
func mkTar(t testing.TB, entries ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("write header %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("write body %s: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func applyTar(dir string, data []byte, mode WhiteoutMode) error {
	_, err := Apply(dir, bytes.NewReader(data), ApplyOptions{Whiteouts: mode})
	return err
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// layerDirs returns a fresh layer directory inside a parent that tests use
// as "outside": nothing may ever appear there.
func layerDirs(t *testing.T) (parent, root string) {
	t.Helper()
	parent = t.TempDir()
	root = filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return parent, root
}

// assertOnly fails if parent holds anything besides the names given.
func assertOnly(t *testing.T, parent string, names ...string) {
	t.Helper()
	des, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if !slices.Contains(names, de.Name()) {
			t.Errorf("%s appeared outside the layer", filepath.Join(parent, de.Name()))
		}
	}
}

func lstat(t testing.TB, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return &st
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fileState is what the tree comparisons look at.
type fileState struct {
	Type     uint32
	Mode     uint32
	UID, GID uint32
	Size     int64 // regular files
	Mtime    int64 // seconds: layers carry whole seconds
	Target   string
	Rdev     uint64
	Xattrs   string
	Content  string // sha256 of regular files
}

// snapshot describes every file below dir (not dir itself).
func snapshot(t testing.TB, dir string) map[string]fileState {
	t.Helper()
	out := make(map[string]fileState)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
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
		s := fileState{
			Type:  st.Mode & unix.S_IFMT,
			Mode:  st.Mode & 0o7777,
			UID:   st.Uid,
			GID:   st.Gid,
			Mtime: st.Mtim.Sec,
			Rdev:  st.Rdev,
		}
		switch s.Type {
		case unix.S_IFREG:
			s.Size = st.Size
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			s.Content = hex.EncodeToString(sum[:])
		case unix.S_IFLNK:
			s.Mode = 0
			s.Target, err = os.Readlink(p)
			if err != nil {
				return err
			}
		}
		s.Xattrs = xattrString(t, p)
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

func xattrString(t testing.TB, p string) string {
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
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") || name == "security.selinux" {
			continue
		}
		v := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		parts = append(parts, name+"="+string(v[:vn]))
	}
	slices.Sort(parts)
	return strings.Join(parts, ";")
}

func compareTrees(t *testing.T, got, want map[string]fileState) {
	t.Helper()
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
			t.Errorf("%s: missing, want %+v", n, w)
		case !wok:
			t.Errorf("%s: unexpected %+v", n, g)
		case g != w:
			t.Errorf("%s:\n got %+v\nwant %+v", n, g, w)
		}
	}
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// copyTree copies src to dst with cp -a (an implementation independent of
// this package), keeping owners, modes, times, xattrs and hardlinks.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	run(t, "cp", "-a", "--preserve=all", src, dst)
}

func writeFile(t testing.TB, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// userXattrs reports whether dir's filesystem takes user.* xattrs.
func userXattrs(t testing.TB, dir string) bool {
	t.Helper()
	p := filepath.Join(dir, ".xattr-probe")
	writeFile(t, p, "", 0o644)
	defer os.Remove(p)
	err := unix.Lsetxattr(p, "user.probe", []byte("1"), 0)
	return err == nil
}

// tarNames lists the entry names of a tar.
func tarNames(t testing.TB, data []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("read back tar: %v", err)
		}
		names = append(names, h.Name)
	}
}

func mountOverlay(t *testing.T, lower, upper, work, merged string) {
	t.Helper()
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,redirect_dir=off,metacopy=off,index=off", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENODEV) {
			t.Skipf("cannot mount overlay: %v", err)
		}
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() { unmount(t, merged) })
}

func unmount(t testing.TB, p string) {
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		t.Errorf("unmount %s: %v", p, err)
	}
}
