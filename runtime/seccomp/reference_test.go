package seccomp

import (
	"math/rand"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// refEval decides a syscall directly from the profile, the slow and obvious
// way, as the reference the compiled program must agree with. It shares only
// the name tables and actionRet with the compiler (both tested on their own).
func refEval(t *testing.T, cfg *specs.LinuxSeccomp, d seccompData) uint32 {
	t.Helper()
	defRet, err := actionRet(cfg.DefaultAction, cfg.DefaultErrnoRet)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[specs.Arch]bool{}
	for _, a := range cfg.Architectures {
		listed[a] = true
	}
	var a abi
	var archName specs.Arch
	switch d.arch {
	case unix.AUDIT_ARCH_X86_64:
		a, archName = abiX86_64, specs.ArchX86_64
		if d.nr >= x32SyscallBit && d.nr != 0xffffffff {
			if !listed[specs.ArchX32] {
				return unix.SECCOMP_RET_KILL_PROCESS
			}
			a, archName = abiX32, specs.ArchX32
		}
	case unix.AUDIT_ARCH_I386:
		if !listed[specs.ArchX86] {
			return unix.SECCOMP_RET_KILL_PROCESS
		}
		a, archName = abiI386, specs.ArchX86
	default:
		return unix.SECCOMP_RET_KILL_PROCESS
	}
	if a == abiX86_64 && d.nr == 0xffffffff {
		return defRet
	}
	arg := func(i int) uint64 {
		if a == abiI386 {
			return d.args[i] & 0xffffffff
		}
		return d.args[i]
	}
	holds := func(c specs.LinuxSeccompArg) bool {
		v := arg(int(c.Index))
		switch c.Op {
		case specs.OpEqualTo:
			return v == c.Value
		case specs.OpNotEqual:
			return v != c.Value
		case specs.OpLessThan:
			return v < c.Value
		case specs.OpLessEqual:
			return v <= c.Value
		case specs.OpGreaterThan:
			return v > c.Value
		case specs.OpGreaterEqual:
			return v >= c.Value
		case specs.OpMaskedEqual:
			return v&c.Value == c.ValueTwo
		}
		t.Fatalf("operator %q", c.Op)
		return false
	}
	type candidate struct {
		conds []specs.LinuxSeccompArg
		ret   uint32
	}
	var cands []candidate
	uncond, haveUncond := uint32(0), false
	var maxNr uint32
	haveMax := false
	for _, sc := range cfg.Syscalls {
		ret, err := actionRet(sc.Action, sc.ErrnoRet)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range sc.Names {
			nrs := a.lookup(name)
			for _, nr := range nrs {
				if !haveMax || nr > maxNr {
					maxNr, haveMax = nr, true
				}
			}
			if ret == defRet {
				continue
			}
			direct := false
			for _, nr := range nrs {
				direct = direct || nr == d.nr
			}
			if direct {
				if len(sc.Args) == 0 {
					if !haveUncond {
						uncond, haveUncond = ret, true
					}
				} else {
					seen := map[uint]bool{}
					split := false
					for _, c := range sc.Args {
						split = split || seen[c.Index]
						seen[c.Index] = true
					}
					if split {
						for _, c := range sc.Args {
							cands = append(cands, candidate{[]specs.LinuxSeccompArg{c}, ret})
						}
					} else {
						cands = append(cands, candidate{sc.Args, ret})
					}
				}
			}
			if a == abiI386 && len(sc.Args) == 0 {
				if call, ok := socketcallCalls[name]; ok && d.nr == 102 {
					cands = append(cands, candidate{[]specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: call}}, ret})
				}
				if call, ok := ipcCalls[name]; ok && d.nr == 117 {
					cands = append(cands, candidate{[]specs.LinuxSeccompArg{{Index: 0, Op: specs.OpMaskedEqual, Value: 0xffff, ValueTwo: call}}, ret})
				}
			}
		}
	}
	if haveUncond {
		return uncond
	}
next:
	for _, c := range cands {
		for _, cond := range c.conds {
			if !holds(cond) {
				continue next
			}
		}
		return c.ret
	}
	switch cfg.DefaultAction {
	case specs.ActAllow, specs.ActLog, specs.ActTrace:
	default:
		if listed[archName] && haveMax && d.nr > maxNr {
			return retErrnoENOSYS
		}
	}
	return defRet
}

// Interesting values for random conditions and arguments: the edges of
// both 32-bit halves.
var edgeValues = []uint64{
	0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 0x100000000,
	0x100000001, 0x1ffffffff, 0xffffffff00000000, 0xfffffffffffffffe,
	0xffffffffffffffff, 0x8000000000000000, 0x123456789abcdef0,
}

var randomNames = []string{
	"read", "write", "openat", "close", "mkdir", "mkdirat", "getppid", "personality",
	"clone", "socket", "bind", "semop", "shmget", "ipc", "socketcall", "execve",
	"ioctl", "preadv2", "waitpid", "_llseek", "arm_fadvise64_64", "no_such_call",
	"exit_group", "listns", "rseq_slice_yield", "uretprobe", "mseal",
}

var randomActions = []specs.LinuxSeccompAction{
	specs.ActAllow, specs.ActErrno, specs.ActKill, specs.ActKillProcess,
	specs.ActTrap, specs.ActTrace, specs.ActLog, specs.ActNotify, specs.ActKillThread,
}

var randomOps = []specs.LinuxSeccompOperator{
	specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
	specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual,
}

