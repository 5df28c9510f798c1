package seccomp

// These tests load compiled filters into the real kernel. A filter cannot
// be removed, so each case runs in a child process: the test binary runs
// itself with childEnv set, TestMain hands over to the case, which locks
// its goroutine to an OS thread, sets no_new_privs, loads a filter, makes
// syscalls and prints "key=errno" lines that the parent checks.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	childEnv    = "HULL_SECCOMP_TEST_CHILD"
	childDirEnv = "HULL_SECCOMP_TEST_DIR"
)

func TestMain(m *testing.M) {
	if name := os.Getenv(childEnv); name != "" {
		os.Exit(runChild(name))
	}
	os.Exit(m.Run())
}

// Values for the operator tests, around v = 2^32 + 5 in both halves.
const opValue = 0x100000005

var opArgs = []uint64{0, 5, 0xffffffff, opValue - 1, opValue, opValue + 1, 0x200000005, 0xffffffff00000005, 0xffffffffffffffff}

// opSyscalls gives each operator a syscall of its own that takes no
// arguments (the kernel ignores the registers, the filter sees them) and
// that the Go runtime does not make, and the argument it tests.
var opSyscalls = []struct {
	op  specs.LinuxSeccompOperator
	nr  uintptr
	arg int
	f   func(a, v uint64) bool
}{
	{specs.OpEqualTo, unix.SYS_GETPPID, 0, func(a, v uint64) bool { return a == v }},
	{specs.OpNotEqual, unix.SYS_GETUID, 1, func(a, v uint64) bool { return a != v }},
	{specs.OpLessThan, unix.SYS_GETEUID, 2, func(a, v uint64) bool { return a < v }},
	{specs.OpLessEqual, unix.SYS_GETGID, 3, func(a, v uint64) bool { return a <= v }},
	{specs.OpGreaterEqual, unix.SYS_GETEGID, 4, func(a, v uint64) bool { return a >= v }},
	{specs.OpGreaterThan, unix.SYS_GETPGRP, 5, func(a, v uint64) bool { return a > v }},
}

// Masked-equal test on getpgid's second (ignored) argument.
const (
	maskValue = 0xff000000000000ff
	maskDatum = 0x1200000000000034
)

var maskArgs = []uint64{0x1234567890abcd34, 0x12ffffffffffff34, 0x1334567890abcd34, 0x1234567890abcd35, 0x34, 0}

var childCases = map[string]func(c *child){
	"errno":     childErrno,
	"allowlist": childAllowList,
	"kill":      childKill,
	"trap":      childTrap,
	"args":      childArgs,
	"notify":    childNotify,
	"tsync":     func(c *child) { childSync(c, true) },
	"notsync":   func(c *child) { childSync(c, false) },
	"x32":       childX32,
	"x32kill":   childX32Kill,
	"docker":    childDocker,
}

// child is the state of a child process case.
type child struct {
	out *bufio.Writer
	dir string
}

func (c *child) fatalf(format string, args ...any) {
	c.out.Flush()
	fmt.Fprintf(os.Stderr, "child: "+format+"\n", args...)
	os.Exit(3)
}

func (c *child) report(key string, errno unix.Errno) {
	fmt.Fprintf(c.out, "%s=%d\n", key, uintptr(errno))
}

func (c *child) say(line string) {
	fmt.Fprintln(c.out, line)
	c.out.Flush()
}

