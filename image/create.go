package image

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/hullproject/hull/internal/progress"
	"github.com/hullproject/hull/storage/archive"
	"github.com/hullproject/hull/storage/layer"
	"github.com/hullproject/hull/storage/meta"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// NewImage describes a one-layer image made from a root filesystem tar.
type NewImage struct {
	// Config is the container config (Cmd, Env …).
	Config dockerspec.DockerOCIImageConfig
	// Created is the image's creation time (now when zero).
	Created time.Time
	// CreatedBy and Comment go into the image history.
	CreatedBy, Comment string
	// Names are references to point at the image (any form).
	Names []string
}

// Import makes a one-layer image from a root filesystem tar (plain, gzip
// or zstd), as `docker import` does. The layer is kept uncompressed, so
// its blob digest is its diff ID.
func (s *Store) Import(r io.Reader, opts NewImage, prog *progress.Reporter) (_ *meta.Image, retErr error) {
	names := make([]string, 0, len(opts.Names))
	for _, n := range opts.Names {
		ref, err := ParseReference(n)
		if err != nil {
			return nil, err
		}
		if ref.Digest != "" {
			return nil, fmt.Errorf("invalid reference %q: a new image cannot be named by digest", n)
		}
		names = append(names, ref.String())
	}
	lease, err := meta.NewLease(newLeaseID())
	if err != nil {
		return nil, err
	}
	if err := s.DB.Update(func(tx *meta.Tx) error { return tx.PutLease(lease) }); err != nil {
		return nil, err
	}
	defer func() { s.releaseLease(lease, retErr != nil) }()

	plain, _, err := archive.Decompress(bufio.NewReaderSize(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer plain.Close()
	blob, err := s.Content.NewWriter("", -1)
	if err != nil {
		return nil, err
	}
	l, err := s.Layers.Create("", io.TeeReader(plain, blob), layer.CreateOptions{Lease: lease.ID})
	if err != nil {
		blob.Abort()
		return nil, fmt.Errorf("import: %w", err)
	}
	// The lease must name the blob before it lands in the store.
	if err := s.DB.Update(func(tx *meta.Tx) error {
		lease.Blobs = append(lease.Blobs, blob.Digest())
		lease.Layers = append(lease.Layers, l.ChainID)
		return tx.PutLease(lease)
	}); err != nil {
		blob.Abort()
		return nil, err
	}
	d, size, err := blob.Commit()
	if err != nil {
		return nil, err
	}
	if d != l.DiffID {
		return nil, fmt.Errorf("import: layer digest %s differs from its diff ID %s", d, l.DiffID)
	}

	created := opts.Created
	if created.IsZero() {
		created = time.Now().UTC()
	}
	cfg := dockerspec.DockerOCIImage{
		Image: ocispec.Image{
			Created:  &created,
			Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.DiffID}},
			History: []ocispec.History{{
				Created:   &created,
				CreatedBy: opts.CreatedBy,
				Comment:   opts.Comment,
			}},
		},
		Config: opts.Config,
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	layerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: size}
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specsVersioned,
		MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageConfig,
			Digest:    digest.FromBytes(config),
			Size:      int64(len(config)),
		},
		Layers: []ocispec.Descriptor{layerDesc},
	})
	if err != nil {
		return nil, err
	}
	in := &incoming{
		manifest:          manifest,
		manifestMediaType: ocispec.MediaTypeImageManifest,
		config:            config,
		layers:            []ocispec.Descriptor{layerDesc},
		sources:           []blobSource{func() (io.ReadCloser, error) { return s.Content.Open(d) }},
		names:             names,
		doneStatus:        "Import complete",
	}
	return s.ingest(in, nil)
}
