// Package engine runs containers from images, as Docker's daemon does but
// without a daemon: each hull command opens the store, does its part and
// exits. A container is a record in the metadata database, a writable root
// filesystem from the layer store, a directory under the run root with its
// OCI bundle and, while it runs, a process tree built by the runtime
// library (in-process for a foreground run) or by hull-runc under a
// hull-monitor (for a detached one), which outlives the CLI.
package engine

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hullproject/hull/image"
	"github.com/hullproject/hull/internal/lockfile"
	"github.com/hullproject/hull/network"
	"github.com/hullproject/hull/storage/meta"
	"github.com/opencontainers/go-digest"
)

// ErrNotFound means no container matches a name or ID.
var ErrNotFound = errors.New("no such container")

// ErrConflict means the request contradicts the container's state or an
// existing name.
var ErrConflict = errors.New("conflict")

// Engine is hull's container engine over one store.
type Engine struct {
	Images *image.Store
	// Root is the persistent root (--root); RunRoot holds what lives only
	// while the machine is up (--runroot): bundles, runtime state, monitor
	// files.
	Root, RunRoot string
	// Runtime and Monitor are the hull-runc and hull-monitor binaries used
	// for detached containers; Init is the static hull-init of --init.
	Runtime, Monitor, Init string

	nets *network.Manager
}

// Options open an engine.
type Options struct {
	Root, RunRoot, StorageDriver string
	// Runtime, Monitor and Init override where the binaries are looked
	// for (default: beside the running executable, then $PATH).
	Runtime, Monitor, Init string
}

// Open opens the engine over the store at o.Root.
func Open(o Options) (*Engine, error) {
	imgs, err := image.Open(o.Root, o.StorageDriver)
	if err != nil {
		return nil, err
	}
	runRoot, err := filepath.Abs(o.RunRoot)
	if err != nil {
		return nil, err
	}
	// The run root is made when a container first needs it, so read-only
	// commands leave no trace.
	e := &Engine{Images: imgs, Root: imgs.Root(), RunRoot: runRoot, Runtime: o.Runtime, Monitor: o.Monitor, Init: o.Init}
	if e.Runtime == "" {
		e.Runtime = siblingBinary("hull-runc")
	}
	if e.Monitor == "" {
		e.Monitor = siblingBinary("hull-monitor")
	}
	if e.Init == "" {
		e.Init = siblingBinary("hull-init")
	}
	return e, nil
}

// siblingBinary finds a helper binary next to the running one (bin/hull
// beside bin/hull-runc), else on $PATH.
func siblingBinary(name string) string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}

// DB is the metadata database.
func (e *Engine) DB() *meta.DB { return e.Images.DB }

// runtimeRoot is hull-runc's --root for this engine's containers.
func (e *Engine) runtimeRoot() string { return filepath.Join(e.RunRoot, "runtime") }

// containerRunDir holds the bundle, the monitor's files and the generated
// /etc files of one container.
func (e *Engine) containerRunDir(id string) string { return filepath.Join(e.RunRoot, "containers", id) }

// containerDir holds what must survive a reboot: the log file.
func (e *Engine) containerDir(id string) string { return filepath.Join(e.Root, "containers", id) }

// lockContainer serializes the commands that set up or tear down one
// container (start, a foreground run's set-up and clean-up, rm, the
// monitor's clean-up) across hull processes: a flock on a file of the run
// root. The returned function releases it.
func (e *Engine) lockContainer(id string) func() {
	unlock, err := lockfile.Lock(filepath.Join(e.RunRoot, "locks", id))
	if err != nil {
		return func() {}
	}
	return unlock
}

// Container is a container's record.
type Container struct {
	ID      string        `json:"id"`
	Name    string        `json:"name"`
	Image   string        `json:"image"` // as the user gave it
	ImageID digest.Digest `json:"imageId"`
	Created time.Time     `json:"created"`
	Config  Config        `json:"config"`
	Host    HostConfig    `json:"hostConfig"`
	// Path and Args are the resolved process, as `inspect` shows them.
	Path string   `json:"path"`
	Args []string `json:"args"`
	// State is what hull knows from its own actions; while a monitor
	// runs, its state file is fresher (see State).
	State State `json:"state"`
	// LogPath is the json-file log.
	LogPath      string `json:"logPath"`
	RestartCount int    `json:"restartCount"`
	// ManualStop is set by stop and kill: restart policies leave the
	// container stopped (and unless-stopped keeps it so).
	ManualStop bool `json:"manualStop,omitempty"`
	// Net is the container's networking while it runs.
	Net NetworkSettings `json:"networkSettings"`
	// ExtraNetworks are networks joined with `network connect` besides
	// the one of its network mode; Aliases its --network-alias names, on
	// that network; NetworkAliases the --alias names given to `network
	// connect`, by network, kept for the next start as Docker keeps them.
	ExtraNetworks  []string            `json:"extraNetworks,omitempty"`
	Aliases        []string            `json:"aliases,omitempty"`
	NetworkAliases map[string][]string `json:"networkAliases,omitempty"`
	// LastIPs are the addresses it had, to take again when free.
	LastIPs map[string]string `json:"lastIps,omitempty"`
}

// Config is the container's configuration from the image and the command
// line, with Docker's field names: the same shape as an image's.
type Config = image.ContainerConfig

