package seccomp

import (
	"encoding/json"
	"math/rand"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retKillP = unix.SECCOMP_RET_KILL_PROCESS
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
)

func retErrno(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

func mustCompile(t *testing.T, cfg *specs.LinuxSeccomp) []unix.SockFilter {
	t.Helper()
	prog, err := Compile(cfg)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if err := checkProgram(prog); err != nil {
		t.Fatalf("invalid program: %v", err)
	}
	return prog
}

// expect runs prog over each input and compares with the wanted return and
// with the reference evaluator.
func expect(t *testing.T, cfg *specs.LinuxSeccomp, prog []unix.SockFilter, d seccompData, want uint32) {
	t.Helper()
	got, _, err := runBPF(prog, d)
	if err != nil {
		t.Fatalf("input %+v: %v", d, err)
	}
	if got != want {
		t.Errorf("input nr=%#x arch=%#x args=%#x: got %#x, want %#x", d.nr, d.arch, d.args, got, want)
	}
	if ref := refEval(t, cfg, d); ref != want {
		t.Errorf("input nr=%#x arch=%#x args=%#x: reference says %#x, test wants %#x", d.nr, d.arch, d.args, ref, want)
	}
}

func TestActionRet(t *testing.T) {
	for _, c := range []struct {
		act   specs.LinuxSeccompAction
		errno *uint
		want  uint32
	}{
		{specs.ActKill, nil, 0x00000000},
		{specs.ActKillThread, nil, 0x00000000},
		{specs.ActKillProcess, nil, 0x80000000},
		{specs.ActTrap, nil, 0x00030000},
		{specs.ActErrno, nil, 0x00050001},
		{specs.ActErrno, uintp(uint(unix.EXDEV)), 0x00050012},
		{specs.ActErrno, uintp(0), 0x00050000},
		{specs.ActTrace, nil, 0x7ff00001},
		{specs.ActTrace, uintp(0x1234), 0x7ff01234},
		{specs.ActAllow, nil, 0x7fff0000},
		{specs.ActLog, nil, 0x7ffc0000},
		{specs.ActNotify, nil, 0x7fc00000},
	} {
		got, err := actionRet(c.act, c.errno)
		if err != nil || got != c.want {
			t.Errorf("%s %v: got %#x, %v; want %#x", c.act, c.errno, got, err, c.want)
		}
	}
}

func TestKnownLists(t *testing.T) {
	for name, c := range map[string]struct {
		got  []string
		want []string
	}{
		"actions":   {KnownActions(), []string{"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"}},
		"operators": {KnownOperators(), []string{"SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"}},
		"flags":     {KnownFlags(), []string{"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_NEW_LISTENER", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_TSYNC_ESRCH", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", name, c.got, c.want)
		}
	}
	archs := KnownArchs()
	for _, a := range []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390X", "SCMP_ARCH_RISCV64"} {
		if !slices.Contains(archs, a) {
			t.Errorf("KnownArchs lacks %s: %v", a, archs)
		}
	}
	if len(archs) != 23 {
		t.Errorf("KnownArchs has %d names, the spec defines 23", len(archs))
	}
}

