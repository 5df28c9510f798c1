package archive

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hullproject/hull/internal/fstest"
	"golang.org/x/sys/unix"
)

// ent is one entry of a crafted tarball; the alias keeps the tests short.
type ent = fstest.Entry

// reg and dirEnt give the modes the tests expect unless they say otherwise.
func reg(name, body string) ent { return fstest.File(name, 0o644, body) }

func dirEnt(name string) ent { return fstest.Dir(name, 0o755) }

// mkTar builds an unpadded tar of entries, written verbatim (no name
// checks).
func mkTar(t testing.TB, entries ...ent) []byte {
	t.Helper()
	return fstest.Tar(t, 0, entries...)
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

// snapshotOptions are what the tree comparisons of this package look at:
// whole-second mtimes (all a layer carries) and xattrs, except overlayfs's
// own (a merged view hides them, its upper directory shows them) and SELinux
// labels (they depend on where a tree sits, not on what was unpacked).
var snapshotOptions = fstest.SnapshotOptions{
	Mtime:  fstest.MtimeSeconds,
	Xattrs: true,
	SkipXattr: func(name string) bool {
		return strings.HasPrefix(name, "trusted.overlay.") || name == "security.selinux"
	},
}

// snapshot describes every file below dir (not dir itself).
func snapshot(t testing.TB, dir string) map[string]fstest.FileState {
	t.Helper()
	return fstest.Snapshot(t, dir, snapshotOptions)
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

func mountOverlay(t *testing.T, lower, upper, work, merged string) {
	t.Helper()
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,redirect_dir=off,metacopy=off,index=off", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENODEV) {
			t.Skipf("cannot mount overlay: %v", err)
		}
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() { fstest.Unmount(t, merged) })
}
