package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Load installs prog on the calling OS thread with
// seccomp(SECCOMP_SET_MODE_FILTER) and the given flags. The caller must hold
// runtime.LockOSThread (without SECCOMP_FILTER_FLAG_TSYNC the filter binds
// only this thread and the threads and processes it creates afterwards) and
// must already have no_new_privs or CAP_SYS_ADMIN.
//
// If prog can return SECCOMP_RET_USER_NOTIF (a SCMP_ACT_NOTIFY rule), Load
// asks for a listener and returns its file descriptor, owned by the caller;
// otherwise it returns -1. As libseccomp does, TSYNC then gets TSYNC_ESRCH
// (the kernel refuses TSYNC with a listener otherwise), and
// WAIT_KILLABLE_RECV is dropped when there is no listener (the kernel
// refuses it without one).
func Load(prog []unix.SockFilter, flags []specs.LinuxSeccompFlag) (listenerFd int, err error) {
	if len(prog) == 0 {
		return -1, errors.New("seccomp: empty program")
	}
	if len(prog) > unix.BPF_MAXINSNS {
		return -1, fmt.Errorf("seccomp: program has %d instructions, the kernel accepts at most %d", len(prog), unix.BPF_MAXINSNS)
	}
	f, err := KernelFlags(prog, flags)
	if err != nil {
		return -1, err
	}

	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, f, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	runtime.KeepAlive(&fprog)
	if errno != 0 {
		return -1, fmt.Errorf("seccomp: seccomp(SECCOMP_SET_MODE_FILTER, flags %#x): %w", f, errno)
	}
	if f&unix.SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
		return int(r), nil
	}
	if r != 0 {
		// Plain TSYNC reports the thread that could not be synchronised.
		return -1, fmt.Errorf("seccomp: thread %d could not be synchronized to the filter", r)
	}
	return -1, nil
}

// usesNotify reports whether prog can return SECCOMP_RET_USER_NOTIF, which
// needs a listener: without one the kernel fails such syscalls with ENOSYS.
// KernelFlags turns OCI filter flags into seccomp(2) flags for prog, adding
// the listener flag when prog notifies and dropping what the kernel would
// refuse in that combination.
func KernelFlags(prog []unix.SockFilter, flags []specs.LinuxSeccompFlag) (uintptr, error) {
	var f uintptr
	for _, name := range flags {
		v, ok := filterFlags[name]
		if !ok {
			return 0, fmt.Errorf("seccomp: unknown flag %q", name)
		}
		f |= v
	}
	if usesNotify(prog) {
		f |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
	}
	if f&unix.SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
		if f&unix.SECCOMP_FILTER_FLAG_TSYNC != 0 {
			f |= unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
		}
	} else {
		f &^= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
	}
	return f, nil
}

func usesNotify(prog []unix.SockFilter) bool {
	for _, in := range prog {
		if in.Code == opRet && in.K&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_USER_NOTIF {
			return true
		}
	}
	return false
}
