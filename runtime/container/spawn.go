package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/nsenter"
)

// nsInfo maps OCI namespace types to clone flags and /proc/<pid>/ns names.
var nsInfo = map[specs.LinuxNamespaceType]struct {
	flag int
	proc string
}{
	specs.PIDNamespace:     {unix.CLONE_NEWPID, "pid"},
	specs.NetworkNamespace: {unix.CLONE_NEWNET, "net"},
	specs.MountNamespace:   {unix.CLONE_NEWNS, "mnt"},
	specs.IPCNamespace:     {unix.CLONE_NEWIPC, "ipc"},
	specs.UTSNamespace:     {unix.CLONE_NEWUTS, "uts"},
	specs.UserNamespace:    {unix.CLONE_NEWUSER, "user"},
	specs.CgroupNamespace:  {unix.CLONE_NEWCGROUP, "cgroup"},
	specs.TimeNamespace:    {unix.CLONE_NEWTIME, "time"},
}

// Stdio are the three standard streams for a container process. Nil
// entries become /dev/null.
type Stdio struct {
	In, Out, Err *os.File
}

type spawnOpts struct {
	dir     string
	stdio   Stdio
	extra   []*os.File // preserved descriptors, passed as 3, 4, ...
	console *os.File   // connected console socket, or nil
	ns      nsenter.Config
	uidMaps []specs.LinuxIDMapping
	gidMaps []specs.LinuxIDMapping
	setupCg func(pid int) error
}

type spawned struct {
	firstPid int      // the process startChild started
	pid      int      // the container process (after the pid-namespace fork)
	conn     *os.File // sync socket to its stage 2
	reaped   bool     // firstPid was waited for
}

// kill ends whatever spawn started, for error paths.
func (s *spawned) kill() {
	if s.pid > 0 {
		_ = unix.Kill(s.pid, unix.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(s.pid, &ws, 0, nil)
	}
	if s.firstPid > 0 && s.firstPid != s.pid && !s.reaped {
		_ = unix.Kill(s.firstPid, unix.SIGKILL)
		_, _ = s.waitFirst()
	}
	if s.conn != nil {
		s.conn.Close()
	}
}

// waitFirst reaps the first process and returns its wait status.
func (s *spawned) waitFirst() (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(s.firstPid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err == nil {
			s.reaped = true
		}
		return ws, err
	}
}

// spawn starts our binary as a container process and takes it through the
// nsenter constructor; it returns once the Go side of the child is waiting
// for its configuration.
func spawn(o spawnOpts) (*spawned, error) {
	s, err := startChild(o)
	if err != nil {
		return nil, err
	}
	// Place the first process in the cgroup before it creates a cgroup
	// namespace, so the namespace is rooted at the container's cgroup.
	if o.setupCg != nil {
		if err := o.setupCg(s.first()); err != nil {
			s.kill()
			return nil, err
		}
	}
	if err := s.enter(o.ns, o.uidMaps, o.gidMaps); err != nil {
		s.kill()
		return nil, err
	}
	if err := s.reapFirst(); err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

// first is the pid of the process startChild started.
func (s *spawned) first() int { return s.firstPid }

// startChild starts our binary with the sync socket; its nsenter
// constructor then waits for the namespace configuration (enter).
//
// It uses syscall.ForkExec rather than os/exec: os/exec's first start in a
// process also probes pidfd support by cloning a throwaway child, and the
// two together cost about 0.35 ms against 0.13 ms, on the path of every
// container start.
func startChild(o spawnOpts) (*spawned, error) {
	tracef("spawn: begin")
	// ForkExec moves descriptors up to about twice the number it passes.
	exe, err := sealedSelf(2*(3+len(o.extra)+2) + 1)
	if err != nil {
		return nil, err
	}
	defer exe.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "sync-parent")
	child := os.NewFile(uintptr(fds[1]), "sync-child")
	defer child.Close()

	var null *os.File
	files := make([]uintptr, 0, 3+len(o.extra)+1)
	for _, f := range []*os.File{o.stdio.In, o.stdio.Out, o.stdio.Err} {
		if f == nil {
			if null == nil {
				if null, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
					parent.Close()
					return nil, err
				}
				defer null.Close()
			}
			f = null
		}
		files = append(files, f.Fd())
	}
	for _, f := range o.extra {
		files = append(files, f.Fd())
	}
	files = append(files, child.Fd())
	syncFd := len(files) - 1
	pid, err := syscall.ForkExec("/proc/self/fd/"+strconv.Itoa(int(exe.Fd())), []string{"hull-runc", "init"}, &syscall.ProcAttr{
		Dir:   o.dir,
		Env:   initEnv(syncFd),
		Files: files,
	})
	// The descriptors must stay open until the child has them.
	runtime.KeepAlive(o.stdio)
	runtime.KeepAlive(o.extra)
	if err != nil {
		parent.Close()
		return nil, fmt.Errorf("start init process: %w", err)
	}
	tracef("spawn: started")
	return &spawned{firstPid: pid, conn: parent}, nil
}

