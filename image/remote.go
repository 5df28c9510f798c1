package image

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/hullproject/hull/internal/progress"
	"github.com/hullproject/hull/storage/meta"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// RemoteOptions set how hull talks to a registry.
type RemoteOptions struct {
	// Insecure allows plain HTTP and unverified TLS (--tls-verify=false).
	Insecure bool
	// AuthFile is the credentials file (Docker's config.json format).
	AuthFile string
	// Platform picks the manifest of a multi-platform image, as
	// os/arch[/variant] (pull --platform); empty means this machine's.
	Platform string
}

// platform parses o.Platform.
func (o RemoteOptions) platform() (v1.Platform, error) {
	if o.Platform == "" {
		return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, nil
	}
	p, err := v1.ParsePlatform(o.Platform)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("invalid platform %q: want os/arch[/variant], e.g. linux/arm64", o.Platform)
	}
	return *p, nil
}

func (o RemoteOptions) remote(ctx context.Context, platform v1.Platform) []remote.Option {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.Insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --tls-verify=false
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(tr),
		remote.WithAuthFromKeychain(keychain{path: o.AuthFile}),
		remote.WithPlatform(platform),
		// A registry that is down should fail fast, not after a minute.
		remote.WithRetryBackoff(remote.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Steps: 2}),
		remote.WithUserAgent("hull"),
	}
}

// PullResult says what a pull did.
type PullResult struct {
	Image *meta.Image
	// Name is the full reference pulled.
	Name string
	// Digest is the digest of the manifest (or index) the registry served.
	Digest digest.Digest
	// UpToDate is true when the store already held the image under this name.
	UpToDate bool
}

// Pull fetches an image from its registry and stores it under its name.
func (s *Store) Pull(ctx context.Context, ref string, opts RemoteOptions, prog *progress.Reporter) (*PullResult, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, err
	}
	rn, err := r.remoteName(opts.Insecure)
	if err != nil {
		return nil, err
	}
	plat, err := opts.platform()
	if err != nil {
		return nil, err
	}
	ropts := opts.remote(ctx, plat)
	desc, err := remote.Get(rn, ropts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r.Familiar(), err)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r.Familiar(), err)
	}
	if opts.Platform != "" {
		// An index yields the platform's image or an error; a single
		// image must be of that platform, as Docker checks.
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("pull %s: config: %w", r.Familiar(), err)
		}
		got := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
		if !got.Satisfies(plat) {
			return nil, fmt.Errorf("pull %s: the image is for %s, not %s", r.Familiar(), platformString(got), platformString(plat))
		}
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: manifest: %w", r.Familiar(), err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	if mt != types.OCIManifestSchema1 && mt != types.DockerManifestSchema2 {
		return nil, fmt.Errorf("pull %s: unsupported manifest media type %q", r.Familiar(), mt)
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("pull %s: config: %w", r.Familiar(), err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("pull %s: manifest: %w", r.Familiar(), err)
	}
	if m.Config.Digest != digest.FromBytes(config) {
		return nil, fmt.Errorf("pull %s: config digest mismatch", r.Familiar())
	}
	res := &PullResult{Name: r.String(), Digest: digest.Digest(desc.Digest.String())}
	repoDigest := r.Repository + "@" + res.Digest.String()
	if id, err := s.lookupName(r.String()); err == nil && id == digest.FromBytes(config) {
		if existing, err := s.Resolve(id.String()); err == nil && hasString(existing.RepoDigests, repoDigest) {
			res.Image, res.UpToDate = existing, true
			return res, nil
		}
	}
	in := &incoming{
		manifest:          manifest,
		manifestMediaType: string(mt),
		config:            config,
		layers:            m.Layers,
		doneStatus:        "Pull complete",
		repoDigests:       []string{repoDigest},
	}
	if r.Tag != "" {
		in.names = []string{r.String()}
	}
	for _, l := range m.Layers {
		h, err := v1.NewHash(l.Digest.String())
		if err != nil {
			return nil, fmt.Errorf("pull %s: layer %s: %w", r.Familiar(), l.Digest, err)
		}
		in.sources = append(in.sources, func() (io.ReadCloser, error) {
			layer, err := img.LayerByDigest(h)
			if err != nil {
				return nil, err
			}
			return layer.Compressed()
		})
	}
	if res.Image, err = s.ingest(in, prog); err != nil {
		return nil, fmt.Errorf("pull %s: %w", r.Familiar(), err)
	}
	return res, nil
}

