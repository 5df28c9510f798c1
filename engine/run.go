package engine

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hullproject/hull/engine/logs"
	"github.com/hullproject/hull/internal/console"
	"github.com/hullproject/hull/runtime/container"
	"github.com/hullproject/hull/runtime/rootfs"
	"golang.org/x/sys/unix"
)

// ExitError is a container (or exec) process's non-zero exit, or a failure
// to execute its program, with the status Docker's CLI exits with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

func (e *ExitError) Unwrap() error { return e.Err }

// execFailure maps a failure to start the program to Docker's statuses:
// 127 when it does not exist, 126 when it cannot be executed.
func execFailure(err error) error {
	var ee *container.ExecError
	if errors.As(err, &ee) {
		if ee.NotFound() {
			return &ExitError{Code: 127, Err: err}
		}
		return &ExitError{Code: 126, Err: err}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory") && strings.Contains(msg, "exec"):
		return &ExitError{Code: 127, Err: err}
	case strings.Contains(msg, "permission denied") && strings.Contains(msg, "exec"):
		return &ExitError{Code: 126, Err: err}
	}
	return err
}

// prepare mounts the container's root filesystem and writes its bundle and
// generated /etc files under the run directory; it returns the bundle dir.
func (e *Engine) prepare(c *Container) (string, error) {
	root, err := e.Images.Layers.Mount(c.ID)
	if err != nil {
		return "", err
	}
	if err := makeWorkdir(root, c.Config.WorkingDir); err != nil {
		e.Images.Layers.Unmount(c.ID)
		return "", err
	}
	runDir := e.containerRunDir(c.ID)
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return "", err
	}
	container.Tracef("engine: rootfs mounted")
	netPath, err := e.setupNetwork(c)
	if err != nil {
		return "", err
	}
	container.Tracef("engine: network set up")
	ok := false
	defer func() {
		if !ok {
			e.teardownNetwork(c)
			e.Images.Layers.Unmount(c.ID)
		}
	}()
	if err := writeEtcFiles(c, runDir); err != nil {
		return "", err
	}
	if usesBridge(c.Host.NetworkMode) {
		if err := e.writeNetFiles(c, runDir); err != nil {
			return "", err
		}
	}
	s, err := e.buildSpec(c, root, runDir, netPath)
	if err != nil {
		return "", err
	}
	bundle := filepath.Join(runDir, "bundle")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return "", err
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(filepath.Join(bundle, "config.json"), raw, 0o600); err != nil {
		return "", err
	}
	ok = true
	return bundle, nil
}