// TestTables spot-checks the generated and hand-written syscall numbers
// against x/sys constants and the kernel's tables.
func TestTables(t *testing.T) {
	for name, want := range map[string]uint32{
		"read": unix.SYS_READ, "mkdir": unix.SYS_MKDIR, "mkdirat": unix.SYS_MKDIRAT,
		"personality": unix.SYS_PERSONALITY, "clone3": unix.SYS_CLONE3, "umount2": unix.SYS_UMOUNT2,
		"newfstatat": unix.SYS_NEWFSTATAT, "seccomp": unix.SYS_SECCOMP,
	} {
		if got := abiX86_64.lookup(name); !slices.Equal(got, []uint32{want}) {
			t.Errorf("x86_64 %s: %v, want %d", name, got, want)
		}
	}
	// i386 numbers from arch/x86/entry/syscalls/syscall_32.tbl.
	for name, want := range map[string]uint32{
		"exit": 1, "mkdir": 39, "socketcall": 102, "ipc": 117, "_llseek": 140,
		"personality": 136, "socket": 359, "clone3": 435,
	} {
		if got := abiI386.lookup(name); !slices.Equal(got, []uint32{want}) {
			t.Errorf("i386 %s: %v, want %d", name, got, want)
		}
	}
	for name, want := range map[string][]uint32{
		"mkdir":    {x32SyscallBit | 83},
		"execve":   {x32SyscallBit | 59, x32SyscallBit | 520},
		"pwritev2": {x32SyscallBit | 328, x32SyscallBit | 547},
		"ioctl":    {x32SyscallBit | 16, x32SyscallBit | 514},
	} {
		if got := abiX32.lookup(name); !slices.Equal(got, want) {
			t.Errorf("x32 %s: %#x, want %#x", name, got, want)
		}
	}
	for _, a := range []abi{abiX86_64, abiX32, abiI386} {
		if got := a.lookup("arm_fadvise64_64"); got != nil {
			t.Errorf("%s knows arm_fadvise64_64: %v", a, got)
		}
	}
	if len(syscallsX86_64) < 350 || len(syscallsI386) < 420 {
		t.Errorf("tables look truncated: %d x86_64, %d i386 names", len(syscallsX86_64), len(syscallsI386))
	}
}

func TestCompileErrors(t *testing.T) {
	valid := func() *specs.LinuxSeccomp {
		return &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{
				Names:  []string{"mkdir"},
				Action: specs.ActErrno,
				Args:   []specs.LinuxSeccompArg{{Index: 1, Value: 1, Op: specs.OpEqualTo}},
			}},
		}
	}
	if _, err := Compile(valid()); err != nil {
		t.Fatalf("valid profile: %v", err)
	}
	for name, c := range map[string]struct {
		mutate func(*specs.LinuxSeccomp)
		want   string
	}{
		"nil":            {func(c *specs.LinuxSeccomp) { *c = specs.LinuxSeccomp{} }, "defaultAction is required"},
		"default action": {func(c *specs.LinuxSeccomp) { c.DefaultAction = "SCMP_ACT_ALLOW_ALL" }, `defaultAction: unknown action "SCMP_ACT_ALLOW_ALL"`},
		"default notify": {func(c *specs.LinuxSeccomp) { c.DefaultAction = specs.ActNotify }, "defaultAction SCMP_ACT_NOTIFY is not supported"},
		"default errno":  {func(c *specs.LinuxSeccomp) { c.DefaultErrnoRet = uintp(1) }, "errnoRet 1 is not supported by action SCMP_ACT_ALLOW"},
		"rule action":    {func(c *specs.LinuxSeccomp) { c.Syscalls[0].Action = "SCMP_ACT_DENY" }, `syscalls[0] [mkdir]: unknown action "SCMP_ACT_DENY"`},
		"empty action":   {func(c *specs.LinuxSeccomp) { c.Syscalls[0].Action = "" }, "syscalls[0] [mkdir]: action is empty"},
		"errno on allow": {func(c *specs.LinuxSeccomp) {
			c.DefaultAction = specs.ActErrno
			c.Syscalls[0].Action = specs.ActAllow
			c.Syscalls[0].ErrnoRet = uintp(5)
		}, "errnoRet 5 is not supported by action SCMP_ACT_ALLOW"},
		"errno too large": {func(c *specs.LinuxSeccomp) { c.Syscalls[0].ErrnoRet = uintp(70000) }, "errnoRet 70000 of action SCMP_ACT_ERRNO does not fit"},
		"operator":        {func(c *specs.LinuxSeccomp) { c.Syscalls[0].Args[0].Op = "SCMP_CMP_REGEX" }, `syscalls[0] [mkdir]: args[0]: unknown operator "SCMP_CMP_REGEX"`},
		"empty operator":  {func(c *specs.LinuxSeccomp) { c.Syscalls[0].Args[0].Op = "" }, `args[0]: unknown operator ""`},
		"index":           {func(c *specs.LinuxSeccomp) { c.Syscalls[0].Args[0].Index = 6 }, "args[0]: index 6 out of range"},
		"arch":            {func(c *specs.LinuxSeccomp) { c.Architectures = []specs.Arch{specs.ArchX86, "SCMP_ARCH_Z80"} }, `architectures[1]: unknown architecture "SCMP_ARCH_Z80"`},
		"no names":        {func(c *specs.LinuxSeccomp) { c.Syscalls[0].Names = nil }, "names is empty"},
		"empty name":      {func(c *specs.LinuxSeccomp) { c.Syscalls[0].Names = []string{"mkdir", ""} }, "empty syscall name"},
		"flag":            {func(c *specs.LinuxSeccomp) { c.Flags = []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_FAST"} }, `unknown flag "SECCOMP_FILTER_FLAG_FAST"`},
	} {
		cfg := valid()
		c.mutate(cfg)
		_, err := Compile(cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "seccomp: ") {
			t.Errorf("%s: got error %v, want one containing %q", name, err, c.want)
		}
	}
	if _, err := Compile(nil); err == nil || !strings.Contains(err.Error(), "nil config") {
		t.Errorf("nil config: %v", err)
	}
}

func TestDefaultAllowWithErrnoRules(t *testing.T) {
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno},
			{Names: []string{"rmdir"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV))},
			{Names: []string{"getppid"}, Action: specs.ActKillProcess},
			{Names: []string{"gettid"}, Action: specs.ActTrace},
		},
	}
	prog := mustCompile(t, cfg)
	expect(t, cfg, prog, x64(unix.SYS_MKDIR), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_MKDIRAT), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_RMDIR), retErrno(unix.EXDEV))
	expect(t, cfg, prog, x64(unix.SYS_GETPPID), retKillP)
	expect(t, cfg, prog, x64(unix.SYS_GETTID), unix.SECCOMP_RET_TRACE|1)
	for _, nr := range []uint32{0, 1, unix.SYS_MKDIR - 1, unix.SYS_RMDIR + 1, 500, 0x3fffffff} {
		expect(t, cfg, prog, x64(nr), retAllow)
	}
	// Foreign ABIs are killed when not listed, but a tracer's -1 is not.
	expect(t, cfg, prog, x32(unix.SYS_GETPID), retKillP)
	expect(t, cfg, prog, i386(20), retKillP)
	expect(t, cfg, prog, seccompData{nr: 1, arch: unix.AUDIT_ARCH_AARCH64}, retKillP)
	expect(t, cfg, prog, x64(0xffffffff), retAllow)
	expect(t, cfg, prog, x64(0x80000000), retKillP)
}

