package container

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/cgroups"
	"github.com/hullproject/hull/runtime/hooks"
)

// Warn receives non-fatal problems (failed poststart/poststop hooks). The
// CLI points it at its log.
var Warn = func(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "warning: "+format+"\n", args...)
}

func (c *Container) cgroup() (cgroups.Manager, error) {
	return cgroups.New(c.State.CgroupsPath)
}

// Start releases the init blocked by Create; it returns once the
// container's program has been executed (or has failed to).
func (c *Container) Start() error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	switch st := c.Status(); st {
	case Created:
	case Stopped:
		return fmt.Errorf("cannot start a container that has stopped: %w", ErrNotRunning)
	default:
		return fmt.Errorf("cannot start an already %s container", st)
	}
	fifo := filepath.Join(c.dir, fifoName)
	fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open exec fifo: %w", err)
	}
	data, err := c.drainFifo(fd)
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := os.Remove(fifo); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove exec fifo: %w", err)
	}
	tracef("start: fifo drained")
	if len(data) == 0 || data[0] != '0' {
		return errors.New("container init exited before it could be started")
	}
	if msg := bytes.TrimSpace(data[1:]); len(msg) > 0 {
		var m message
		if json.Unmarshal(msg, &m) == nil && m.Type == "error" {
			return remoteError(m)
		}
		return fmt.Errorf("start container: %s", msg)
	}
	if h := c.specHead().Hooks; h != nil {
		if err := hooks.RunAll("poststart", h.Poststart, c.hookState(Running)); err != nil {
			Warn("%v", err)
		}
	}
	return nil
}

// drainFifo waits for the init to reach the FIFO and reads until it has
// executed the program (its end closes on exec) or reported an error.
// poll only reports a hang-up after a writer has connected, so waiting for
// POLLIN/POLLHUP cannot mistake "not yet" for "gone".
func (c *Container) drainFifo(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 4096)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 200)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("wait for init: %w", err)
		}
		if n == 0 {
			if !c.initAlive() {
				return out, nil
			}
			continue
		}
		r, err := unix.Read(fd, buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read exec fifo: %w", err)
		}
		if r == 0 {
			return out, nil
		}
		out = append(out, buf[:r]...)
	}
}

// Signal sends sig to the init, or with all to every process of the
// container.
func (c *Container) Signal(sig unix.Signal, all bool) error {
	if c.Status() == Stopped {
		if all {
			// Leftover processes of a container without its own pid
			// namespace can still be signalled.
			if m, err := c.cgroup(); err == nil && m.Exists() {
				return signalCgroup(m, sig)
			}
		}
		return fmt.Errorf("container %s: %w", c.State.ID, ErrNotRunning)
	}
	if all {
		m, err := c.cgroup()
		if err != nil {
			return err
		}
		return signalCgroup(m, sig)
	}
	if err := unix.Kill(c.State.Pid, sig); err != nil {
		if err == unix.ESRCH {
			return fmt.Errorf("container %s: %w", c.State.ID, ErrNotRunning)
		}
		return fmt.Errorf("signal init: %w", err)
	}
	return nil
}

// signalCgroup signals every process, frozen first so none can fork past us.
func signalCgroup(m cgroups.Manager, sig unix.Signal) error {
	frozen := m.Freeze() == nil
	pids, err := m.Pids()
	if err == nil {
		for _, p := range pids {
			_ = unix.Kill(p, sig)
		}
	}
	if frozen {
		if terr := m.Thaw(); terr != nil && err == nil {
			err = terr
		}
	}
	return err
}

// Delete removes a container. A created container is killed; a running or
// paused one only with force.
func (c *Container) Delete(force bool) error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	m, err := c.cgroup()
	if err != nil {
		return err
	}
	switch st := c.Status(); st {
	case Stopped:
	case Created:
		_ = unix.Kill(c.State.Pid, unix.SIGKILL)
	default:
		if !force {
			return fmt.Errorf("cannot delete container %s that is not stopped: %s", c.State.ID, st)
		}
		if st == Paused {
			_ = m.Thaw()
		}
		_ = signalCgroup(m, unix.SIGKILL)
		_ = unix.Kill(c.State.Pid, unix.SIGKILL)
	}
	tracef("delete: killed")
	if err := c.waitGone(m); err != nil {
		return err
	}
	tracef("delete: gone")
	if err := m.Destroy(); err != nil {
		return fmt.Errorf("remove cgroup: %w", err)
	}
	tracef("delete: cgroup destroyed")
	if h := c.specHead().Hooks; h != nil {
		if err := hooks.RunAll("poststop", h.Poststop, c.hookState(Stopped)); err != nil {
			Warn("%v", err)
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("remove state of %s: %w", c.State.ID, err)
	}
	return nil
}

