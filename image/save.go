package image

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hullproject/hull/storage/archive"
	"github.com/hullproject/hull/storage/meta"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Archive formats Save writes.
const (
	FormatDockerArchive = "docker-archive"
	FormatOCIArchive    = "oci-archive"
)

// savedImage is one image of a save with the names asked for it.
type savedImage struct {
	img      *meta.Image
	names    []Reference
	manifest ocispec.Manifest
	config   []byte
}

// Save writes images to w as a docker-archive (what `docker load` and
// `podman load` read; it is also an OCI layout, as Docker 25 writes it) or
// as an OCI archive. refs are names or IDs; a name is recorded in the
// archive, an ID is not.
func (s *Store) Save(w io.Writer, refs []string, format string) error {
	if format == "" {
		format = FormatDockerArchive
	}
	if format != FormatDockerArchive && format != FormatOCIArchive {
		return fmt.Errorf("unknown archive format %q (docker-archive or oci-archive)", format)
	}
	if len(refs) == 0 {
		return fmt.Errorf("save: no image given")
	}
	var images []*savedImage
	byID := map[digest.Digest]*savedImage{}
	for _, ref := range refs {
		img, err := s.Resolve(ref)
		if err != nil {
			return err
		}
		si := byID[img.ID]
		if si == nil {
			si = &savedImage{img: img}
			raw, err := s.Content.ReadAll(img.Manifest)
			if err != nil {
				return fmt.Errorf("image %s: manifest: %w", ref, err)
			}
			if err := json.Unmarshal(raw, &si.manifest); err != nil {
				return fmt.Errorf("image %s: manifest: %w", ref, err)
			}
			if si.config, err = s.Content.ReadAll(img.ID); err != nil {
				return fmt.Errorf("image %s: config: %w", ref, err)
			}
			byID[img.ID] = si
			images = append(images, si)
		}
		if r, err := ParseReference(ref); err == nil && r.Digest == "" {
			if id, err := s.lookupName(r.String()); err == nil && id == img.ID {
				si.names = append(si.names, r)
			}
		}
	}
	tw := &archiveWriter{tw: tar.NewWriter(w), written: map[string]bool{}}
	var err error
	if format == FormatOCIArchive {
		err = s.writeOCIArchive(tw, images)
	} else {
		err = s.writeDockerArchive(tw, images)
	}
	if err != nil {
		return err
	}
	return tw.tw.Close()
}

func (s *Store) lookupName(full string) (digest.Digest, error) {
	var id digest.Digest
	err := s.DB.View(func(tx *meta.Tx) error {
		var err error
		id, err = tx.Name(full)
		return err
	})
	return id, err
}

// archiveWriter writes tar entries once each, with fixed times so the
// same images give the same archive.
type archiveWriter struct {
	tw      *tar.Writer
	written map[string]bool
}

var archiveTime = time.Unix(0, 0)

func (a *archiveWriter) dir(name string) error {
	if a.written[name] {
		return nil
	}
	a.written[name] = true
	return a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: archiveTime, Format: tar.FormatPAX})
}

func (a *archiveWriter) file(name string, size int64, r io.Reader) error {
	if a.written[name] {
		return nil
	}
	a.written[name] = true
	if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: archiveTime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.CopyBuffer(a.tw, r, make([]byte, 1<<20))
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if n != size {
		return fmt.Errorf("write %s: %d bytes, expected %d", name, n, size)
	}
	return nil
}

func (a *archiveWriter) bytes(name string, b []byte) error {
	return a.file(name, int64(len(b)), strings.NewReader(string(b)))
}

func blobName(d digest.Digest) string { return "blobs/" + string(d.Algorithm()) + "/" + d.Encoded() }