func TestDefaultErrnoAllowList(t *testing.T) {
	cfg := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: uintp(uint(unix.EXDEV)),
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write", "exit_group", "futex", "no_such_syscall"}, Action: specs.ActAllow},
			// Same as the default: dropped.
			{Names: []string{"mkdir"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV))},
			{Names: []string{"rmdir"}, Action: specs.ActErrno},
		},
	}
	prog := mustCompile(t, cfg)
	for _, nr := range []uint32{unix.SYS_READ, unix.SYS_WRITE, unix.SYS_EXIT_GROUP, unix.SYS_FUTEX} {
		expect(t, cfg, prog, x64(nr), retAllow)
	}
	expect(t, cfg, prog, x64(unix.SYS_MKDIR), retErrno(unix.EXDEV))
	expect(t, cfg, prog, x64(unix.SYS_RMDIR), retEPERM)
	// No architectures listed: no ENOSYS stub, as with runc.
	expect(t, cfg, prog, x64(1000), retErrno(unix.EXDEV))
	expect(t, cfg, prog, x64(unix.SYS_OPENAT), retErrno(unix.EXDEV))
}

func TestRedundantRulesDropped(t *testing.T) {
	base := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}},
	}
	withRedundant := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActAllow},
			{Names: []string{"mkdir", "rmdir"}, Action: specs.ActErrno, ErrnoRet: uintp(1),
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 5, Op: specs.OpGreaterThan}}},
		},
	}
	a, b := mustCompile(t, base), mustCompile(t, withRedundant)
	if !slices.Equal(a, b) {
		t.Errorf("a rule equal to the default changed the program: %d vs %d instructions", len(a), len(b))
	}
}

