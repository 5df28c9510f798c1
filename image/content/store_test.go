package content

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

func openStore(t *testing.T, root string) *Store {
	t.Helper()
	s, err := Open(root)
	if err != nil {
		t.Fatalf("Open(%s): %v", root, err)
	}
	return s
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// dirNames lists a directory, failing the test if it cannot be read.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// assertEmpty fails when blobs/sha256 or ingest hold anything.
func assertEmpty(t *testing.T, s *Store) {
	t.Helper()
	for _, d := range []string{filepath.Join("blobs", "sha256"), "ingest"} {
		if names := dirNames(t, filepath.Join(s.Root(), d)); len(names) != 0 {
			t.Errorf("%s holds %v, want nothing", d, names)
		}
	}
	// Nothing besides the two directories may appear under blobs/.
	if names := dirNames(t, filepath.Join(s.Root(), "blobs")); len(names) != 1 || names[0] != "sha256" {
		t.Errorf("blobs/ holds %v, want only sha256", names)
	}
}

// onlyReader hides WriterTo/other interfaces so io.Copy goes through the
// Writer's ReadFrom.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestPutStoresVerifiedReadOnlyBlob(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := randomBytes(t, 3<<20+17) // several ReadFrom chunks
	want := digest.FromBytes(data)

	for name, r := range map[string]io.Reader{
		"WriterTo": bytes.NewReader(data),
		"ReadFrom": onlyReader{bytes.NewReader(data)},
	} {
		t.Run(name, func(t *testing.T) {
			d, n, err := s.Put(want, int64(len(data)), r)
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if d != want || n != int64(len(data)) {
				t.Fatalf("Put = %s, %d; want %s, %d", d, n, want, len(data))
			}
			p := filepath.Join(s.Root(), "blobs", "sha256", want.Encoded())
			if got, err := s.Path(want); err != nil || got != p {
				t.Fatalf("Path = %q, %v; want %q", got, err, p)
			}
			st, err := os.Lstat(p)
			if err != nil {
				t.Fatalf("blob file: %v", err)
			}
			if !st.Mode().IsRegular() || st.Mode().Perm() != 0o444 {
				t.Errorf("blob mode %v, want regular -r--r--r--", st.Mode())
			}
			if st.Size() != int64(len(data)) {
				t.Errorf("blob size %d, want %d", st.Size(), len(data))
			}
			if err := s.Verify(want); err != nil {
				t.Errorf("Verify: %v", err)
			}
			got, err := s.ReadAll(want)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("ReadAll: %v, equal=%v", err, bytes.Equal(got, data))
			}
			if size, err := s.Size(want); err != nil || size != int64(len(data)) {
				t.Errorf("Size = %d, %v", size, err)
			}
			if !s.Has(want) {
				t.Error("Has = false")
			}
			if names := dirNames(t, filepath.Join(s.Root(), "ingest")); len(names) != 0 {
				t.Errorf("ingest holds %v after a commit", names)
			}
		})
	}
}

func TestPutUnknownDigestAndSize(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := []byte("no digest known in advance")
	d, n, err := s.Put("", -1, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if d != digest.FromBytes(data) || n != int64(len(data)) {
		t.Fatalf("Put = %s, %d", d, n)
	}
	if err := s.Verify(d); err != nil {
		t.Fatal(err)
	}
	// PutBytes of the same content is a no-op returning the same digest.
	d2, err := s.PutBytes(data)
	if err != nil || d2 != d {
		t.Fatalf("PutBytes = %s, %v", d2, err)
	}
}

func TestPutMismatchLeavesNothing(t *testing.T) {
	data := []byte("the real content of the blob")
	right := digest.FromBytes(data)
	wrong := digest.FromString("something else")
	cases := []struct {
		name     string
		expected digest.Digest
		size     int64
		errHas   string
	}{
		{"wrong digest", wrong, int64(len(data)), "digest mismatch"},
		{"wrong digest unknown size", wrong, -1, "digest mismatch"},
		{"size too small", right, int64(len(data)) - 1, "size"},
		{"size too large", right, int64(len(data)) + 1, "size"},
		{"size wrong without digest", "", 1, "size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openStore(t, t.TempDir())
			d, n, err := s.Put(c.expected, c.size, bytes.NewReader(data))
			if err == nil {
				t.Fatalf("Put succeeded: %s, %d", d, n)
			}
			if !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("error %q does not mention %q", err, c.errHas)
			}
			if d != "" || n != 0 {
				t.Errorf("failed Put returned %q, %d", d, n)
			}
			assertEmpty(t, s)
			if s.Has(right) || s.Has(wrong) {
				t.Error("a failed Put left a blob behind")
			}
		})
	}
}

