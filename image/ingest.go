package image

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/hullproject/hull/internal/progress"
	"github.com/hullproject/hull/storage/archive"
	"github.com/hullproject/hull/storage/layer"
	"github.com/hullproject/hull/storage/meta"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// blobSource opens the raw (possibly compressed) bytes of one layer blob.
type blobSource func() (io.ReadCloser, error)

// incoming is an image on its way into the store.
type incoming struct {
	manifest          []byte
	manifestMediaType string
	config            []byte
	// layers are the manifest's layer descriptors, in order, with a way to
	// read each blob.
	layers  []ocispec.Descriptor
	sources []blobSource
	// names are full references to point at the image.
	names       []string
	repoDigests []string
	// doneStatus is what the progress shows for a finished layer.
	doneStatus string
}

// Layer media types hull reads.
var layerMediaTypes = map[string]bool{
	ocispec.MediaTypeImageLayer:                                 true,
	ocispec.MediaTypeImageLayerGzip:                             true,
	ocispec.MediaTypeImageLayerZstd:                             true,
	ocispec.MediaTypeImageLayerNonDistributable:                 true, //nolint:staticcheck // still found in the wild
	ocispec.MediaTypeImageLayerNonDistributableGzip:             true, //nolint:staticcheck
	ocispec.MediaTypeImageLayerNonDistributableZstd:             true, //nolint:staticcheck
	"application/vnd.docker.image.rootfs.diff.tar.gzip":         true,
	"application/vnd.docker.image.rootfs.diff.tar":              true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar":      true,
}

