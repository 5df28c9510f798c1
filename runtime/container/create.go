package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/cgroups"
	"github.com/hullproject/hull/runtime/nsenter"
	"github.com/hullproject/hull/runtime/rootfs"
	"github.com/hullproject/hull/runtime/spec"
)

// CreateOpts are the options of `create` (and `run`).
type CreateOpts struct {
	Bundle        string
	PidFile       string
	ConsoleSocket string   // path of a unix socket to send the pty master to
	ConsoleConn   *os.File // or an already connected socket
	NoPivot       bool
	NoNewKeyring  bool
	PreserveFDs   int      // descriptors 3 .. 3+N-1 are passed to the container
	ExtraEnv      []string // added to the process's environment
	Stdio         Stdio
}

// Create sets up a container from a bundle and leaves its init blocked
// until Start. On failure it leaves nothing behind.
func Create(root, id string, o CreateOpts) (c *Container, err error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(o.Bundle)
	if err != nil {
		return nil, err
	}
	tracef("create: begin")
	if fi, err := os.Stat(bundle); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("bundle %s is not a directory", bundle)
	}
	data, err := spec.ReadFile(bundle)
	if err != nil {
		return nil, err
	}
	var sp *spawned
	// cgWork tracks the goroutine that parses the spec and then makes the
	// cgroup; cleanup waits for it before it removes anything.
	var cgWork sync.WaitGroup
	var cg cgroups.Manager
	cgCreated := false
	var dir string
	defer func() {
		if err == nil {
			return
		}
		if sp != nil {
			sp.kill()
		}
		cgWork.Wait()
		if cgCreated {
			_ = cg.Destroy()
		}
		if dir != "" {
			os.RemoveAll(dir)
		}
	}()
	// The state directory comes first: making it is what reserves the id,
	// and nothing may touch a cgroup that a container of the same id is
	// using.
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create state root %s: %w", root, err)
	}
	if err := os.Mkdir(filepath.Join(root, id), 0o711); err != nil {
		if os.IsExist(err) {
			return nil, fmt.Errorf("container %s already exists", id)
		}
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	dir = filepath.Join(root, id)

	// Three things then run at once, since each takes about a millisecond
	// on its own: the first process is started and creates the namespaces;
	// another goroutine decodes and validates the whole spec, then makes
	// the cgroup and sets its limits; this one decodes just the namespaces
	// (cheaply, while the process execs) to hand them to the first process.
	// The process is placed in the cgroup once it exists, while the root
	// filesystem is built; the build waits for that before it creates the
	// cgroup namespace or mounts cgroupfs, and nothing of the container
	// runs before the plan.
	specc := make(chan *specs.Spec, 1)
	pidc := make(chan int, 1)
	cgc := make(chan error, 1)
	cgWork.Add(1)
	go func() {
		defer cgWork.Done()
		defer close(specc)
		s, err := spec.Parse(bundle, data)
		if err != nil {
			cgc <- err
			return
		}
		specc <- s
		path := cgroupsPath(s, id)
		cgc <- func() error {
			m, err := cgroups.New(path)
			if err != nil {
				return err
			}
			cg, cgCreated = m, !m.Exists()
			if err := cg.Apply(0); err != nil {
				return fmt.Errorf("create cgroup %s: %w", path, err)
			}
			if err := cg.Set(effectiveResources(s)); err != nil {
				return fmt.Errorf("set cgroup resources: %w", err)
			}
			tracef("create: cgroup set")
			pid, ok := <-pidc
			if !ok {
				return nil
			}
			if err := cg.Apply(pid); err != nil {
				return fmt.Errorf("apply cgroup %s: %w", path, err)
			}
			tracef("create: cgroup applied")
			return nil
		}()
	}()
	cgWait := sync.OnceValue(func() error { return <-cgc })
	// Unblock the goroutine when create fails before the pid is known.
	pidSent := false
	defer func() {
		if !pidSent {
			close(pidc)
		}
	}()
	// fullSpec waits for the whole spec; on a parse error it returns that
	// error, which then explains any failure of the steps before it better.
	fullSpec := sync.OnceValues(func() (*specs.Spec, error) {
		if s, ok := <-specc; ok {
			return s, nil
		}
		return nil, cgWait()
	})
	orSpecError := func(err error) error {
		if _, perr := fullSpec(); perr != nil {
			return perr
		}
		return err
	}
	if sp, err = startChild(spawnOpts{dir: bundle, stdio: o.Stdio, extra: preservedFiles(o.PreserveFDs)}); err != nil {
		return nil, orSpecError(err)
	}
	nss := spec.ParseNamespaces(data)
	if nss == nil {
		return nil, orSpecError(errors.New("config.json has no linux section"))
	}
	nsCfg, _, err := namespaceConfig(nss.Namespaces, nss.TimeOffsets)
	if err != nil {
		return nil, orSpecError(err)
	}
	// The cgroup namespace must be rooted at the container's cgroup, which
	// the process only joins later (see build): it is created then.
	nsCfg.CloneFlags &^= unix.CLONE_NEWCGROUP
	if err := sp.enter(nsCfg, nss.UIDMappings, nss.GIDMappings); err != nil {
		return nil, orSpecError(err)
	}
	s, err := fullSpec()
	if err != nil {
		return nil, err
	}
	tracef("create: spec loaded")
	pidc <- sp.pid
	pidSent = true
	rootPath := s.Root.Path
	if !filepath.IsAbs(rootPath) {
		rootPath = filepath.Join(bundle, rootPath)
	}
	if fi, err := os.Stat(rootPath); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("rootfs %s is missing or not a directory", rootPath)
	}
	if s.Process != nil && s.Process.Terminal && o.ConsoleSocket == "" && o.ConsoleConn == nil {
		return nil, errors.New("process.terminal is set but no --console-socket was given")
	}
	c = &Container{root: root, dir: dir, State: State{
		ID: id, Bundle: bundle, Rootfs: rootPath, Config: data,
		Annotations: s.Annotations, CgroupsPath: cgroupsPath(s, id),
		Owner: strconv.Itoa(os.Geteuid()),
	}, spec: s}
	unlock, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()

	fifo := filepath.Join(dir, fifoName)
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return c, fmt.Errorf("create exec fifo: %w", err)
	}
	if ok, path := spec.HasNamespace(s, specs.UserNamespace); ok && path == "" {
		// The container process opens it as the container's root, which
		// is an unprivileged user on the host.
		if err := os.Chown(fifo, int(hostID(s.Linux.UIDMappings, 0)), int(hostID(s.Linux.GIDMappings, 0))); err != nil {
			return c, fmt.Errorf("chown exec fifo: %w", err)
		}
	}
	tracef("create: state dir ready")
	console := o.ConsoleConn
	if o.ConsoleSocket != "" {
		if console, err = dialConsole(o.ConsoleSocket); err != nil {
			return c, err
		}
		defer console.Close()
	}
	c.State.Pid = sp.pid
	c.State.PidStart, _, _ = processStart(sp.pid)
	b, err := c.build(sp, cgWait, console, o.NoPivot)
	if err == nil {
		err = cgWait() // build waited for it on every path; this is cheap
	}
	if err != nil {
		return c, err
	}
	if b.console >= 0 {
		defer unix.Close(b.console)
	}
	var pl *nsenter.Plan
	if s.Process != nil {
		if err := setProcessLimits(sp.pid, s.Process); err != nil {
			return c, err
		}
		if pl, err = buildPlan(s.Process, s, b.exe); err != nil {
			return c, err
		}
		pl.Env = append(pl.Env[:len(pl.Env):len(pl.Env)], o.ExtraEnv...)
	} else {
		// A container without a process can be created; starting it
		// fails (OCI runtime spec).
		pl = &nsenter.Plan{Flags: nsenter.PlanNoProcess}
	}
	pl.Flags |= nsenter.PlanWaitFifo
	if !o.NoNewKeyring {
		pl.Flags |= nsenter.PlanKeyring
		pl.Keyring = "_ses." + id
	}
	pl.PreserveFDs = uint32(o.PreserveFDs)
	if err := c.startHooks(pl); err != nil {
		return c, err
	}
	dirFd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return c, fmt.Errorf("open state dir: %w", err)
	}
	defer unix.Close(dirFd)
	fds := []int{dirFd}
	if b.console >= 0 {
		pl.Flags |= nsenter.PlanConsole
		fds = append(fds, b.console)
	}
	if err := sp.request(nsenter.ReqPlan, pl.Encode(), fds...); err != nil {
		return c, err
	}
	tracef("create: ready")
	if err := sp.reapFirst(); err != nil {
		return c, err
	}
	c.State.Created = time.Now().UTC()
	if err := c.save(); err != nil {
		return c, err
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, sp.pid); err != nil {
			return c, err
		}
	}
	sp.conn.Close()
	return c, nil
}