// load compiles and loads cfg on this (locked) thread.
func (c *child) load(cfg *specs.LinuxSeccomp) int {
	prog, err := Compile(cfg)
	if err != nil {
		c.fatalf("Compile: %v", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		c.fatalf("no_new_privs: %v", err)
	}
	fd, err := Load(prog, cfg.Flags)
	if err != nil {
		c.fatalf("Load: %v", err)
	}
	return fd
}

func runChild(name string) int {
	c := &child{out: bufio.NewWriter(os.Stdout), dir: os.Getenv(childDirEnv)}
	f, ok := childCases[name]
	if !ok {
		c.fatalf("unknown case %q", name)
	}
	runtime.LockOSThread()
	f(c)
	c.say("done")
	return 0
}

// atFdcwd is AT_FDCWD as a register value.
var atFdcwd = func() uintptr { v := unix.AT_FDCWD; return uintptr(v) }()

func rawErrno(nr uintptr, args ...uintptr) unix.Errno {
	var a [6]uintptr
	copy(a[:], args)
	_, _, e := unix.RawSyscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	return e
}

func cstr(c *child, s string) uintptr {
	p, err := unix.BytePtrFromString(s)
	if err != nil {
		c.fatalf("%v", err)
	}
	return uintptr(unsafe.Pointer(p))
}

func childErrno(c *child) {
	c.load(&specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno},
			{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV))},
			{Names: []string{"getuid"}, Action: specs.ActLog},
			{Names: []string{"getgid"}, Action: specs.ActTrace},
		},
	})
	path := filepath.Join(c.dir, "blocked")
	_, _, e := unix.Syscall6(unix.SYS_MKDIRAT, atFdcwd, cstr(c, path), 0o755, 0, 0, 0)
	c.report("mkdirat", e)
	c.report("getppid", rawErrno(unix.SYS_GETPPID))
	c.report("getuid", rawErrno(unix.SYS_GETUID))
	c.report("getgid", rawErrno(unix.SYS_GETGID))
	c.report("getpid", rawErrno(unix.SYS_GETPID))
	if err := os.WriteFile(filepath.Join(c.dir, "allowed"), []byte("x"), 0o644); err != nil {
		c.fatalf("write: %v", err)
	}
}

func childAllowList(c *child) {
	var names []string
	for name := range syscallsX86_64 {
		switch name {
		case "mkdir", "mkdirat", "getuid":
		default:
			names = append(names, name)
		}
	}
	c.load(&specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: uintp(uint(unix.EXDEV)),
		Syscalls:        []specs.LinuxSyscall{{Names: names, Action: specs.ActAllow}},
	})
	_, _, e := unix.Syscall6(unix.SYS_MKDIRAT, atFdcwd, cstr(c, filepath.Join(c.dir, "blocked")), 0o755, 0, 0, 0)
	c.report("mkdirat", e)
	c.report("getuid", rawErrno(unix.SYS_GETUID))
	c.report("getppid", rawErrno(unix.SYS_GETPPID))
	c.report("nr1000", rawErrno(1000))
	runtime.GC()
}

func childKill(c *child) {
	c.load(&specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActKillProcess}},
	})
	c.say("loaded")
	rawErrno(unix.SYS_GETPPID)
	c.say("survived")
}

func childTrap(c *child) {
	c.load(&specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActTrap}},
	})
	c.say("loaded")
	rawErrno(unix.SYS_GETPPID)
	c.say("survived")
}

func childArgs(c *child) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
	for _, s := range opSyscalls {
		name := map[uintptr]string{unix.SYS_GETPPID: "getppid", unix.SYS_GETUID: "getuid", unix.SYS_GETEUID: "geteuid",
			unix.SYS_GETGID: "getgid", unix.SYS_GETEGID: "getegid", unix.SYS_GETPGRP: "getpgrp"}[s.nr]
		cfg.Syscalls = append(cfg.Syscalls, specs.LinuxSyscall{
			Names: []string{name}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV)),
			Args: []specs.LinuxSeccompArg{{Index: uint(s.arg), Value: opValue, Op: s.op}},
		})
	}
	cfg.Syscalls = append(cfg.Syscalls,
		specs.LinuxSyscall{Names: []string{"getpgid"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV)),
			Args: []specs.LinuxSeccompArg{{Index: 1, Value: maskValue, ValueTwo: maskDatum, Op: specs.OpMaskedEqual}}},
		// Block personality(2) unless it only queries (0xffffffff).
		specs.LinuxSyscall{Names: []string{"personality"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpNotEqual}}},
		// Block IPv4 sockets only.
		specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_INET, Op: specs.OpEqualTo}}},
	)
	c.load(cfg)
	for _, s := range opSyscalls {
		for _, v := range opArgs {
			var a [6]uintptr
			a[s.arg] = uintptr(v)
			c.report(fmt.Sprintf("%s/%#x", s.op, v), rawErrno(s.nr, a[:]...))
		}
	}
	for _, v := range maskArgs {
		c.report(fmt.Sprintf("masked/%#x", v), rawErrno(unix.SYS_GETPGID, 0, uintptr(v)))
	}
	c.report("personality/query", rawErrno(unix.SYS_PERSONALITY, 0xffffffff))
	c.report("personality/query-high", rawErrno(unix.SYS_PERSONALITY, 0x1ffffffff))
	c.report("personality/linux", rawErrno(unix.SYS_PERSONALITY, 0))
	for _, fam := range []int{unix.AF_INET, unix.AF_UNIX, unix.AF_INET6} {
		fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(fam), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		c.report(fmt.Sprintf("socket/%d", fam), e)
	}
}

