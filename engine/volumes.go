package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hullproject/hull/storage/meta"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Volume is a named volume, with Docker's field names.
type Volume struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver"`
	Mountpoint string            `json:"Mountpoint"`
	CreatedAt  time.Time         `json:"CreatedAt"`
	Labels     map[string]string `json:"Labels"`
	Scope      string            `json:"Scope"`
	Options    map[string]string `json:"Options"`
	// Anonymous volumes come from an image's VOLUME or a bare `-v /path`;
	// `volume prune` removes them by default, and `rm -v` with their
	// container.
	Anonymous bool `json:"-"`
}

type volumeRecord struct {
	Volume
	Anonymous bool `json:"anonymous"`
}

var validVolumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func (e *Engine) volumePath(name string) string {
	return filepath.Join(e.Root, "volumes", name, "_data")
}

// VolumeCreate makes a named volume ("" gets a random name). Creating one
// that exists returns it, as Docker does.
func (e *Engine) VolumeCreate(name string, labels map[string]string) (*Volume, error) {
	return e.volumeCreate(name, labels, false)
}

func (e *Engine) volumeCreate(name string, labels map[string]string, anonymous bool) (*Volume, error) {
	if name == "" {
		name = newID()
	}
	if !validVolumeName.MatchString(name) {
		return nil, fmt.Errorf("invalid volume name %q: must match [a-zA-Z0-9][a-zA-Z0-9_.-]+", name)
	}
	var out *Volume
	err := e.DB().Update(func(tx *meta.Tx) error {
		var r volumeRecord
		if err := tx.Record(meta.Volumes, name, &r); err == nil {
			r.Volume.Anonymous = r.Anonymous
			out = &r.Volume
			return nil
		}
		dir := e.volumePath(name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("volume %s: %w", name, err)
		}
		if labels == nil {
			labels = map[string]string{}
		}
		r = volumeRecord{Volume: Volume{
			Name: name, Driver: "local", Mountpoint: dir, CreatedAt: time.Now().UTC().Truncate(time.Second),
			Labels: labels, Scope: "local", Options: map[string]string{},
		}, Anonymous: anonymous}
		r.Volume.Anonymous = anonymous
		out = &r.Volume
		return tx.PutRecord(meta.Volumes, name, &r)
	})
	return out, err
}