func TestUnknownNamesSkipped(t *testing.T) {
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchAARCH64, specs.ArchS390X},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"arm_fadvise64_64", "s390_runtime_instr", "mkdir", "not_a_syscall"}, Action: specs.ActErrno},
			// i386-only names are skipped for x86_64 and kept for i386.
			{Names: []string{"socketcall", "_llseek"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV))},
			{Names: []string{"only_unknown"}, Action: specs.ActKillProcess},
		},
	}
	prog := mustCompile(t, cfg)
	expect(t, cfg, prog, x64(unix.SYS_MKDIR), retEPERM)
	expect(t, cfg, prog, i386(39), retEPERM)
	expect(t, cfg, prog, i386(102), retErrno(unix.EXDEV))
	expect(t, cfg, prog, i386(140), retErrno(unix.EXDEV))
	expect(t, cfg, prog, x64(102), retAllow) // getuid on x86_64
	expect(t, cfg, prog, x64(140), retAllow) // getpriority on x86_64
}

// TestOperators checks every operator at the edges of both 32-bit halves,
// against Go's own 64-bit comparison, on x86_64 and x32 (64-bit arguments)
// and i386 (32-bit arguments).
func TestOperators(t *testing.T) {
	values := []uint64{0, 1, 5, 0xfffffffe, 0xffffffff, 0x100000000, 0x100000004, 0x100000005,
		0x100000006, 0x200000005, 0xffffffff00000005, 0xffffffffffffffff}
	ops := map[specs.LinuxSeccompOperator]func(a, v uint64) bool{
		specs.OpEqualTo:      func(a, v uint64) bool { return a == v },
		specs.OpNotEqual:     func(a, v uint64) bool { return a != v },
		specs.OpLessThan:     func(a, v uint64) bool { return a < v },
		specs.OpLessEqual:    func(a, v uint64) bool { return a <= v },
		specs.OpGreaterThan:  func(a, v uint64) bool { return a > v },
		specs.OpGreaterEqual: func(a, v uint64) bool { return a >= v },
	}
	for op, f := range ops {
		for _, v := range values {
			cfg := &specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Architectures: []specs.Arch{specs.ArchX86, specs.ArchX32},
				Syscalls: []specs.LinuxSyscall{{
					Names: []string{"personality"}, Action: specs.ActErrno,
					Args: []specs.LinuxSeccompArg{{Index: 3, Value: v, Op: op}},
				}},
			}
			prog := mustCompile(t, cfg)
			for _, arg := range values {
				want := uint32(retAllow)
				if f(arg, v) {
					want = retEPERM
				}
				expect(t, cfg, prog, x64(unix.SYS_PERSONALITY, 0, 0, 0, arg), want)
				expect(t, cfg, prog, x32(unix.SYS_PERSONALITY, 0, 0, 0, arg), want)
				// i386 arguments are 32-bit: only the low half exists.
				want = retAllow
				if f(arg&0xffffffff, v) {
					want = retEPERM
				}
				expect(t, cfg, prog, i386(136, 0, 0, 0, arg), want)
			}
		}
	}
}

// TestMaskedEqual pins the meaning of MASKED_EQ: value is the mask and
// valueTwo the datum, (arg & value) == valueTwo, as runc passes them to
// libseccomp.
func TestMaskedEqual(t *testing.T) {
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"clone"}, Action: specs.ActErrno,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xff000000000000ff, ValueTwo: 0x1200000000000034, Op: specs.OpMaskedEqual}}},
			// Docker's clone rule inverted: refuse any namespace flag.
			{Names: []string{"unshare"}, Action: specs.ActErrno,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x7E020000, ValueTwo: 0, Op: specs.OpMaskedEqual}}},
			// valueTwo has bits outside the mask: never matches.
			{Names: []string{"setns"}, Action: specs.ActErrno,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xf, ValueTwo: 0x10, Op: specs.OpMaskedEqual}}},
		},
	}
	prog := mustCompile(t, cfg)
	expect(t, cfg, prog, x64(unix.SYS_CLONE, 0x1234567890abcd34), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_CLONE, 0x12ffffffffffff34), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_CLONE, 0x1334567890abcd34), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_CLONE, 0x1234567890abcd35), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_CLONE, 0x34), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_UNSHARE, unix.CLONE_FILES), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_UNSHARE, unix.CLONE_NEWNS), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_UNSHARE, unix.CLONE_NEWUSER|unix.CLONE_FILES), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_UNSHARE, 0xffffffff00000000), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_SETNS, 0x10), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_SETNS, 0), retAllow)
}