func cgroupsPath(s *specs.Spec, id string) string {
	if s.Linux != nil && s.Linux.CgroupsPath != "" {
		return s.Linux.CgroupsPath
	}
	return "/hull-runc/" + id
}

// namespaceConfig turns the spec's namespaces into the nsenter config.
func namespaceConfig(nss []specs.LinuxNamespace, offsets map[string]specs.LinuxTimeOffset) (nsenter.Config, map[string]bool, error) {
	var cfg nsenter.Config
	newNS := map[string]bool{}
	for _, ns := range nss {
		info, ok := nsInfo[ns.Type]
		if !ok {
			return cfg, nil, fmt.Errorf("unknown namespace type %q", ns.Type)
		}
		if ns.Path != "" {
			cfg.Joins = append(cfg.Joins, nsenter.Join{Type: info.flag, Path: ns.Path})
		} else {
			cfg.CloneFlags |= uint32(info.flag)
			newNS[string(ns.Type)] = true
		}
		if ns.Type == specs.PIDNamespace || ns.Type == specs.TimeNamespace {
			cfg.Fork = true
		}
	}
	if newNS[string(specs.TimeNamespace)] {
		for clock, off := range offsets {
			cfg.TimeOffsets += fmt.Sprintf("%s %d %d\n", clock, off.Secs, off.Nanosecs)
		}
	}
	return cfg, newNS, nil
}