// enter sends the namespace configuration and serves the constructor until
// it reports the container process's pid.
func (s *spawned) enter(ns nsenter.Config, uidMaps, gidMaps []specs.LinuxIDMapping) error {
	data, err := ns.Encode()
	if err != nil {
		return err
	}
	if _, err := s.conn.Write(data); err != nil {
		return fmt.Errorf("send namespace config: %w", err)
	}
	for s.pid == 0 {
		m, err := nsenter.ReadMsg(s.conn)
		if err != nil {
			return fmt.Errorf("namespace setup failed: %w", childExitError(err))
		}
		switch m.Type {
		case nsenter.MsgUserMap:
			if err := writeIDMaps(int(m.Value), uidMaps, gidMaps); err != nil {
				return err
			}
			if _, err := s.conn.Write([]byte{'A'}); err != nil {
				return fmt.Errorf("acknowledge id maps: %w", err)
			}
		case nsenter.MsgPID:
			s.pid = int(m.Value)
		case nsenter.MsgError:
			return fmt.Errorf("namespace setup: %s", m.Text)
		default:
			return fmt.Errorf("unexpected message %d from nsenter", m.Type)
		}
	}
	return nil
}

// reapFirst waits for the intermediate process that forked the container
// process into its pid namespace, which exits right after. enter leaves
// this for later: waiting at once costs the critical path the kernel's
// teardown of that process.
func (s *spawned) reapFirst() error {
	if s.pid == s.firstPid || s.reaped {
		return nil
	}
	ws, err := s.waitFirst()
	if err != nil {
		return fmt.Errorf("namespace setup: wait for the intermediate process: %w", err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("namespace setup: intermediate process ended with status %#x", uint32(ws))
	}
	return nil
}

// childExitError improves an EOF from a child that died.
func childExitError(err error) error {
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	return fmt.Errorf("init process exited before finishing setup")
}

func writeIDMaps(pid int, uids, gids []specs.LinuxIDMapping) error {
	format := func(ms []specs.LinuxIDMapping) []byte {
		var b strings.Builder
		for _, m := range ms {
			fmt.Fprintf(&b, "%d %d %d\n", m.ContainerID, m.HostID, m.Size)
		}
		return []byte(b.String())
	}
	for _, f := range []struct {
		name string
		ms   []specs.LinuxIDMapping
	}{{"uid_map", uids}, {"gid_map", gids}} {
		if len(f.ms) == 0 {
			continue
		}
		path := fmt.Sprintf("/proc/%d/%s", pid, f.name)
		if err := os.WriteFile(path, format(f.ms), 0); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

// preservedFiles names our descriptors 3 .. 3+n-1, which --preserve-fds
// hands on to the container at the same numbers.
func preservedFiles(n int) []*os.File {
	files := make([]*os.File, 0, n)
	for i := 0; i < n; i++ {
		files = append(files, os.NewFile(uintptr(3+i), "preserved-"+strconv.Itoa(3+i)))
	}
	return files
}

func initEnv(syncFd int) []string {
	return []string{nsenter.InitPipeEnv + "=" + strconv.Itoa(syncFd)}
}

// request sends one stage-2 request, with descriptors, and waits for the
// container process's answer.
func (s *spawned) request(typ uint32, payload []byte, fds ...int) error {
	if err := s.send(typ, payload, fds...); err != nil {
		return err
	}
	m, err := nsenter.ReadMsg(s.conn)
	if err != nil {
		return fmt.Errorf("container process: %w", childExitError(err))
	}
	if m.Type == nsenter.MsgError {
		return errnoError(m)
	}
	return nil
}

func (s *spawned) send(typ uint32, payload []byte, fds ...int) error {
	frame := nsenter.Request(typ, payload)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	// The descriptors travel with the first bytes; a large frame may need
	// more than one write.
	n, err := unix.SendmsgN(int(s.conn.Fd()), frame, oob, nil, 0)
	if err != nil {
		return fmt.Errorf("send to container process: %w", err)
	}
	if n < len(frame) {
		if _, err := s.conn.Write(frame[n:]); err != nil {
			return fmt.Errorf("send to container process: %w", err)
		}
	}
	return nil
}

// errnoError turns a stage-2 error message into an error; failures of the
// final execve keep their errno for exit-code mapping.
func errnoError(m nsenter.Msg) error {
	if m.Value != 0 {
		return &ExecError{Msg: m.Text, Errno: unix.Errno(m.Value)}
	}
	return errors.New(m.Text)
}