// struct seccomp_notif and seccomp_notif_resp from linux/seccomp.h.
type seccompNotif struct {
	id    uint64
	pid   uint32
	flags uint32
	nr    int32
	arch  uint32
	ip    uint64
	args  [6]uint64
}

type seccompNotifResp struct {
	id    uint64
	val   int64
	error int32
	flags uint32
}

func childNotify(c *child) {
	fd := c.load(&specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		// TSYNC with a listener needs TSYNC_ESRCH, which Load adds.
		Flags:    []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv, "SECCOMP_FILTER_FLAG_TSYNC"},
		Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActNotify}},
	})
	fmt.Fprintf(c.out, "fd=%d\n", fd)
	if fd < 0 {
		c.fatalf("no listener fd")
	}
	// A listener knows no notification with this id yet.
	id := uint64(12345)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_ID_VALID, uintptr(unsafe.Pointer(&id)))
	c.report("idvalid", e)

	// A supervisor goroutine (on another thread) answers the notification
	// the filtered thread causes.
	type result struct {
		n   seccompNotif
		err error
	}
	got := make(chan result, 1)
	go func() {
		var n seccompNotif
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&n))); e != 0 {
			got <- result{err: fmt.Errorf("NOTIF_RECV: %w", e)}
			return
		}
		resp := seccompNotifResp{id: n.id, val: 4242}
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp))); e != 0 {
			got <- result{err: fmt.Errorf("NOTIF_SEND: %w", e)}
			return
		}
		got <- result{n: n}
	}()
	r, _, e := unix.Syscall(unix.SYS_GETPPID, 0xdead, 0, 0)
	res := <-got
	if res.err != nil {
		c.fatalf("%v", res.err)
	}
	c.report("getppid", e)
	fmt.Fprintf(c.out, "getppid.val=%d\nnotif.nr=%d\nnotif.arch=%#x\nnotif.arg0=%#x\nnotif.pidok=%t\n",
		r, res.n.nr, res.n.arch, res.n.args[0], int(res.n.pid) == unix.Gettid())
}

// childSync loads a filter while other threads already exist: only TSYNC
// puts them under it.
func childSync(c *child, tsync bool) {
	const threads = 6
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	results := make([]unix.Errno, threads)
	for i := 0; i < threads; i++ {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread() // own thread, created before the filter
			ready.Done()
			<-start
			results[i] = rawErrno(unix.SYS_GETPPID)
		}()
	}
	ready.Wait()
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		// WAIT_KILLABLE_RECV without a listener is dropped by Load (the
		// kernel would refuse it).
		Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow,
			specs.LinuxSeccompFlagWaitKillableRecv},
		Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV))}},
	}
	if tsync {
		cfg.Flags = append(cfg.Flags, "SECCOMP_FILTER_FLAG_TSYNC")
	}
	c.load(cfg)
	close(start)
	done.Wait()
	c.report("self", rawErrno(unix.SYS_GETPPID))
	for i, e := range results {
		c.report(fmt.Sprintf("thread%d", i), e)
	}
}

