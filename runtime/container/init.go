package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/hooks"
	"github.com/hullproject/hull/runtime/nsenter"
	"github.com/hullproject/hull/runtime/rootfs"
	"github.com/hullproject/hull/runtime/spec"
)

func init() {
	// Thread-scoped state (capabilities, no_new_privs, seccomp, the uid
	// change we exec with) must all land on the thread that calls execve:
	// keep the main goroutine on the main thread in container processes.
	if IsInit() {
		goruntime.LockOSThread()
	}
}

// IsInit reports whether this process was started by the runtime as a
// container process (init or exec).
func IsInit() bool { return os.Getenv(nsenter.InitPipeEnv) != "" }

// Init runs the container side of create or exec. It does not return: it
// execs the container's program or exits with an error reported to the
// runtime.
func Init() {
	fd, err := strconv.Atoi(os.Getenv(nsenter.InitPipeEnv))
	if err != nil {
		os.Exit(nsenter.ExitCode)
	}
	os.Unsetenv(nsenter.InitPipeEnv)
	os.Unsetenv("HULL_TRACE")
	tracef("init: go runtime up")
	conn := newSyncConn(os.NewFile(uintptr(fd), "sync"))
	var cfg initConfig
	if err := conn.recv(&cfg); err != nil {
		os.Exit(nsenter.ExitCode)
	}
	report := func(err error) { _ = conn.send(errorMessage(err)) }
	if cfg.Type == "exec" {
		err = execSetup(conn, &cfg)
	} else {
		err = initSetup(conn, &cfg, &report)
	}
	report(err)
	os.Exit(1)
}

func errorMessage(err error) *message {
	m := &message{Type: "error", Error: err.Error()}
	var ee *ExecError
	if errors.As(err, &ee) {
		m.Errno = int(ee.Errno)
	}
	return m
}

// execSetup prepares a process joining a running container; the nsenter
// constructor has already put us in all of its namespaces.
func execSetup(conn *syncConn, cfg *initConfig) error {
	p := cfg.Process
	if p.Terminal {
		if err := setupConsole(-1, cfg.ConsoleFd, p.ConsoleSize); err != nil {
			return err
		}
	}
	path, err := lookPath(p)
	if err != nil {
		return err
	}
	return finalizeAndExec(cfg, path)
}

// initSetup builds the container around the init process and waits for
// start. report is redirected to the exec FIFO once the runtime has gone.
func initSetup(conn *syncConn, cfg *initConfig, report *func(error)) error {
	s := cfg.Spec
	stateDir, err := unix.Open(cfg.StateDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open state dir: %w", err)
	}
	if !cfg.NoKeyring {
		// A fresh session keyring keeps the host's keys out of reach.
		if _, err := unix.KeyctlJoinSessionKeyring("_ses." + cfg.ID); err != nil &&
			!errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EDQUOT) {
			return fmt.Errorf("join session keyring: %w", err)
		}
	}
	if s.Process.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*s.Process.OOMScoreAdj)), 0); err != nil {
			return fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	tracef("init: start")
	inUserNS := cfg.NewNS[string(specs.UserNamespace)] || cfg.JoinedUser
	newCgroupNS := cfg.NewNS[string(specs.CgroupNamespace)]
	// The runtime places us in our cgroups concurrently; wait for that
	// before anything depends on it.
	inCgroup := false
	ensureCgroup := func() error {
		if inCgroup {
			return nil
		}
		inCgroup = true
		var m message
		if err := conn.recv(&m); err != nil {
			return fmt.Errorf("wait for cgroup placement: %w", err)
		}
		if m.Type != "cgroup-ready" {
			return remoteError(m)
		}
		if newCgroupNS {
			// Per-thread, like the rest of our namespace state: this
			// thread is the one that mounts cgroupfs and execs.
			if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
				return fmt.Errorf("unshare cgroup namespace: %w", err)
			}
		}
		tracef("init: in cgroup")
		return nil
	}
	root, err := rootfs.Prepare(&rootfs.Config{
		Rootfs: cfg.Rootfs, Spec: s, NoPivot: cfg.NoPivot, InUserNS: inUserNS,
		NewCgroupNS:       newCgroupNS,
		NewNetNS:          cfg.NewNS[string(specs.NetworkNamespace)],
		BeforeCgroupMount: ensureCgroup,
	})
	if err != nil {
		return err
	}
	if err := ensureCgroup(); err != nil {
		return err
	}
	tracef("init: rootfs prepared")
	if s.Process.Terminal {
		if err := setupConsole(root.Fd(), cfg.ConsoleFd, s.Process.ConsoleSize); err != nil {
			return err
		}
	}
	if err := conn.send(&message{Type: "hooks"}); err != nil {
		return err
	}
	var reply message
	if err := conn.recv(&reply); err != nil {
		return fmt.Errorf("wait for runtime hooks: %w", err)
	}
	if reply.Type != "hooks-done" {
		return remoteError(reply)
	}
	st := &specs.State{Version: s.Version, ID: cfg.ID, Status: Creating, Pid: cfg.HostPid,
		Bundle: cfg.Bundle, Annotations: s.Annotations}
	if s.Hooks != nil {
		if err := hooks.Run("createContainer", s.Hooks.CreateContainer, st); err != nil {
			return err
		}
	}
	if err := root.Finish(); err != nil {
		return err
	}
	tracef("init: pivoted")
	if err := setHostname(s); err != nil {
		return err
	}
	if err := applySysctls(s); err != nil {
		return err
	}
	// Fail create, not start, when the program does not exist.
	path, err := lookPath(s.Process)
	if err != nil {
		return err
	}
	tracef("init: ready")
	if err := conn.send(&message{Type: "ready"}); err != nil {
		return err
	}
	conn.f.Close()

	// Block until `start` opens the FIFO for reading. The directory fd was
	// opened before pivot_root, so this works without /proc.
	fifo, err := unix.Openat(stateDir, fifoName, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	unix.Close(stateDir)
	if err != nil {
		os.Exit(1)
	}
	fifoFile := os.NewFile(uintptr(fifo), "exec.fifo")
	*report = func(err error) {
		data, _ := json.Marshal(errorMessage(err))
		_, _ = fifoFile.Write(data)
	}
	tracef("init: started")
	if _, err := fifoFile.Write([]byte{'0'}); err != nil {
		os.Exit(1)
	}
	if s.Hooks != nil {
		st.Status = Created
		if err := hooks.Run("startContainer", s.Hooks.StartContainer, st); err != nil {
			return err
		}
	}
	return finalizeAndExec(cfg, path)
}

