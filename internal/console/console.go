// Package console is what a foreground container needs from the CLI that
// runs it: signals passed on to the container, and, with a terminal, the
// container's pty master received over a socketpair and copied to and from
// our own stdio in raw mode, following window size changes.
package console

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/container"
)

// ForwardedSignals are passed on to the container by a foreground run or
// exec. Asking Go for every signal instead costs milliseconds at start-up,
// and SIGCHLD, SIGURG and SIGPIPE are ours anyway. The command lines never
// unregister them (signal.Stop): they exit once the container has, Stop
// spins until Go's signal goroutine is idle (about 1 ms from a locked main
// thread), and a signal during the clean-up after the container is better
// caught than fatal.
var ForwardedSignals = []os.Signal{
	unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2,
	unix.SIGALRM, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, unix.SIGWINCH,
	unix.SIGPWR, unix.SIGSYS, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGVTALRM, unix.SIGPROF,
}

// WaitForwarding waits for our child pid, passing on the signals we get
// and, with a terminal, size changes; it returns the exit status as a shell
// reports it.
func WaitForwarding(pid int, sigs <-chan os.Signal, tty *Proxy) int {
	// Signals are passed on from another goroutine, so that the exit
	// reaches this one straight from wait4, without a hand-off between
	// threads on the way out of every foreground container.
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == unix.SIGWINCH {
					if tty != nil {
						tty.Resize()
					}
					continue
				}
				_ = unix.Kill(pid, s.(unix.Signal))
			case <-stop:
				return
			}
		}
	}()
	code, err := container.Wait(pid)
	close(stop)
	if err != nil {
		code = 255
	}
	if tty != nil {
		tty.Drain()
	}
	return code
}

// Proxy is the console of a foreground `run` or `exec` with a terminal:
// it receives the container's pty master over a socketpair and copies
// between it and our own stdio, in raw mode when stdin is a terminal.
type Proxy struct {
	local *os.File
	// Remote is the end to hand the runtime as its console socket.
	Remote *os.File
	master *os.File
	saved  *unix.Termios
	wg     sync.WaitGroup
	closed bool
}

// New makes the socketpair the runtime sends the pty master over.
func New() (*Proxy, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("console socketpair: %w", err)
	}
	return &Proxy{local: os.NewFile(uintptr(fds[0]), "console"), Remote: os.NewFile(uintptr(fds[1]), "console-remote")}, nil
}

// Attach receives the master and starts copying.
func (t *Proxy) Attach() error {
	buf := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(t.local.Fd()), buf, oob, 0)
	if err != nil {
		return fmt.Errorf("receive pty master: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return errors.New("no pty master received")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return errors.New("no pty master received")
	}
	t.master = os.NewFile(uintptr(fds[0]), "pty-master")
	if term, err := unix.IoctlGetTermios(0, unix.TCGETS); err == nil {
		saved := *term
		t.saved = &saved
		raw := *term
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		_ = unix.IoctlSetTermios(0, unix.TCSETS, &raw)
		t.Resize()
	}
	go func() { _, _ = io.Copy(t.master, os.Stdin) }()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		_, _ = io.Copy(os.Stdout, t.master)
	}()
	return nil
}

// Resize gives the container our terminal's size.
func (t *Proxy) Resize() {
	if t.master == nil {
		return
	}
	if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil {
		_ = unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// Drain waits for the container's last output.
func (t *Proxy) Drain() {
	if t.master != nil {
		t.wg.Wait()
	}
}

// Close restores our terminal and closes both ends.
func (t *Proxy) Close() {
	if t.closed {
		return
	}
	t.closed = true
	if t.saved != nil {
		_ = unix.IoctlSetTermios(0, unix.TCSETS, t.saved)
	}
	t.local.Close()
	t.Remote.Close()
	if t.master != nil {
		t.master.Close()
	}
}

// ParseSignal accepts "TERM", "SIGTERM", "sigterm" or "15".
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("invalid signal number %d", n)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
