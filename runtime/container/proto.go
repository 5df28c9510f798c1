package container

import (
	"encoding/json"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// initConfig is sent by the runtime to the init (or exec) process once the
// nsenter constructor has finished.
type initConfig struct {
	Type        string         `json:"type"` // "init" or "exec"
	ID          string         `json:"id"`
	HostPid     int            `json:"host_pid"`
	Bundle      string         `json:"bundle"`
	Spec        *specs.Spec    `json:"spec"`
	Process     *specs.Process `json:"process"`
	Rootfs      string         `json:"rootfs"`
	StateDir    string         `json:"state_dir"`
	NoPivot     bool           `json:"no_pivot"`
	NoKeyring   bool           `json:"no_keyring"`
	ConsoleFd   int            `json:"console_fd"` // -1: no terminal socket
	PreserveFDs int            `json:"preserve_fds"`
	NewNS       map[string]bool
	JoinedUser  bool `json:"joined_user"`
}

// message travels between runtime and init over the sync socket.
type message struct {
	Type  string `json:"type"` // "hooks", "hooks-done", "ready", "error"
	Error string `json:"error,omitempty"`
	Errno int    `json:"errno,omitempty"`
}

type syncConn struct {
	f   *os.File
	enc *json.Encoder
	dec *json.Decoder
}

func newSyncConn(f *os.File) *syncConn {
	return &syncConn{f: f, enc: json.NewEncoder(f), dec: json.NewDecoder(f)}
}

func (s *syncConn) send(v any) error { return s.enc.Encode(v) }

func (s *syncConn) recv(v any) error { return s.dec.Decode(v) }

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
