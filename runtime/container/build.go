package container

import (
	"errors"
	"fmt"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/hooks"
	"github.com/hullproject/hull/runtime/nsenter"
	"github.com/hullproject/hull/runtime/rootfs"
	"github.com/hullproject/hull/runtime/spec"
)

// built is what building a container hands to its plan.
type built struct {
	exe     string // the program, resolved in the container's root
	console int    // pty slave for the container's stdio, or -1
}

// build sets up the container around process sp from a thread inside its
// namespaces: root filesystem, devices, console, hooks, pivot_root,
// hostname and sysctls. cgWait waits for sp's placement in its cgroups,
// which runs concurrently.
func (c *Container) build(sp *spawned, cgWait func() error, console *os.File, noPivot bool) (b built, err error) {
	s := c.spec
	b.console = -1
	newNS := map[specs.LinuxNamespaceType]bool{}
	var join []string
	for _, ns := range s.Linux.Namespaces {
		if ns.Path == "" {
			newNS[ns.Type] = true
		}
		switch ns.Type {
		case specs.UserNamespace, specs.TimeNamespace, specs.CgroupNamespace:
			// user: a multi-threaded process cannot join one, and as
			// host root we need not. cgroup: created later, see below.
		case specs.MountNamespace:
		default:
			join = append(join, nsInfo[ns.Type].proc)
		}
	}
	// A joined mount namespace gets the rootfs set up in it too, as runc
	// does; only without any mount namespace are mounts left alone.
	hasMntNS, _ := spec.HasNamespace(s, specs.MountNamespace)
	if hasMntNS {
		join = append(join, "mnt") // last: it changes root and cwd
	}
	_, userNS := spec.HasNamespace(s, specs.UserNamespace)
	inUserNS := newNS[specs.UserNamespace] || userNS != ""

	err = inNamespaces(sp.pid, join, func() error {
		if newNS[specs.UserNamespace] {
			// Files we create belong to the container's root, as if it
			// had made them itself.
			unix.Setfsuid(int(hostID(s.Linux.UIDMappings, 0)))
			unix.Setfsgid(int(hostID(s.Linux.GIDMappings, 0)))
		}
		if !hasMntNS {
			// Without a mount namespace of its own the container shares
			// the host's mounts: mounting anything would change those.
			// The process is only chrooted into its root filesystem.
			if err := cgWait(); err != nil {
				return err
			}
			if err := sp.request(nsenter.ReqChdir, nsenter.StrPayload(c.State.Rootfs)); err != nil {
				return err
			}
			if err := sp.request(nsenter.ReqChroot, nil); err != nil {
				return err
			}
			// This thread's fs context is its own: chroot it too, to
			// resolve the program inside the container's root.
			if err := c.setNamesAndSysctls(); err != nil {
				return err
			}
			if err := unix.Chroot(c.State.Rootfs); err != nil {
				return fmt.Errorf("chroot %s: %w", c.State.Rootfs, err)
			}
			return c.resolveProgram(&b)
		}
		inCgroup := false
		ensureCgroup := func() error {
			if inCgroup {
				return nil
			}
			inCgroup = true
			if err := cgWait(); err != nil {
				return err
			}
			if ok, path := spec.HasNamespace(s, specs.CgroupNamespace); ok {
				// The namespace must be rooted at the container's
				// cgroup, so it is created only now.
				if path == "" {
					if err := sp.request(nsenter.ReqUnshare, nsenter.U32Payload(unix.CLONE_NEWCGROUP)); err != nil {
						return fmt.Errorf("create cgroup namespace: %w", err)
					}
				}
				if err := joinNamespace(sp.pid, "cgroup"); err != nil {
					return err
				}
			}
			return nil
		}
		root, err := rootfs.Prepare(&rootfs.Config{
			Pid: sp.pid, Rootfs: c.State.Rootfs, Spec: s, NoPivot: noPivot, InUserNS: inUserNS,
			NewCgroupNS:       newNS[specs.CgroupNamespace],
			NewNetNS:          newNS[specs.NetworkNamespace],
			BeforeCgroupMount: ensureCgroup,
			MountProc: func(target int, flags uintptr, data string) error {
				return sp.request(nsenter.ReqMountProc, nsenter.MountProcPayload(uint64(flags), data), target)
			},
			BeforeMove: func() error { return sp.request(nsenter.ReqChdir, nsenter.StrPayload(c.State.Rootfs)) },
			AfterMove:  func() error { return sp.request(nsenter.ReqChroot, nil) },
		})
		if err != nil {
			return err
		}
		if err := ensureCgroup(); err != nil {
			return err
		}
		tracef("create: rootfs prepared")
		if s.Process != nil && s.Process.Terminal {
			if b.console, err = setupConsole(root.Fd(), true, console); err != nil {
				return err
			}
		}
		if err := c.runtimeHooks(); err != nil {
			return err
		}
		if s.Hooks != nil {
			// On this thread: the hooks' processes start in the
			// container's namespaces.
			if err := hooks.Run("createContainer", s.Hooks.CreateContainer, c.hookState(Creating)); err != nil {
				return err
			}
		}
		// Sysctls before Finish makes /proc/sys read-only (as runc orders
		// it); this thread is in the container's namespaces, which is what
		// the kernel applies them to, whichever /proc it writes through.
		if err := c.setNamesAndSysctls(); err != nil {
			return err
		}
		if err := root.Finish(); err != nil {
			return err
		}
		return c.resolveProgram(&b)
	})
	if err != nil && b.console >= 0 {
		unix.Close(b.console)
	}
	return b, err
}