func newLeaseID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ingest stores an image: blobs verified into the content store, layers
// unpacked once, then one transaction records the image, its layer
// references and its names. A failure at any step leaves the store as it
// was, but for verified blobs and layers that the next garbage collection
// drops if nothing claims them.
func (s *Store) ingest(in *incoming, prog *progress.Reporter) (_ *meta.Image, retErr error) {
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(in.config, &cfg); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	if cfg.RootFS.Type != "" && cfg.RootFS.Type != "layers" {
		return nil, fmt.Errorf("image config: unknown rootfs type %q", cfg.RootFS.Type)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(in.layers) {
		return nil, fmt.Errorf("image config lists %d layers, the manifest %d", len(diffIDs), len(in.layers))
	}
	for i, l := range in.layers {
		if ok := layerMediaTypes[l.MediaType]; !ok {
			return nil, fmt.Errorf("layer %d: unsupported media type %q", i, l.MediaType)
		}
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		if err := diffIDs[i].Validate(); err != nil {
			return nil, fmt.Errorf("image config diff ID %d: %w", i, err)
		}
	}
	id := digest.FromBytes(in.config)
	manifestDigest := digest.FromBytes(in.manifest)

	// The lease names every blob and layer before any is written, so a
	// concurrent prune cannot take them between their write and the final
	// record.
	lease, err := meta.NewLease(newLeaseID())
	if err != nil {
		return nil, err
	}
	lease.Blobs = append(lease.Blobs, id, manifestDigest)
	for _, l := range in.layers {
		lease.Blobs = append(lease.Blobs, l.Digest)
	}
	chain := identity.ChainIDs(append([]digest.Digest(nil), diffIDs...))
	lease.Layers = chain
	if err := s.DB.Update(func(tx *meta.Tx) error { return tx.PutLease(lease) }); err != nil {
		return nil, err
	}
	defer func() { s.releaseLease(lease, retErr != nil) }()

	if _, err := s.Content.PutBytes(in.config); err != nil {
		return nil, fmt.Errorf("store config: %w", err)
	}
	if _, err := s.Content.PutBytes(in.manifest); err != nil {
		return nil, fmt.Errorf("store manifest: %w", err)
	}
	if err := s.storeLayers(in, diffIDs, chain, lease.ID, prog); err != nil {
		return nil, err
	}

	var size int64
	var img *meta.Image
	err = s.DB.Update(func(tx *meta.Tx) error {
		for _, c := range chain {
			l, err := tx.Layer(c)
			if err != nil {
				return fmt.Errorf("layer %s vanished while the image was stored", c)
			}
			size += l.Size
		}
		existing, err := tx.Image(id)
		switch {
		case err == nil:
			// The same image again, possibly under another manifest (its
			// layers compressed differently): the first manifest stays the
			// image's own, the new repository digests are added.
			img = existing
			img.RepoDigests = appendUnique(img.RepoDigests, in.repoDigests...)
		case errors.Is(err, meta.ErrNotFound):
			img = &meta.Image{
				ID:                id,
				Manifest:          manifestDigest,
				ManifestMediaType: in.manifestMediaType,
				ManifestSize:      int64(len(in.manifest)),
				ChainIDs:          chain,
				Size:              size,
				Added:             time.Now().UTC(),
				RepoDigests:       in.repoDigests,
			}
			if cfg.Created != nil {
				img.Created = cfg.Created.UTC()
			}
			if len(chain) > 0 {
				if err := layer.Ref(tx, chain[len(chain)-1]); err != nil {
					return err
				}
			}
		default:
			return err
		}
		if err := tx.PutImage(img); err != nil {
			return err
		}
		for _, n := range in.names {
			if _, err := tx.SetName(n, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return img, nil
}

// releaseLease ends a lease. When the work failed, the blobs and layers it
// protected that nothing else holds are deleted at once, so a failed
// operation leaves the store exactly as it found it.
func (s *Store) releaseLease(lease *meta.Lease, failed bool) {
	cleanup := func() {}
	s.DB.Update(func(tx *meta.Tx) error {
		if err := tx.DeleteLease(lease.ID); err != nil || !failed {
			return err
		}
		keep, err := s.referencedBlobs(tx)
		if err != nil {
			return err
		}
		for _, d := range lease.Blobs {
			if !keep[d] {
				s.Content.Delete(d)
			}
		}
		gone, err := layer.DropUnused(tx, lease.Layers)
		if err != nil {
			return err
		}
		cleanup = s.Layers.Retire(gone)
		return nil
	})
	cleanup()
}

func appendUnique(list []string, add ...string) []string {
	for _, a := range add {
		found := false
		for _, l := range list {
			if l == a {
				found = true
				break
			}
		}
		if !found {
			list = append(list, a)
		}
	}
	return list
}

// storeLayers makes sure every layer blob is in the content store and
// every layer is unpacked. With overlay the layers are unpacked at the
// same time on every CPU and recorded in order afterwards.
func (s *Store) storeLayers(in *incoming, diffIDs, chain []digest.Digest, lease string, prog *progress.Reporter) error {
	n := len(in.layers)
	items := make([]*progress.Item, n)
	for i, l := range in.layers {
		items[i] = prog.Item(shortDigest(l.Digest), l.Size)
	}
	type result struct {
		pending *layer.Pending
		err     error
		// present: the layer and its blob were already stored.
		present bool
	}
	results := make([]chan result, n)
	for i := range results {
		results[i] = make(chan result, 1)
	}
	work := func(i int) result {
		l := in.layers[i]
		haveLayer := s.Layers.Has(chain[i])
		haveBlob := s.Content.Has(l.Digest)
		if haveLayer && haveBlob {
			items[i].Status("Already exists")
			return result{present: true}
		}
		open := in.sources[i]
		if haveBlob {
			open = func() (io.ReadCloser, error) { return s.Content.Open(l.Digest) }
		}
		raw, err := open()
		if err != nil {
			return result{err: fmt.Errorf("layer %s: %w", l.Digest, err)}
		}
		defer raw.Close()
		items[i].Status("Extracting")
		var src io.Reader = io.TeeReader(raw, items[i].Writer())
		var blob interface {
			io.Writer
			Commit() (digest.Digest, int64, error)
			Abort()
		}
		if !haveBlob {
			w, err := s.Content.NewWriter(l.Digest, l.Size)
			if err != nil {
				return result{err: err}
			}
			blob = w
			src = io.TeeReader(src, w)
		}
		abort := func(err error) result {
			if blob != nil {
				blob.Abort()
			}
			return result{err: err}
		}
		if haveLayer {
			// Only the blob is missing: copy it, no unpack.
			if _, err := io.Copy(io.Discard, src); err != nil {
				return abort(fmt.Errorf("layer %s: %w", l.Digest, err))
			}
		} else {
			br := bufio.NewReaderSize(src, 1<<20)
			plain, _, err := archive.Decompress(br)
			if err != nil {
				return abort(fmt.Errorf("layer %s: %w", l.Digest, err))
			}
			var r result
			if s.Layers.Independent() {
				r.pending, r.err = s.Layers.Prepare(plain, layer.CreateOptions{DiffID: diffIDs[i]})
			} else {
				var parent digest.Digest
				if i > 0 {
					parent = chain[i-1]
				}
				_, r.err = s.Layers.Create(parent, plain, layer.CreateOptions{DiffID: diffIDs[i], Lease: lease})
			}
			plain.Close()
			if r.err == nil {
				// The compressed stream may go on past the end of the tar.
				_, r.err = io.Copy(io.Discard, br)
			}
			if r.err != nil {
				if r.pending != nil {
					r.pending.Discard()
				}
				return abort(fmt.Errorf("layer %s: %w", l.Digest, r.err))
			}
			if blob == nil {
				return r
			}
			if _, _, err := blob.Commit(); err != nil {
				if r.pending != nil {
					r.pending.Discard()
				}
				return result{err: fmt.Errorf("layer %s: %w", l.Digest, err)}
			}
			return r
		}
		if _, _, err := blob.Commit(); err != nil {
			return result{err: fmt.Errorf("layer %s: %w", l.Digest, err)}
		}
		return result{}
	}

	workers := 1
	if s.Layers.Independent() {
		workers = min(runtime.GOMAXPROCS(0), 4, n)
	}
	next := make(chan int)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] <- work(i)
			}
		}()
	}
	go func() {
		defer close(next)
		for i := 0; i < n; i++ {
			select {
			case next <- i:
			case <-stop:
				return
			}
		}
	}()
	var firstErr error
	for i := 0; i < n && firstErr == nil; i++ {
		r := <-results[i]
		if r.err != nil {
			firstErr = r.err
			break
		}
		if r.pending != nil {
			var parent digest.Digest
			if i > 0 {
				parent = chain[i-1]
			}
			l, err := r.pending.Commit(parent, lease)
			if err == nil && l.ChainID != chain[i] {
				err = fmt.Errorf("layer %d: chain ID %s, expected %s", i, l.ChainID, chain[i])
			}
			if err != nil {
				firstErr = err
				break
			}
		}
		if !r.present {
			items[i].Status(in.doneStatus)
		}
	}
	if firstErr != nil {
		close(stop)
	}
	// Workers finish the layer in hand and leave; results are buffered, so
	// none blocks. Unpacked layers nobody will commit are dropped.
	wg.Wait()
	for i := 0; i < n; i++ {
		select {
		case r := <-results[i]:
			if r.pending != nil {
				r.pending.Discard()
			}
		default:
		}
	}
	return firstErr
}

func shortDigest(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}
