package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hullproject/hull/storage/layer"
	"github.com/hullproject/hull/storage/meta"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrConflict means an image cannot be removed as asked.
var ErrConflict = errors.New("conflict")

// Summary is an image with its names, as `images` lists it.
type Summary struct {
	*meta.Image
	// Names are the full references pointing at the image.
	Names []string
	// Containers counts the root filesystems made from the image.
	Containers int
}

// List returns every image, newest first.
func (s *Store) List() ([]Summary, error) {
	var out []Summary
	err := s.DB.View(func(tx *meta.Tx) error {
		images, err := tx.Images()
		if err != nil {
			return err
		}
		names, err := tx.Names()
		if err != nil {
			return err
		}
		byImage := map[digest.Digest][]string{}
		for n, id := range names {
			byImage[id] = append(byImage[id], n)
		}
		users := map[digest.Digest]int{}
		rfs, err := tx.Rootfses()
		if err != nil {
			return err
		}
		for _, r := range rfs {
			users[r.Image]++
		}
		for _, img := range images {
			ns := byImage[img.ID]
			sort.Strings(ns)
			out = append(out, Summary{Image: img, Names: ns, Containers: users[img.ID]})
		}
		return nil
	})
	return out, err
}

// Tag points a new name at an image.
func (s *Store) Tag(source, target string) error {
	r, err := ParseReference(target)
	if err != nil {
		return err
	}
	if r.Digest != "" {
		return fmt.Errorf("invalid tag %q: refusing to create a tag with a digest reference", target)
	}
	return s.DB.Update(func(tx *meta.Tx) error {
		img, err := resolve(tx, source)
		if err != nil {
			return err
		}
		_, err = tx.SetName(r.String(), img.ID)
		return err
	})
}

// RemoveReport is one line of what Remove did: "Untagged: …" or
// "Deleted: sha256:…".
type RemoveReport struct {
	Untagged string
	Deleted  digest.Digest
}

// Remove removes a name or an image, as `docker rmi` does: a name is
// untagged and the image deleted when nothing else names it; an ID deletes
// the image with all its names when force is set or it has a single one.
// An image a container was made from is never deleted; without force that
// is an error, with force its names are removed and the image stays.
func (s *Store) Remove(ref string, force bool) ([]RemoveReport, error) {
	var reports []RemoveReport
	cleanup := func() {}
	err := s.DB.Update(func(tx *meta.Tx) error {
		reports = nil
		img, err := resolve(tx, ref)
		if err != nil {
			return err
		}
		names, err := tx.NamesOf(img.ID)
		if err != nil {
			return err
		}
		users := usersOf(tx, img.ID)
		byName := false
		var full string
		if r, err := ParseReference(ref); err == nil && r.Digest == "" {
			if id, err := tx.Name(r.String()); err == nil && id == img.ID {
				byName, full = true, r.String()
			}
		}
		var untag []string
		switch {
		case byName && len(names) > 1:
			// Other names keep the image.
			untag = []string{full}
		case byName:
			if mounted(users) && !force {
				return fmt.Errorf("%w: image %s is mounted; unmount it first (hull image unmount %s)", ErrConflict, shortID(img.ID), ref)
			}
			if len(users) > 0 && !force {
				return fmt.Errorf("%w: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", ErrConflict, ref, users[0], shortID(img.ID))
			}
			untag = []string{full}
		default:
			if len(names) > 1 && !force {
				return fmt.Errorf("%w: unable to delete %s (must be forced) - image is referenced in multiple repositories", ErrConflict, shortID(img.ID))
			}
			if mounted(users) && !force {
				return fmt.Errorf("%w: image %s is mounted; unmount it first (hull image unmount %s)", ErrConflict, shortID(img.ID), ref)
			}
			if len(users) > 0 && !force {
				return fmt.Errorf("%w: unable to delete %s (must be forced) - image is being used by container %s", ErrConflict, shortID(img.ID), users[0])
			}
			untag = names
		}
		for _, n := range untag {
			if err := tx.DeleteName(n); err != nil {
				return err
			}
			reports = append(reports, RemoveReport{Untagged: Familiar(n)})
		}
		remaining := len(names) - len(untag)
		if remaining > 0 || len(users) > 0 {
			return nil
		}
		for _, rd := range img.RepoDigests {
			reports = append(reports, RemoveReport{Untagged: Familiar(rd)})
		}
		gone, err := s.deleteImage(tx, img)
		if err != nil {
			return err
		}
		reports = append(reports, RemoveReport{Deleted: img.ID})
		for _, l := range gone {
			reports = append(reports, RemoveReport{Deleted: l.ChainID})
		}
		cleanup = s.Layers.Retire(gone)
		return nil
	})
	if err != nil {
		return nil, err
	}
	cleanup()
	return reports, nil
}

