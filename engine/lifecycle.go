package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hullproject/hull/engine/security"
	"github.com/hullproject/hull/internal/console"
	"github.com/hullproject/hull/internal/proc"
	"github.com/hullproject/hull/runtime/container"
	"github.com/hullproject/hull/storage/meta"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// monitorState is what hull-monitor writes to state.json.
type monitorState struct {
	Status       string    `json:"status"`
	Pid          int       `json:"pid"`
	StartedAt    time.Time `json:"startedAt"`
	FinishedAt   time.Time `json:"finishedAt"`
	ExitCode     int       `json:"exitCode"`
	OOMKilled    bool      `json:"oomKilled"`
	RestartCount int       `json:"restartCount"`
	Error        string    `json:"error"`
	Health       *struct {
		Status        string `json:"status"`
		FailingStreak int    `json:"failingStreak"`
		Log           []struct {
			Start    time.Time `json:"start"`
			End      time.Time `json:"end"`
			ExitCode int       `json:"exitCode"`
			Output   string    `json:"output"`
		} `json:"log"`
	} `json:"health"`
}

func (e *Engine) readMonitorState(id string) (*monitorState, bool) {
	raw, err := os.ReadFile(filepath.Join(e.containerRunDir(id), "state.json"))
	if err != nil {
		return nil, false
	}
	var ms monitorState
	if json.Unmarshal(raw, &ms) != nil {
		return nil, false
	}
	return &ms, true
}

// monitorAlive reports whether the container's monitor still runs.
func (e *Engine) monitorAlive(id string) bool {
	return proc.AliveFromFile(filepath.Join(e.containerRunDir(id), "monitor.pid"), "hull-monitor")
}

// State is the container's state as it truly is now: the record, updated
// from the monitor's state file, checked against the runtime (a monitor
// that was killed cannot report, so the runtime's view of the process
// decides then).
func (e *Engine) State(c *Container) State {
	st := c.State
	if ms, ok := e.readMonitorState(c.ID); ok {
		st = State{
			Status: ms.Status, Pid: ms.Pid, StartedAt: ms.StartedAt, FinishedAt: ms.FinishedAt,
			ExitCode: ms.ExitCode, OOMKilled: ms.OOMKilled, Error: ms.Error,
		}
		if ms.Health != nil {
			h := &Health{Status: ms.Health.Status, FailingStreak: ms.Health.FailingStreak, Log: []HealthProbe{}}
			for _, l := range ms.Health.Log {
				h.Log = append(h.Log, HealthProbe{Start: l.Start, End: l.End, ExitCode: l.ExitCode, Output: l.Output})
			}
			st.Health = h
		}
		if ms.Status == "exited" {
			st.Pid = 0
		}
	}
	if st.Status == "running" || st.Status == "restarting" || st.Status == "paused" {
		ctr, err := container.Load(e.runtimeRoot(), c.ID)
		switch {
		case err == nil && ctr.Status() == container.Paused:
			st.Status = "paused"
		case err == nil && ctr.Status() == container.Running:
			st.Status = "running"
			st.Pid = ctr.State.Pid
		case st.Status == "restarting" && e.monitorAlive(c.ID):
		default:
			// Neither the runtime nor a monitor has it: it ended without
			// anyone to record how (its monitor was killed).
			if !e.monitorAlive(c.ID) {
				st.Status, st.Pid = "exited", 0
				// Nobody ran its clean-up: release its network now.
				if len(c.Net.Networks) > 0 {
					e.teardownNetwork(c)
				}
				if st.FinishedAt.IsZero() {
					st.FinishedAt = time.Now().UTC()
					st.ExitCode = 255
					st.Error = "container ended while no monitor was watching it"
				}
			}
		}
	}
	st.Running = st.Status == "running" || st.Status == "paused"
	st.Paused = st.Status == "paused"
	st.Restarting = st.Status == "restarting"
	if st.Status != "running" && st.Status != "paused" && st.Status != "restarting" {
		st.Pid = 0
	}
	if st.Health != nil && !st.Running {
		st.Health.Status = "unhealthy"
		if st.Status == "created" {
			st.Health = nil
		}
	}
	return st
}

// RestartCount is how often the restart policy restarted the container
// since it was last started.
func (e *Engine) RestartCount(c *Container) int {
	if ms, ok := e.readMonitorState(c.ID); ok {
		return ms.RestartCount
	}
	return c.RestartCount
}

