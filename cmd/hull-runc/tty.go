package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/container"
)

// forwardedSignals are passed on to the container by a foreground run or
// exec. Asking Go for every signal instead costs milliseconds at start-up,
// and SIGCHLD, SIGURG and SIGPIPE are ours anyway.
var forwardedSignals = []os.Signal{
	unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2,
	unix.SIGALRM, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, unix.SIGWINCH,
	unix.SIGPWR, unix.SIGSYS, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGVTALRM, unix.SIGPROF,
}

// waitForwarding waits for our child pid, passing on the signals we get
// and, with a terminal, size changes; it returns the exit status as a shell
// reports it.
func waitForwarding(pid int, sigs <-chan os.Signal, tty *ttyProxy) int {
	done := make(chan int, 1)
	go func() {
		code, err := container.Wait(pid)
		if err != nil {
			code = 255
		}
		done <- code
	}()
	for {
		select {
		case s := <-sigs:
			if s == unix.SIGWINCH {
				if tty != nil {
					tty.resize()
				}
				continue
			}
			_ = unix.Kill(pid, s.(unix.Signal))
		case code := <-done:
			if tty != nil {
				tty.drain()
			}
			return code
		}
	}
}

// ttyProxy is the console of a foreground `run` or `exec` with a terminal:
// it receives the container's pty master over a socketpair and copies
// between it and our own stdio, in raw mode when stdin is a terminal.
type ttyProxy struct {
	local, remote *os.File
	master        *os.File
	saved         *unix.Termios
	wg            sync.WaitGroup
	closed        bool
}

func newTTYProxy() (*ttyProxy, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("console socketpair: %w", err)
	}
	return &ttyProxy{local: os.NewFile(uintptr(fds[0]), "console"), remote: os.NewFile(uintptr(fds[1]), "console-remote")}, nil
}

// attach receives the master and starts copying.
func (t *ttyProxy) attach() error {
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
		t.resize()
	}
	go func() { _, _ = io.Copy(t.master, os.Stdin) }()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		_, _ = io.Copy(os.Stdout, t.master)
	}()
	return nil
}

func (t *ttyProxy) resize() {
	if t.master == nil {
		return
	}
	if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil {
		_ = unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// drain waits for the container's last output.
func (t *ttyProxy) drain() {
	if t.master != nil {
		t.wg.Wait()
	}
}

func (t *ttyProxy) close() {
	if t.closed {
		return
	}
	t.closed = true
	if t.saved != nil {
		_ = unix.IoctlSetTermios(0, unix.TCSETS, t.saved)
	}
	t.local.Close()
	t.remote.Close()
	if t.master != nil {
		t.master.Close()
	}
}
