package image

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hullproject/hull/storage/layer"
	"github.com/hullproject/hull/storage/meta"
	"github.com/opencontainers/go-digest"
)

// imageViewPrefix names the read-only views `hull image mount` makes.
const imageViewPrefix = "image-"

func imageViewID(id digest.Digest) string { return imageViewPrefix + id.Encoded() }

// MountImage mounts an image's tree read-only, as `podman image mount`
// does, and returns where. Mounting a mounted image returns the same path.
// A mounted image cannot be removed.
func (s *Store) MountImage(ref string) (string, error) {
	img, err := s.Resolve(ref)
	if err != nil {
		return "", err
	}
	vid := imageViewID(img.ID)
	if _, err := s.Layers.Rootfs(vid); errors.Is(err, layer.ErrRootfsUnknown) {
		if _, err := s.Layers.CreateImageView(vid, img.ID, img.TopLayer()); err != nil && !strings.Contains(err.Error(), "exists") {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	return s.Layers.Mount(vid)
}

// UnmountImage undoes MountImage.
func (s *Store) UnmountImage(ref string) error {
	img, err := s.Resolve(ref)
	if err != nil {
		return err
	}
	err = s.Layers.RemoveRootfs(imageViewID(img.ID))
	if errors.Is(err, layer.ErrRootfsUnknown) {
		return fmt.Errorf("image %s is not mounted", ref)
	}
	return err
}

// MountedImage is an image `hull image mount` has mounted.
type MountedImage struct {
	ID    digest.Digest
	Names []string
	Path  string
}

// MountedImages lists the mounted images.
func (s *Store) MountedImages() ([]MountedImage, error) {
	var out []MountedImage
	err := s.DB.View(func(tx *meta.Tx) error {
		rfs, err := tx.Rootfses()
		if err != nil {
			return err
		}
		for _, r := range rfs {
			if !r.ReadOnly || !strings.HasPrefix(r.ID, imageViewPrefix) {
				continue
			}
			names, _ := tx.NamesOf(r.Image)
			out = append(out, MountedImage{ID: r.Image, Names: names})
		}
		return nil
	})
	for i := range out {
		out[i].Path, _ = s.Layers.Mount(imageViewID(out[i].ID))
	}
	return out, err
}
