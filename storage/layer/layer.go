// Package layer keeps unpacked image layers and container root
// filesystems.
//
// Each layer is unpacked once into layers/<chain-id>/diff and shared by
// every image whose chain holds it; nothing writes to it afterwards. With
// the overlay driver a layer directory holds only that layer's changes
// (whiteouts become overlayfs whiteouts) and a container's root is an
// overlay mount of the chain plus the container's own upper directory. The
// vfs driver, for kernels without overlayfs, keeps a full copy of the tree
// at every layer and copies the top one for each container.
//
// A layer is unpacked into a private temporary directory and renamed into
// place inside the metadata transaction that records it, so another process
// sees either no layer or a complete one, and a crash leaves only a
// temporary directory that Clean removes.
package layer

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hullproject/hull/storage/archive"
	"github.com/hullproject/hull/storage/meta"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sys/unix"
)

// Drivers hull can store layers with.
const (
	Overlay = "overlay"
	VFS     = "vfs"
)

// ErrLayerUnknown means a chain ID the store does not hold.
var ErrLayerUnknown = errors.New("layer not found")

// Store holds layers and root filesystems under one directory.
type Store struct {
	root   string
	db     *meta.DB
	driver string
}

// Open prepares the store at root. driver may be empty: the driver the
// store was created with is kept, and a new store takes overlay when the
// kernel has it, vfs otherwise.
func Open(root string, db *meta.DB, driver string) (*Store, error) {
	for _, d := range []string{"layers", "rootfs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("layer store: %w", err)
		}
	}
	if driver != "" && driver != Overlay && driver != VFS {
		return nil, fmt.Errorf("unknown storage driver %q (overlay or vfs)", driver)
	}
	s := &Store{root: root, db: db}
	// The usual case: the store knows its driver already (a read).
	var saved string
	db.View(func(tx *meta.Tx) error { saved = tx.Setting("driver"); return nil })
	if saved != "" && (driver == "" || driver == saved) {
		s.driver = saved
		return s, nil
	}
	err := db.Update(func(tx *meta.Tx) error {
		saved := tx.Setting("driver")
		switch {
		case saved != "" && driver != "" && saved != driver:
			return fmt.Errorf("store %s was made with storage driver %s, not %s", root, saved, driver)
		case saved != "":
			s.driver = saved
			return nil
		case driver != "":
			s.driver = driver
		case OverlaySupported():
			s.driver = Overlay
		default:
			s.driver = VFS
		}
		if s.driver == Overlay && !OverlaySupported() {
			return errors.New("storage driver overlay: the kernel has no overlayfs")
		}
		return tx.SetSetting("driver", s.driver)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Driver is the storage driver in use.
func (s *Store) Driver() string { return s.driver }

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// OverlaySupported reports whether the kernel offers overlayfs.
func OverlaySupported() bool {
	raw, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.TrimSpace(strings.TrimPrefix(line, "nodev")) == "overlay" {
			return true
		}
	}
	// The module may load on first use.
	return unix.Access("/sys/module/overlay", unix.F_OK) == nil
}

// DiffDir is the directory holding a stored layer's files.
func (s *Store) DiffDir(l *meta.Layer) string {
	return filepath.Join(s.root, "layers", l.Dir, "diff")
}

// Has reports whether the layer with this chain ID is stored.
func (s *Store) Has(chainID digest.Digest) bool {
	err := s.db.View(func(tx *meta.Tx) error {
		_, err := tx.Layer(chainID)
		return err
	})
	return err == nil
}

// Get returns a stored layer.
func (s *Store) Get(chainID digest.Digest) (*meta.Layer, error) {
	var l *meta.Layer
	err := s.db.View(func(tx *meta.Tx) error {
		var err error
		l, err = tx.Layer(chainID)
		return err
	})
	if errors.Is(err, meta.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", chainID, ErrLayerUnknown)
	}
	return l, err
}

// CreateOptions tune Create.
type CreateOptions struct {
	// DiffID, when known (from the image config), is checked against the
	// stream.
	DiffID digest.Digest
	// Lease names the lease that protects the new layer until an image
	// references it.
	Lease string
}

// Create unpacks an uncompressed layer tar as the child of parent ("" for
// a base layer) and records it. When another process stored the same chain
// meanwhile, its layer is kept and ours is dropped.
func (s *Store) Create(parent digest.Digest, r io.Reader, opts CreateOptions) (*meta.Layer, error) {
	var base string
	if s.driver == VFS && parent != "" {
		pl, err := s.Get(parent)
		if err != nil {
			return nil, fmt.Errorf("parent layer: %w", err)
		}
		base = s.DiffDir(pl)
	}
	p, err := s.prepare(base, r, opts)
	if err != nil {
		return nil, err
	}
	return p.Commit(parent, opts.Lease)
}

// Independent reports whether layers of one image can be unpacked at the
// same time with Prepare (overlay: each layer directory holds only its own
// changes) rather than one after another with Create (vfs copies the
// parent first).
func (s *Store) Independent() bool { return s.driver == Overlay }

// Pending is a layer unpacked but not yet recorded.
type Pending struct {
	s      *Store
	tmp    string
	DiffID digest.Digest
	Size   int64
	done   bool
}

// Prepare unpacks a layer without knowing its parent; only for stores
// where Independent is true.
func (s *Store) Prepare(r io.Reader, opts CreateOptions) (*Pending, error) {
	if !s.Independent() {
		return nil, fmt.Errorf("storage driver %s unpacks layers in order", s.driver)
	}
	return s.prepare("", r, opts)
}

func (s *Store) prepare(base string, r io.Reader, opts CreateOptions) (*Pending, error) {
	tmp, err := s.tempDir("layer-")
	if err != nil {
		return nil, err
	}
	p := &Pending{s: s, tmp: tmp}
	ok := false
	defer func() {
		if !ok {
			p.Discard()
		}
	}()
	diff := filepath.Join(tmp, "diff")
	mode := archive.WhiteoutOverlay
	if s.driver == VFS {
		mode = archive.WhiteoutDelete
		if base != "" {
			if err := copyTree(base, diff); err != nil {
				return nil, fmt.Errorf("copy parent layer: %w", err)
			}
		}
	}
	if err := os.MkdirAll(diff, 0o755); err != nil {
		return nil, err
	}
	digester := digest.SHA256.Digester()
	size, err := archive.Apply(diff, io.TeeReader(r, digester.Hash()), archive.ApplyOptions{Whiteouts: mode})
	if err != nil {
		return nil, err
	}
	p.DiffID, p.Size = digester.Digest(), size
	if opts.DiffID != "" && opts.DiffID != p.DiffID {
		return nil, fmt.Errorf("layer diff ID mismatch: the config says %s, the content is %s", opts.DiffID, p.DiffID)
	}
	// The layer must be on disk before a record points at it.
	if err := syncfs(tmp); err != nil {
		return nil, err
	}
	ok = true
	return p, nil
}

// Discard drops an unpacked layer that will not be committed.
func (p *Pending) Discard() {
	if !p.done {
		p.done = true
		removeTree(p.tmp)
	}
}

// Commit records the layer as the child of parent ("" for a base layer).
func (p *Pending) Commit(parent digest.Digest, lease string) (*meta.Layer, error) {
	if p.done {
		return nil, errors.New("layer already committed or discarded")
	}
	defer p.Discard()
	s := p.s
	chainID := p.DiffID
	if parent != "" {
		chainID = identity.ChainID([]digest.Digest{parent, p.DiffID})
	}
	l := &meta.Layer{
		ChainID: chainID,
		DiffID:  p.DiffID,
		Parent:  parent,
		Size:    p.Size,
		Dir:     chainID.Encoded(),
		Created: time.Now().UTC(),
	}
	moved := false
	final := filepath.Join(s.root, "layers", l.Dir)
	err := s.db.Update(func(tx *meta.Tx) error {
		if existing, err := tx.Layer(chainID); err == nil {
			l = existing
		} else {
			if parent != "" {
				if _, err := tx.Layer(parent); err != nil {
					return fmt.Errorf("parent layer %s: %w", parent, ErrLayerUnknown)
				}
			}
			// A directory without a record is a leftover of a crash.
			removeTree(final)
			if err := os.Rename(p.tmp, final); err != nil {
				return fmt.Errorf("store layer %s: %w", chainID, err)
			}
			moved = true
			if err := tx.PutLayer(l); err != nil {
				return err
			}
		}
		return leaseLayer(tx, lease, chainID)
	})
	if err != nil {
		if moved {
			// The record did not land: take the directory back out.
			removeTree(final)
		}
		return nil, err
	}
	if moved {
		p.done = true
	}
	return l, nil
}

func leaseLayer(tx *meta.Tx, lease string, chainID digest.Digest) error {
	if lease == "" {
		return nil
	}
	l, err := tx.Lease(lease)
	if err != nil {
		return fmt.Errorf("lease %s: %w", lease, err)
	}
	l.Layers = append(l.Layers, chainID)
	return tx.PutLease(l)
}

// Ref adds one reference to every layer of a chain (inside the caller's
// transaction). It fails when a layer is missing.
func Ref(tx *meta.Tx, top digest.Digest) error {
	for c := top; c != ""; {
		l, err := tx.Layer(c)
		if err != nil {
			return fmt.Errorf("layer %s: %w", c, ErrLayerUnknown)
		}
		l.Refs++
		if err := tx.PutLayer(l); err != nil {
			return err
		}
		c = l.Parent
	}
	return nil
}

// Unref drops one reference from every layer of a chain and deletes the
// records of layers left without one; it returns those layers so the
// caller can retire their directories (Retire) in the same transaction.
func Unref(tx *meta.Tx, top digest.Digest) ([]*meta.Layer, error) {
	var gone []*meta.Layer
	for c := top; c != ""; {
		l, err := tx.Layer(c)
		if errors.Is(err, meta.ErrNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		l.Refs--
		if l.Refs <= 0 && !leased(tx, c) {
			if err := tx.DeleteLayer(c); err != nil {
				return nil, err
			}
			gone = append(gone, l)
		} else if err := tx.PutLayer(l); err != nil {
			return nil, err
		}
		c = l.Parent
	}
	return gone, nil
}

// DropUnused deletes, inside tx, the records of the given layers that no
// image, root filesystem, child layer or live lease holds (the leftovers of
// a failed operation), children first. It returns them for Retire.
func DropUnused(tx *meta.Tx, chainIDs []digest.Digest) ([]*meta.Layer, error) {
	all, err := tx.Layers()
	if err != nil {
		return nil, err
	}
	children := map[digest.Digest]int{}
	for _, l := range all {
		if l.Parent != "" {
			children[l.Parent]++
		}
	}
	var gone []*meta.Layer
	for i := len(chainIDs) - 1; i >= 0; i-- {
		l, err := tx.Layer(chainIDs[i])
		if err != nil {
			continue
		}
		if l.Refs > 0 || children[l.ChainID] > 0 || leased(tx, l.ChainID) {
			continue
		}
		if err := tx.DeleteLayer(l.ChainID); err != nil {
			return nil, err
		}
		if l.Parent != "" {
			children[l.Parent]--
		}
		gone = append(gone, l)
	}
	return gone, nil
}

func leased(tx *meta.Tx, chainID digest.Digest) bool {
	leases, _ := tx.Leases()
	for _, l := range leases {
		if !l.Alive() {
			continue
		}
		for _, c := range l.Layers {
			if c == chainID {
				return true
			}
		}
	}
	return false
}

// Retire moves the directories of layers whose records are being deleted
// out of the way, inside the caller's transaction, so a layer stored
// again right after under the same name is never hit by the removal; the
// returned function deletes them once the transaction has committed.
func (s *Store) Retire(layers []*meta.Layer) func() {
	var moved []string
	for _, l := range layers {
		if l.Dir == "" || strings.ContainsAny(l.Dir, "/.") {
			continue
		}
		dir := filepath.Join(s.root, "layers", l.Dir)
		gone := filepath.Join(s.root, "tmp", "gone-"+l.Dir+"-"+newSuffix())
		if err := os.Rename(dir, gone); err == nil {
			moved = append(moved, gone)
		}
	}
	return func() {
		for _, d := range moved {
			removeTree(d)
		}
	}
}

func newSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Collect deletes layers that no image, root filesystem or live lease
// holds, and directories that have no record (leftovers of crashes). It
// returns the bytes of layer tar freed.
func (s *Store) Collect() (int64, error) {
	var gone []*meta.Layer
	cleanup := func() {}
	err := s.db.Update(func(tx *meta.Tx) error {
		layers, err := tx.Layers()
		if err != nil {
			return err
		}
		// Reference counts can be rebuilt from the images and root
		// filesystems; trust them but never drop a layer a child needs.
		// A parent whose last child goes becomes free too: repeat until
		// a pass drops nothing, so an unused chain goes in one run.
		for dropped := true; dropped; {
			dropped = false
			parents := map[digest.Digest]bool{}
			for _, l := range layers {
				if l.Parent != "" {
					parents[l.Parent] = true
				}
			}
			var kept []*meta.Layer
			for _, l := range layers {
				if l.Refs > 0 || parents[l.ChainID] || leased(tx, l.ChainID) {
					kept = append(kept, l)
					continue
				}
				if err := tx.DeleteLayer(l.ChainID); err != nil {
					return err
				}
				gone = append(gone, l)
				dropped = true
			}
			layers = kept
		}
		cleanup = s.Retire(gone)
		return nil
	})
	if err != nil {
		return 0, err
	}
	cleanup()
	var freed int64
	for _, l := range gone {
		freed += l.Size
	}
	// Directories without records: unfinished renames of crashed
	// processes. Only those older than a minute, so a layer being
	// committed right now by another process is left alone.
	ents, _ := os.ReadDir(filepath.Join(s.root, "layers"))
	var all map[string]bool
	s.db.View(func(tx *meta.Tx) error {
		all = map[string]bool{}
		layers, _ := tx.Layers()
		for _, l := range layers {
			all[l.Dir] = true
		}
		return nil
	})
	for _, e := range ents {
		if all[e.Name()] {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
			removeTree(filepath.Join(s.root, "layers", e.Name()))
		}
	}
	s.cleanTemp(time.Hour)
	return freed, nil
}

// cleanTemp removes temporary directories older than age (left by
// processes that died while unpacking).
func (s *Store) cleanTemp(age time.Duration) {
	dir := filepath.Join(s.root, "tmp")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > age {
			removeTree(filepath.Join(dir, e.Name()))
		}
	}
}

func (s *Store) tempDir(prefix string) (string, error) {
	var b [8]byte
	rand.Read(b[:])
	dir := filepath.Join(s.root, "tmp", prefix+hex.EncodeToString(b[:]))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("layer store: %w", err)
	}
	return dir, nil
}

// copyTree copies a whole tree, keeping owners, modes, links, devices and
// xattrs, by streaming it through the layer tar writer and reader.
func copyTree(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.WriteDir(pw, src)) }()
	_, err := archive.Apply(dst, pr, archive.ApplyOptions{Whiteouts: archive.WhiteoutDelete})
	pr.CloseWithError(err)
	return err
}

// removeTree deletes a directory tree, also when parts of it are
// read-only or carry the immutable-looking modes images sometimes have.
func removeTree(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil {
		return nil
	}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

func syncfs(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
