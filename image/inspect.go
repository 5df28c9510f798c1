package image

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hullproject/hull/storage/meta"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Inspect is an image as `docker image inspect` shows it.
type Inspect struct {
	ID            string           `json:"Id"`
	RepoTags      []string         `json:"RepoTags"`
	RepoDigests   []string         `json:"RepoDigests"`
	Parent        string           `json:"Parent"`
	Comment       string           `json:"Comment"`
	Created       string           `json:"Created"`
	DockerVersion string           `json:"DockerVersion"`
	Author        string           `json:"Author"`
	Config        *ContainerConfig `json:"Config"`
	Architecture  string           `json:"Architecture"`
	Variant       string           `json:"Variant,omitempty"`
	Os            string           `json:"Os"`
	Size          int64            `json:"Size"`
	GraphDriver   GraphDriver      `json:"GraphDriver"`
	RootFS        RootFS           `json:"RootFS"`
	Metadata      struct {
		LastTagTime string `json:"LastTagTime"`
	} `json:"Metadata"`
}

// ContainerConfig is the image's default container config, with Docker's
// keys.
type ContainerConfig struct {
	Hostname     string                        `json:"Hostname"`
	Domainname   string                        `json:"Domainname"`
	User         string                        `json:"User"`
	AttachStdin  bool                          `json:"AttachStdin"`
	AttachStdout bool                          `json:"AttachStdout"`
	AttachStderr bool                          `json:"AttachStderr"`
	ExposedPorts map[string]struct{}           `json:"ExposedPorts,omitempty"`
	Tty          bool                          `json:"Tty"`
	OpenStdin    bool                          `json:"OpenStdin"`
	StdinOnce    bool                          `json:"StdinOnce"`
	Env          []string                      `json:"Env"`
	Cmd          []string                      `json:"Cmd"`
	Healthcheck  *dockerspec.HealthcheckConfig `json:"Healthcheck,omitempty"`
	Image        string                        `json:"Image"`
	Volumes      map[string]struct{}           `json:"Volumes"`
	WorkingDir   string                        `json:"WorkingDir"`
	Entrypoint   []string                      `json:"Entrypoint"`
	OnBuild      []string                      `json:"OnBuild"`
	Labels       map[string]string             `json:"Labels"`
	StopSignal   string                        `json:"StopSignal,omitempty"`
	StopTimeout  *int                          `json:"StopTimeout,omitempty"`
	Shell        []string                      `json:"Shell,omitempty"`
}

// GraphDriver names the storage driver and the image's layer directories.
type GraphDriver struct {
	Data map[string]string `json:"Data"`
	Name string            `json:"Name"`
}

// RootFS lists the image's layers by diff ID.
type RootFS struct {
	Type   string   `json:"Type"`
	Layers []string `json:"Layers"`
}

// Config reads an image's config blob.
func (s *Store) Config(img *meta.Image) (*dockerspec.DockerOCIImage, error) {
	raw, err := s.Content.ReadAll(img.ID)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", shortID(img.ID), err)
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", shortID(img.ID), err)
	}
	return &cfg, nil
}

// Inspect describes an image as Docker does.
func (s *Store) Inspect(ref string) (*Inspect, error) {
	img, err := s.Resolve(ref)
	if err != nil {
		return nil, err
	}
	cfg, err := s.Config(img)
	if err != nil {
		return nil, err
	}
	names, err := s.Names(img.ID)
	if err != nil {
		return nil, err
	}
	out := &Inspect{
		ID:           img.ID.String(),
		RepoTags:     []string{},
		RepoDigests:  []string{},
		Author:       cfg.Author,
		Architecture: cfg.Architecture,
		Variant:      cfg.Variant,
		Os:           cfg.OS,
		Size:         img.Size,
		RootFS:       RootFS{Type: "layers", Layers: []string{}},
		GraphDriver:  GraphDriver{Name: s.Layers.Driver(), Data: map[string]string{}},
	}
	for _, n := range names {
		out.RepoTags = append(out.RepoTags, Familiar(n))
	}
	for _, rd := range img.RepoDigests {
		out.RepoDigests = append(out.RepoDigests, Familiar(rd))
	}
	if cfg.Created != nil {
		out.Created = cfg.Created.UTC().Format(time.RFC3339Nano)
	}
	if n := len(cfg.History); n > 0 {
		out.Comment = cfg.History[n-1].Comment
	}
	for _, d := range cfg.RootFS.DiffIDs {
		out.RootFS.Layers = append(out.RootFS.Layers, d.String())
	}
	c := cfg.Config
	out.Config = &ContainerConfig{
		User: c.User, ExposedPorts: c.ExposedPorts, Env: c.Env, Cmd: c.Cmd,
		Healthcheck: c.Healthcheck, Volumes: c.Volumes, WorkingDir: c.WorkingDir,
		Entrypoint: c.Entrypoint, OnBuild: c.OnBuild, Labels: c.Labels,
		StopSignal: c.StopSignal, Shell: c.Shell,
	}
	var dirs []string
	for i := len(img.ChainIDs) - 1; i >= 0; i-- {
		if l, err := s.Layers.Get(img.ChainIDs[i]); err == nil {
			dirs = append(dirs, s.Layers.DiffDir(l))
		}
	}
	if len(dirs) > 0 {
		out.GraphDriver.Data["UpperDir"] = dirs[0]
		if len(dirs) > 1 {
			out.GraphDriver.Data["LowerDir"] = strings.Join(dirs[1:], ":")
		}
	}
	return out, nil
}

// HistoryEntry is one line of `image history`.
type HistoryEntry struct {
	// ID is the image ID on the newest entry, "<missing>" on the others,
	// as Docker prints it for images it did not build itself.
	ID        string
	Created   time.Time
	CreatedBy string
	Size      int64
	Comment   string
	Tags      []string
}

// History lists how an image was made, newest step first.
func (s *Store) History(ref string) ([]HistoryEntry, error) {
	img, err := s.Resolve(ref)
	if err != nil {
		return nil, err
	}
	cfg, err := s.Config(img)
	if err != nil {
		return nil, err
	}
	names, _ := s.Names(img.ID)
	var sizes []int64
	for _, c := range img.ChainIDs {
		if l, err := s.Layers.Get(c); err == nil {
			sizes = append(sizes, l.Size)
		} else {
			sizes = append(sizes, 0)
		}
	}
	hist := cfg.History
	if len(hist) == 0 {
		// No history: one entry per layer.
		for range img.ChainIDs {
			hist = append(hist, ocispec.History{})
		}
	}
	var out []HistoryEntry
	layer := 0
	for _, h := range hist {
		e := HistoryEntry{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment}
		if h.Created != nil {
			e.Created = *h.Created
		}
		if !h.EmptyLayer && layer < len(sizes) {
			e.Size = sizes[layer]
			layer++
		}
		out = append(out, e)
	}
	// Newest first.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	if len(out) > 0 {
		out[0].ID = img.ID.String()
		for _, n := range names {
			out[0].Tags = append(out[0].Tags, Familiar(n))
		}
	}
	return out, nil
}
