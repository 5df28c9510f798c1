// Package nsenter holds the part of container setup that must run while the
// process is still single-threaded.
//
// Go starts several threads before main runs, and Linux refuses setns(2) into
// a user namespace for a multi-threaded process and setns(2) into a mount
// namespace for one that shares its filesystem context with other threads.
// Joining existing namespaces (`runc exec`, pod sandboxes) therefore happens in
// a C constructor that runs before the Go runtime: when the environment names
// an init pipe, it reads a small binary config from it, joins the requested
// namespaces (user first), creates the new ones (asking the parent to write
// uid/gid maps), and forks once more when a pid or time namespace needs it
// (CLONE_PARENT, so the runtime process can wait for the container). Then the
// Go runtime starts in the final process and continues over the same socket.
//
// Importing this package links the constructor into a binary; it does nothing
// unless _HULL_INITPIPE is set.
package nsenter

/*
#cgo CFLAGS: -Wall -O2
#include "nsenter.h"
*/
import "C"

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// InitPipeEnv names the environment variable carrying the sync socket's fd.
const InitPipeEnv = C.HULL_INITPIPE_ENV

// ExitCode is the exit status of a child whose constructor failed.
const ExitCode = C.HULL_NSENTER_EXIT

// Message types sent by the constructor.
const (
	MsgUserMap = C.HULL_MSG_USERMAP
	MsgPID     = C.HULL_MSG_PID
	MsgError   = C.HULL_MSG_ERROR
)

// Join names an existing namespace to enter.
type Join struct {
	Type int // CLONE_NEW* flag
	Path string
}

// Config is what the constructor needs to know.
type Config struct {
	CloneFlags  uint32 // namespaces to create
	Joins       []Join // namespaces to join, in order (user is taken first)
	Fork        bool   // fork after namespace setup (pid or time namespace)
	TimeOffsets string // contents for /proc/self/timens_offsets
}

// Encode serialises c in the constructor's wire format.
func (c *Config) Encode() ([]byte, error) {
	if len(c.Joins) > 16 {
		return nil, fmt.Errorf("too many namespaces to join: %d", len(c.Joins))
	}
	var b bytes.Buffer
	var flags uint32
	if c.Fork {
		flags |= C.HULL_FLAG_FORK
	}
	hdr := []uint32{C.HULL_MAGIC, c.CloneFlags, flags, uint32(len(c.Joins)), uint32(len(c.TimeOffsets))}
	if err := binary.Write(&b, binary.NativeEndian, hdr); err != nil {
		return nil, err
	}
	for _, j := range c.Joins {
		if err := binary.Write(&b, binary.NativeEndian, []uint32{uint32(j.Type), uint32(len(j.Path))}); err != nil {
			return nil, err
		}
		b.WriteString(j.Path)
	}
	b.WriteString(c.TimeOffsets)
	return b.Bytes(), nil
}

// Msg is one message from the constructor.
type Msg struct {
	Type  uint32
	Value int32
	Text  string
}

// ReadMsg reads one message from the constructor.
func ReadMsg(r io.Reader) (Msg, error) {
	var hdr struct {
		Type  uint32
		Value int32
		Len   uint32
	}
	if err := binary.Read(r, binary.NativeEndian, &hdr); err != nil {
		return Msg{}, err
	}
	if hdr.Len > 4096 {
		return Msg{}, fmt.Errorf("nsenter message too long (%d bytes)", hdr.Len)
	}
	text := make([]byte, hdr.Len)
	if _, err := io.ReadFull(r, text); err != nil {
		return Msg{}, err
	}
	return Msg{Type: hdr.Type, Value: hdr.Value, Text: string(text)}, nil
}
