package main

import (
	"bytes"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The harness makes itself a child subreaper. Container processes whose
// "runtime create" has exited, and helpers that the validation programs start
// and abandon, are then reparented to the harness instead of PID 1 (which on
// some machines, firecracker VMs among them, never reaps orphans). The
// harness reaps them as an init would, so an exited container is a reaped
// process rather than a lingering zombie, and after each program it can kill
// whatever of that program is still running.
//
// The harness's own direct children (the program, the runtime commands it
// runs for cleanup) are waited for by os/exec; the reaper leaves them alone.
// Start and registration happen under reapMu so that the reaper can never
// see such a child before it is registered.

const prSetChildSubreaper = 36

var (
	reapMu sync.Mutex
	direct = map[int]bool{}
)

func startReaper() {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		os.Stderr.WriteString("oci-validation: warning: cannot become a child subreaper: " + errno.Error() + "\n")
		return
	}
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		for {
			select {
			case <-sigchld:
			case <-tick.C:
			}
			reapOrphans()
		}
	}()
}

func startRegistered(cmd *exec.Cmd) error {
	reapMu.Lock()
	defer reapMu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	direct[cmd.Process.Pid] = true
	return nil
}

func unregister(pid int) {
	reapMu.Lock()
	delete(direct, pid)
	reapMu.Unlock()
}

// reapOrphans reaps the zombies among the adopted children.
func reapOrphans() {
	reapMu.Lock()
	defer reapMu.Unlock()
	for _, c := range adoptedChildren() {
		if c.state == 'Z' {
			var ws syscall.WaitStatus
			syscall.Wait4(c.pid, &ws, syscall.WNOHANG, nil)
		}
	}
}

// killAdopted SIGKILLs the adopted children that still run and waits (up to
// a few seconds) until they are reaped. It returns their descriptions.
func killAdopted() []string {
	var killed []string
	reapMu.Lock()
	for _, c := range adoptedChildren() {
		if c.state != 'Z' {
			syscall.Kill(c.pid, syscall.SIGKILL)
			killed = append(killed, strconv.Itoa(c.pid)+" "+c.cmdline)
		}
	}
	reapMu.Unlock()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		reapOrphans()
		reapMu.Lock()
		left := len(adoptedChildren())
		reapMu.Unlock()
		if left == 0 {
			break
		}
	}
	return killed
}

type proc struct {
	pid     int
	state   byte
	cmdline string
}

// adoptedChildren lists this process's children that it did not start
// through startRegistered. Call with reapMu held, or accept a racy answer.
func adoptedChildren() []proc {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || direct[pid] {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces and parens.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+4 > len(stat) {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(string(f[1]))
		if ppid != self {
			continue
		}
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cl = bytes.TrimRight(bytes.ReplaceAll(cl, []byte{0}, []byte{' '}), " ")
		if len(cl) == 0 {
			j := bytes.IndexByte(stat, '(')
			if j >= 0 {
				cl = stat[j : i+1]
			}
		}
		out = append(out, proc{pid: pid, state: f[0][0], cmdline: string(cl)})
	}
	return out
}