// TestSameArgumentSplits checks runc's rule: conditions on one argument are
// ORed as separate rules, distinct arguments are ANDed.
func TestSameArgumentSplits(t *testing.T) {
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"socket"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: unix.AF_INET, Op: specs.OpEqualTo},
				{Index: 1, Value: unix.SOCK_DGRAM, Op: specs.OpEqualTo},
			}},
			{Names: []string{"personality"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 8, Op: specs.OpEqualTo},
				{Index: 0, Value: 9, Op: specs.OpEqualTo},
				{Index: 1, Value: 1, Op: specs.OpEqualTo},
			}},
		},
	}
	prog := mustCompile(t, cfg)
	expect(t, cfg, prog, x64(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_DGRAM), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_DGRAM), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_PERSONALITY, 8), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_PERSONALITY, 9), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_PERSONALITY, 10, 1), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_PERSONALITY, 10, 2), retAllow)
}

// TestRulePrecedence: the first unconditional rule of a syscall wins, and
// conditional rules are tried in order.
func TestRulePrecedence(t *testing.T) {
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"prctl"}, Action: specs.ActErrno, ErrnoRet: uintp(22),
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 4, Op: specs.OpEqualTo}}},
			{Names: []string{"prctl"}, Action: specs.ActAllow},
			{Names: []string{"prctl"}, Action: specs.ActKillProcess},
			{Names: []string{"ioctl"}, Action: specs.ActErrno, ErrnoRet: uintp(25),
				Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0x5401, Op: specs.OpEqualTo}}},
			{Names: []string{"ioctl"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0x5000, Op: specs.OpGreaterEqual}}},
		},
	}
	prog := mustCompile(t, cfg)
	expect(t, cfg, prog, x64(unix.SYS_PRCTL, 4), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_PRCTL, 5), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_IOCTL, 1, 0x5401), retErrno(unix.ENOTTY))
	expect(t, cfg, prog, x64(unix.SYS_IOCTL, 1, 0x5402), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_IOCTL, 1, 0x4000), retEPERM)
}

