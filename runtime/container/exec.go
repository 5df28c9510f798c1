package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/nsenter"
)

// ExecOpts describe a process to run in an existing container.
type ExecOpts struct {
	Process       *specs.Process
	ConsoleSocket string
	ConsoleConn   *os.File
	PreserveFDs   int
	Stdio         Stdio
}

// Exec starts a process in all of the container's namespaces and cgroup.
// It returns the process's pid once the program has been executed; the
// caller is its parent and can wait for it.
func (c *Container) Exec(o ExecOpts) (pid int, err error) {
	st := c.Status()
	if st == Stopped {
		return 0, fmt.Errorf("cannot exec in a stopped container: %w", ErrNotRunning)
	}
	if st == Paused {
		return 0, fmt.Errorf("cannot exec in a paused container")
	}
	p := o.Process
	if p == nil || len(p.Args) == 0 {
		return 0, errors.New("exec: no command given")
	}
	// What follows reads c.spec.
	if _, err := c.loadSpec(); err != nil {
		return 0, err
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if p.Terminal && o.ConsoleSocket == "" && o.ConsoleConn == nil {
		return 0, errors.New("exec with a terminal needs --console-socket")
	}
	cg, err := c.cgroup()
	if err != nil {
		return 0, err
	}
	var ns nsenter.Config
	// The user namespace is listed first; nsenter also enforces that.
	for _, n := range c.spec.Linux.Namespaces {
		info := nsInfo[n.Type]
		path := "/proc/" + strconv.Itoa(c.State.Pid) + "/ns/" + info.proc
		j := nsenter.Join{Type: info.flag, Path: path}
		if n.Type == specs.UserNamespace {
			ns.Joins = append([]nsenter.Join{j}, ns.Joins...)
		} else {
			ns.Joins = append(ns.Joins, j)
		}
		if n.Type == specs.PIDNamespace || n.Type == specs.TimeNamespace {
			ns.Fork = true
		}
	}
	console := o.ConsoleConn
	if o.ConsoleSocket != "" {
		if console, err = dialConsole(o.ConsoleSocket); err != nil {
			return 0, err
		}
		defer console.Close()
	}
	preserved := preservedFiles(o.PreserveFDs)
	sp, err := spawn(spawnOpts{
		dir:   "/",
		stdio: o.Stdio,
		extra: preserved,
		ns:    ns,
		setupCg: func(pid int) error {
			if cg.Exists() {
				if err := cg.Apply(pid); err != nil {
					return fmt.Errorf("join container cgroup: %w", err)
				}
			}
			return nil
		},
	})
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			sp.kill()
		}
	}()
	// Resolve the program and make the terminal from inside the
	// container's mount namespace.
	b := built{console: -1}
	err = inNamespaces(c.State.Pid, []string{"mnt"}, func() error {
		root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(root)
		if p.Terminal {
			if b.console, err = setupConsole(root, false, console); err != nil {
				return err
			}
		}
		b.exe, err = lookPath(p)
		return err
	})
	if b.console >= 0 {
		defer unix.Close(b.console)
	}
	if err != nil {
		return 0, err
	}
	if err := setProcessLimits(sp.pid, p); err != nil {
		return 0, err
	}
	pl, err := buildPlan(p, c.spec, b.exe)
	if err != nil {
		return 0, err
	}
	pl.PreserveFDs = uint32(o.PreserveFDs)
	var fds []int
	if b.console >= 0 {
		pl.Flags |= nsenter.PlanConsole
		fds = append(fds, b.console)
	}
	if err := sp.send(nsenter.ReqPlan, pl.Encode(), fds...); err != nil {
		return 0, err
	}
	// Success is the child's end of the socket closing on execve.
	m, rerr := nsenter.ReadMsg(sp.conn)
	sp.conn.Close()
	sp.conn = nil
	if rerr == nil {
		return 0, errnoError(m)
	}
	if !errors.Is(rerr, io.EOF) {
		return 0, fmt.Errorf("exec: %w", rerr)
	}
	return sp.pid, nil
}

// Wait waits for a child process (an exec'd process or the init after
// `run`) and returns its exit status as a shell would: the code, or 128 plus
// the signal number.
func Wait(pid int) (int, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("wait for %d: %w", pid, err)
		}
		break
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}