func childX32(c *child) {
	c.load(&specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX32},
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV))}},
	})
	c.report("x32getppid", rawErrno(x32SyscallBit|unix.SYS_GETPPID))
	c.report("x32getpid", rawErrno(x32SyscallBit|unix.SYS_GETPID))
	c.report("getppid", rawErrno(unix.SYS_GETPPID))
}

func childX32Kill(c *child) {
	c.load(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow})
	c.say("loaded")
	rawErrno(x32SyscallBit | unix.SYS_GETPID)
	c.say("survived")
}

func childDocker(c *child) {
	b, err := os.ReadFile("testdata/docker-like.json")
	if err != nil {
		c.fatalf("%v", err)
	}
	var cfg specs.LinuxSeccomp
	if err := json.Unmarshal(b, &cfg); err != nil {
		c.fatalf("%v", err)
	}
	c.load(&cfg)
	dir := filepath.Join(c.dir, "made")
	c.report("mkdir", errnoOf(os.Mkdir(dir, 0o755)))
	c.report("rmdir", errnoOf(os.Remove(dir)))
	c.report("unshare", rawErrno(unix.SYS_UNSHARE, unix.CLONE_NEWUTS))
	c.report("mount", rawErrno(unix.SYS_MOUNT, cstr(c, "none"), cstr(c, "/nonexistent-hull-seccomp"), cstr(c, "hull-bogus-fs"), 0, 0))
	c.report("clone3", rawErrno(unix.SYS_CLONE3, 0, 0))
	// CLONE_NEWNS with CLONE_FS is invalid: even a wrongly allowed call
	// creates nothing.
	c.report("clone-newns", rawErrno(unix.SYS_CLONE, unix.CLONE_NEWNS|unix.CLONE_FS))
	for _, fam := range []int{unix.AF_VSOCK, unix.AF_UNIX} {
		fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(fam), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		c.report(fmt.Sprintf("socket/%d", fam), e)
	}
	c.report("personality/query", rawErrno(unix.SYS_PERSONALITY, 0xffffffff))
	c.report("personality/other", rawErrno(unix.SYS_PERSONALITY, 0x0400000))
	c.report("nr400", rawErrno(400))
	c.report("nr1000", rawErrno(1000))
	c.report("x32getppid", rawErrno(x32SyscallBit|unix.SYS_GETPPID))
	// The Go runtime keeps working under the profile.
	runtime.GC()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); time.Sleep(time.Millisecond) }()
	}
	wg.Wait()
}

func errnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EIO
}

// childResult is what the parent sees of a child.
type childResult struct {
	vals   map[string]string
	lines  []string
	state  *os.ProcessState
	stderr string
	dir    string // the child's scratch directory
}

func (r *childResult) errno(t *testing.T, key string) unix.Errno {
	t.Helper()
	v, ok := r.vals[key]
	if !ok {
		t.Fatalf("child did not report %q; stdout %q, stderr %q", key, r.lines, r.stderr)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", key, v, err)
	}
	return unix.Errno(n)
}

func (r *childResult) has(line string) bool {
	for _, l := range r.lines {
		if l == line {
			return true
		}
	}
	return false
}

func runInChild(t *testing.T, name string) *childResult {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("filters are compiled for amd64 only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	dir := t.TempDir()
	cmd.Env = append(os.Environ(), childEnv+"="+name, childDirEnv+"="+dir,
		// Under -race, do not wait a second at exit.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("running child %s: %v", name, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("child %s timed out; stdout %q, stderr %q", name, stdout.String(), stderr.String())
	}
	r := &childResult{vals: map[string]string{}, state: cmd.ProcessState, stderr: stderr.String(), dir: dir}
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		r.lines = append(r.lines, l)
		if k, v, ok := strings.Cut(l, "="); ok {
			r.vals[k] = v
		}
	}
	return r
}

// mustSucceed checks the child finished its case.
func (r *childResult) mustSucceed(t *testing.T) {
	t.Helper()
	if !r.state.Success() || !r.has("done") {
		t.Fatalf("child failed: %v; stdout %q, stderr %q", r.state, r.lines, r.stderr)
	}
}