func TestPutRejectsBadExpectedDigest(t *testing.T) {
	s := openStore(t, t.TempDir())
	for _, d := range []digest.Digest{"sha256:xyz", "md5:d41d8cd98f00b204e9800998ecf8427e"} {
		if _, _, err := s.Put(d, -1, strings.NewReader("x")); err == nil {
			t.Errorf("Put with expected %q succeeded", d)
		}
	}
	assertEmpty(t, s)
}

// mountTmpfs mounts a small tmpfs at a fresh directory and unmounts it when
// the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	// Registered after t.TempDir's own cleanup, so it runs before the
	// directory is removed.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

func TestPutDiskFull(t *testing.T) {
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := digest.FromBytes(data)
	for name, mk := range map[string]func() io.Reader{
		"WriterTo": func() io.Reader { return bytes.NewReader(data) },
		"ReadFrom": func() io.Reader { return onlyReader{bytes.NewReader(data)} },
	} {
		t.Run(name, func(t *testing.T) {
			s := openStore(t, mountTmpfs(t, "64k"))
			for _, exp := range []digest.Digest{want, ""} {
				_, _, err := s.Put(exp, int64(len(data)), mk())
				if err == nil {
					t.Fatal("Put of 1 MB into a 64 kB filesystem succeeded")
				}
				if !errors.Is(err, unix.ENOSPC) {
					t.Errorf("error %v is not ENOSPC", err)
				}
				assertEmpty(t, s)
			}
			// The space is back: a small blob still fits.
			if _, err := s.PutBytes([]byte("small")); err != nil {
				t.Errorf("PutBytes after ENOSPC: %v", err)
			}
		})
	}
}

