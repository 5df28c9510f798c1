package image

import (
	"fmt"
	"os"

	"github.com/hullproject/hull/storage/meta"
	"github.com/opencontainers/go-digest"
)

// Check verifies the store: every blob matches its digest, every name
// points at an image, every image's blobs and layers exist, and every
// layer's reference count equals the images and root filesystems that
// hold it. It returns what it found wrong (nothing for a sound store).
func (s *Store) Check() ([]string, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	err := s.Content.Walk(func(d digest.Digest, _ int64) error {
		if err := s.Content.Verify(d); err != nil {
			add("%v", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.DB.View(func(tx *meta.Tx) error {
		images, err := tx.Images()
		if err != nil {
			return err
		}
		refs := map[digest.Digest]int{}
		for _, img := range images {
			for _, d := range s.blobsOf(img) {
				if !s.Content.Has(d) {
					add("image %s: blob %s is missing", img.ID, d)
				}
			}
			for _, c := range img.ChainIDs {
				refs[c]++
			}
		}
		rfs, err := tx.Rootfses()
		if err != nil {
			return err
		}
		for _, r := range rfs {
			for c := r.Top; c != ""; {
				refs[c]++
				l, err := tx.Layer(c)
				if err != nil {
					break
				}
				c = l.Parent
			}
		}
		names, err := tx.Names()
		if err != nil {
			return err
		}
		for n, id := range names {
			if _, err := tx.Image(id); err != nil {
				add("name %s points at missing image %s", n, id)
			}
		}
		layers, err := tx.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			if l.Refs != refs[l.ChainID] {
				add("layer %s: %d references recorded, %d held", l.ChainID, l.Refs, refs[l.ChainID])
			}
			if l.Parent != "" {
				if _, err := tx.Layer(l.Parent); err != nil {
					add("layer %s: parent %s is missing", l.ChainID, l.Parent)
				}
			}
			if _, err := os.Stat(s.Layers.DiffDir(l)); err != nil {
				add("layer %s: %v", l.ChainID, err)
			}
			delete(refs, l.ChainID)
		}
		for c := range refs {
			add("layer %s is held but not stored", c)
		}
		return nil
	})
	return problems, err
}