func randomValue(r *rand.Rand) uint64 {
	switch r.Intn(4) {
	case 0:
		return r.Uint64()
	case 1:
		return uint64(r.Intn(16))
	default:
		return edgeValues[r.Intn(len(edgeValues))]
	}
}

func uintp(v uint) *uint { return &v }

func randomProfile(r *rand.Rand, nRules int) *specs.LinuxSeccomp {
	cfg := &specs.LinuxSeccomp{DefaultAction: randomActions[r.Intn(len(randomActions)-2)]}
	if cfg.DefaultAction == specs.ActErrno && r.Intn(2) == 0 {
		cfg.DefaultErrnoRet = uintp(uint(r.Intn(40)))
	}
	for _, a := range []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64} {
		if r.Intn(2) == 0 {
			cfg.Architectures = append(cfg.Architectures, a)
		}
	}
	for i := 0; i < nRules; i++ {
		sc := specs.LinuxSyscall{Action: randomActions[r.Intn(len(randomActions))]}
		if (sc.Action == specs.ActErrno || sc.Action == specs.ActTrace) && r.Intn(2) == 0 {
			sc.ErrnoRet = uintp(uint(r.Intn(5)))
		}
		for n := 1 + r.Intn(3); n > 0; n-- {
			sc.Names = append(sc.Names, randomNames[r.Intn(len(randomNames))])
		}
		for n := r.Intn(4); n > 0; n-- {
			sc.Args = append(sc.Args, specs.LinuxSeccompArg{
				Index:    uint(r.Intn(3)),
				Op:       randomOps[r.Intn(len(randomOps))],
				Value:    randomValue(r),
				ValueTwo: randomValue(r),
			})
		}
		cfg.Syscalls = append(cfg.Syscalls, sc)
	}
	return cfg
}

// randomInputs draws syscalls that hit the profile's rules and their edges.
func randomInputs(r *rand.Rand, cfg *specs.LinuxSeccomp, n int) []seccompData {
	var values []uint64
	for _, sc := range cfg.Syscalls {
		for _, a := range sc.Args {
			values = append(values, a.Value, a.Value+1, a.Value-1, a.ValueTwo, a.Value&a.ValueTwo|r.Uint64()&^a.Value)
		}
	}
	values = append(values, edgeValues...)
	pick := func() uint64 {
		if r.Intn(8) == 0 {
			return r.Uint64()
		}
		return values[r.Intn(len(values))]
	}
	var out []seccompData
	for i := 0; i < n; i++ {
		var d seccompData
		var a abi
		switch r.Intn(7) {
		case 0, 1, 2:
			d.arch, a = unix.AUDIT_ARCH_X86_64, abiX86_64
		case 3, 4:
			d.arch, a = unix.AUDIT_ARCH_I386, abiI386
		case 5:
			d.arch, a = unix.AUDIT_ARCH_X86_64, abiX32
		default:
			d.arch, a = unix.AUDIT_ARCH_AARCH64, abiX86_64
		}
		nrs := a.lookup(randomNames[r.Intn(len(randomNames))])
		switch {
		case a == abiI386 && r.Intn(4) == 0:
			d.nr = []uint32{102, 117}[r.Intn(2)]
		case len(nrs) > 0 && r.Intn(6) != 0:
			d.nr = nrs[r.Intn(len(nrs))] + uint32(r.Intn(3)) - 1
		default:
			d.nr = uint32(pick())
		}
		for j := range d.args {
			d.args[j] = pick()
		}
		if d.nr == 102 || d.nr == 117 {
			d.args[0] = uint64(r.Intn(25)) | uint64(r.Intn(2))<<16
		}
		out = append(out, d)
	}
	return out
}

// TestRandomProfilesMatchReference compiles random profiles and checks the
// program against refEval on inputs aimed at every rule's edges.
func TestRandomProfilesMatchReference(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for iter := 0; iter < 400; iter++ {
		cfg := randomProfile(r, 1+r.Intn(12))
		prog, err := Compile(cfg)
		if err != nil {
			t.Fatalf("profile %d: %v\n%+v", iter, err, cfg)
		}
		if err := checkProgram(prog); err != nil {
			t.Fatalf("profile %d: %v", iter, err)
		}
		for _, d := range randomInputs(r, cfg, 300) {
			got, _, err := runBPF(prog, d)
			if err != nil {
				t.Fatalf("profile %d: %v", iter, err)
			}
			if want := refEval(t, cfg, d); got != want {
				t.Fatalf("profile %d, input %+v: program returns %#x, reference %#x\nprofile %+v", iter, d, got, want, cfg)
			}
		}
	}
}

// TestLongJumps builds profiles big enough to need trampolines and checks
// them against the reference.
func TestLongJumps(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	sawTrampoline := false
	for iter := 0; iter < 20; iter++ {
		cfg := randomProfile(r, 150)
		prog, err := Compile(cfg)
		if err != nil {
			t.Fatalf("profile %d: %v", iter, err)
		}
		if err := checkProgram(prog); err != nil {
			t.Fatalf("profile %d: %v", iter, err)
		}
		for _, in := range prog {
			if in.Code == opJA {
				sawTrampoline = true
			}
		}
		for _, d := range randomInputs(r, cfg, 2000) {
			got, _, err := runBPF(prog, d)
			if err != nil {
				t.Fatalf("profile %d: %v", iter, err)
			}
			if want := refEval(t, cfg, d); got != want {
				t.Fatalf("profile %d, input %+v: program returns %#x, reference %#x", iter, d, got, want)
			}
		}
	}
	if !sawTrampoline {
		t.Fatal("no profile needed a long jump; the test does not exercise trampolines")
	}
}
