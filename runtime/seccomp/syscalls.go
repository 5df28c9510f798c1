package seccomp

import (
	"github.com/opencontainers/runtime-spec/specs-go"
)

//go:generate go run mksyscalls.go

// abi is a syscall ABI the kernel can report in seccomp_data. x86_64 and x32
// share AUDIT_ARCH_X86_64 and are told apart by __X32_SYSCALL_BIT.
type abi int

const (
	abiX86_64 abi = iota
	abiX32
	abiI386
)

// x32SyscallBit marks x32 syscall numbers (__X32_SYSCALL_BIT).
const x32SyscallBit = 0x40000000

func (a abi) String() string {
	switch a {
	case abiX86_64:
		return "x86_64"
	case abiX32:
		return "x32"
	case abiI386:
		return "i386"
	}
	return "unknown"
}

// wideArgs reports whether syscall arguments are 64 bits wide. x32 programs
// pass full 64-bit registers to the native x86_64 handlers, so their
// arguments are compared like x86_64's; i386 arguments are 32-bit values.
func (a abi) wideArgs() bool { return a != abiI386 }

// x32Legacy lists the syscalls x32 numbers differently from x86_64, from
// 512 on (the kernel's syscall_64.tbl; that range is closed to new entries).
var x32Legacy = []string{
	"rt_sigaction", "rt_sigreturn", "ioctl", "readv", "writev", "recvfrom",
	"sendmsg", "recvmsg", "execve", "ptrace", "rt_sigpending",
	"rt_sigtimedwait", "rt_sigqueueinfo", "sigaltstack", "timer_create",
	"mq_notify", "kexec_load", "waitid", "set_robust_list", "get_robust_list",
	"vmsplice", "move_pages", "preadv", "pwritev", "rt_tgsigqueueinfo",
	"recvmmsg", "sendmmsg", "process_vm_readv", "process_vm_writev",
	"setsockopt", "getsockopt", "io_setup", "io_submit", "execveat",
	"preadv2", "pwritev2",
}

var x32LegacyNr = func() map[string]uint32 {
	m := make(map[string]uint32, len(x32Legacy))
	for i, name := range x32Legacy {
		m[name] = x32SyscallBit | uint32(512+i)
	}
	return m
}()

// lookup returns the syscall numbers name has in the ABI, none if unknown.
//
// An x32 name maps to its x86_64 number with the x32 bit and, for the
// legacy syscalls above, to its 512+ number too. The x86_64-only numbers are
// not valid x32 syscalls (the kernel answers ENOSYS), so covering them costs
// nothing, while missing a number the kernel does serve would let an x32
// program bypass a rule.
func (a abi) lookup(name string) []uint32 {
	switch a {
	case abiX86_64:
		if nr, ok := syscallsX86_64[name]; ok {
			return []uint32{nr}
		}
	case abiI386:
		if nr, ok := syscallsI386[name]; ok {
			return []uint32{nr}
		}
	case abiX32:
		var nrs []uint32
		if nr, ok := syscallsX86_64[name]; ok {
			nrs = append(nrs, x32SyscallBit|nr)
		}
		if nr, ok := x32LegacyNr[name]; ok {
			nrs = append(nrs, nr)
		}
		return nrs
	}
	return nil
}

// muxCall says how a syscall is reached through a multiplexer: the
// multiplexer's number and the condition selecting the sub-call.
type muxCall struct {
	nr   uint32
	cond ociCond
}

// socketcallCalls are the socketcall(2) call numbers (SYS_SOCKET... in
// linux/net.h) of the syscalls that also exist on their own.
var socketcallCalls = map[string]uint64{
	"socket": 1, "bind": 2, "connect": 3, "listen": 4, "accept": 5,
	"getsockname": 6, "getpeername": 7, "socketpair": 8, "sendto": 11,
	"recvfrom": 12, "shutdown": 13, "setsockopt": 14, "getsockopt": 15,
	"sendmsg": 16, "recvmsg": 17, "accept4": 18, "recvmmsg": 19, "sendmmsg": 20,
}

// ipcCalls are the ipc(2) call numbers (SEMOP... in linux/ipc.h).
var ipcCalls = map[string]uint64{
	"semop": 1, "semget": 2, "semctl": 3, "semtimedop": 4,
	"msgsnd": 11, "msgrcv": 12, "msgget": 13, "msgctl": 14,
	"shmat": 21, "shmdt": 22, "shmget": 23, "shmctl": 24,
}

// multiplexed reports how name is reached through socketcall(2) or ipc(2),
// which only i386 has among the ABIs filtered here.
func (a abi) multiplexed(name string) (muxCall, bool) {
	if a != abiI386 {
		return muxCall{}, false
	}
	if call, ok := socketcallCalls[name]; ok {
		return muxCall{nr: syscallsI386["socketcall"], cond: ociCond{arg: 0, op: specs.OpEqualTo, value: call}}, true
	}
	if call, ok := ipcCalls[name]; ok {
		// The kernel takes the call from the low 16 bits and a version
		// from the high ones, so only the low bits may be compared.
		return muxCall{nr: syscallsI386["ipc"], cond: ociCond{arg: 0, op: specs.OpMaskedEqual, value: 0xffff, two: call}}, true
	}
	return muxCall{}, false
}