// Volumes lists every volume, by name.
func (e *Engine) Volumes() ([]*Volume, error) {
	var out []*Volume
	err := e.DB().View(func(tx *meta.Tx) error {
		return tx.EachRecord(meta.Volumes, func(key string, _ []byte) error {
			var r volumeRecord
			if err := tx.Record(meta.Volumes, key, &r); err != nil {
				return err
			}
			r.Volume.Anonymous = r.Anonymous
			v := r.Volume
			out = append(out, &v)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// VolumeInspect returns one volume.
func (e *Engine) VolumeInspect(name string) (*Volume, error) {
	var r volumeRecord
	err := e.DB().View(func(tx *meta.Tx) error { return tx.Record(meta.Volumes, name, &r) })
	if errors.Is(err, meta.ErrNotFound) {
		return nil, fmt.Errorf("no such volume: %s", name)
	}
	r.Volume.Anonymous = r.Anonymous
	return &r.Volume, err
}

// volumeUsers lists the containers that mount a volume.
func volumeUsers(tx *meta.Tx, name string) []string {
	var users []string
	tx.EachRecord(meta.Containers, func(key string, _ []byte) error {
		c, err := loadRecord(tx, key)
		if err != nil {
			return nil
		}
		for _, m := range c.Host.Mounts {
			if m.Type == "volume" && m.Name == name {
				users = append(users, c.ID[:12])
			}
		}
		return nil
	})
	return users
}

// VolumeRemove deletes a volume and its data; one in use is refused unless
// force... which Docker also refuses for volumes in use.
func (e *Engine) VolumeRemove(name string, force bool) error {
	err := e.DB().Update(func(tx *meta.Tx) error {
		if !tx.RecordExists(meta.Volumes, name) {
			if force {
				return nil
			}
			return fmt.Errorf("no such volume: %s", name)
		}
		if users := volumeUsers(tx, name); len(users) > 0 {
			return fmt.Errorf("%w: remove %s: volume is in use - [%s]", ErrConflict, name, strings.Join(users, ", "))
		}
		if err := os.RemoveAll(filepath.Dir(e.volumePath(name))); err != nil {
			return fmt.Errorf("remove volume %s: %w", name, err)
		}
		return tx.DeleteRecord(meta.Volumes, name)
	})
	return err
}

// VolumePrune removes unused volumes: anonymous ones, or all with all set.
// It returns the names removed and the bytes freed.
func (e *Engine) VolumePrune(all bool) ([]string, int64, error) {
	vols, err := e.Volumes()
	if err != nil {
		return nil, 0, err
	}
	var removed []string
	var freed int64
	for _, v := range vols {
		if !v.Anonymous && !all {
			continue
		}
		size := dirSize(filepath.Dir(v.Mountpoint))
		if err := e.VolumeRemove(v.Name, false); err != nil {
			if errors.Is(err, ErrConflict) {
				continue
			}
			return removed, freed, err
		}
		removed = append(removed, v.Name)
		freed += size
	}
	return removed, freed, nil
}

// ParseVolume reads a -v/--volume argument: "/host:/ctr[:opts]" (bind),
// "name:/ctr[:opts]" (named volume) or "/ctr" (anonymous volume).
func ParseVolume(spec string) (Mount, error) {
	parts := strings.Split(spec, ":")
	var m Mount
	switch len(parts) {
	case 1:
		m = Mount{Type: "volume", Destination: parts[0]}
	case 2, 3:
		m = Mount{Source: parts[0], Destination: parts[1]}
		if strings.HasPrefix(parts[0], "/") || strings.HasPrefix(parts[0], ".") {
			m.Type = "bind"
		} else {
			m.Type, m.Name = "volume", parts[0]
		}
		if len(parts) == 3 {
			for _, o := range strings.Split(parts[2], ",") {
				switch o {
				case "ro":
					m.ReadOnly = true
				case "rw", "z", "Z", "":
				case "private", "rprivate", "shared", "rshared", "slave", "rslave":
					m.Options = append(m.Options, o)
				default:
					return Mount{}, fmt.Errorf("invalid volume specification %q: unknown option %q", spec, o)
				}
			}
		}
	default:
		return Mount{}, fmt.Errorf("invalid volume specification %q", spec)
	}
	if !strings.HasPrefix(m.Destination, "/") {
		return Mount{}, fmt.Errorf("invalid volume specification %q: the container path must be absolute", spec)
	}
	if m.Type == "volume" && m.Name != "" && !validVolumeName.MatchString(m.Name) {
		return Mount{}, fmt.Errorf("invalid volume specification %q: bad volume name", spec)
	}
	return m, nil
}

// ParseMount reads a --mount argument: type=bind|volume|tmpfs,
// source=…, target=…, readonly, tmpfs-size=…, tmpfs-mode=….
func ParseMount(spec string) (Mount, error) {
	m := Mount{Type: "volume"}
	for _, field := range strings.Split(spec, ",") {
		k, v, hasValue := strings.Cut(field, "=")
		switch strings.ToLower(k) {
		case "type":
			m.Type = v
		case "source", "src":
			m.Source = v
		case "target", "destination", "dst":
			m.Destination = v
		case "readonly", "ro":
			m.ReadOnly = !hasValue || v == "true" || v == "1"
		case "tmpfs-size":
			m.Options = append(m.Options, "size="+v)
		case "tmpfs-mode":
			m.Options = append(m.Options, "mode="+v)
		case "bind-propagation":
			m.Options = append(m.Options, v)
		default:
			return Mount{}, fmt.Errorf("invalid field %q in --mount %s", k, spec)
		}
	}
	switch m.Type {
	case "bind":
		if m.Source == "" {
			return Mount{}, fmt.Errorf("invalid --mount %s: bind needs a source", spec)
		}
	case "volume":
		m.Name = m.Source
	case "tmpfs":
		if m.Source != "" {
			return Mount{}, fmt.Errorf("invalid --mount %s: tmpfs takes no source", spec)
		}
	default:
		return Mount{}, fmt.Errorf("invalid --mount %s: unknown type %q", spec, m.Type)
	}
	if !strings.HasPrefix(m.Destination, "/") {
		return Mount{}, fmt.Errorf("invalid --mount %s: the target must be an absolute path", spec)
	}
	return m, nil
}

// userMounts turns the container's volumes, binds and tmpfs into OCI mounts.
func (e *Engine) userMounts(c *Container) ([]specs.Mount, error) {
	var out []specs.Mount
	for _, m := range c.Host.Mounts {
		opts := append([]string(nil), m.Options...)
		switch m.Type {
		case "bind", "volume":
			src := m.Source
			if m.Type == "volume" {
				src = e.volumePath(m.Name)
			}
			opts = append(opts, "rbind")
			if m.ReadOnly {
				opts = append(opts, "ro")
			}
			out = append(out, specs.Mount{Destination: m.Destination, Type: "bind", Source: src, Options: opts})
		case "tmpfs":
			opts = append([]string{"nosuid", "nodev", "noexec"}, opts...)
			if m.ReadOnly {
				opts = append(opts, "ro")
			}
			out = append(out, specs.Mount{Destination: m.Destination, Type: "tmpfs", Source: "tmpfs", Options: opts})
		}
	}
	return out, nil
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}
