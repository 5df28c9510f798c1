package containerd_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/hullproject/hull/internal/testbundle"
)

// The OCI image-spec media types and annotations used below; the JSON is
// written by hand so the test needs no image-spec module.
const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"

	annotationRefName = "org.opencontainers.image.ref.name"
	// containerd's own exporter records the full image name here, and its
	// importer prefers it over the (possibly partial) OCI ref name.
	annotationContainerdName = "io.containerd.image.name"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type imageIndex struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type imageManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type imageConfig struct {
	Created      string `json:"created"`
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		Env        []string `json:"Env"`
		Cmd        []string `json:"Cmd"`
		WorkingDir string   `json:"WorkingDir"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		Created   string `json:"created"`
		CreatedBy string `json:"created_by"`
	} `json:"history"`
}

// blob is one content-addressed file of the image layout.
type blob struct {
	digest string // "sha256:<hex>"
	data   []byte
}

func newBlob(data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{digest: "sha256:" + hex.EncodeToString(sum[:]), data: data}
}

func jsonBlob(v any) (blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return blob{}, err
	}
	return newBlob(data), nil
}

// layerTar writes the tree under root as an image layer: paths relative to
// the root, owned by root, symlinks kept as symlinks.
func layerTar(root string, w io.Writer) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = epoch, time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// writeImageArchive builds an OCI image-layout tar holding one linux image
// made of a single gzip layer with a busybox root filesystem (from the
// host's static busybox), named ref, and writes it to archivePath.
func writeImageArchive(workDir, ref, tag, archivePath string) error {
	rootfs := filepath.Join(workDir, "image-rootfs")
	if err := testbundle.Rootfs(rootfs); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}

	// One pass: tar -> (diff_id hash) -> gzip -> (digest hash, buffer).
	var gz bytes.Buffer
	diffHash := sha256.New()
	zw := gzip.NewWriter(&gz)
	if err := layerTar(rootfs, io.MultiWriter(diffHash, zw)); err != nil {
		return fmt.Errorf("layer tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	layer := newBlob(gz.Bytes())
	diffID := "sha256:" + hex.EncodeToString(diffHash.Sum(nil))

	created := time.Now().UTC().Format(time.RFC3339)
	var cfg imageConfig
	cfg.Created = created
	cfg.Architecture = runtime.GOARCH
	cfg.OS = "linux"
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Cmd = []string{"sh"}
	cfg.Config.WorkingDir = "/"
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{diffID}
	cfg.History = append(cfg.History, struct {
		Created   string `json:"created"`
		CreatedBy string `json:"created_by"`
	}{created, "hull test/containerd: host busybox-static"})
	config, err := jsonBlob(cfg)
	if err != nil {
		return err
	}

	manifest, err := jsonBlob(imageManifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        descriptor{MediaType: mediaTypeConfig, Digest: config.digest, Size: int64(len(config.data))},
		Layers:        []descriptor{{MediaType: mediaTypeLayerGz, Digest: layer.digest, Size: int64(len(layer.data))}},
	})
	if err != nil {
		return err
	}
	index, err := json.Marshal(imageIndex{
		SchemaVersion: 2,
		MediaType:     mediaTypeIndex,
		Manifests: []descriptor{{
			MediaType: mediaTypeManifest,
			Digest:    manifest.digest,
			Size:      int64(len(manifest.data)),
			Platform:  &platform{Architecture: runtime.GOARCH, OS: "linux"},
			Annotations: map[string]string{
				annotationContainerdName: ref,
				annotationRefName:        tag,
			},
		}},
	})
	if err != nil {
		return err
	}

	f, err := os.Create(archivePath)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	add := func(name string, data []byte) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)),
			Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	dirs := []string{"blobs/", "blobs/sha256/"}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)}); err != nil {
			f.Close()
			return err
		}
	}
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
	}
	for _, b := range []blob{layer, config, manifest} {
		files = append(files, struct {
			name string
			data []byte
		}{"blobs/sha256/" + b.digest[len("sha256:"):], b.data})
	}
	for _, file := range files {
		if err := add(file.name, file.data); err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
