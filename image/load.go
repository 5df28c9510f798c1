package image

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/hullproject/hull/internal/progress"
	"github.com/hullproject/hull/storage/archive"
	"github.com/hullproject/hull/storage/meta"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Loaded is one image that Load brought in.
type Loaded struct {
	Image *meta.Image
	// Names are the full references the archive gave it (none: only the ID
	// is printed, as Docker does).
	Names []string
}

// dockerManifestEntry is one element of a docker-archive's manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

const maxMetadataSize = 8 << 20

// Load reads images from a docker-archive (as `docker save` writes it), an
// OCI archive or an OCI layout directory. src "-" reads standard input.
func (s *Store) Load(src string, stdin io.Reader, prog *progress.Reporter) ([]Loaded, error) {
	if src != "-" {
		if st, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("open %s: %w", src, err)
		} else if st.IsDir() {
			return s.loadLayoutDir(src, prog)
		}
	}
	f, cleanup, err := s.openArchive(src, stdin)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	idx, err := indexTar(f)
	if err != nil {
		return nil, err
	}
	switch {
	case idx.has("manifest.json"):
		return s.loadDockerArchive(idx, prog)
	case idx.has("index.json"):
		return s.loadOCI(ociTarBlobs{idx}, prog)
	default:
		return nil, errors.New("unknown archive format: neither manifest.json (docker-archive) nor index.json (OCI archive) found")
	}
}