// makeWorkdir creates the working directory in the container's root when
// the image lacks it, as Docker does; it is resolved inside that root.
func makeWorkdir(root, dir string) error {
	if dir == "" || dir == "/" {
		return nil
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(rootFd)
	fd, err := rootfs.MkdirAllInRoot(rootFd, dir, 0o755)
	if err != nil {
		return fmt.Errorf("working directory %s: %w", dir, err)
	}
	unix.Close(fd)
	return nil
}

// writeEtcFiles makes the container's /etc/hostname and, outside bridge
// networks (whose files writeNetFiles makes), /etc/hosts and
// /etc/resolv.conf: the host's own with --network host, else a minimal
// hosts file and the host's name servers without loopback ones (they would
// be the container's own loopback).
func writeEtcFiles(c *Container, dir string) error {
	files := map[string][]byte{"hostname": []byte(c.Config.Hostname + "\n")}
	switch {
	case usesBridge(c.Host.NetworkMode):
	case c.Host.NetworkMode == "host":
		files["hosts"], _ = os.ReadFile("/etc/hosts")
		files["resolv.conf"], _ = os.ReadFile("/etc/resolv.conf")
	default:
		files["hosts"] = []byte(fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t%s\n", c.Config.Hostname))
		files["resolv.conf"] = []byte(hostResolvConf())
	}
	for name, data := range files {
		if err := writeFileAtomic(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Start starts a created or exited container in the background under a
// hull-monitor. Starting a running container does nothing.
func (e *Engine) Start(ref string) (*Container, error) {
	c, err := e.Resolve(ref)
	if err != nil {
		return nil, err
	}
	defer e.lockContainer(c.ID)()
	// Another process may have started it while we waited for the lock.
	if c, err = e.Resolve(c.ID); err != nil {
		return nil, err
	}
	st := e.State(c)
	if st.Running || st.Restarting {
		return c, nil
	}
	if st.Paused {
		return nil, fmt.Errorf("%w: cannot start a paused container, try unpause instead", ErrConflict)
	}
	e.cleanupRuntime(c)
	bundle, err := e.prepare(c)
	if err != nil {
		return nil, err
	}
	pid, err := e.spawnMonitor(c, bundle)
	if err != nil {
		e.teardownNetwork(c)
		e.Images.Layers.Unmount(c.ID)
		return nil, execFailure(err)
	}
	net, lastIPs := c.Net, c.LastIPs
	updated, err := e.update(c.ID, func(c *Container) error {
		c.State = State{Status: "running", Running: true, Pid: pid, StartedAt: time.Now().UTC(), Health: startingHealth(c)}
		c.ManualStop = false
		c.Net, c.LastIPs = net, lastIPs
		return nil
	})
	if errors.Is(err, ErrNotFound) && c.Host.AutoRemove {
		// A --rm container that already ran and was removed by its
		// monitor's clean-up: it started, which is what was asked.
		return c, nil
	}
	return updated, err
}

func startingHealth(c *Container) *Health {
	if c.Config.Healthcheck == nil {
		return nil
	}
	return &Health{Status: "starting", Log: []HealthProbe{}}
}

// Docker's health-check defaults.
const (
	defaultHealthInterval = 30 * time.Second
	defaultHealthTimeout  = 30 * time.Second
	defaultHealthRetries  = 3
)

// spawnMonitor starts hull-monitor for a container and waits until it
// reports the container started (its pid) or failed.
func (e *Engine) spawnMonitor(c *Container, bundle string) (int, error) {
	runDir := e.containerRunDir(c.ID)
	for _, f := range []string{"state.json", "exit.json", "pid", "attach.sock", "ctl"} {
		os.Remove(filepath.Join(runDir, f))
	}
	args := []string{
		"--id", c.ID, "--bundle", bundle, "--dir", runDir,
		"--runtime", e.Runtime, "--runtime-root", e.runtimeRoot(),
	}
	if c.Host.LogConfig.Type != "none" {
		args = append(args, "--log-path", c.LogPath)
		size, files, err := logs.Limits(c.Host.LogConfig.Config)
		if err != nil {
			return 0, err
		}
		if size > 0 {
			args = append(args, "--log-max-size", strconv.FormatInt(size, 10), "--log-max-file", strconv.Itoa(files))
		}
	}
	if c.Config.Tty {
		args = append(args, "--tty")
	}
	if c.Config.OpenStdin {
		args = append(args, "--stdin")
	}
	if p := c.Host.RestartPolicy; p.Name != "" && p.Name != "no" {
		args = append(args, "--restart", p.Name)
		if p.Name == "on-failure" {
			args = append(args, "--restart-max", strconv.Itoa(p.MaximumRetryCount))
		}
	}
	if hc := c.Config.Healthcheck; hc != nil {
		switch hc.Test[0] {
		case "CMD":
			for _, a := range hc.Test[1:] {
				args = append(args, "--health-cmd", a)
			}
		case "CMD-SHELL":
			args = append(args, "--health-shell", strings.Join(hc.Test[1:], " "))
		}
		interval, timeout, retries := hc.Interval, hc.Timeout, hc.Retries
		if interval == 0 {
			interval = defaultHealthInterval
		}
		if timeout == 0 {
			timeout = defaultHealthTimeout
		}
		if retries == 0 {
			retries = defaultHealthRetries
		}
		args = append(args, "--health-interval", strconv.FormatInt(int64(interval), 10),
			"--health-timeout", strconv.FormatInt(int64(timeout), 10),
			"--health-retries", strconv.Itoa(retries),
			"--health-start-period", strconv.FormatInt(int64(hc.StartPeriod), 10))
	}
	if dir := memoryCgroupDir(c.ID); dir != "" {
		args = append(args, "--oom-cgroup", dir)
	}
	// Once the container is gone for good, the monitor has hull clean up:
	// unmount its root filesystem, remove it for --rm.
	if self, err := os.Executable(); err == nil {
		for _, a := range []string{self, "--root", e.Root, "--runroot", e.RunRoot, "container", "cleanup", c.ID} {
			args = append(args, "--exit-command", a)
		}
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer syncR.Close()
	args = append(args, "--sync-fd", "3")
	cmd := exec.Command(e.Monitor, args...)
	cmd.ExtraFiles = []*os.File{syncW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		syncW.Close()
		return 0, fmt.Errorf("start hull-monitor: %w", err)
	}
	syncW.Close()
	// The monitor runs on when we exit; reap it if it ends first.
	go cmd.Wait()
	line, err := bufio.NewReader(syncR).ReadString('\n')
	if err != nil && line == "" {
		return 0, fmt.Errorf("hull-monitor exited before starting the container")
	}
	var msg struct {
		Pid   int    `json:"pid"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(line), &msg); err != nil {
		return 0, fmt.Errorf("hull-monitor: %q: %w", line, err)
	}
	if msg.Error != "" {
		return 0, errors.New(msg.Error)
	}
	return msg.Pid, nil
}

// memoryCgroupDir is where the container's memory cgroup will be (its
// cgroupsPath is /hull/<id>), for the monitor's OOM detection.
func memoryCgroupDir(id string) string {
	// v1 (and hybrid): the memory hierarchy's own mount.
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil {
		return filepath.Join("/sys/fs/cgroup/memory", "hull", id)
	}
	// v2: the unified hierarchy (its root has cgroup.controllers, not
	// memory.max).
	if raw, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(string(raw), "memory") {
		return filepath.Join("/sys/fs/cgroup", "hull", id)
	}
	return ""
}

// RunOptions are the streams of a foreground run.
type RunOptions struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Interactive keeps stdin open (-i).
	Interactive bool
	// Signals are passed on to the container.
	Signals <-chan os.Signal
}

// RunForeground starts a created container attached to the caller's
// streams, without a monitor (a foreground run needs none: we are its
// parent), and waits for it. It returns the container's exit status.
func (e *Engine) RunForeground(c *Container, o RunOptions) (int, error) {
	unlock := e.lockContainer(c.ID)
	e.cleanupRuntime(c)
	bundle, err := e.prepare(c)
	unlock()
	if err != nil {
		return 0, err
	}
	defer func() {
		defer e.lockContainer(c.ID)()
		e.teardownNetwork(c)
		container.Tracef("engine: network torn down")
		e.Images.Layers.Unmount(c.ID)
		container.Tracef("engine: unmounted")
	}()
	var logw *logs.Writer
	if c.Host.LogConfig.Type != "none" {
		size, files, err := logs.Limits(c.Host.LogConfig.Config)
		if err != nil {
			return 0, err
		}
		if logw, err = logs.NewWriter(c.LogPath, size, files); err != nil {
			return 0, err
		}
		defer logw.Close()
	}
	copts := container.CreateOpts{Bundle: bundle}
	var proxy *console.Proxy
	var copiers sync.WaitGroup
	var closers []io.Closer
	if c.Config.Tty {
		if proxy, err = console.New(); err != nil {
			return 0, err
		}
		defer proxy.Close()
		copts.ConsoleConn = proxy.Remote
	} else {
		pipe := func(name string, w io.Writer) (*os.File, error) {
			r, wr, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			closers = append(closers, wr)
			copiers.Add(1)
			go func() {
				defer copiers.Done()
				defer r.Close()
				var dst io.Writer = w
				if logw != nil {
					dst = logw.Stream(name, w)
				}
				io.Copy(dst, r)
			}()
			return wr, nil
		}
		if copts.Stdio.Out, err = pipe("stdout", o.Stdout); err != nil {
			return 0, err
		}
		if copts.Stdio.Err, err = pipe("stderr", o.Stderr); err != nil {
			return 0, err
		}
		if o.Interactive && o.Stdin != nil {
			if f, ok := o.Stdin.(*os.File); ok {
				copts.Stdio.In = f
			} else {
				r, w, err := os.Pipe()
				if err != nil {
					return 0, err
				}
				copts.Stdio.In = r
				closers = append(closers, r)
				go func() { io.Copy(w, o.Stdin); w.Close() }()
			}
		}
	}
	closeWriters := func() {
		for _, cl := range closers {
			cl.Close()
		}
		closers = nil
	}
	container.Tracef("engine: prepared")
	ctr, err := container.Create(e.runtimeRoot(), c.ID, copts)
	if err != nil {
		closeWriters()
		copiers.Wait()
		return 0, execFailure(err)
	}
	defer ctr.Delete(true)
	// Our copies of the pipe ends: only the container holds them now.
	closeWriters()
	if proxy != nil {
		if err := proxy.Attach(); err != nil {
			return 0, err
		}
	}
	if err := ctr.Start(); err != nil {
		copiers.Wait()
		return 0, execFailure(err)
	}
	started := time.Now().UTC()
	net, lastIPs := c.Net, c.LastIPs
	e.update(c.ID, func(c *Container) error {
		c.State = State{Status: "running", Running: true, Pid: ctr.State.Pid, StartedAt: started}
		c.Net, c.LastIPs = net, lastIPs
		return nil
	})
	sigs := o.Signals
	if sigs == nil {
		sigs = make(chan os.Signal)
	}
	container.Tracef("engine: started")
	code := console.WaitForwarding(ctr.State.Pid, sigs, proxy)
	copiers.Wait()
	container.Tracef("engine: exited")
	oom := oomKilled(c.ID, code)
	e.update(c.ID, func(c *Container) error {
		c.State = State{Status: "exited", ExitCode: code, StartedAt: started, FinishedAt: time.Now().UTC(), OOMKilled: oom}
		return nil
	})
	return code, nil
}

// oomKilled reads whether the kernel's OOM killer ended the container: the
// memory cgroup's oom_kill count, while the cgroup still exists.
func oomKilled(id string, code int) bool {
	if code != 137 {
		return false
	}
	dir := memoryCgroupDir(id)
	if dir == "" {
		return false
	}
	for _, f := range []string{"memory.oom_control", "memory.events"} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == "oom_kill" && v != "0" {
				return true
			}
		}
	}
	return false
}

// cleanupRuntime deletes what the runtime may still hold of an earlier run
// (a monitor killed mid-way, a crash).
func (e *Engine) cleanupRuntime(c *Container) {
	if ctr, err := container.Load(e.runtimeRoot(), c.ID); err == nil {
		if ctr.Status() == container.Stopped {
			ctr.Delete(true)
		}
	}
}

// signalContainer sends a signal to the container's init.
func (e *Engine) signalContainer(c *Container, sig unix.Signal) error {
	ctr, err := container.Load(e.runtimeRoot(), c.ID)
	if err != nil {
		return fmt.Errorf("%w: container %s is not running", ErrConflict, c.ID[:12])
	}
	return ctr.Signal(sig, false)
}