// TestForeignABIs covers i386 and x32: their own numbers, x32's two
// numberings, the bad-arch kill, and the socketcall/ipc multiplexers.
func TestForeignABIs(t *testing.T) {
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "execve"}, Action: specs.ActErrno},
			{Names: []string{"socket", "semop", "shmget"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV))},
			{Names: []string{"bind"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EXDEV)),
				Args: []specs.LinuxSeccompArg{{Index: 2, Value: 16, Op: specs.OpEqualTo}}},
		},
	}
	prog := mustCompile(t, cfg)
	// x86_64
	expect(t, cfg, prog, x64(unix.SYS_MKDIR), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_EXECVE), retEPERM)
	expect(t, cfg, prog, x64(520), retAllow) // x32's execve number means nothing on x86_64
	expect(t, cfg, prog, x64(39), retAllow)  // i386's mkdir is getpid on x86_64
	// x32: a rule for mkdir must cover x32's mkdir, and both execve numbers.
	expect(t, cfg, prog, x32(unix.SYS_MKDIR), retEPERM)
	expect(t, cfg, prog, x32(unix.SYS_EXECVE), retEPERM)
	expect(t, cfg, prog, x32(520), retEPERM)
	expect(t, cfg, prog, x32(unix.SYS_GETPID), retAllow)
	expect(t, cfg, prog, x32(0xfffffff), retAllow)
	// i386 uses its own numbers.
	expect(t, cfg, prog, i386(39), retEPERM) // mkdir
	expect(t, cfg, prog, i386(11), retEPERM) // execve
	expect(t, cfg, prog, i386(83), retAllow) // symlink, x86_64's mkdir number
	expect(t, cfg, prog, i386(359), retErrno(unix.EXDEV))
	// socketcall(SYS_SOCKET) and ipc(SEMOP, version 1) are covered, other
	// sub-calls are not; conditional rules cannot see through socketcall.
	expect(t, cfg, prog, i386(102, 1), retErrno(unix.EXDEV))
	expect(t, cfg, prog, i386(102, 3), retAllow)
	expect(t, cfg, prog, i386(102, 2), retAllow)
	expect(t, cfg, prog, i386(361, 0, 0, 16), retErrno(unix.EXDEV)) // direct bind
	expect(t, cfg, prog, i386(117, 1), retErrno(unix.EXDEV))
	expect(t, cfg, prog, i386(117, 0x10001), retErrno(unix.EXDEV))
	expect(t, cfg, prog, i386(117, 23), retErrno(unix.EXDEV))
	expect(t, cfg, prog, i386(117, 2), retAllow)

	// Without them listed, both foreign ABIs are killed.
	cfg.Architectures = []specs.Arch{specs.ArchX86_64, specs.ArchPPC64LE}
	prog = mustCompile(t, cfg)
	expect(t, cfg, prog, x64(unix.SYS_MKDIR), retEPERM)
	expect(t, cfg, prog, x32(unix.SYS_MKDIR), retKillP)
	expect(t, cfg, prog, x32(unix.SYS_GETPID), retKillP)
	expect(t, cfg, prog, i386(20), retKillP)
	expect(t, cfg, prog, seccompData{arch: unix.AUDIT_ARCH_PPC64LE, nr: 1}, retKillP)
}

// TestENOSYSStub checks runc's ENOSYS answer for syscalls newer than the
// profile.
func TestENOSYSStub(t *testing.T) {
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write", "close"}, Action: specs.ActAllow},
			{Names: []string{"openat"}, Action: specs.ActErrno}, // dropped, yet counts
		},
	}
	prog := mustCompile(t, cfg)
	enosys := retErrno(unix.ENOSYS)
	expect(t, cfg, prog, x64(unix.SYS_READ), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_MKDIR), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_OPENAT), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_OPENAT+1), enosys)
	expect(t, cfg, prog, x64(0x3fffffff), enosys)
	expect(t, cfg, prog, x64(0xffffffff), retEPERM)
	expect(t, cfg, prog, i386(295), retEPERM) // openat on i386
	expect(t, cfg, prog, i386(296), enosys)
	expect(t, cfg, prog, i386(6), retAllow) // close

	// An allowing default needs no stub.
	cfg.DefaultAction = specs.ActLog
	prog = mustCompile(t, cfg)
	expect(t, cfg, prog, x64(unix.SYS_OPENAT+1), unix.SECCOMP_RET_LOG)
}

// TestTrivialConditions: conditions decided at compile time, in particular
// values beyond 32 bits on i386.
func TestTrivialConditions(t *testing.T) {
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getppid"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x100000000, Op: specs.OpLessThan}}},
			{Names: []string{"getpid"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpGreaterEqual}}},
			{Names: []string{"gettid"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpLessThan}}},
			{Names: []string{"getuid"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x100000001, Op: specs.OpEqualTo}}},
		},
	}
	prog := mustCompile(t, cfg)
	for _, arg := range []uint64{0, 1, 0xffffffff, 0x100000001, 0xffffffffffffffff} {
		expect(t, cfg, prog, x64(unix.SYS_GETPPID, arg), refEval(t, cfg, x64(unix.SYS_GETPPID, arg)))
		expect(t, cfg, prog, i386(64, arg), retEPERM) // getppid: always below 2^32
		expect(t, cfg, prog, x64(unix.SYS_GETPID, arg), retEPERM)
		expect(t, cfg, prog, x64(unix.SYS_GETTID, arg), retAllow)
		expect(t, cfg, prog, i386(24, arg), retAllow) // getuid: never 2^32+1
	}
	expect(t, cfg, prog, x64(unix.SYS_GETUID, 0x100000001), retEPERM)
}