func setHostname(s *specs.Spec) error {
	uts, _ := spec.HasNamespace(s, specs.UTSNamespace)
	if (s.Hostname != "" || s.Domainname != "") && !uts {
		return errors.New("setting the hostname or domainname needs a UTS namespace")
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	if s.Domainname != "" {
		if err := unix.Setdomainname([]byte(s.Domainname)); err != nil {
			return fmt.Errorf("set domainname: %w", err)
		}
	}
	return nil
}

// sysctlNamespace says which namespace makes a sysctl safe to set from a
// container; others would change the host.
func sysctlNamespace(key string) specs.LinuxNamespaceType {
	switch {
	case strings.HasPrefix(key, "net."):
		return specs.NetworkNamespace
	case strings.HasPrefix(key, "fs.mqueue."):
		return specs.IPCNamespace
	case key == "kernel.hostname" || key == "kernel.domainname":
		return specs.UTSNamespace
	}
	switch key {
	case "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
		"kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced":
		return specs.IPCNamespace
	}
	return ""
}

func applySysctls(s *specs.Spec) error {
	for key, value := range s.Linux.Sysctl {
		ns := sysctlNamespace(key)
		if ns == "" {
			return fmt.Errorf("sysctl %q is not namespaced: refusing to set it from a container", key)
		}
		if ok, _ := spec.HasNamespace(s, ns); !ok {
			return fmt.Errorf("sysctl %q needs a %s namespace", key, ns)
		}
		path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
		if strings.Contains(key, "/") || strings.Contains(key, "..") {
			return fmt.Errorf("invalid sysctl name %q", key)
		}
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return fmt.Errorf("set sysctl %s=%s: %w", key, value, err)
		}
	}
	return nil
}

// lookPath finds the program in the container's PATH, as execvp would.
func lookPath(p *specs.Process) (string, error) {
	name := p.Args[0]
	check := func(path string) error {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return unix.EACCES
		}
		return unix.Access(path, unix.X_OK)
	}
	if strings.Contains(name, "/") {
		if err := check(name); err != nil {
			return "", &ExecError{Msg: fmt.Sprintf("exec %s: %v", name, err), Errno: errnoOf(err)}
		}
		return name, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range p.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	denied := false
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		full := dir + "/" + name
		err := check(full)
		if err == nil {
			return full, nil
		}
		if errors.Is(err, unix.EACCES) {
			denied = true
		}
	}
	if denied {
		return "", &ExecError{Msg: fmt.Sprintf("exec %q: permission denied", name), Errno: unix.EACCES}
	}
	return "", &ExecError{Msg: fmt.Sprintf("exec %q: executable file not found in $PATH", name), Errno: unix.ENOENT}
}

func errnoOf(err error) unix.Errno {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EINVAL
}
