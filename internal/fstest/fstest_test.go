package fstest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/mountinfo"
)

// recorder collects the errors a helper reports, so that a test can check
// that a comparison fails when it should (a helper that never fails would
// let every test using it pass).
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestTarRoundTripAndPadding(t *testing.T) {
	entries := []Entry{Dir("d/", 0o755), File("d/f", 0o644, "body"), Symlink("l", "d/f"), Hardlink("h", "d/f"), Fifo("p", 0o600)}
	plain := Tar(t, 0, entries...)
	if got, want := TarNames(t, plain), []string{"d/", "d/f", "l", "h", "p"}; !slices.Equal(got, want) {
		t.Errorf("names %q, want %q", got, want)
	}
	padded := Tar(t, 10240, entries...)
	if len(padded)%10240 != 0 || len(padded) < len(plain) {
		t.Errorf("padded to %d bytes (unpadded %d)", len(padded), len(plain))
	}
	if got := TarNames(t, padded); len(got) != len(entries) {
		t.Errorf("padded tar reads back as %q", got)
	}
}

func TestSnapshotOptionsAndCompare(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, time.Unix(1_600_000_000, 5), time.Unix(1_600_000_000, 5)); err != nil {
		t.Fatal(err)
	}

	none := Snapshot(t, dir, SnapshotOptions{})
	if s := none["f"]; s.Mtime != (unix.Timespec{}) || s.Mode != 0o640 || s.Size != 3 || s.Content == "" {
		t.Errorf("plain snapshot %+v", s)
	}
	if s := Snapshot(t, dir, SnapshotOptions{Mtime: MtimeSeconds})["f"]; s.Mtime != (unix.Timespec{Sec: 1_600_000_000}) {
		t.Errorf("seconds snapshot mtime %+v", s.Mtime)
	}
	exact := Snapshot(t, dir, SnapshotOptions{Mtime: MtimeExact})
	if s := exact["f"]; s.Mtime != (unix.Timespec{Sec: 1_600_000_000, Nsec: 5}) {
		t.Errorf("exact snapshot mtime %+v", s.Mtime)
	}

	// Same size, other content; then a new entry: each must be reported.
	if err := os.WriteFile(p, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "g"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	CompareTrees(r, "after", Snapshot(t, dir, SnapshotOptions{}), none)
	if len(r.errs) != 2 || !strings.HasPrefix(r.errs[0], "after: f differs") || !strings.HasPrefix(r.errs[1], "after: g: unexpected") {
		t.Errorf("CompareTrees reported %q", r.errs)
	}
	r = &recorder{TB: t}
	CompareTrees(r, "", none, Snapshot(t, dir, SnapshotOptions{}))
	if len(r.errs) != 2 || !strings.HasPrefix(r.errs[1], "g: missing") {
		t.Errorf("CompareTrees reported %q", r.errs)
	}
}

func TestXattrsSkip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(p, "user.b", []byte("2"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	if err := unix.Lsetxattr(p, "user.a", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if got := Xattrs(t, p, nil); got != "user.a=1;user.b=2" {
		t.Errorf("Xattrs = %q", got)
	}
	if got := Xattrs(t, p, func(n string) bool { return n == "user.a" }); got != "user.b=2" {
		t.Errorf("Xattrs skipping user.a = %q", got)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:            "/plain",
		`/with\040space`:    "/with space",
		`/tab\011and\134bs`: "/tab\tand\\bs",
		`/trailing\04`:      `/trailing\04`, // too short to be an escape
	} {
		if got := mountinfo.Unescape(in); got != want {
			t.Errorf("mountinfo.Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCleanupMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	mp := filepath.Join(dir, "a b") // mountinfo escapes the space
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Run("inner", func(t *testing.T) {
		CleanupMounts(t, dir)
		if err := unix.Mount("tmpfs", mp, "tmpfs", 0, ""); err != nil {
			t.Skipf("cannot mount tmpfs: %v", err)
		}
		if got := MountPoints(t, dir); !slices.Equal(got, []string{mp}) {
			t.Errorf("MountPoints = %q, want [%q]", got, mp)
		}
	})
	if got := MountPoints(t, dir); len(got) != 0 {
		t.Errorf("left mounted: %q", got)
	}
	Unmount(t, mp) // nothing mounted any more: not an error
}
