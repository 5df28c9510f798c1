// Package nsenter holds the part of container setup that runs in the
// container process itself, written in C so that no Go runtime ever starts
// there.
//
// Go starts several threads before main runs, and Linux refuses setns(2) into
// a user namespace for a multi-threaded process and setns(2) into a mount
// namespace for one that shares its filesystem context with other threads.
// So when the environment names an init pipe, a C constructor (nsenter.c)
// runs before the Go runtime: it reads a small binary config, joins the
// requested namespaces (user first), creates the new ones (asking the parent
// to write uid/gid maps), and forks once more when a pid or time namespace
// needs it (CLONE_PARENT, so the runtime process can wait for the
// container). Stage 2 (stage2.c) then serves the runtime's requests (mount
// proc in our pid namespace, create the cgroup namespace, chroot) and finally
// applies the plan — credentials, capabilities, seccomp, terminal — waits for
// `start` if asked, and execs the container's program.
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

// Requests to a container process in stage 2 (see stage2.c).
const (
	ReqMountProc = C.HULL_REQ_MOUNT_PROC
	ReqUnshare   = C.HULL_REQ_UNSHARE
	ReqChdir     = C.HULL_REQ_CHDIR
	ReqChroot    = C.HULL_REQ_CHROOT
	ReqPlan      = C.HULL_REQ_PLAN
	MsgOK        = C.HULL_MSG_OK
)

// Plan flags.
const (
	PlanWaitFifo    = C.HULL_PLAN_WAIT_FIFO
	PlanNNP         = C.HULL_PLAN_NNP
	PlanSeccomp     = C.HULL_PLAN_SECCOMP
	PlanCaps        = C.HULL_PLAN_CAPS
	PlanPersonality = C.HULL_PLAN_PERSONALITY
	PlanConsole     = C.HULL_PLAN_CONSOLE
	PlanKeyring     = C.HULL_PLAN_KEYRING
	PlanSetgroups   = C.HULL_PLAN_SETGROUPS
	PlanNoProcess   = C.HULL_PLAN_NO_PROCESS
)

// Hook is a startContainer hook for the plan.
type Hook struct {
	Path    string
	Args    []string
	Env     []string
	Timeout uint32 // seconds, 0 for none
}

// Plan is everything the container process does itself before execve.
type Plan struct {
	Flags       uint32
	UID, GID    uint32
	Umask       uint32 // 0xffffffff: the default 022
	Groups      []uint32
	Caps        [5]uint64 // bounding, effective, permitted, inheritable, ambient
	Personality uint32
	PreserveFDs uint32
	SeccompFlag uint32
	Seccomp     []byte // struct sock_filter array, 8 bytes per instruction
	Keyring     string
	Cwd         string
	Exe         string
	Args        []string
	Env         []string
	Hooks       []Hook // startContainer hooks (create only)
	State       string // JSON state given to the hooks
	AppArmor    string // profile to exec into, or ""
}

type encoder struct{ b bytes.Buffer }

func (e *encoder) u32(v uint32) { _ = binary.Write(&e.b, binary.NativeEndian, v) }
func (e *encoder) u64(v uint64) { _ = binary.Write(&e.b, binary.NativeEndian, v) }
func (e *encoder) str(s string) { e.u32(uint32(len(s))); e.b.WriteString(s) }
func (e *encoder) strs(v []string) {
	e.u32(uint32(len(v)))
	for _, s := range v {
		e.str(s)
	}
}

// Encode serialises the plan for stage2.c's run_plan.
func (p *Plan) Encode() []byte {
	var e encoder
	e.u32(p.Flags)
	e.u32(p.UID)
	e.u32(p.GID)
	e.u32(p.Umask)
	e.u32(uint32(len(p.Groups)))
	for _, g := range p.Groups {
		e.u32(g)
	}
	for _, c := range p.Caps {
		e.u64(c)
	}
	e.u32(p.Personality)
	e.u32(p.PreserveFDs)
	e.u32(p.SeccompFlag)
	e.u32(uint32(len(p.Seccomp) / 8))
	e.b.Write(p.Seccomp)
	e.str(p.Keyring)
	e.str(p.Cwd)
	e.str(p.Exe)
	e.strs(p.Args)
	e.strs(p.Env)
	e.str(p.State)
	e.str(p.AppArmor)
	e.u32(uint32(len(p.Hooks)))
	for _, h := range p.Hooks {
		e.str(h.Path)
		e.strs(h.Args)
		e.strs(h.Env)
		e.u32(h.Timeout)
	}
	return e.b.Bytes()
}

// MountProcPayload encodes a ReqMountProc request.
func MountProcPayload(flags uint64, data string) []byte {
	var e encoder
	e.u64(flags)
	e.str(data)
	return e.b.Bytes()
}

// U32Payload encodes a request carrying one number (ReqUnshare).
func U32Payload(v uint32) []byte {
	var e encoder
	e.u32(v)
	return e.b.Bytes()
}

// StrPayload encodes a request carrying one string (ReqChdir).
func StrPayload(s string) []byte {
	var e encoder
	e.str(s)
	return e.b.Bytes()
}

// Request frames a request: the header a Msg reader expects, then payload.
func Request(typ uint32, payload []byte) []byte {
	var e encoder
	e.u32(typ)
	e.u32(0)
	e.u32(uint32(len(payload)))
	e.b.Write(payload)
	return e.b.Bytes()
}