func wantErrno(t *testing.T, r *childResult, key string, want unix.Errno) {
	t.Helper()
	if got := r.errno(t, key); got != want {
		t.Errorf("%s: errno %d (%v), want %d (%v)", key, got, got, want, want)
	}
}

func TestKernelErrnoActions(t *testing.T) {
	r := runInChild(t, "errno")
	r.mustSucceed(t)
	wantErrno(t, r, "mkdirat", unix.EPERM)
	wantErrno(t, r, "getppid", unix.EXDEV)
	wantErrno(t, r, "getuid", 0)           // LOG allows
	wantErrno(t, r, "getgid", unix.ENOSYS) // TRACE without a tracer
	wantErrno(t, r, "getpid", 0)
	if _, err := os.Stat(filepath.Join(r.dir, "blocked")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("blocked mkdirat created a directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "allowed")); err != nil {
		t.Errorf("allowed syscalls failed: %v", err)
	}
}

func TestKernelAllowList(t *testing.T) {
	r := runInChild(t, "allowlist")
	r.mustSucceed(t)
	wantErrno(t, r, "mkdirat", unix.EXDEV)
	wantErrno(t, r, "getuid", unix.EXDEV)
	wantErrno(t, r, "getppid", 0)
	wantErrno(t, r, "nr1000", unix.EXDEV)
}

func TestKernelKillProcess(t *testing.T) {
	r := runInChild(t, "kill")
	ws, _ := r.state.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("child was not killed by SIGSYS: %v; stdout %q, stderr %q", r.state, r.lines, r.stderr)
	}
	if !r.has("loaded") || r.has("survived") {
		t.Fatalf("unexpected output %q", r.lines)
	}
}

func TestKernelTrap(t *testing.T) {
	r := runInChild(t, "trap")
	// The Go runtime does not handle a seccomp SIGSYS: it crashes with its
	// own message, unlike KILL_PROCESS which kills silently. sigcode 1 is
	// SYS_SECCOMP: the signal came from the filter.
	if r.state.Success() || r.has("survived") || !strings.Contains(r.stderr, "SIGSYS: bad system call") || !strings.Contains(r.stderr, "sigcode=1") {
		t.Fatalf("TRAP did not raise SIGSYS: %v; stdout %q, stderr %.300q", r.state, r.lines, r.stderr)
	}
}

func TestKernelArgumentOperators(t *testing.T) {
	r := runInChild(t, "args")
	r.mustSucceed(t)
	for _, s := range opSyscalls {
		for _, v := range opArgs {
			want := unix.Errno(0)
			if s.f(v, opValue) {
				want = unix.EXDEV
			}
			wantErrno(t, r, fmt.Sprintf("%s/%#x", s.op, v), want)
		}
	}
	for _, v := range maskArgs {
		want := unix.Errno(0)
		if v&maskValue == maskDatum {
			want = unix.EXDEV
		}
		wantErrno(t, r, fmt.Sprintf("masked/%#x", v), want)
	}
	wantErrno(t, r, "personality/query", 0)
	wantErrno(t, r, "personality/query-high", unix.EPERM)
	wantErrno(t, r, "personality/linux", unix.EPERM)
	wantErrno(t, r, fmt.Sprintf("socket/%d", unix.AF_INET), unix.EPERM)
	wantErrno(t, r, fmt.Sprintf("socket/%d", unix.AF_UNIX), 0)
	if e := r.errno(t, fmt.Sprintf("socket/%d", unix.AF_INET6)); e == unix.EPERM {
		t.Errorf("AF_INET6 socket refused by the filter")
	}
}