// effectiveResources adds the device rules every container needs (the
// default devices and the spec's own device nodes) after the spec's rules,
// as runc does, so that a spec that denies everything still works.
func effectiveResources(s *specs.Spec) *specs.LinuxResources {
	var r specs.LinuxResources
	if s.Linux.Resources != nil {
		r = *s.Linux.Resources
	}
	r.Devices = append([]specs.LinuxDeviceCgroup(nil), r.Devices...)
	allow := func(t string, major, minor int64) {
		rule := specs.LinuxDeviceCgroup{Allow: true, Type: t, Major: &major, Minor: &minor, Access: "rwm"}
		if minor < 0 {
			rule.Minor = nil // any minor
		}
		r.Devices = append(r.Devices, rule)
	}
	for _, d := range rootfs.Devices(s) {
		switch d.Type {
		case "c", "u":
			allow("c", d.Major, d.Minor)
		case "b":
			allow("b", d.Major, d.Minor)
		}
		// FIFOs ("p") are not devices: the device controller has no rule
		// for them.
	}
	allow("c", 5, 1)    // /dev/console
	allow("c", 5, 2)    // /dev/ptmx
	allow("c", 136, -1) // /dev/pts/*
	return &r
}

// dialConsole connects to the console socket with plain syscalls; the net
// package would add its resolver and poller to every runtime process.
func dialConsole(path string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect to console socket %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), "console-socket"), nil
}

func writePidFile(path string, pid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return writeFileAtomic(abs, []byte(strconv.Itoa(pid)), 0o644)
}

// setProcessLimits applies the process's rlimits and oom_score_adj from the
// outside, before it executes anything.
func setProcessLimits(pid int, p *specs.Process) error {
	for _, rl := range p.Rlimits {
		t, ok := rlimitTypes[rl.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit type %q", rl.Type)
		}
		lim := unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		if err := unix.Prlimit(pid, t, &lim, nil); err != nil {
			return fmt.Errorf("set %s to %d/%d: %w", rl.Type, rl.Soft, rl.Hard, err)
		}
	}
	if p.OOMScoreAdj != nil {
		path := fmt.Sprintf("/proc/%d/oom_score_adj", pid)
		if err := os.WriteFile(path, []byte(strconv.Itoa(*p.OOMScoreAdj)), 0); err != nil {
			return fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	return nil
}

var rlimitTypes = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}