func hasString(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// storedImage presents a stored image to go-containerregistry for a push:
// its manifest, config and layer blobs exactly as stored.
type storedImage struct {
	s        *Store
	img      *meta.Image
	manifest []byte
	layers   map[string]ocispec.Descriptor
}

func (si *storedImage) RawConfigFile() ([]byte, error) { return si.s.Content.ReadAll(si.img.ID) }
func (si *storedImage) MediaType() (types.MediaType, error) {
	return types.MediaType(si.img.ManifestMediaType), nil
}
func (si *storedImage) RawManifest() ([]byte, error) { return si.manifest, nil }

func (si *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	d, ok := si.layers[h.String()]
	if !ok {
		return nil, fmt.Errorf("image has no layer %s", h)
	}
	return &storedLayer{s: si.s, desc: d}, nil
}

type storedLayer struct {
	s    *Store
	desc ocispec.Descriptor
}

func (l *storedLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.desc.Digest.String()) }
func (l *storedLayer) Compressed() (io.ReadCloser, error) {
	return l.s.Content.Open(l.desc.Digest)
}
func (l *storedLayer) Size() (int64, error) { return l.desc.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.desc.MediaType), nil
}

// Push sends an image to the registry its name points at and returns the
// manifest digest the registry now holds.
func (s *Store) Push(ctx context.Context, ref string, opts RemoteOptions, prog *progress.Reporter) (digest.Digest, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return "", err
	}
	img, err := s.Resolve(ref)
	if err != nil {
		return "", err
	}
	if r.Digest != "" {
		return "", fmt.Errorf("push %s: push a tag, not a digest", ref)
	}
	if id, err := s.lookupName(r.String()); err != nil || id != img.ID {
		return "", fmt.Errorf("push %s: %w (tag the image first)", r.Familiar(), ErrNotFound)
	}
	raw, err := s.Content.ReadAll(img.Manifest)
	if err != nil {
		return "", fmt.Errorf("push %s: manifest: %w", r.Familiar(), err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", fmt.Errorf("push %s: manifest: %w", r.Familiar(), err)
	}
	si := &storedImage{s: s, img: img, manifest: raw, layers: map[string]ocispec.Descriptor{}}
	var total int64
	for _, l := range m.Layers {
		si.layers[l.Digest.String()] = l
		total += l.Size
	}
	v1img, err := partial.CompressedToImage(si)
	if err != nil {
		return "", err
	}
	rn, err := r.remoteName(opts.Insecure)
	if err != nil {
		return "", err
	}
	// Push sends the image as it is; the platform only steers pulls.
	ropts := opts.remote(ctx, v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
	var done chan struct{}
	if prog != nil {
		item := prog.Item(shortDigest(img.ID), total)
		item.Status("Pushing")
		updates := make(chan v1.Update, 64)
		done = make(chan struct{})
		go func() {
			defer close(done)
			var last int64
			for u := range updates {
				if u.Complete > last {
					item.Add(u.Complete - last)
					last = u.Complete
				}
			}
			item.Status("Pushed")
		}()
		ropts = append(ropts, remote.WithProgress(updates))
	}
	err = remote.Write(rn, v1img, ropts...)
	if done != nil {
		<-done
	}
	if err != nil {
		return "", fmt.Errorf("push %s: %w", r.Familiar(), err)
	}
	rd := r.Repository + "@" + img.Manifest.String()
	err = s.DB.Update(func(tx *meta.Tx) error {
		cur, err := tx.Image(img.ID)
		if err != nil {
			return err
		}
		cur.RepoDigests = appendUnique(cur.RepoDigests, rd)
		return tx.PutImage(cur)
	})
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return "", err
	}
	return img.Manifest, nil
}

// registryName is a registry host as go-containerregistry wants it.
func registryName(host string, insecure bool) (name.Registry, error) {
	if host == "" || host == "docker.io" {
		host = name.DefaultRegistry
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	return name.NewRegistry(host, opts...)
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