// setNamesAndSysctls sets the hostname, domainname and sysctls of the
// container's namespaces, from the build thread.
func (c *Container) setNamesAndSysctls() error {
	if err := setHostname(c.spec); err != nil {
		return err
	}
	return applySysctls(c.spec)
}

// resolveProgram finds the container's program from the build thread,
// whose root is the container's by then, so that create (not start) fails
// when it does not exist.
func (c *Container) resolveProgram(b *built) error {
	if c.spec.Process == nil {
		return nil
	}
	var err error
	b.exe, err = lookPath(c.spec.Process)
	return err
}

// runtimeHooks runs prestart and createRuntime hooks in the runtime's
// namespaces: on another goroutine, hence another thread than the caller's.
func (c *Container) runtimeHooks() error {
	h := c.spec.Hooks
	if h == nil || (len(h.Prestart) == 0 && len(h.CreateRuntime) == 0) { //nolint:staticcheck // prestart is still in the spec
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		st := c.hookState(Creating)
		err := hooks.Run("prestart", h.Prestart, st) //nolint:staticcheck
		if err == nil {
			err = hooks.Run("createRuntime", h.CreateRuntime, st)
		}
		errc <- err
	}()
	return <-errc
}

// hostID maps a container id to the host through the given mappings.
func hostID(ms []specs.LinuxIDMapping, id uint32) uint32 {
	for _, m := range ms {
		if id >= m.ContainerID && id < m.ContainerID+m.Size {
			return m.HostID + id - m.ContainerID
		}
	}
	return 65534
}

// setupConsole creates a pty in the container's devpts instance (resolved
// inside the tree rooted at rootFd), sends the master to the console socket
// and returns the slave for the container process's stdio. During create
// the slave is also bound over /dev/console.
func setupConsole(rootFd int, forCreate bool, console *os.File) (int, error) {
	if console == nil {
		return -1, errors.New("process.terminal is set but there is no console socket")
	}
	master, err := rootfs.OpenInRoot(rootFd, "/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY)
	if err != nil {
		return -1, fmt.Errorf("open pty master: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return -1, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return -1, fmt.Errorf("get pty number: %w", err)
	}
	slave, err := rootfs.OpenInRoot(rootFd, fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY)
	if err != nil {
		return -1, fmt.Errorf("open pty slave: %w", err)
	}
	if err := unix.Sendmsg(int(console.Fd()), []byte("/dev/ptmx"), unix.UnixRights(master), nil, 0); err != nil {
		unix.Close(slave)
		return -1, fmt.Errorf("send pty master to console socket: %w", err)
	}
	if forCreate {
		target, err := rootfs.CreateFileInRoot(rootFd, "/dev/console", 0o600)
		if err != nil {
			unix.Close(slave)
			return -1, err
		}
		err = unix.Mount(rootfs.ProcFd(slave), rootfs.ProcFd(target), "", unix.MS_BIND, "")
		unix.Close(target)
		if err != nil {
			unix.Close(slave)
			return -1, fmt.Errorf("bind pty on /dev/console: %w", err)
		}
	}
	return slave, nil
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

// sysctlNamespace says which namespace makes a sysctl safe to set for a
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

// applySysctls writes the spec's sysctls; the calling thread is in the
// container's namespaces, which is what the kernel applies them to.
func applySysctls(s *specs.Spec) error {
	for key, value := range s.Linux.Sysctl {
		if strings.Contains(key, "/") || strings.Contains(key, "..") {
			return fmt.Errorf("invalid sysctl name %q", key)
		}
		ns := sysctlNamespace(key)
		if ns == "" {
			return fmt.Errorf("sysctl %q is not namespaced: refusing to set it from a container", key)
		}
		if ok, _ := spec.HasNamespace(s, ns); !ok {
			return fmt.Errorf("sysctl %q needs a %s namespace", key, ns)
		}
		path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			return fmt.Errorf("set sysctl %s=%s: %w", key, value, err)
		}
	}
	return nil
}

// lookPath finds the program in the container's PATH, as execvp would; the
// calling thread's root is the container's.
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
		path := name
		if !strings.HasPrefix(path, "/") {
			path = strings.TrimSuffix(p.Cwd, "/") + "/" + path
		}
		if err := check(path); err != nil {
			return "", &ExecError{Msg: fmt.Sprintf("exec %s: %v", name, err), Errno: errnoOf(err)}
		}
		return path, nil
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