// waitGone waits for the init to die and, if the container shares a pid
// namespace, kills what is left in its cgroup.
func (c *Container) waitGone(m cgroups.Manager) error {
	deadline := time.Now().Add(10 * time.Second)
	for c.initAlive() {
		if time.Now().After(deadline) {
			return fmt.Errorf("container %s: init %d did not exit", c.State.ID, c.State.Pid)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !m.Exists() {
		return nil
	}
	for {
		pids, err := m.Pids()
		if err != nil || len(live(pids)) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("container %s: processes %v did not exit", c.State.ID, pids)
		}
		for _, p := range pids {
			_ = unix.Kill(p, unix.SIGKILL)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// live drops zombies, which stay listed in a cgroup until reaped.
func live(pids []int) []int {
	var out []int
	for _, p := range pids {
		if _, zombie, ok := processStart(p); ok && !zombie {
			out = append(out, p)
		}
	}
	return out
}

// Pause freezes every process of the container.
func (c *Container) Pause() error {
	if st := c.Status(); st != Running && st != Created {
		return fmt.Errorf("container %s is %s: %w", c.State.ID, st, ErrNotRunning)
	}
	m, err := c.cgroup()
	if err != nil {
		return err
	}
	return m.Freeze()
}

// Resume thaws a paused container.
func (c *Container) Resume() error {
	if st := c.Status(); st != Paused {
		return fmt.Errorf("container %s is not paused", c.State.ID)
	}
	m, err := c.cgroup()
	if err != nil {
		return err
	}
	return m.Thaw()
}

// Processes lists the pids in the container's cgroup.
func (c *Container) Processes() ([]int, error) {
	m, err := c.cgroup()
	if err != nil {
		return nil, err
	}
	if !m.Exists() {
		return nil, nil
	}
	return m.Pids()
}

// Stats returns the cgroup statistics of the container.
func (c *Container) Stats() (*cgroups.Stats, error) {
	m, err := c.cgroup()
	if err != nil {
		return nil, err
	}
	return m.Stats()
}

// Update changes resource limits of a live container and records them.
func (c *Container) Update(r *specs.LinuxResources) error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if c.Status() == Stopped {
		return fmt.Errorf("container %s: %w", c.State.ID, ErrNotRunning)
	}
	s, err := c.loadSpec()
	if err != nil {
		return err
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	mergeResources(s.Linux.Resources, r)
	m, err := c.cgroup()
	if err != nil {
		return err
	}
	if err := m.Set(effectiveResources(s)); err != nil {
		return fmt.Errorf("update resources: %w", err)
	}
	if err := c.setSpec(s); err != nil {
		return err
	}
	return c.save()
}

// mergeResources overlays the fields set in u onto r, field group by group
// and, for memory/cpu/pids/blkio, value by value as `runc update` does.
func mergeResources(r, u *specs.LinuxResources) {
	if u.Memory != nil {
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		m, n := r.Memory, u.Memory
		setI64(&m.Limit, n.Limit)
		setI64(&m.Reservation, n.Reservation)
		setI64(&m.Swap, n.Swap)
		setI64(&m.Kernel, n.Kernel) //nolint:staticcheck // still honoured where present
		setI64(&m.KernelTCP, n.KernelTCP)
		if n.Swappiness != nil {
			m.Swappiness = n.Swappiness
		}
		if n.DisableOOMKiller != nil {
			m.DisableOOMKiller = n.DisableOOMKiller
		}
	}
	if u.CPU != nil {
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		c, n := r.CPU, u.CPU
		if n.Shares != nil {
			c.Shares = n.Shares
		}
		setI64(&c.Quota, n.Quota)
		if n.Period != nil {
			c.Period = n.Period
		}
		setI64(&c.RealtimeRuntime, n.RealtimeRuntime)
		if n.RealtimePeriod != nil {
			c.RealtimePeriod = n.RealtimePeriod
		}
		if n.Cpus != "" {
			c.Cpus = n.Cpus
		}
		if n.Mems != "" {
			c.Mems = n.Mems
		}
	}
	if u.Pids != nil {
		r.Pids = u.Pids
	}
	if u.BlockIO != nil {
		r.BlockIO = u.BlockIO
	}
	if len(u.HugepageLimits) > 0 {
		r.HugepageLimits = u.HugepageLimits
	}
	if u.Network != nil {
		r.Network = u.Network
	}
	if len(u.Unified) > 0 {
		if r.Unified == nil {
			r.Unified = map[string]string{}
		}
		for k, v := range u.Unified {
			r.Unified[k] = v
		}
	}
}

func setI64(dst **int64, v *int64) {
	if v != nil {
		*dst = v
	}
}
