package container

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/caps"
	"github.com/hullproject/hull/runtime/rootfs"
	"github.com/hullproject/hull/runtime/seccomp"
)

// finalizeAndExec drops into the configured identity and privileges and
// executes the container's program. Order matters: the bounding set needs
// CAP_SETPCAP, changing uid needs CAP_SETUID, and without no_new_privs a
// seccomp filter needs CAP_SYS_ADMIN, so the filter goes first in that case
// and last otherwise (so it does not have to allow our own setup syscalls).
func finalizeAndExec(cfg *initConfig, path string) error {
	p := cfg.Process
	// Nothing but stdio and the preserved descriptors may reach the
	// container (CVE-2024-21626): mark everything else close-on-exec.
	if err := unix.CloseRange(uint(3+cfg.PreserveFDs), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close descriptors: %w", err)
	}
	if err := setRlimits(p.Rlimits); err != nil {
		return err
	}
	var filter []unix.SockFilter
	var seccompCfg *specs.LinuxSeccomp
	if cfg.Spec != nil && cfg.Spec.Linux != nil {
		seccompCfg = cfg.Spec.Linux.Seccomp
		if err := setPersonality(cfg.Spec.Linux.Personality); err != nil {
			return err
		}
	}
	if seccompCfg != nil {
		var err error
		if filter, err = seccomp.Compile(seccompCfg); err != nil {
			return err
		}
	}
	if filter != nil && !p.NoNewPrivileges {
		if err := loadSeccomp(filter, seccompCfg); err != nil {
			return err
		}
	}
	set, _, err := caps.FromSpec(p.Capabilities)
	if err != nil {
		return err
	}
	if p.Capabilities != nil {
		if err := set.DropBounding(); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities: %w", err)
	}
	if err := setUser(p.User); err != nil {
		return err
	}
	if err := unix.Chdir(p.Cwd); err != nil {
		return fmt.Errorf("chdir to cwd %q set in config.json: %w", p.Cwd, err)
	}
	// The working directory must be inside the container's root: a leaked
	// host descriptor used as cwd would show as "(unreachable)".
	if wd, err := unix.Getwd(); err != nil || !strings.HasPrefix(wd, "/") {
		return fmt.Errorf("working directory %q is outside the container", p.Cwd)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear keep capabilities: %w", err)
	}
	if p.Capabilities != nil {
		if err := set.Apply(); err != nil {
			return err
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
		if filter != nil {
			if err := loadSeccomp(filter, seccompCfg); err != nil {
				return err
			}
		}
	}
	tracef("init: exec")
	err = syscall.Exec(path, p.Args, p.Env)
	return &ExecError{Msg: fmt.Sprintf("exec %s: %v", p.Args[0], err), Errno: errnoOf(err)}
}

func loadSeccomp(filter []unix.SockFilter, cfg *specs.LinuxSeccomp) error {
	fd, err := seccomp.Load(filter, cfg.Flags)
	if err != nil {
		return fmt.Errorf("load seccomp filter: %w", err)
	}
	if fd >= 0 {
		// Handing the listener to cfg.ListenerPath is not supported yet;
		// close it so the filter's notify rules fail with ENOSYS.
		unix.Close(fd)
	}
	return nil
}

func setUser(u specs.User) error {
	if u.Umask != nil {
		unix.Umask(int(*u.Umask))
	} else {
		unix.Umask(0o022)
	}
	// Raw, thread-local system calls: we exec from this very thread, and
	// libc's versions would interrupt every other thread to apply the change
	// to the whole process, which is slower and not needed.
	var gp unsafe.Pointer
	if len(u.AdditionalGids) > 0 {
		gp = unsafe.Pointer(&u.AdditionalGids[0])
	}
	// Setting groups is refused in a user namespace whose setgroups file
	// says deny; only tolerate that when no groups were asked for.
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(u.AdditionalGids)), uintptr(gp), 0); e != 0 &&
		!(e == unix.EPERM && len(u.AdditionalGids) == 0) {
		return fmt.Errorf("setgroups %v: %w", u.AdditionalGids, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); e != 0 {
		return fmt.Errorf("setgid %d: %w", u.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(u.UID), uintptr(u.UID), uintptr(u.UID)); e != 0 {
		return fmt.Errorf("setuid %d: %w", u.UID, e)
	}
	return nil
}

var rlimitTypes = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

func setRlimits(rls []specs.POSIXRlimit) error {
	for _, rl := range rls {
		t, ok := rlimitTypes[rl.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit type %q", rl.Type)
		}
		// syscall.Setrlimit (not x/sys) so that the Go runtime does not
		// restore its own RLIMIT_NOFILE at exec.
		if err := syscall.Setrlimit(t, &syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			return fmt.Errorf("set %s to %d/%d: %w", rl.Type, rl.Soft, rl.Hard, err)
		}
	}
	return nil
}

func setPersonality(p *specs.LinuxPersonality) error {
	if p == nil {
		return nil
	}
	var domain uintptr
	switch p.Domain {
	case specs.PerLinux:
		domain = 0x0000
	case specs.PerLinux32:
		domain = 0x0008
	default:
		return fmt.Errorf("unknown personality domain %q", p.Domain)
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, domain, 0, 0); errno != 0 {
		return fmt.Errorf("set personality %s: %w", p.Domain, errno)
	}
	return nil
}

// setupConsole creates the container's pty in its own devpts instance, sends
// the master to the console socket, and makes the slave our controlling
// terminal and stdio. rootFd is the rootfs during create; -1 means we are
// already inside the container (exec).
func setupConsole(rootFd, sockFd int, size *specs.Box) error {
	if sockFd < 0 {
		return errors.New("process.terminal is set but there is no console socket")
	}
	var master int
	var err error
	if rootFd >= 0 {
		master, err = rootfs.OpenInRoot(rootFd, "/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY)
	} else {
		master, err = unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("open pty master: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(master, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("get pty number: %w", err)
	}
	slavePath := fmt.Sprintf("/dev/pts/%d", n)
	var slave int
	if rootFd >= 0 {
		slave, err = rootfs.OpenInRoot(rootFd, slavePath, unix.O_RDWR|unix.O_NOCTTY)
	} else {
		slave, err = unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("open pty slave: %w", err)
	}
	defer unix.Close(slave)
	if size != nil {
		ws := &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)}
		if err := unix.IoctlSetWinsize(master, unix.TIOCSWINSZ, ws); err != nil {
			return fmt.Errorf("set console size: %w", err)
		}
	}
	if err := unix.Sendmsg(sockFd, []byte("/dev/ptmx"), unix.UnixRights(master), nil, 0); err != nil {
		return fmt.Errorf("send pty master to console socket: %w", err)
	}
	if rootFd >= 0 {
		console, err := rootfs.CreateFileInRoot(rootFd, "/dev/console", 0o600)
		if err != nil {
			return err
		}
		err = unix.Mount(rootfs.ProcFd(slave), rootfs.ProcFd(console), "", unix.MS_BIND, "")
		unix.Close(console)
		if err != nil {
			return fmt.Errorf("bind pty on /dev/console: %w", err)
		}
	}
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return fmt.Errorf("dup pty to fd %d: %w", fd, err)
		}
	}
	return nil
}