func loadDockerLike(t *testing.T) *specs.LinuxSeccomp {
	t.Helper()
	b, err := os.ReadFile("testdata/docker-like.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg specs.LinuxSeccomp
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// TestDockerLikeProfile compiles a profile the size of Docker's default
// (about 380 names, three ABIs, argument rules) and checks its size, its
// behaviour and how many instructions common syscalls cost.
func TestDockerLikeProfile(t *testing.T) {
	cfg := loadDockerLike(t)
	if n := len(cfg.Syscalls[0].Names); n < 350 {
		t.Fatalf("allow rule has only %d names", n)
	}
	prog := mustCompile(t, cfg)
	t.Logf("Docker-like profile: %d instructions", len(prog))
	if len(prog) > 1000 {
		t.Errorf("program has %d instructions; expected well under the 4096 limit", len(prog))
	}

	expect(t, cfg, prog, x64(unix.SYS_READ), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_MKDIRAT), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_MOUNT), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_UNSHARE), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_CLONE3), retErrno(unix.ENOSYS))
	expect(t, cfg, prog, x64(unix.SYS_CLONE, uint64(unix.SIGCHLD)), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_CLONE, unix.CLONE_NEWNS|uint64(unix.SIGCHLD)), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_CLONE, unix.CLONE_NEWUSER), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_FS|unix.CLONE_FILES|unix.CLONE_SIGHAND|unix.CLONE_THREAD), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_SOCKET, unix.AF_INET), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_SOCKET, unix.AF_VSOCK), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_SOCKET, 0x100000000|unix.AF_VSOCK), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_PERSONALITY, 0xffffffff), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_PERSONALITY, 0x20008), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_PERSONALITY, 0x1ffffffff), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_PERSONALITY, 0x400000), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_VHANGUP, 1), retErrno(unix.EINVAL))
	expect(t, cfg, prog, x64(unix.SYS_VHANGUP, 2), retErrno(unix.EINVAL))
	expect(t, cfg, prog, x64(unix.SYS_VHANGUP, 3), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_PTRACE, 2, 100), retAllow)
	expect(t, cfg, prog, x64(unix.SYS_PTRACE, 16, 100), retEPERM)
	expect(t, cfg, prog, x64(unix.SYS_PTRACE, 2, 1), retEPERM)
	expect(t, cfg, prog, x64(400), retEPERM)                    // hole in the table, below the highest name
	expect(t, cfg, prog, x64(1000), retErrno(unix.ENOSYS))      // newer than the profile
	expect(t, cfg, prog, i386(5), retAllow)                     // open
	expect(t, cfg, prog, i386(21), retEPERM)                    // mount
	expect(t, cfg, prog, i386(102, 1), retAllow)                // socketcall is allowed as such
	expect(t, cfg, prog, i386(359, unix.AF_VSOCK), retEPERM)    // socket
	expect(t, cfg, prog, i386(120, unix.CLONE_NEWNS), retEPERM) // clone
	expect(t, cfg, prog, x32(unix.SYS_READ), retAllow)
	expect(t, cfg, prog, x32(520), retAllow) // execve
	expect(t, cfg, prog, x32(unix.SYS_MOUNT), retEPERM)
	expect(t, cfg, prog, x32(2000), retErrno(unix.ENOSYS))

	// Everything else: against the reference.
	r := rand.New(rand.NewSource(3))
	for i := 0; i < 20000; i++ {
		d := seccompData{nr: uint32(r.Intn(600)), arch: unix.AUDIT_ARCH_X86_64}
		switch r.Intn(4) {
		case 0:
			d.arch = unix.AUDIT_ARCH_I386
		case 1:
			d.nr |= x32SyscallBit
		}
		for j := range d.args {
			d.args[j] = edgeValues[r.Intn(len(edgeValues))] + uint64(r.Intn(3))
		}
		if got, want := mustRun(t, prog, d), refEval(t, cfg, d); got != want {
			t.Fatalf("input %+v: got %#x, want %#x", d, got, want)
		}
	}

	// The hot path: a binary search, not a scan.
	worst := 0
	for _, nr := range []uint32{unix.SYS_READ, unix.SYS_WRITE, unix.SYS_FUTEX, unix.SYS_EPOLL_WAIT, unix.SYS_CLOCK_GETTIME, unix.SYS_OPENAT} {
		_, steps, err := runBPF(prog, x64(nr))
		if err != nil {
			t.Fatal(err)
		}
		worst = max(worst, steps)
	}
	t.Logf("common x86_64 syscalls take at most %d instructions", worst)
	if worst > 16 {
		t.Errorf("common syscalls take up to %d instructions", worst)
	}
}