func (a *archiveWriter) layoutHeader() error {
	if err := a.bytes(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := a.dir("blobs/"); err != nil {
		return err
	}
	return a.dir("blobs/sha256/")
}

func (s *Store) writeOCIArchive(a *archiveWriter, images []*savedImage) error {
	if err := a.layoutHeader(); err != nil {
		return err
	}
	index := ocispec.Index{Versioned: specsVersioned, MediaType: ocispec.MediaTypeImageIndex}
	for _, si := range images {
		for _, l := range si.manifest.Layers {
			if err := s.copyBlob(a, l.Digest); err != nil {
				return err
			}
		}
		if err := s.copyBlob(a, si.img.ID); err != nil {
			return err
		}
		if err := s.copyBlob(a, si.img.Manifest); err != nil {
			return err
		}
		desc := ocispec.Descriptor{MediaType: si.img.ManifestMediaType, Digest: si.img.Manifest, Size: si.img.ManifestSize}
		if len(si.names) == 0 {
			index.Manifests = append(index.Manifests, desc)
		}
		for _, n := range si.names {
			d := desc
			d.Annotations = map[string]string{
				annotationContainerdName:  n.String(),
				ocispec.AnnotationRefName: n.String(),
			}
			index.Manifests = append(index.Manifests, d)
		}
	}
	raw, err := json.Marshal(index)
	if err != nil {
		return err
	}
	return a.bytes("index.json", raw)
}

func (s *Store) copyBlob(a *archiveWriter, d digest.Digest) error {
	if a.written[blobName(d)] {
		return nil
	}
	f, err := s.Content.Open(d)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return a.file(blobName(d), st.Size(), f)
}

// writeDockerArchive writes the layers uncompressed (named by diff ID),
// the configs, an OCI manifest per image for the layout view, and the
// docker-archive's manifest.json and repositories files.
func (s *Store) writeDockerArchive(a *archiveWriter, images []*savedImage) error {
	if err := a.layoutHeader(); err != nil {
		return err
	}
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var entries []entry
	repositories := map[string]map[string]string{}
	index := ocispec.Index{Versioned: specsVersioned, MediaType: ocispec.MediaTypeImageIndex}
	for _, si := range images {
		var cfg dockerspec.DockerOCIImage
		if err := json.Unmarshal(si.config, &cfg); err != nil {
			return fmt.Errorf("image %s: config: %w", si.img.ID, err)
		}
		if len(cfg.RootFS.DiffIDs) != len(si.manifest.Layers) || len(si.img.ChainIDs) != len(si.manifest.Layers) {
			return fmt.Errorf("image %s: config and manifest disagree on the layers", si.img.ID)
		}
		e := entry{Config: blobName(si.img.ID)}
		oci := ocispec.Manifest{
			Versioned: specsVersioned,
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: si.img.ID, Size: int64(len(si.config))},
		}
		for i, l := range si.manifest.Layers {
			diffID := cfg.RootFS.DiffIDs[i]
			ld, err := s.Layers.Get(si.img.ChainIDs[i])
			if err != nil {
				return fmt.Errorf("image %s: %w", si.img.ID, err)
			}
			if err := s.writeUncompressed(a, l.Digest, diffID, ld.Size); err != nil {
				return err
			}
			e.Layers = append(e.Layers, blobName(diffID))
			oci.Layers = append(oci.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffID, Size: ld.Size})
		}
		if err := a.bytes(blobName(si.img.ID), si.config); err != nil {
			return err
		}
		rawManifest, err := json.Marshal(oci)
		if err != nil {
			return err
		}
		md := digest.FromBytes(rawManifest)
		if err := a.bytes(blobName(md), rawManifest); err != nil {
			return err
		}
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(rawManifest))}
		if len(si.names) == 0 {
			index.Manifests = append(index.Manifests, desc)
		}
		for _, n := range si.names {
			e.RepoTags = append(e.RepoTags, n.Familiar())
			d := desc
			d.Annotations = map[string]string{annotationContainerdName: n.String(), ocispec.AnnotationRefName: n.Tag}
			index.Manifests = append(index.Manifests, d)
			repo := n.FamiliarRepository()
			if repositories[repo] == nil {
				repositories[repo] = map[string]string{}
			}
			repositories[repo][n.Tag] = cfg.RootFS.DiffIDs[len(cfg.RootFS.DiffIDs)-1].Encoded()
		}
		entries = append(entries, e)
	}
	for _, f := range []struct {
		name string
		v    any
	}{{"index.json", index}, {"manifest.json", entries}, {"repositories", repositories}} {
		if f.name == "repositories" && len(repositories) == 0 {
			continue
		}
		raw, err := json.Marshal(f.v)
		if err != nil {
			return err
		}
		if err := a.bytes(f.name, raw); err != nil {
			return err
		}
	}
	return nil
}

// writeUncompressed writes a layer as an uncompressed tar named by its
// diff ID, decompressing the stored blob when needed and checking that
// the result is the layer it claims to be.
func (s *Store) writeUncompressed(a *archiveWriter, blob, diffID digest.Digest, size int64) error {
	if a.written[blobName(diffID)] {
		return nil
	}
	f, err := s.Content.Open(blob)
	if err != nil {
		return fmt.Errorf("layer %s: %w", blob, err)
	}
	defer f.Close()
	plain, _, err := archive.Decompress(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("layer %s: %w", blob, err)
	}
	defer plain.Close()
	v := diffID.Verifier()
	if err := a.file(blobName(diffID), size, io.TeeReader(plain, v)); err != nil {
		return err
	}
	if !v.Verified() {
		return fmt.Errorf("layer %s: content does not match diff ID %s", blob, diffID)
	}
	return nil
}
