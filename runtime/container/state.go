// Package container is hull's OCI runtime library: it creates, starts,
// signals, executes into and deletes containers described by OCI bundles.
// hull-runc is a thin command line over it and the hull engine calls it
// in-process.
//
// Process model. The runtime forks its own binary (from a read-only,
// detached clone of it, see exe.go). A C constructor in package nsenter
// joins and creates the container's namespaces before any Go code could
// start, and then serves requests ("stage 2") until it execs the
// container's program: the container process never runs the Go runtime.
// The runtime builds the container from the outside, on a thread that has
// joined the process's namespaces (nsthread.go, build.go): mounts, devices,
// pivot_root, hostname, sysctls; meanwhile another goroutine places the
// process in its cgroups. It then sends the process its plan (credentials,
// capabilities, seccomp program, program to run, plan.go); at create the
// process blocks on the exec FIFO until `start` opens it.
package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/internal/proc"
)

// Status values as OCI defines them.
const (
	Creating = specs.StateCreating
	Created  = specs.StateCreated
	Running  = specs.StateRunning
	Stopped  = specs.StateStopped
	Paused   = specs.ContainerState("paused")
)

// ErrNotExist is wrapped by errors for unknown containers; its text is what
// containerd matches on.
var ErrNotExist = errors.New("does not exist")

// ErrNotRunning is wrapped when a container is not running; containerd
// matches on this text as well.
var ErrNotRunning = errors.New("container not running")

