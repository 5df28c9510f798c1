// Package content is hull's blob store: every manifest, config and layer blob
// lives once under blobs/sha256/<hex>, addressed by its digest.
//
// A blob is written to a private file under ingest/, hashed while it is
// written, checked against the digest the caller expects, fsynced and then
// renamed into place, so a reader never sees a partial blob and a crash
// leaves at most a stray ingest file (removed by Clean).
package content

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// ErrNotFound is returned for a digest the store does not hold.
var ErrNotFound = errors.New("blob not found")

// Store is a content-addressed blob store rooted at a directory.
type Store struct {
	root string
}

// Open prepares the store's directories under root.
func Open(root string) (*Store, error) {
	for _, d := range []string{"blobs/sha256", "ingest"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("content store: %w", err)
		}
	}
	return &Store{root: root}, nil
}

// Root is the directory the store lives in.
func (s *Store) Root() string { return s.root }

// Path is where the blob with digest d is (or would be) stored.
func (s *Store) Path(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("digest %s: only sha256 is supported", d)
	}
	return filepath.Join(s.root, "blobs", "sha256", d.Encoded()), nil
}

// Size returns the size of a stored blob, or ErrNotFound.
func (s *Store) Size(d digest.Digest) (int64, error) {
	p, err := s.Path(d)
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%s: %w", d, ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Has reports whether the blob is stored.
func (s *Store) Has(d digest.Digest) bool {
	_, err := s.Size(d)
	return err == nil
}

// Open opens a stored blob for reading.
func (s *Store) Open(d digest.Digest) (*os.File, error) {
	p, err := s.Path(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", d, ErrNotFound)
	}
	return f, err
}

// ReadAll returns a small blob (manifest, config) whole.
func (s *Store) ReadAll(d digest.Digest) ([]byte, error) {
	f, err := s.Open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Delete removes a blob; a missing blob is not an error.
func (s *Store) Delete(d digest.Digest) error {
	p, err := s.Path(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for each stored blob.
func (s *Store) Walk(fn func(d digest.Digest, size int64) error) error {
	dir := filepath.Join(s.root, "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if d.Validate() != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if err := fn(d, info.Size()); err != nil {
			return err
		}
	}
	return nil
}

// Verify re-hashes a stored blob and checks it against its name.
func (s *Store) Verify(d digest.Digest) error {
	f, err := s.Open(d)
	if err != nil {
		return err
	}
	defer f.Close()
	v := d.Verifier()
	if _, err := io.Copy(v, f); err != nil {
		return fmt.Errorf("read blob %s: %w", d, err)
	}
	if !v.Verified() {
		return fmt.Errorf("blob %s: content does not match its digest", d)
	}
	return nil
}

// Clean removes ingest files left by writers that crashed. Only files older
// than the calling process's start are safe to remove when other processes
// may be writing, so callers pass the age check they want.
func (s *Store) Clean(stale func(fs.FileInfo) bool) error {
	dir := filepath.Join(s.root, "ingest")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !stale(info) {
			continue
		}
		os.Remove(filepath.Join(dir, e.Name()))
	}
	return nil
}

// Writer streams one blob into the store.
type Writer struct {
	s        *Store
	f        *os.File
	h        hash.Hash
	n        int64
	expected digest.Digest
	size     int64
	done     bool
}

// NewWriter starts a blob. expected may be empty (the digest is then what
// was written); size may be -1 when unknown.
func (s *Store) NewWriter(expected digest.Digest, size int64) (*Writer, error) {
	if expected != "" {
		if _, err := s.Path(expected); err != nil {
			return nil, err
		}
	}
	f, err := os.CreateTemp(filepath.Join(s.root, "ingest"), "blob-")
	if err != nil {
		return nil, fmt.Errorf("content store: %w", err)
	}
	return &Writer{s: s, f: f, h: digest.SHA256.Hash(), expected: expected, size: size}, nil
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("write blob: %w", err)
	}
	return n, nil
}

// ReadFrom lets io.Copy hand the writer large chunks.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Written is the number of bytes written so far.
func (w *Writer) Written() int64 { return w.n }

// Digest is the digest of what was written so far.
func (w *Writer) Digest() digest.Digest {
	return digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%x", w.h.Sum(nil)))
}

// Commit verifies size and digest, makes the blob durable and moves it into
// place. On any error the partial blob is removed.
func (w *Writer) Commit() (digest.Digest, int64, error) {
	if w.done {
		return "", 0, errors.New("blob writer already closed")
	}
	w.done = true
	d := w.Digest()
	fail := func(err error) (digest.Digest, int64, error) {
		w.f.Close()
		os.Remove(w.f.Name())
		return "", 0, err
	}
	if w.size >= 0 && w.n != w.size {
		return fail(fmt.Errorf("blob %s: size %d, expected %d", w.expected, w.n, w.size))
	}
	if w.expected != "" && d != w.expected {
		return fail(fmt.Errorf("digest mismatch: expected %s, got %s", w.expected, d))
	}
	if err := w.f.Sync(); err != nil {
		return fail(fmt.Errorf("sync blob %s: %w", d, err))
	}
	if err := w.f.Chmod(0o444); err != nil {
		return fail(fmt.Errorf("blob %s: %w", d, err))
	}
	if err := w.f.Close(); err != nil {
		return fail(fmt.Errorf("close blob %s: %w", d, err))
	}
	target, _ := w.s.Path(d)
	if err := os.Rename(w.f.Name(), target); err != nil {
		os.Remove(w.f.Name())
		return "", 0, fmt.Errorf("store blob %s: %w", d, err)
	}
	if err := syncDir(filepath.Dir(target)); err != nil {
		return "", 0, err
	}
	return d, w.n, nil
}

// Abort drops the partial blob.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name())
}

// Put writes a whole blob from r; see NewWriter for expected and size.
// Writing a blob the store already holds replaces it with identical bytes.
func (s *Store) Put(expected digest.Digest, size int64, r io.Reader) (digest.Digest, int64, error) {
	w, err := s.NewWriter(expected, size)
	if err != nil {
		return "", 0, err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return "", 0, err
	}
	return w.Commit()
}

// PutBytes stores a small blob held in memory.
func (s *Store) PutBytes(b []byte) (digest.Digest, error) {
	d := digest.FromBytes(b)
	if s.Has(d) {
		return d, nil
	}
	_, _, err := s.Put(d, int64(len(b)), bytes.NewReader(b))
	return d, err
}

func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