// openArchive gives a seekable, uncompressed archive file: the file itself
// when it is a plain tar, else a spooled copy in the store's temporary
// directory (standard input, or a gzip or zstd compressed archive).
func (s *Store) openArchive(src string, stdin io.Reader) (*os.File, func(), error) {
	var in io.Reader
	var f *os.File
	if src == "-" {
		in = stdin
	} else {
		var err error
		if f, err = os.Open(src); err != nil {
			return nil, nil, fmt.Errorf("open %s: %w", src, err)
		}
		in = f
	}
	br := bufio.NewReaderSize(in, 1<<20)
	plain, comp, err := archive.Decompress(br)
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, nil, fmt.Errorf("read archive: %w", err)
	}
	if f != nil && comp == archive.Uncompressed {
		plain.Close()
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	defer plain.Close()
	spool, err := os.CreateTemp(s.TempDir(), "load-")
	if err != nil {
		return nil, nil, err
	}
	os.Remove(spool.Name()) // unnamed: nothing is left behind on a crash
	if f != nil {
		defer f.Close()
	}
	if _, err := io.CopyBuffer(spool, plain, make([]byte, 1<<20)); err != nil {
		spool.Close()
		return nil, nil, fmt.Errorf("read archive: %w", err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		spool.Close()
		return nil, nil, err
	}
	return spool, func() { spool.Close() }, nil
}

func (s *Store) loadDockerArchive(idx *tarIndex, prog *progress.Reporter) ([]Loaded, error) {
	raw, err := idx.readAll("manifest.json", maxMetadataSize)
	if err != nil {
		return nil, err
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("docker-archive manifest.json: %w", err)
	}
	if len(entries) == 0 {
		return nil, errors.New("docker-archive manifest.json lists no image")
	}
	var out []Loaded
	for _, e := range entries {
		in, err := dockerArchiveImage(idx, e)
		if err != nil {
			return out, err
		}
		img, err := s.ingest(in, prog)
		if err != nil {
			return out, err
		}
		out = append(out, Loaded{Image: img, Names: in.names})
	}
	return out, nil
}

func dockerArchiveImage(idx *tarIndex, e dockerManifestEntry) (*incoming, error) {
	config, err := idx.readAll(e.Config, maxMetadataSize)
	if err != nil {
		return nil, fmt.Errorf("docker-archive: %w", err)
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("docker-archive config %s: %w", e.Config, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(e.Layers) {
		return nil, fmt.Errorf("docker-archive: config lists %d layers, manifest.json %d", len(cfg.RootFS.DiffIDs), len(e.Layers))
	}
	in := &incoming{config: config, manifestMediaType: ocispec.MediaTypeImageManifest, doneStatus: "Loading layer complete"}
	for _, tag := range e.RepoTags {
		r, err := ParseReference(tag)
		if err != nil {
			return nil, fmt.Errorf("docker-archive: %w", err)
		}
		if r.Digest != "" {
			continue
		}
		in.names = append(in.names, r.String())
	}
	for i, p := range e.Layers {
		p := p
		open := func() (io.ReadCloser, error) {
			r, _, err := idx.open(p)
			return r, err
		}
		entry, err := idx.lookup(p)
		if err != nil {
			return nil, fmt.Errorf("docker-archive: %w", err)
		}
		comp, err := sniff(open)
		if err != nil {
			return nil, fmt.Errorf("docker-archive layer %s: %w", p, err)
		}
		desc := ocispec.Descriptor{Size: entry.size}
		switch comp {
		case archive.Uncompressed:
			// An uncompressed layer's digest is its diff ID, which the
			// config gives; it is verified while the blob is stored.
			desc.MediaType = ocispec.MediaTypeImageLayer
			desc.Digest = cfg.RootFS.DiffIDs[i]
		default:
			desc.MediaType = ocispec.MediaTypeImageLayerGzip
			if comp == archive.Zstd {
				desc.MediaType = ocispec.MediaTypeImageLayerZstd
			}
			if desc.Digest, err = digestOf(open); err != nil {
				return nil, fmt.Errorf("docker-archive layer %s: %w", p, err)
			}
		}
		in.layers = append(in.layers, desc)
		in.sources = append(in.sources, open)
	}
	manifest := ocispec.Manifest{
		Versioned: specsVersioned,
		MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageConfig,
			Digest:    digest.FromBytes(config),
			Size:      int64(len(config)),
		},
		Layers: in.layers,
	}
	if in.manifest, err = json.Marshal(manifest); err != nil {
		return nil, err
	}
	return in, nil
}

func sniff(open blobSource) (archive.Compression, error) {
	r, err := open()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	d, comp, err := archive.Decompress(bufio.NewReaderSize(r, 64))
	if err != nil {
		return 0, err
	}
	d.Close()
	return comp, nil
}

func digestOf(open blobSource) (digest.Digest, error) {
	r, err := open()
	if err != nil {
		return "", err
	}
	defer r.Close()
	return digest.SHA256.FromReader(r)
}

// ociBlobs reads the blobs of an OCI image layout, in a tar or a directory.
type ociBlobs interface {
	readFile(name string) ([]byte, error)
	openBlob(d digest.Digest) (io.ReadCloser, int64, error)
}

type ociTarBlobs struct{ idx *tarIndex }

func (o ociTarBlobs) readFile(name string) ([]byte, error) {
	return o.idx.readAll(name, maxMetadataSize)
}

func (o ociTarBlobs) openBlob(d digest.Digest) (io.ReadCloser, int64, error) {
	if err := d.Validate(); err != nil {
		return nil, 0, err
	}
	return o.idx.open("blobs/" + string(d.Algorithm()) + "/" + d.Encoded())
}

type ociDirBlobs struct{ dir string }

func (o ociDirBlobs) readFile(name string) ([]byte, error) {
	f, err := os.Open(filepath.Join(o.dir, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxMetadataSize))
}

func (o ociDirBlobs) openBlob(d digest.Digest) (io.ReadCloser, int64, error) {
	if err := d.Validate(); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(filepath.Join(o.dir, "blobs", string(d.Algorithm()), d.Encoded()))
	if err != nil {
		return nil, 0, fmt.Errorf("OCI layout: blob %s: %w", d, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

func (s *Store) loadLayoutDir(dir string, prog *progress.Reporter) ([]Loaded, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return nil, fmt.Errorf("%s is not an OCI layout: %w", dir, err)
	}
	return s.loadOCI(ociDirBlobs{dir}, prog)
}

// readVerified reads a small blob and checks its digest.
func readVerified(b ociBlobs, d ocispec.Descriptor) ([]byte, error) {
	r, size, err := b.openBlob(d.Digest)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if size > maxMetadataSize {
		return nil, fmt.Errorf("blob %s is too large (%d bytes)", d.Digest, size)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if got := digest.FromBytes(raw); got != d.Digest {
		return nil, fmt.Errorf("digest mismatch: expected %s, got %s", d.Digest, got)
	}
	return raw, nil
}

// Annotations that name an image in an OCI layout.
const (
	annotationContainerdName = "io.containerd.image.name"
)

func (s *Store) loadOCI(b ociBlobs, prog *progress.Reporter) ([]Loaded, error) {
	raw, err := b.readFile("index.json")
	if err != nil {
		return nil, fmt.Errorf("OCI layout: %w", err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, fmt.Errorf("OCI layout index.json: %w", err)
	}
	if len(index.Manifests) == 0 {
		return nil, errors.New("OCI layout index.json lists no image")
	}
	var out []Loaded
	for _, desc := range index.Manifests {
		in, err := ociImage(b, desc, 0)
		if err != nil {
			return out, err
		}
		if n := layoutName(desc.Annotations); n != "" {
			in.names = []string{n}
		}
		img, err := s.ingest(in, prog)
		if err != nil {
			return out, err
		}
		out = append(out, Loaded{Image: img, Names: in.names})
	}
	return out, nil
}

// layoutName finds the image name in an index entry's annotations: the
// containerd name (Docker's own saves), else the OCI ref.name when it is a
// whole reference (skopeo and podman write "name:tag" there).
func layoutName(ann map[string]string) string {
	for _, key := range []string{annotationContainerdName, ocispec.AnnotationRefName} {
		if v := ann[key]; v != "" {
			if r, err := ParseReference(v); err == nil && r.Digest == "" {
				return r.String()
			}
		}
	}
	return ""
}

// ociImage reads a manifest, or picks this platform's manifest from an
// index, and returns the image it describes.
func ociImage(b ociBlobs, desc ocispec.Descriptor, depth int) (*incoming, error) {
	if depth > 4 {
		return nil, errors.New("OCI layout: indexes nested too deep")
	}
	raw, err := readVerified(b, desc)
	if err != nil {
		return nil, fmt.Errorf("OCI layout manifest: %w", err)
	}
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex, mediaTypeDockerList:
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("OCI index %s: %w", desc.Digest, err)
		}
		m, err := pickPlatform(idx.Manifests)
		if err != nil {
			return nil, err
		}
		return ociImage(b, m, depth+1)
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest, "":
	default:
		return nil, fmt.Errorf("unsupported manifest media type %q", desc.MediaType)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	mt := desc.MediaType
	if mt == "" {
		mt = m.MediaType
	}
	if mt == "" {
		mt = ocispec.MediaTypeImageManifest
	}
	if m.Config.MediaType != ocispec.MediaTypeImageConfig && m.Config.MediaType != mediaTypeDockerConfig {
		return nil, fmt.Errorf("unsupported config media type %q", m.Config.MediaType)
	}
	config, err := readVerified(b, m.Config)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	in := &incoming{manifest: raw, manifestMediaType: mt, config: config, layers: m.Layers, doneStatus: "Loading layer complete"}
	for _, l := range m.Layers {
		d := l.Digest
		in.sources = append(in.sources, func() (io.ReadCloser, error) {
			r, _, err := b.openBlob(d)
			return r, err
		})
	}
	return in, nil
}

// Docker's media types, which registries and archives still use.
const (
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
)

var specsVersioned = ocispec.Manifest{}.Versioned

func init() { specsVersioned.SchemaVersion = 2 }

// pickPlatform chooses the manifest for linux on this machine's
// architecture from an index.
func pickPlatform(list []ocispec.Descriptor) (ocispec.Descriptor, error) {
	for _, d := range list {
		p := d.Platform
		if p != nil && p.OS == "linux" && p.Architecture == runtime.GOARCH {
			return d, nil
		}
	}
	if len(list) == 1 && list[0].Platform == nil {
		return list[0], nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("no image for linux/%s in the index", runtime.GOARCH)
}
