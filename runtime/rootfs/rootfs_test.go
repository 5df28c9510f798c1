package rootfs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	o := ParseOptions([]string{"rbind", "ro", "nosuid", "rslave", "mode=755", "tmpcopyup", "rw", "size=1m"})
	if !o.Bind || !o.Recursive {
		t.Errorf("rbind not recognised: %+v", o)
	}
	if o.Flags&unix.MS_RDONLY != 0 {
		t.Error("a later rw must clear ro")
	}
	if o.Flags&unix.MS_NOSUID == 0 {
		t.Error("nosuid lost")
	}
	if len(o.Propagation) != 1 || o.Propagation[0] != unix.MS_SLAVE|unix.MS_REC {
		t.Errorf("propagation %v", o.Propagation)
	}
	if o.Data != "mode=755,size=1m" {
		t.Errorf("data %q", o.Data)
	}
}

// Symlinks in the tree, relative or absolute, resolve inside it.
func TestInRootResolutionStaysInside(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink("../../../../"+filepath.Base(outside), filepath.Join(root, "up")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "abs")); err != nil {
		t.Fatal(err)
	}
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	for _, p := range []string{"/up/x/y", "abs/z", "/../../etc/hull-test"} {
		fd, err := MkdirAllInRoot(rfd, p, 0o755)
		if err != nil {
			t.Fatalf("MkdirAllInRoot(%s): %v", p, err)
		}
		unix.Close(fd)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 {
		t.Errorf("directories were created outside the root: %v", entries)
	}
	for _, want := range []string{filepath.Base(outside) + "/x/y", outside[1:] + "/z", "etc/hull-test"} {
		if fi, err := os.Stat(filepath.Join(root, want)); err != nil || !fi.IsDir() {
			t.Errorf("%s was not created inside the root: %v", want, err)
		}
	}
	fd, err := CreateFileInRoot(rfd, "/abs/file", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if _, err := os.Stat(filepath.Join(outside, "file")); err == nil {
		t.Error("CreateFileInRoot followed a symlink out of the root")
	}
	if _, err := OpenInRoot(rfd, "/proc/self/root", unix.O_PATH); err == nil {
		t.Error("a magic link was followed")
	}
}

func TestCheckNullDevice(t *testing.T) {
	fd, err := unix.Open("/dev/null", unix.O_PATH, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := CheckNullDevice(fd); err != nil {
		t.Errorf("the host's /dev/null rejected: %v", err)
	}
	zero, err := unix.Open("/dev/zero", unix.O_PATH, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(zero)
	if err := CheckNullDevice(zero); err == nil {
		t.Error("/dev/zero accepted as the null device")
	}
}
