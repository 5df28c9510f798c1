package container

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// message is what the container process writes to the exec FIFO when it
// fails after `start` (see stage2.c).
type message struct {
	Type  string `json:"type"`
	Error string `json:"error,omitempty"`
	Errno int    `json:"errno,omitempty"`
}

// ExecError is a failure of the final execve (or of finding the program),
// kept apart so callers can map it to exit codes 126/127.
type ExecError struct {
	Msg   string
	Errno unix.Errno
}

func (e *ExecError) Error() string { return e.Msg }

// NotFound reports whether the program did not exist.
func (e *ExecError) NotFound() bool { return e.Errno == unix.ENOENT }

func remoteError(m message) error {
	if m.Errno != 0 {
		return &ExecError{Msg: m.Error, Errno: unix.Errno(m.Errno)}
	}
	return fmt.Errorf("%s", m.Error)
}