func TestConcurrentPutSameBlob(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := randomBytes(t, 2<<20)
	want := digest.FromBytes(data)
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, n, err := s.Put(want, int64(len(data)), onlyReader{bytes.NewReader(data)})
			if err == nil && (d != want || n != int64(len(data))) {
				err = errors.New("Put returned " + d.String())
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if err := s.Verify(want); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	var seen []digest.Digest
	err := s.Walk(func(d digest.Digest, size int64) error {
		seen = append(seen, d)
		if size != int64(len(data)) {
			t.Errorf("Walk size %d, want %d", size, len(data))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != want {
		t.Errorf("Walk listed %v, want [%s]", seen, want)
	}
	if names := dirNames(t, filepath.Join(s.Root(), "ingest")); len(names) != 0 {
		t.Errorf("ingest holds %v", names)
	}
}

func TestWalkSkipsForeignNamesAndStops(t *testing.T) {
	s := openStore(t, t.TempDir())
	a, _ := s.PutBytes([]byte("a"))
	b, _ := s.PutBytes([]byte("b"))
	// A stray file that is not a digest is not reported.
	if err := os.WriteFile(filepath.Join(s.Root(), "blobs", "sha256", "not-a-digest"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got := map[digest.Digest]int64{}
	if err := s.Walk(func(d digest.Digest, size int64) error { got[d] = size; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[a] != 1 || got[b] != 1 {
		t.Errorf("Walk = %v", got)
	}
	stop := errors.New("stop")
	calls := 0
	err := s.Walk(func(digest.Digest, int64) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk with failing fn: %v after %d calls", err, calls)
	}
}

func TestDeleteAndMissing(t *testing.T) {
	s := openStore(t, t.TempDir())
	missing := digest.FromString("never stored")
	if err := s.Delete(missing); err != nil {
		t.Errorf("Delete of a missing blob: %v", err)
	}
	if s.Has(missing) {
		t.Error("Has(missing) = true")
	}
	if _, err := s.Size(missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("Size(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.Open(missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open(missing) = %v, want ErrNotFound", err)
	}
	if err := s.Verify(missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("Verify(missing) = %v, want ErrNotFound", err)
	}

	d, err := s.PutBytes([]byte("to delete"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(d); err != nil {
		t.Fatal(err)
	}
	if s.Has(d) {
		t.Error("blob still there after Delete")
	}
	if err := s.Delete(d); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestVerifyDetectsCorruption(t *testing.T) {
	s := openStore(t, t.TempDir())
	d, err := s.PutBytes([]byte("original"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.Path(d)
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(d); err == nil {
		t.Error("Verify accepted a corrupted blob")
	}
}

func TestPathRejectsInvalidDigests(t *testing.T) {
	s := openStore(t, t.TempDir())
	good := digest.FromString("x")
	if p, err := s.Path(good); err != nil || p != filepath.Join(s.Root(), "blobs", "sha256", good.Encoded()) {
		t.Fatalf("Path(%s) = %q, %v", good, p, err)
	}
	bad := []digest.Digest{
		"",
		"sha256",
		"sha256:",
		"sha256:abc",
		"sha256:" + digest.Digest(strings.Repeat("g", 64)),
		"sha256:" + digest.Digest(strings.ToUpper(good.Encoded())),
		"sha256:../../../../etc/passwd",
		digest.Digest(good.Encoded()),
		"sha512:" + digest.Digest(strings.Repeat("a", 128)),
		"sha384:" + digest.Digest(strings.Repeat("a", 96)),
		"md5:d41d8cd98f00b204e9800998ecf8427e",
	}
	for _, d := range bad {
		if p, err := s.Path(d); err == nil {
			t.Errorf("Path(%q) = %q, want an error", d, p)
		}
		if s.Has(d) {
			t.Errorf("Has(%q) = true", d)
		}
		if err := s.Delete(d); err == nil {
			t.Errorf("Delete(%q) succeeded", d)
		}
		// "" means "digest not known" to NewWriter; everything else is
		// refused before a file is made.
		if d == "" {
			continue
		}
		if _, err := s.NewWriter(d, -1); err == nil {
			t.Errorf("NewWriter(%q) succeeded", d)
		}
	}
	if names := dirNames(t, filepath.Join(s.Root(), "ingest")); len(names) != 0 {
		t.Errorf("rejected writers left %v in ingest", names)
	}
}

func TestWriterCommitOnceAndAbort(t *testing.T) {
	s := openStore(t, t.TempDir())
	w, err := s.NewWriter("", -1)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "hello")
	if w.Written() != 5 || w.Digest() != digest.FromString("hello") {
		t.Errorf("Written %d, Digest %s", w.Written(), w.Digest())
	}
	d, _, err := w.Commit()
	if err != nil || d != digest.FromString("hello") {
		t.Fatalf("Commit = %s, %v", d, err)
	}
	if _, _, err := w.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	w.Abort() // after Commit: must not remove the stored blob
	if err := s.Verify(d); err != nil {
		t.Errorf("blob gone after Abort following Commit: %v", err)
	}

	w, err = s.NewWriter("", -1)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "dropped")
	w.Abort()
	w.Abort()
	if names := dirNames(t, filepath.Join(s.Root(), "ingest")); len(names) != 0 {
		t.Errorf("Abort left %v in ingest", names)
	}
	if s.Has(digest.FromString("dropped")) {
		t.Error("an aborted blob was stored")
	}
}

func TestCleanRemovesStaleIngest(t *testing.T) {
	s := openStore(t, t.TempDir())
	blob, err := s.PutBytes([]byte("stored"))
	if err != nil {
		t.Fatal(err)
	}
	ingest := filepath.Join(s.Root(), "ingest")
	old := time.Now().Add(-2 * time.Hour)
	for _, n := range []string{"blob-old1", "blob-old2"} {
		p := filepath.Join(ingest, n)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	// A writer in progress: its file is fresh.
	w, err := s.NewWriter("", -1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	io.WriteString(w, "in progress")

	var asked []string
	err = s.Clean(func(fi fs.FileInfo) bool {
		asked = append(asked, fi.Name())
		return time.Since(fi.ModTime()) > time.Hour
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 3 {
		t.Errorf("predicate saw %v, want the 3 ingest files", asked)
	}
	names := dirNames(t, ingest)
	if len(names) != 1 || names[0] != filepath.Base(w.f.Name()) {
		t.Errorf("ingest after Clean = %v, want only the live writer's file", names)
	}
	if err := s.Verify(blob); err != nil {
		t.Errorf("Clean touched a stored blob: %v", err)
	}
	// The surviving writer still commits.
	if d, _, err := w.Commit(); err != nil || d != digest.FromString("in progress") {
		t.Errorf("Commit after Clean = %s, %v", d, err)
	}
	// A predicate that takes everything empties ingest.
	os.WriteFile(filepath.Join(ingest, "blob-x"), nil, 0o600)
	if err := s.Clean(func(fs.FileInfo) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if names := dirNames(t, ingest); len(names) != 0 {
		t.Errorf("ingest = %v after Clean(all)", names)
	}
}

func TestOpenCreatesPrivateDirs(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b")
	s := openStore(t, root)
	for _, d := range []string{"blobs/sha256", "ingest"} {
		st, err := os.Stat(filepath.Join(root, d))
		if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v", d, st, err)
		}
	}
	// Opening again keeps what is there.
	d, _ := s.PutBytes([]byte("kept"))
	s2 := openStore(t, root)
	if !s2.Has(d) {
		t.Error("reopened store lost a blob")
	}
}