// HostConfig is how the container runs on this host, with Docker's names.
type HostConfig struct {
	Binds             []string              `json:"Binds"`
	NetworkMode       string                `json:"NetworkMode"`
	RestartPolicy     RestartPolicy         `json:"RestartPolicy"`
	AutoRemove        bool                  `json:"AutoRemove"`
	CapAdd            []string              `json:"CapAdd"`
	CapDrop           []string              `json:"CapDrop"`
	Privileged        bool                  `json:"Privileged"`
	ReadonlyRootfs    bool                  `json:"ReadonlyRootfs"`
	SecurityOpt       []string              `json:"SecurityOpt"`
	Tmpfs             map[string]string     `json:"Tmpfs,omitempty"`
	Init              bool                  `json:"Init,omitempty"`
	LogConfig         LogConfig             `json:"LogConfig"`
	Memory            int64                 `json:"Memory"`
	MemorySwap        int64                 `json:"MemorySwap"`
	MemoryReservation int64                 `json:"MemoryReservation"`
	NanoCpus          int64                 `json:"NanoCpus"`
	CPUShares         int64                 `json:"CpuShares"`
	CpusetCpus        string                `json:"CpusetCpus"`
	PidsLimit         *int64                `json:"PidsLimit"`
	Ulimits           []Ulimit              `json:"Ulimits"`
	Mounts            []Mount               `json:"Mounts,omitempty"`
	PortBindings      []network.PortBinding `json:"PortBindings,omitempty"`
	PublishAllPorts   bool                  `json:"PublishAllPorts"`
	DNS               []string              `json:"Dns"`
	ExtraHosts        []string              `json:"ExtraHosts"`
}

// RestartPolicy is Docker's restart policy.
type RestartPolicy struct {
	Name              string `json:"Name"`
	MaximumRetryCount int    `json:"MaximumRetryCount"`
}

// LogConfig is the log driver and its options.
type LogConfig struct {
	Type   string            `json:"Type"`
	Config map[string]string `json:"Config"`
}

// Ulimit is one --ulimit.
type Ulimit struct {
	Name string `json:"Name"`
	Soft int64  `json:"Soft"`
	Hard int64  `json:"Hard"`
}

// Mount is a bind, volume or tmpfs mount of the container.
type Mount struct {
	Type        string `json:"Type"` // bind, volume, tmpfs
	Source      string `json:"Source"`
	Destination string `json:"Destination"`
	ReadOnly    bool   `json:"ReadOnly"`
	// Name is the volume's name for a volume mount.
	Name    string   `json:"Name,omitempty"`
	Options []string `json:"Options,omitempty"`
}

// State is a container's state, with Docker's names.
type State struct {
	Status     string    `json:"Status"` // created, running, paused, restarting, removing, exited, dead
	Running    bool      `json:"Running"`
	Paused     bool      `json:"Paused"`
	Restarting bool      `json:"Restarting"`
	OOMKilled  bool      `json:"OOMKilled"`
	Dead       bool      `json:"Dead"`
	Pid        int       `json:"Pid"`
	ExitCode   int       `json:"ExitCode"`
	Error      string    `json:"Error"`
	StartedAt  time.Time `json:"StartedAt"`
	FinishedAt time.Time `json:"FinishedAt"`
	Health     *Health   `json:"Health,omitempty"`
}

// Health is the health-check state, with Docker's names.
type Health struct {
	Status        string        `json:"Status"`
	FailingStreak int           `json:"FailingStreak"`
	Log           []HealthProbe `json:"Log"`
}

// HealthProbe is one health check's result.
type HealthProbe struct {
	Start    time.Time `json:"Start"`
	End      time.Time `json:"End"`
	ExitCode int       `json:"ExitCode"`
	Output   string    `json:"Output"`
}

func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// Resolve finds a container by name, full ID or unique ID prefix.
func (e *Engine) Resolve(ref string) (*Container, error) {
	var c *Container
	err := e.DB().View(func(tx *meta.Tx) error {
		var err error
		c, err = resolve(tx, ref)
		return err
	})
	return c, err
}

func resolve(tx *meta.Tx, ref string) (*Container, error) {
	ref = strings.TrimPrefix(ref, "/")
	if ref == "" {
		return nil, fmt.Errorf("%w: empty name", ErrNotFound)
	}
	var id string
	if err := tx.Record(meta.ContainerNames, ref, &id); err == nil {
		return loadRecord(tx, id)
	}
	if c, err := loadRecord(tx, ref); err == nil {
		return c, nil
	}
	var found []string
	err := tx.EachRecord(meta.Containers, func(key string, _ []byte) error {
		if strings.HasPrefix(key, ref) {
			found = append(found, key)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	case 1:
		return loadRecord(tx, found[0])
	}
	return nil, fmt.Errorf("multiple containers found with provided prefix: %s", ref)
}

func loadRecord(tx *meta.Tx, id string) (*Container, error) {
	var c Container
	if err := tx.Record(meta.Containers, id, &c); err != nil {
		if errors.Is(err, meta.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, err
	}
	return &c, nil
}

func saveRecord(tx *meta.Tx, c *Container) error { return tx.PutRecord(meta.Containers, c.ID, c) }

// update changes a container's record in one transaction.
func (e *Engine) update(id string, fn func(c *Container) error) (*Container, error) {
	var out *Container
	err := e.DB().Update(func(tx *meta.Tx) error {
		c, err := loadRecord(tx, id)
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			return err
		}
		out = c
		return saveRecord(tx, c)
	})
	return out, err
}

// List returns every container's record.
func (e *Engine) List() ([]*Container, error) {
	var out []*Container
	err := e.DB().View(func(tx *meta.Tx) error {
		return tx.EachRecord(meta.Containers, func(key string, _ []byte) error {
			c, err := loadRecord(tx, key)
			if err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}