func TestKernelNotify(t *testing.T) {
	r := runInChild(t, "notify")
	r.mustSucceed(t)
	if fd, _ := strconv.Atoi(r.vals["fd"]); fd < 3 {
		t.Errorf("listener fd %q", r.vals["fd"])
	}
	// ENOENT: a valid listener that has no such notification (a wrong fd
	// would give EBADF or ENOTTY).
	wantErrno(t, r, "idvalid", unix.ENOENT)
	wantErrno(t, r, "getppid", 0)
	for k, want := range map[string]string{
		"getppid.val": "4242",
		"notif.nr":    strconv.Itoa(unix.SYS_GETPPID),
		"notif.arch":  fmt.Sprintf("%#x", unix.AUDIT_ARCH_X86_64),
		"notif.arg0":  "0xdead",
		"notif.pidok": "true",
	} {
		if r.vals[k] != want {
			t.Errorf("%s = %q, want %q", k, r.vals[k], want)
		}
	}
}

func TestKernelTSync(t *testing.T) {
	for _, tsync := range []bool{true, false} {
		name := map[bool]string{true: "tsync", false: "notsync"}[tsync]
		t.Run(name, func(t *testing.T) {
			r := runInChild(t, name)
			r.mustSucceed(t)
			wantErrno(t, r, "self", unix.EXDEV)
			want := unix.Errno(0)
			if tsync {
				want = unix.EXDEV
			}
			for i := 0; i < 6; i++ {
				wantErrno(t, r, fmt.Sprintf("thread%d", i), want)
			}
		})
	}
}

func TestKernelX32(t *testing.T) {
	r := runInChild(t, "x32")
	r.mustSucceed(t)
	wantErrno(t, r, "x32getppid", unix.EXDEV)
	wantErrno(t, r, "getppid", unix.EXDEV)
	// Allowed: the kernel runs it, or says ENOSYS when built without x32.
	if e := r.errno(t, "x32getpid"); e != 0 && e != unix.ENOSYS {
		t.Errorf("x32 getpid: %v", e)
	}

	r = runInChild(t, "x32kill")
	ws, _ := r.state.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != unix.SIGSYS || r.has("survived") {
		t.Fatalf("x32 syscall without SCMP_ARCH_X32 was not killed: %v; stdout %q", r.state, r.lines)
	}
}

func TestKernelDockerLikeProfile(t *testing.T) {
	r := runInChild(t, "docker")
	r.mustSucceed(t)
	wantErrno(t, r, "mkdir", 0)
	wantErrno(t, r, "rmdir", 0)
	wantErrno(t, r, "unshare", unix.EPERM)
	wantErrno(t, r, "mount", unix.EPERM)
	wantErrno(t, r, "clone3", unix.ENOSYS)
	wantErrno(t, r, "clone-newns", unix.EPERM)
	wantErrno(t, r, fmt.Sprintf("socket/%d", unix.AF_VSOCK), unix.EPERM)
	wantErrno(t, r, fmt.Sprintf("socket/%d", unix.AF_UNIX), 0)
	wantErrno(t, r, "personality/query", 0)
	wantErrno(t, r, "personality/other", unix.EPERM)
	wantErrno(t, r, "nr400", unix.EPERM)
	wantErrno(t, r, "nr1000", unix.ENOSYS)
	if e := r.errno(t, "x32getppid"); e != 0 && e != unix.ENOSYS {
		t.Errorf("x32 getppid: %v", e)
	}
}

// TestLoadErrors covers what Load refuses before asking the kernel.
func TestLoadErrors(t *testing.T) {
	if _, err := Load(nil, nil); err == nil {
		t.Error("empty program accepted")
	}
	if _, err := Load(make([]unix.SockFilter, unix.BPF_MAXINSNS+1), nil); err == nil {
		t.Error("oversized program accepted")
	}
	prog := []unix.SockFilter{{Code: opRet, K: retAllow}}
	if _, err := Load(prog, []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_BOGUS"}); err == nil || !strings.Contains(err.Error(), "unknown flag") {
		t.Errorf("unknown flag: %v", err)
	}
	if !usesNotify([]unix.SockFilter{{Code: opRet, K: unix.SECCOMP_RET_USER_NOTIF}}) || usesNotify(prog) {
		t.Error("usesNotify is wrong")
	}
}