func shortID(d digest.Digest) string { return shortDigest(d) }

// usersOf lists the root filesystems (containers) made from an image.
func usersOf(tx *meta.Tx, id digest.Digest) []string {
	rfs, _ := tx.Rootfses()
	var out []string
	for _, r := range rfs {
		if r.Image == id {
			out = append(out, shortContainer(r.ID))
		}
	}
	sort.Strings(out)
	return out
}

// mounted reports whether one of an image's users is its own read-only
// view (hull image mount).
func mounted(users []string) bool {
	for _, u := range users {
		if strings.HasPrefix(u, imageViewPrefix) {
			return true
		}
	}
	return false
}

func shortContainer(id string) string {
	if strings.HasPrefix(id, imageViewPrefix) {
		return id
	}
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// deleteImage drops an image record, its layer references and the blobs
// no other image or lease needs, inside tx. Blobs are unlinked here, under
// the database's write lock, so an ingest that leases a blob cannot
// interleave with its removal.
func (s *Store) deleteImage(tx *meta.Tx, img *meta.Image) ([]*meta.Layer, error) {
	if err := tx.DeleteImage(img.ID); err != nil {
		return nil, err
	}
	var gone []*meta.Layer
	if top := img.TopLayer(); top != "" {
		var err error
		if gone, err = layer.Unref(tx, top); err != nil {
			return nil, err
		}
	}
	mine := s.blobsOf(img)
	keep, err := s.referencedBlobs(tx)
	if err != nil {
		return nil, err
	}
	for _, d := range mine {
		if !keep[d] {
			if err := s.Content.Delete(d); err != nil {
				return nil, err
			}
		}
	}
	return gone, nil
}

// blobsOf lists an image's manifest, config and layer blobs.
func (s *Store) blobsOf(img *meta.Image) []digest.Digest {
	out := []digest.Digest{img.Manifest, img.ID}
	raw, err := s.Content.ReadAll(img.Manifest)
	if err != nil {
		return out
	}
	var m ocispec.Manifest
	if json.Unmarshal(raw, &m) == nil {
		for _, l := range m.Layers {
			out = append(out, l.Digest)
		}
	}
	return out
}

// referencedBlobs is every blob an image or a live lease holds.
func (s *Store) referencedBlobs(tx *meta.Tx) (map[digest.Digest]bool, error) {
	keep := map[digest.Digest]bool{}
	images, err := tx.Images()
	if err != nil {
		return nil, err
	}
	for _, img := range images {
		for _, d := range s.blobsOf(img) {
			keep[d] = true
		}
	}
	leases, err := tx.Leases()
	if err != nil {
		return nil, err
	}
	for _, l := range leases {
		if !l.Alive() {
			tx.DeleteLease(l.ID)
			continue
		}
		for _, d := range l.Blobs {
			keep[d] = true
		}
	}
	return keep, nil
}

// PruneReport says what a prune removed.
type PruneReport struct {
	Untagged []string
	Deleted  []digest.Digest
	// Reclaimed is the disk space freed, in bytes.
	Reclaimed int64
}

// Prune removes images no container uses: dangling ones (without a name),
// or all of them when all is set. Then it collects blobs and layers that
// nothing holds (leftovers of interrupted operations).
func (s *Store) Prune(all bool) (*PruneReport, error) {
	rep := &PruneReport{}
	before := s.diskBytes()
	cleanup := func() {}
	err := s.DB.Update(func(tx *meta.Tx) error {
		images, err := tx.Images()
		if err != nil {
			return err
		}
		var gone []*meta.Layer
		for _, img := range images {
			names, err := tx.NamesOf(img.ID)
			if err != nil {
				return err
			}
			if len(usersOf(tx, img.ID)) > 0 || (len(names) > 0 && !all) {
				continue
			}
			for _, n := range names {
				if err := tx.DeleteName(n); err != nil {
					return err
				}
				rep.Untagged = append(rep.Untagged, Familiar(n))
			}
			g, err := s.deleteImage(tx, img)
			if err != nil {
				return err
			}
			rep.Deleted = append(rep.Deleted, img.ID)
			for _, l := range g {
				rep.Deleted = append(rep.Deleted, l.ChainID)
			}
			gone = append(gone, g...)
		}
		cleanup = s.Layers.Retire(gone)
		return s.collectBlobs(tx)
	})
	if err != nil {
		return nil, err
	}
	cleanup()
	if _, err := s.Layers.Collect(); err != nil {
		return rep, err
	}
	s.Content.Clean(func(fi os.FileInfo) bool { return time.Since(fi.ModTime()) > time.Hour })
	if freed := before - s.diskBytes(); freed > 0 {
		rep.Reclaimed = freed
	}
	return rep, nil
}

// collectBlobs deletes blobs that no image or live lease holds.
func (s *Store) collectBlobs(tx *meta.Tx) error {
	keep, err := s.referencedBlobs(tx)
	if err != nil {
		return err
	}
	return s.Content.Walk(func(d digest.Digest, _ int64) error {
		if !keep[d] {
			return s.Content.Delete(d)
		}
		return nil
	})
}

// diskBytes is the space the store's blobs and layers take.
func (s *Store) diskBytes() int64 {
	var total int64
	for _, d := range []string{filepath.Join(s.root, "content"), filepath.Join(s.Layers.Root(), "layers")} {
		total += DirSize(d)
	}
	return total
}

// DirSize sums the disk blocks of every file under dir, counting hard
// links once, as du does.
func DirSize(dir string) int64 {
	var total int64
	seen := map[[2]uint64]bool{}
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		st, ok := statOf(info)
		if !ok {
			total += info.Size()
			return nil
		}
		key := [2]uint64{st.Dev, st.Ino}
		if st.Nlink > 1 {
			if seen[key] {
				return nil
			}
			seen[key] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total
}

// DiskUsage is what `system df` shows for images and containers.
type DiskUsage struct {
	Images, ActiveImages int
	// ImagesSize counts each layer once, however many images share it.
	ImagesSize, ImagesReclaimable int64
	Containers                    int
	ContainersSize                int64
}

// DiskUsage adds up the store's images and container layers.
func (s *Store) DiskUsage() (*DiskUsage, error) {
	du := &DiskUsage{}
	var rootfs []*meta.Rootfs
	err := s.DB.View(func(tx *meta.Tx) error {
		images, err := tx.Images()
		if err != nil {
			return err
		}
		layers, err := tx.Layers()
		if err != nil {
			return err
		}
		size := map[digest.Digest]int64{}
		for _, l := range layers {
			size[l.ChainID] = l.Size
		}
		if rootfs, err = tx.Rootfses(); err != nil {
			return err
		}
		used := map[digest.Digest]bool{}
		usedLayers := map[digest.Digest]bool{}
		for _, r := range rootfs {
			used[r.Image] = true
		}
		counted := map[digest.Digest]bool{}
		for _, img := range images {
			du.Images++
			if used[img.ID] {
				du.ActiveImages++
				for _, c := range img.ChainIDs {
					usedLayers[c] = true
				}
			}
			for _, c := range img.ChainIDs {
				if !counted[c] {
					counted[c] = true
					du.ImagesSize += size[c]
				}
			}
		}
		for c := range counted {
			if !usedLayers[c] {
				du.ImagesReclaimable += size[c]
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range rootfs {
		if r.ReadOnly {
			continue // an image mount, not a container
		}
		du.Containers++
		if dir, err := s.Layers.UpperDir(r.ID); err == nil {
			du.ContainersSize += DirSize(dir)
		}
	}
	return du, nil
}