func mustRun(t *testing.T, prog []unix.SockFilter, d seccompData) uint32 {
	t.Helper()
	got, _, err := runBPF(prog, d)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestBigProfileFits: every known x86_64 syscall with its own argument
// rule and errno still compiles under the kernel's limit, with long jumps.
func TestBigProfileFits(t *testing.T) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX32}}
	names := make([]string, 0, len(syscallsX86_64))
	for name := range syscallsX86_64 {
		names = append(names, name)
	}
	slices.Sort(names)
	i := 0
	for _, name := range names {
		i++
		cfg.Syscalls = append(cfg.Syscalls, specs.LinuxSyscall{
			Names: []string{name}, Action: specs.ActErrno, ErrnoRet: uintp(uint(i % 4000)),
			Args: []specs.LinuxSeccompArg{{Index: uint(i % 6), Value: uint64(i) << 20, Op: specs.OpGreaterThan}},
		})
	}
	prog := mustCompile(t, cfg)
	t.Logf("%d rules with conditions: %d instructions", len(cfg.Syscalls), len(prog))
	r := rand.New(rand.NewSource(4))
	inputs := randomInputs(r, cfg, 5000)
	for nr := uint32(0); nr < 600; nr++ {
		for _, d := range []seccompData{x64(nr), x32(nr)} {
			v := uint64(nr) << 20
			for _, arg := range []uint64{v - 1, v, v + 1, 0x100000000} {
				for j := range d.args {
					d.args[j] = arg
				}
				inputs = append(inputs, d)
			}
		}
	}
	for _, d := range inputs {
		if got, want := mustRun(t, prog, d), refEval(t, cfg, d); got != want {
			t.Fatalf("input %+v: got %#x, want %#x", d, got, want)
		}
	}
}

// TestX32SharesX86_64Rules pins the invariant the x32 code relies on: an
// x32 syscall outside the legacy range has exactly the rules of the x86_64
// syscall with the same number.
func TestX32SharesX86_64Rules(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	profiles := []*specs.LinuxSeccomp{loadDockerLike(t)}
	for i := 0; i < 200; i++ {
		p := randomProfile(r, 10)
		p.Architectures = append(p.Architectures, specs.ArchX32)
		profiles = append(profiles, p)
	}
	for i, cfg := range profiles {
		cc, err := resolve(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for nr, s32 := range cc.tables[abiX32] {
			n := nr &^ x32SyscallBit
			if n >= x32LegacyFirst && n < x32LegacyEnd {
				continue
			}
			s64, ok := cc.tables[abiX86_64][n]
			if !ok {
				t.Fatalf("profile %d: x32 %#x has rules, x86_64 %d none", i, nr, n)
			}
			d32, d64 := decide(s32, true, cc.defaultRet), decide(s64, true, cc.defaultRet)
			if d32.key() != d64.key() {
				t.Fatalf("profile %d: x32 %#x and x86_64 %d differ: %s vs %s", i, nr, n, d32.key(), d64.key())
			}
		}
		for n := range cc.tables[abiX86_64] {
			if _, ok := cc.tables[abiX32][x32SyscallBit|n]; !ok {
				t.Fatalf("profile %d: x86_64 %d has rules, x32 none", i, n)
			}
		}
	}
}

// TestDeterministic: the same profile always gives the same program, so
// programs can be compared and cached.
func TestDeterministic(t *testing.T) {
	cfg := loadDockerLike(t)
	first := mustCompile(t, cfg)
	for i := 0; i < 20; i++ {
		if again := mustCompile(t, cfg); !slices.Equal(first, again) {
			t.Fatalf("compilation %d differs", i)
		}
	}
}
