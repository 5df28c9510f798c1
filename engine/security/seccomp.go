package security

import (
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The default seccomp profile. It has the effect of Docker's default
// profile: everything not allowed fails with EPERM; the allow-list holds what
// ordinary programs use, including each syscall's 32-bit and legacy
// spellings (names an architecture lacks are skipped by the compiler).
// Syscalls that only make sense with a capability are allowed only when the
// container has it, and those that reach kernel attack surface Docker closes
// (keyrings, io_uring, userfaultfd, kexec, new namespaces without
// CAP_SYS_ADMIN, AF_VSOCK sockets, ...) are not allowed at all.

// allowed is the unconditional allow-list for every architecture.
var allowed = []string{
	// Files and directories.
	"access", "faccessat", "faccessat2",
	"open", "openat", "openat2", "creat", "close", "close_range",
	"read", "readv", "pread64", "preadv", "preadv2",
	"write", "writev", "pwrite64", "pwritev", "pwritev2",
	"lseek", "_llseek",
	"stat", "stat64", "lstat", "lstat64", "fstat", "fstat64", "fstatat64", "newfstatat", "statx",
	"statfs", "statfs64", "fstatfs", "fstatfs64",
	"truncate", "truncate64", "ftruncate", "ftruncate64", "fallocate",
	"fsync", "fdatasync", "sync", "syncfs", "sync_file_range",
	"readahead", "fadvise64", "fadvise64_64",
	"sendfile", "sendfile64", "splice", "tee", "vmsplice", "copy_file_range",
	"mkdir", "mkdirat", "rmdir", "mknod", "mknodat",
	"link", "linkat", "unlink", "unlinkat", "symlink", "symlinkat",
	"rename", "renameat", "renameat2",
	"readlink", "readlinkat",
	"chdir", "fchdir", "getcwd",
	"getdents", "getdents64",
	"chmod", "fchmod", "fchmodat", "fchmodat2",
	"chown", "chown32", "fchown", "fchown32", "fchownat", "lchown", "lchown32",
	"umask",
	"utime", "utimes", "futimesat", "utimensat", "utimensat_time64",
	"getxattr", "lgetxattr", "fgetxattr", "getxattrat",
	"setxattr", "lsetxattr", "fsetxattr", "setxattrat",
	"listxattr", "llistxattr", "flistxattr", "listxattrat",
	"removexattr", "lremovexattr", "fremovexattr", "removexattrat",
	"file_getattr", "file_setattr",
	"name_to_handle_at",
	"flock", "fcntl", "fcntl64",
	"dup", "dup2", "dup3",
	"pipe", "pipe2",
	"ioctl",
	"inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
	"fanotify_mark",
	"memfd_create", "memfd_secret",
	"cachestat",

	// Asynchronous I/O (io_uring is deliberately absent, as in Docker).
	"io_setup", "io_destroy", "io_submit", "io_cancel",
	"io_getevents", "io_pgetevents", "io_pgetevents_time64",
	"ioprio_get", "ioprio_set",

	// Polling, events and timers.
	"poll", "ppoll", "ppoll_time64",
	"select", "_newselect", "pselect6", "pselect6_time64",
	"epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
	"epoll_wait", "epoll_wait_old", "epoll_pwait", "epoll_pwait2",
	"eventfd", "eventfd2",
	"signalfd", "signalfd4",
	"timerfd_create", "timerfd_settime", "timerfd_settime64", "timerfd_gettime", "timerfd_gettime64",
	"timer_create", "timer_delete", "timer_settime", "timer_settime64",
	"timer_gettime", "timer_gettime64", "timer_getoverrun",
	"alarm", "getitimer", "setitimer",
	"nanosleep", "clock_nanosleep", "clock_nanosleep_time64", "pause",
	"time", "gettimeofday", "clock_gettime", "clock_gettime64",
	"clock_getres", "clock_getres_time64",
	// Reading the clock state; changing it needs CAP_SYS_TIME, which the
	// kernel checks itself.
	"adjtimex", "clock_adjtime", "clock_adjtime64",
	"times",

	// Memory.
	"brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise",
	"msync", "mincore", "remap_file_pages",
	"mlock", "mlock2", "mlockall", "munlock", "munlockall",
	"pkey_alloc", "pkey_free", "pkey_mprotect",
	"membarrier", "mseal", "map_shadow_stack",

	// Processes and threads.
	"execve", "execveat", "exit", "exit_group",
	"fork", "vfork",
	"wait4", "waitid", "waitpid",
	"getpid", "getppid", "gettid", "getpgid", "getpgrp", "setpgid", "getsid", "setsid",
	"set_tid_address", "set_robust_list", "get_robust_list",
	"futex", "futex_time64", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue",
	"rseq", "restart_syscall",
	"get_thread_area", "set_thread_area",
	"prctl", "capget", "capset",
	"getrlimit", "ugetrlimit", "setrlimit", "prlimit64", "getrusage",
	"getpriority", "setpriority",
	"sched_yield", "sched_getaffinity", "sched_setaffinity",
	"sched_getattr", "sched_setattr", "sched_getparam", "sched_setparam",
	"sched_getscheduler", "sched_setscheduler",
	"sched_get_priority_max", "sched_get_priority_min",
	"sched_rr_get_interval", "sched_rr_get_interval_time64",
	"getcpu", "getrandom", "sysinfo", "uname",
	"seccomp",
	"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
	"pidfd_open", "pidfd_send_signal", "process_mrelease",
	// Harmless since Linux 4.8 (seccomp is re-checked after a tracer
	// changes a syscall), so Docker allows them without CAP_SYS_PTRACE.
	"ptrace", "process_vm_readv", "process_vm_writev",
	"uretprobe",

	// Credentials.
	"getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid", "getegid32",
	"getresuid", "getresuid32", "getresgid", "getresgid32",
	"getgroups", "getgroups32", "setgroups", "setgroups32",
	"setuid", "setuid32", "setgid", "setgid32",
	"setreuid", "setreuid32", "setregid", "setregid32",
	"setresuid", "setresuid32", "setresgid", "setresgid32",
	"setfsuid", "setfsuid32", "setfsgid", "setfsgid32",

	// Signals.
	"kill", "tkill", "tgkill",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending",
	"rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
	"rt_sigqueueinfo", "rt_tgsigqueueinfo",
	"sigaltstack", "sigprocmask", "sigreturn",

	// Sockets (socket itself is conditional, see DefaultSeccomp).
	"socketpair", "bind", "connect", "listen", "accept", "accept4",
	"getsockname", "getpeername", "getsockopt", "setsockopt", "shutdown",
	"send", "sendto", "sendmsg", "sendmmsg",
	"recv", "recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64",
	"socketcall",

	// SysV and POSIX IPC.
	"ipc",
	"shmget", "shmat", "shmdt", "shmctl",
	"semget", "semop", "semtimedop", "semtimedop_time64", "semctl",
	"msgget", "msgsnd", "msgrcv", "msgctl",
	"mq_open", "mq_unlink", "mq_timedsend", "mq_timedsend_time64",
	"mq_timedreceive", "mq_timedreceive_time64", "mq_notify", "mq_getsetattr",

	// Mount information (read-only).
	"statmount", "listmount",
}

// archAllowed adds the allowed syscalls that exist only on some
// architectures, keyed by GOARCH.
var archAllowed = map[string][]string{
	"amd64": {"arch_prctl", "modify_ldt"},
	"386":   {"arch_prctl", "modify_ldt"},
	"arm64": {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"},
	"arm":   {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"},
}

// capAllowed lists the syscalls a capability makes available. A syscall
// under several capabilities is allowed when the container has any of them.
// clone and clone3 are handled apart (see DefaultSeccomp).
var capAllowed = []struct {
	cap   string
	names []string
}{
	{"CAP_DAC_READ_SEARCH", []string{"open_by_handle_at"}},
	{"CAP_SYS_ADMIN", []string{
		"mount", "umount", "umount2", "pivot_root",
		"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "open_tree_attr", "mount_setattr",
		"unshare", "setns",
		"sethostname", "setdomainname",
		"quotactl", "quotactl_fd",
		"lookup_dcookie", "fanotify_init",
		"bpf", "perf_event_open", "syslog",
	}},
	{"CAP_BPF", []string{"bpf"}},
	{"CAP_PERFMON", []string{"perf_event_open"}},
	{"CAP_SYSLOG", []string{"syslog"}},
	{"CAP_SYS_BOOT", []string{"reboot"}},
	{"CAP_SYS_CHROOT", []string{"chroot"}},
	{"CAP_SYS_MODULE", []string{"init_module", "finit_module", "delete_module"}},
	{"CAP_SYS_PACCT", []string{"acct"}},
	{"CAP_SYS_PTRACE", []string{"kcmp", "pidfd_getfd", "process_madvise", "ptrace", "process_vm_readv", "process_vm_writev"}},
	{"CAP_SYS_RAWIO", []string{"iopl", "ioperm"}},
	{"CAP_SYS_TIME", []string{"settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime", "clock_adjtime64"}},
	{"CAP_SYS_TTY_CONFIG", []string{"vhangup"}},
	{"CAP_SYS_NICE", []string{"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}},
}

// Personality values the profile accepts: PER_LINUX, PER_LINUX32,
// UNAME26|PER_LINUX32 and 0xffffffff (query the current personality).
var personalities = []uint64{0x0, 0x8, 0x20008, 0xffffffff}

// namespaceFlags are the clone flags that create namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// afVsock is the address family socket(2) refuses, as in Docker: vsock
// reaches the hypervisor, not the container's network namespace.
const afVsock = unix.AF_VSOCK

// architectures returns the seccomp architectures for the running GOARCH:
// the native one plus the compat ABIs it can run.
func architectures() []specs.Arch {
	switch runtime.GOARCH {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "arm64":
		return []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	case "386":
		return []specs.Arch{specs.ArchX86}
	case "arm":
		return []specs.Arch{specs.ArchARM}
	case "ppc64le":
		return []specs.Arch{specs.ArchPPC64LE}
	case "s390x":
		return []specs.Arch{specs.ArchS390X, specs.ArchS390}
	case "riscv64":
		return []specs.Arch{specs.ArchRISCV64}
	case "loong64":
		return []specs.Arch{specs.ArchLOONGARCH64}
	}
	return nil
}

// DefaultSeccomp returns a seccomp profile with the effect of Docker's
// default profile for a container holding the capabilities caps ("CAP_..."
// names, any case, with or without the prefix). Syscalls outside the profile
// fail with EPERM. In particular:
//
//   - personality only accepts PER_LINUX, PER_LINUX32, 0x20008 and
//     0xffffffff;
//   - socket refuses AF_VSOCK;
//   - without CAP_SYS_ADMIN, clone cannot create namespaces and clone3
//     fails with ENOSYS (its flags are behind a pointer seccomp cannot
//     inspect, and ENOSYS makes glibc fall back to clone), and unshare,
//     setns, mount and the other namespace and mount syscalls are refused;
//   - syscalls that need a capability (reboot for CAP_SYS_BOOT, chroot for
//     CAP_SYS_CHROOT, init_module for CAP_SYS_MODULE, ...) are only allowed
//     when caps holds it.
//
// The profile names syscalls of every architecture; a name an architecture
// does not have is skipped when the profile is compiled.
func DefaultSeccomp(caps []string) *specs.LinuxSeccomp {
	have := map[string]bool{}
	for _, c := range caps {
		have[normalizeCap(c)] = true
	}

	names := append([]string(nil), allowed...)
	names = append(names, archAllowed[runtime.GOARCH]...)
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	for _, g := range capAllowed {
		if !have[g.cap] {
			continue
		}
		for _, n := range g.names {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}

	eperm := uint(unix.EPERM)
	enosys := uint(unix.ENOSYS)
	prof := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &eperm,
		Architectures:   architectures(),
		Syscalls: []specs.LinuxSyscall{
			{Names: names, Action: specs.ActAllow},
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: afVsock, Op: specs.OpNotEqual},
			}},
		},
	}
	for _, p := range personalities {
		prof.Syscalls = append(prof.Syscalls, specs.LinuxSyscall{
			Names: []string{"personality"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: p, Op: specs.OpEqualTo}},
		})
	}
	if have["CAP_SYS_ADMIN"] {
		prof.Syscalls = append(prof.Syscalls, specs.LinuxSyscall{
			Names: []string{"clone", "clone3"}, Action: specs.ActAllow,
		})
	} else {
		// The flags are clone's first argument, except on s390, which swaps
		// the first two.
		flagsArg := uint(0)
		if runtime.GOARCH == "s390x" {
			flagsArg = 1
		}
		prof.Syscalls = append(prof.Syscalls,
			specs.LinuxSyscall{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: flagsArg, Value: namespaceFlags, ValueTwo: 0, Op: specs.OpMaskedEqual},
			}},
			specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		)
	}
	return prof
}
