// Package image is hull's image store: it brings images in (bootstrap,
// import, load, pull), keeps them (blobs in the content store, records in
// the metadata database, layers in the layer store) and sends them out
// (save, push).
//
// An image's ID is the digest of its config, as in Docker. Its manifest and
// config blobs are kept byte for byte, so pulling what was pushed gives the
// same digests and the same ID.
package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hullproject/hull/image/content"
	"github.com/hullproject/hull/storage/layer"
	"github.com/hullproject/hull/storage/meta"
	"github.com/opencontainers/go-digest"
)

// ErrNotFound means no image matches a reference or ID.
var ErrNotFound = errors.New("no such image")

// Store is an image store rooted at one directory.
type Store struct {
	root    string
	Content *content.Store
	DB      *meta.DB
	Layers  *layer.Store
}

// Open opens (creating if needed) the store at root. driver picks the
// storage driver for a new store ("" = overlay when the kernel has it).
func Open(root, driver string) (*Store, error) {
	if root == "" {
		return nil, errors.New("image store: empty root directory")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	cs, err := content.Open(filepath.Join(root, "content"))
	if err != nil {
		return nil, err
	}
	db, err := meta.Open(filepath.Join(root, "hull.db"))
	if err != nil {
		return nil, err
	}
	ls, err := layer.Open(filepath.Join(root, "storage"), db, driver)
	if err != nil {
		return nil, err
	}
	return &Store{root: root, Content: cs, DB: db, Layers: ls}, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// TempDir is a directory on the store's filesystem for spooling.
func (s *Store) TempDir() string {
	d := filepath.Join(s.root, "tmp")
	os.MkdirAll(d, 0o700)
	return d
}

// Resolve finds an image by name ("busybox", "busybox:1.36",
// "example.com/app@sha256:…"), by full ID ("sha256:…") or by a unique
// prefix of its ID's hex.
func (s *Store) Resolve(ref string) (*meta.Image, error) {
	var img *meta.Image
	err := s.DB.View(func(tx *meta.Tx) error {
		var err error
		img, err = resolve(tx, ref)
		return err
	})
	return img, err
}

func resolve(tx *meta.Tx, ref string) (*meta.Image, error) {
	if ref == "" {
		return nil, errors.New("empty image reference")
	}
	// A name first: "abc" may be both a repository and an ID prefix, and
	// Docker prefers the name.
	if r, err := ParseReference(ref); err == nil {
		if r.Digest != "" {
			return byRepoDigest(tx, r)
		}
		if id, err := tx.Name(r.String()); err == nil {
			return tx.Image(id)
		}
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	if len(hex) == 0 || len(hex) > 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	if len(hex) == 64 {
		img, err := tx.Image(digest.NewDigestFromEncoded(digest.SHA256, hex))
		if errors.Is(err, meta.ErrNotFound) {
			return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
		}
		return img, err
	}
	images, err := tx.Images()
	if err != nil {
		return nil, err
	}
	var found *meta.Image
	for _, img := range images {
		if strings.HasPrefix(img.ID.Encoded(), hex) {
			if found != nil {
				return nil, fmt.Errorf("%s: ambiguous image ID prefix", ref)
			}
			found = img
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	return found, nil
}

func byRepoDigest(tx *meta.Tx, r Reference) (*meta.Image, error) {
	want := r.Repository + "@" + r.Digest
	images, err := tx.Images()
	if err != nil {
		return nil, err
	}
	for _, img := range images {
		for _, rd := range img.RepoDigests {
			if rd == want {
				return img, nil
			}
		}
		if img.Manifest.String() == r.Digest {
			names, _ := tx.NamesOf(img.ID)
			for _, n := range names {
				if nr, err := ParseReference(n); err == nil && nr.Repository == r.Repository {
					return img, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("%s: %w", r.Familiar(), ErrNotFound)
}

// Names returns the references pointing at an image, in full form.
func (s *Store) Names(id digest.Digest) ([]string, error) {
	var names []string
	err := s.DB.View(func(tx *meta.Tx) error {
		var err error
		names, err = tx.NamesOf(id)
		return err
	})
	return names, err
}