// State is what the runtime persists about a container.
type State struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Pid         int               `json:"pid"`
	PidStart    uint64            `json:"pid_start"` // guards against pid reuse
	Created     time.Time         `json:"created"`
	CgroupsPath string            `json:"cgroups_path"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Config is the spec as JSON, as config.json gave it (or as update
	// changed it). It is decoded only when needed (see Container.Spec):
	// the first decoding of the spec's many types costs about half a
	// millisecond, and start, state, kill and delete mostly need none of
	// it.
	Config json.RawMessage `json:"config"`
	Owner  string          `json:"owner,omitempty"`
}

// Container is a handle on one container's state directory.
type Container struct {
	root  string
	dir   string
	State State
	spec  *specs.Spec // State.Config decoded, once needed
	head  *specHead   // the few fields most commands need, decoded alone
}

// specHead is the part of the spec that start, state and delete read.
type specHead struct {
	Version string       `json:"ociVersion"`
	Hooks   *specs.Hooks `json:"hooks,omitempty"`
}

// Spec returns the configuration the container was created with. A state
// file is written only by this package, whole and atomically, so decoding
// fails only if it was tampered with; the error then surfaces from Load's
// callers that need the spec through loadSpec, and Spec returns an empty
// one rather than nil.
func (c *Container) Spec() *specs.Spec {
	s, err := c.loadSpec()
	if err != nil {
		return &specs.Spec{Linux: &specs.Linux{}}
	}
	return s
}

func (c *Container) loadSpec() (*specs.Spec, error) {
	if c.spec == nil {
		var s specs.Spec
		if err := json.Unmarshal(c.State.Config, &s); err != nil {
			return nil, fmt.Errorf("parse the recorded config of %s: %w", c.State.ID, err)
		}
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		c.spec = &s
	}
	return c.spec, nil
}

// specHead decodes just the version and hooks, unless the whole spec is
// at hand anyway.
func (c *Container) specHead() *specHead {
	if c.spec != nil {
		return &specHead{Version: c.spec.Version, Hooks: c.spec.Hooks}
	}
	if c.head == nil {
		c.head = &specHead{}
		_ = json.Unmarshal(c.State.Config, c.head)
	}
	return c.head
}

// setSpec records a changed spec.
func (c *Container) setSpec(s *specs.Spec) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	c.spec, c.head, c.State.Config = s, nil, data
	return nil
}

const (
	stateFile = "state.json"
	fifoName  = "exec.fifo"
)

// validIDChars reports whether id matches ^[A-Za-z0-9][A-Za-z0-9_+.-]*$
// (a loop rather than a regexp: compiling one at start-up costs every
// hull-runc call 50 µs).
func validIDChars(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '+' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return id != ""
}

// ValidateID rejects ids that could escape the state root or confuse tools.
func ValidateID(id string) error {
	if len(id) > 1024 || !validIDChars(id) {
		return fmt.Errorf("invalid container id %q: use letters, digits and _+.- (not starting with a symbol)", id)
	}
	return nil
}

// Load opens an existing container's state.
func Load(root, id string) (*Container, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, id)
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("container %s %w", id, ErrNotExist)
		}
		return nil, fmt.Errorf("read state of %s: %w", id, err)
	}
	c := &Container{root: root, dir: dir}
	if err := json.Unmarshal(data, &c.State); err != nil {
		return nil, fmt.Errorf("parse state of %s: %w", id, err)
	}
	return c, nil
}

// List loads every container under root, skipping ones mid-creation.
func List(root string) ([]*Container, error) {
	entries, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	var out []*Container
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c, err := Load(root, e.Name())
		if err != nil {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// save writes the state atomically (temp file + rename), so a reader never
// sees a half-written file. There is no fsync: the state describes live
// processes, which the crash or reboot an fsync would protect against ends
// anyway (and /run is usually a tmpfs); the flush would cost milliseconds
// per container on a disk.
func (c *Container) save() error {
	data, err := json.Marshal(&c.State)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.dir, stateFile), data, 0o600)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	return nil
}

// processStart returns the start time (clock ticks since boot) of pid and
// whether it is a zombie; ok is false when there is no such process.
func processStart(pid int) (start uint64, zombie bool, ok bool) {
	st, err := proc.ReadStat(pid)
	if err != nil {
		return 0, false, false
	}
	return st.StartTime, st.Gone(), true
}

// initAlive reports whether the container's init process still exists (and
// is the same process, not a reused pid).
func (c *Container) initAlive() bool {
	if c.State.Pid <= 0 {
		return false
	}
	start, zombie, ok := processStart(c.State.Pid)
	if !ok || zombie {
		return false
	}
	return c.State.PidStart == 0 || start == c.State.PidStart
}

// Status computes the container's current status.
func (c *Container) Status() specs.ContainerState {
	if !c.initAlive() {
		return Stopped
	}
	if _, err := os.Lstat(filepath.Join(c.dir, fifoName)); err == nil {
		return Created
	}
	if m, err := c.cgroup(); err == nil {
		if paused, err := m.Paused(); err == nil && paused {
			return Paused
		}
	}
	return Running
}

// OCIState is the state as `hull-runc state` prints it.
func (c *Container) OCIState() specs.State {
	st := c.Status()
	pid := c.State.Pid
	if st == Stopped {
		pid = 0
	}
	return specs.State{
		Version:     c.specHead().Version,
		ID:          c.State.ID,
		Status:      st,
		Pid:         pid,
		Bundle:      c.State.Bundle,
		Annotations: c.State.Annotations,
	}
}

// hookState is the state given to hooks: the pid is kept even when stopped
// (poststop hooks want to know which process it was).
func (c *Container) hookState(status specs.ContainerState) *specs.State {
	s := c.OCIState()
	s.Status = status
	s.Pid = c.State.Pid
	return &s
}

// ID returns the container's id.
func (c *Container) ID() string { return c.State.ID }

// Dir returns the container's state directory.
func (c *Container) Dir() string { return c.dir }

// lock takes an exclusive lock on the container's directory for the
// duration of an operation; the returned function releases it.
func (c *Container) lock() (func(), error) {
	fd, err := unix.Open(c.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("container %s %w", c.State.ID, ErrNotExist)
		}
		return nil, fmt.Errorf("lock %s: %w", c.dir, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", c.dir, err)
	}
	return func() { unix.Close(fd) }, nil
}