// writeCtl sends a command line to the container's monitor (a FIFO it
// reads); without a monitor reading, it gives up at once.
func (e *Engine) writeCtl(id, line string) {
	fd, err := unix.Open(filepath.Join(e.containerRunDir(id), "ctl"), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	unix.Write(fd, []byte(line+"\n"))
	unix.Close(fd)
}

// Stop stops a running container: its stop signal, then SIGKILL after the
// timeout (nil: the container's own, else 10 s). Restart policies leave a
// stopped container alone.
func (e *Engine) Stop(ref string, timeout *int) error {
	c, err := e.Resolve(ref)
	if err != nil {
		return err
	}
	c, err = e.update(c.ID, func(c *Container) error { c.ManualStop = true; return nil })
	if err != nil {
		return err
	}
	e.writeCtl(c.ID, "stop")
	st := e.State(c)
	if !st.Running && !st.Restarting {
		return nil
	}
	if st.Paused {
		e.Unpause(c.ID)
	}
	wait := 10 * time.Second
	if c.Config.StopTimeout != nil {
		wait = time.Duration(*c.Config.StopTimeout) * time.Second
	}
	if timeout != nil {
		wait = time.Duration(*timeout) * time.Second
	}
	sig := unix.SIGTERM
	if c.Config.StopSignal != "" {
		if s, err := console.ParseSignal(c.Config.StopSignal); err == nil {
			sig = s
		}
	}
	if wait >= 0 {
		e.signalContainer(c, sig)
		if e.waitStopped(c, wait) {
			return nil
		}
	}
	e.signalContainer(c, unix.SIGKILL)
	if !e.waitStopped(c, 30*time.Second) {
		return fmt.Errorf("container %s did not stop after SIGKILL", c.ID[:12])
	}
	return nil
}

// waitStopped polls until the container is no longer running.
func (e *Engine) waitStopped(c *Container, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		st := e.State(c)
		if !st.Running && !st.Restarting {
			// Give the monitor its moment to record the exit.
			for i := 0; i < 100 && e.monitorAlive(c.ID); i++ {
				time.Sleep(10 * time.Millisecond)
			}
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends a signal (default KILL) to a running container.
func (e *Engine) Kill(ref, signal string) error {
	c, err := e.Resolve(ref)
	if err != nil {
		return err
	}
	sig := unix.SIGKILL
	if signal != "" {
		if sig, err = console.ParseSignal(signal); err != nil {
			return err
		}
	}
	if st := e.State(c); !st.Running {
		return fmt.Errorf("%w: cannot kill container %s: container %s is not running", ErrConflict, ref, c.ID[:12])
	}
	if sig == unix.SIGKILL || sig == unix.SIGTERM || sig == unix.SIGINT {
		e.update(c.ID, func(c *Container) error { c.ManualStop = true; return nil })
		e.writeCtl(c.ID, "stop")
	}
	return e.signalContainer(c, sig)
}

// Pause freezes a running container.
func (e *Engine) Pause(ref string) error {
	c, err := e.Resolve(ref)
	if err != nil {
		return err
	}
	ctr, err := container.Load(e.runtimeRoot(), c.ID)
	if err != nil || ctr.Status() != container.Running {
		return fmt.Errorf("%w: container %s is not running", ErrConflict, c.ID[:12])
	}
	return ctr.Pause()
}

// Unpause thaws a paused container.
func (e *Engine) Unpause(ref string) error {
	c, err := e.Resolve(ref)
	if err != nil {
		return err
	}
	ctr, err := container.Load(e.runtimeRoot(), c.ID)
	if err != nil || ctr.Status() != container.Paused {
		return fmt.Errorf("%w: container %s is not paused", ErrConflict, c.ID[:12])
	}
	return ctr.Resume()
}

// Wait blocks until the container stops and returns its exit code.
func (e *Engine) Wait(ref string) (int, error) {
	c, err := e.Resolve(ref)
	if err != nil {
		return 0, err
	}
	for {
		// The monitor's state file says "exited" once the last run is
		// over and its log complete (a --rm container is removed right
		// after: its code is known by then).
		if ms, ok := e.readMonitorState(c.ID); ok && ms.Status == "exited" {
			return ms.ExitCode, nil
		}
		if c.Host.AutoRemove {
			if code, ok := e.removedExit(c.ID); ok {
				return code, nil
			}
		}
		cur, err := e.Resolve(c.ID)
		if err != nil {
			if code, ok := e.removedExit(c.ID); ok {
				return code, nil
			}
			return 0, err
		}
		st := e.State(cur)
		if (st.Status == "exited" || st.Status == "created" || st.Status == "dead") && !e.monitorAlive(c.ID) {
			return st.ExitCode, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recordExit keeps the exit code of a container removed by --rm for a
// `wait` that comes after the removal; codes older than an hour go.
func (e *Engine) recordExit(id string, code int) {
	dir := filepath.Join(e.RunRoot, "exits")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	if ents, err := os.ReadDir(dir); err == nil {
		for _, ent := range ents {
			if info, err := ent.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
				os.Remove(filepath.Join(dir, ent.Name()))
			}
		}
	}
	writeFileAtomic(filepath.Join(dir, id), []byte(strconv.Itoa(code)), 0o600)
}

func (e *Engine) removedExit(id string) (int, bool) {
	raw, err := os.ReadFile(filepath.Join(e.RunRoot, "exits", id))
	if err != nil {
		return 0, false
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	return code, err == nil
}

// Remove deletes a container: its record, root filesystem, logs and run
// directory, and with volumes its anonymous volumes. A running container
// needs force (it is killed).
func (e *Engine) Remove(ref string, force, volumes bool) error {
	c, err := e.Resolve(ref)
	if err != nil {
		return err
	}
	return e.remove(c, force, volumes, true)
}

// remove deletes a container; waitMonitor lets a monitor that is still
// finishing end first (not when the monitor itself asked, via Cleanup).
func (e *Engine) remove(c *Container, force, volumes, waitMonitor bool) error {
	st := e.State(c)
	if st.Running || st.Restarting {
		if !force {
			return fmt.Errorf("%w: cannot remove container \"%s\": container is %s: stop the container before removing or force remove", ErrConflict, c.Name, st.Status)
		}
		e.update(c.ID, func(c *Container) error { c.ManualStop = true; return nil })
		e.writeCtl(c.ID, "stop")
		if st.Paused {
			if ctr, err := container.Load(e.runtimeRoot(), c.ID); err == nil {
				ctr.Signal(unix.SIGKILL, true)
				ctr.Resume()
			}
		}
		e.signalContainer(c, unix.SIGKILL)
		e.waitStopped(c, 30*time.Second)
	}
	// A monitor still finishing (deleting the runtime's container) is
	// given a moment, then the runtime's leftovers are deleted here.
	for i := 0; waitMonitor && i < 200 && e.monitorAlive(c.ID); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if waitMonitor {
		// The destructive part under the container's lock (Cleanup, which
		// passes false, holds it already). Not while waiting for the
		// monitor above: its own clean-up takes the lock.
		defer e.lockContainer(c.ID)()
	}
	if ctr, err := container.Load(e.runtimeRoot(), c.ID); err == nil {
		ctr.Delete(true)
	}
	e.teardownNetwork(c)
	if err := e.Images.Layers.RemoveRootfs(c.ID); err != nil && !isNotFound(err) {
		return err
	}
	os.RemoveAll(e.containerRunDir(c.ID))
	os.RemoveAll(e.containerDir(c.ID))
	err := e.DB().Update(func(tx *meta.Tx) error {
		tx.DeleteRecord(meta.ContainerNames, c.Name)
		return tx.DeleteRecord(meta.Containers, c.ID)
	})
	if err != nil {
		return err
	}
	if volumes {
		for _, m := range c.Host.Mounts {
			if m.Type != "volume" {
				continue
			}
			if v, err := e.VolumeInspect(m.Name); err == nil && v.Anonymous {
				e.VolumeRemove(m.Name, true)
			}
		}
	}
	return nil
}

func isNotFound(err error) bool {
	return err != nil && (errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), "not found"))
}

// Cleanup is what happens when a detached container has stopped for good
// (its monitor runs it): the root filesystem is unmounted, and a --rm
// container removed with its anonymous volumes.
func (e *Engine) Cleanup(id string) error {
	c, err := e.Resolve(id)
	if err != nil {
		return err
	}
	// Under the container's lock: a start that began meanwhile (restart)
	// has made a new run this clean-up must not touch; the state check
	// below sees it.
	defer e.lockContainer(c.ID)()
	if c, err = e.Resolve(c.ID); err != nil {
		return err
	}
	if st := e.State(c); st.Running || st.Restarting {
		return nil
	}
	e.teardownNetwork(c)
	if c.Host.AutoRemove {
		// `wait` may come after the removal: the exit code stays behind
		// in a small file for it.
		if ms, ok := e.readMonitorState(c.ID); ok {
			e.recordExit(c.ID, ms.ExitCode)
		}
		if err := e.remove(c, false, true, false); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	}
	return e.Images.Layers.Unmount(c.ID)
}

// Rename gives a container a new name.
func (e *Engine) Rename(ref, name string) error {
	name = strings.TrimPrefix(name, "/")
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	return e.DB().Update(func(tx *meta.Tx) error {
		c, err := resolve(tx, ref)
		if err != nil {
			return err
		}
		if c.Name == name {
			return fmt.Errorf("renaming a container with the same name as its current name")
		}
		if tx.RecordExists(meta.ContainerNames, name) {
			return fmt.Errorf("%w: the container name \"/%s\" is already in use", ErrConflict, name)
		}
		tx.DeleteRecord(meta.ContainerNames, c.Name)
		c.Name = name
		if err := tx.PutRecord(meta.ContainerNames, name, c.ID); err != nil {
			return err
		}
		return saveRecord(tx, c)
	})
}

// Prune removes every stopped container and returns their IDs.
func (e *Engine) Prune() ([]string, error) {
	list, err := e.List()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, c := range list {
		st := e.State(c)
		if st.Running || st.Restarting {
			continue
		}
		if err := e.Remove(c.ID, false, false); err != nil {
			if errors.Is(err, ErrConflict) {
				continue
			}
			return removed, err
		}
		removed = append(removed, c.ID)
	}
	return removed, nil
}

// Processes lists the container's processes (for top).
func (e *Engine) Processes(ref string) ([]int, error) {
	c, err := e.Resolve(ref)
	if err != nil {
		return nil, err
	}
	ctr, err := container.Load(e.runtimeRoot(), c.ID)
	if err != nil || (ctr.Status() != container.Running && ctr.Status() != container.Paused) {
		return nil, fmt.Errorf("%w: container %s is not running", ErrConflict, c.ID[:12])
	}
	return ctr.Processes()
}

// RuntimeContainer returns the runtime's handle of a running container.
func (e *Engine) RuntimeContainer(c *Container) (*container.Container, error) {
	ctr, err := container.Load(e.runtimeRoot(), c.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: container %s is not running", ErrConflict, c.ID[:12])
	}
	return ctr, nil
}

// ExecOptions describe a process to run in a running container.
type ExecOptions struct {
	Cmd        []string
	Env        []string
	User       string
	WorkingDir string
	Tty        bool
	Privileged bool
}

// ExecProcess builds the OCI process of an exec, from the container's own
// process (capabilities, seccomp via the container, env) and the options.
func (e *Engine) ExecProcess(c *Container, o ExecOptions) (*specs.Process, error) {
	ctr, err := e.RuntimeContainer(c)
	if err != nil {
		return nil, err
	}
	if ctr.Status() != container.Running {
		return nil, fmt.Errorf("%w: container %s is not running", ErrConflict, c.ID[:12])
	}
	base := ctr.Spec().Process
	p := *base
	p.Args = o.Cmd
	p.Terminal = o.Tty
	p.Env = append([]string(nil), base.Env...)
	for _, kv := range o.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			// "-e NAME" passes the caller's value, as Docker does.
			val, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = val
		}
		p.Env = setEnv(p.Env, k, v)
	}
	if o.Privileged {
		all := security.AllCapabilities()
		p.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
	}
	if o.WorkingDir != "" {
		p.Cwd = o.WorkingDir
	}
	if o.User != "" {
		root, err := e.Images.Layers.Mount(c.ID)
		if err != nil {
			return nil, err
		}
		u, err := ResolveUser(root, o.User)
		if err != nil {
			return nil, err
		}
		p.User = specs.User{UID: u.UID, GID: u.GID, AdditionalGids: u.AdditionalGids}
	}
	p.Rlimits = nil
	return &p, nil
}
