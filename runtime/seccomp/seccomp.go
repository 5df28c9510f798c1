// Package seccomp compiles OCI seccomp profiles (specs.LinuxSeccomp) into
// classic BPF programs and installs them with seccomp(2), without cgo or
// libseccomp.
//
// The semantics follow what runc does with libseccomp for the same profile:
//
//   - The native architecture (x86_64) is always filtered; architectures
//     adds more. On x86_64 only SCMP_ARCH_X86 and SCMP_ARCH_X32 can ever be
//     reported by the kernel, every other name is accepted and ignored.
//     A syscall from an architecture outside the set is answered with
//     SECCOMP_RET_KILL_PROCESS.
//   - Syscall names unknown for an architecture are skipped for it (Docker's
//     profile names syscalls of many architectures).
//   - A rule whose action equals the default action is dropped. For one
//     syscall the first unconditional rule wins over every conditional rule;
//     conditional rules are tried in profile order, the first whose
//     conditions all hold decides.
//   - Conditions of one rule are ANDed, except when two conditions name the
//     same argument: then, like runc, every condition becomes a rule of its
//     own (ORed).
//   - SCMP_CMP_MASKED_EQ matches when (arg & value) == valueTwo.
//   - Arguments are compared as unsigned 64-bit values on x86_64 and x32
//     (whose syscalls see full 64-bit registers) and as the 32-bit values the
//     kernel really uses on i386.
//   - An x32 name matches both its x86_64 number and, for the syscalls x32
//     numbers differently (512-547), that number too, all with the x32 bit:
//     the extra numbers are ENOSYS for the kernel, so covering them closes
//     any gap. On i386, unconditional rules on socket and SysV IPC syscalls
//     also cover the socketcall(2) and ipc(2) sub-calls, as in libseccomp.
//   - errnoRet is only accepted for SCMP_ACT_ERRNO and SCMP_ACT_TRACE (both
//     default to EPERM), as the spec requires; SCMP_ACT_NOTIFY cannot be
//     the default action (as in runc).
//   - Like runc, when the default action refuses syscalls (anything but
//     ALLOW, LOG and TRACE), syscall numbers above the highest one the profile
//     names for an architecture listed in architectures fail with ENOSYS, so
//     that programs newer than the profile fall back to older syscalls
//     instead of failing hard.
package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxArgs is the number of syscall arguments seccomp_data carries.
const maxArgs = 6

// defaultErrno is used by SCMP_ACT_ERRNO and SCMP_ACT_TRACE without an
// errnoRet: the OCI spec and runc (which sets it for TRACE too) both use EPERM.
const defaultErrno = uint32(unix.EPERM)

// retErrnoENOSYS answers syscalls newer than the profile, see Compile.
const retErrnoENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)

// actionBases maps OCI action names to the kernel's return values; the
// 16-bit data part is filled in for ERRNO and TRACE.
var actionBases = map[specs.LinuxSeccompAction]uint32{
	// libseccomp's SCMP_ACT_KILL has always meant killing the thread.
	specs.ActKill:        unix.SECCOMP_RET_KILL_THREAD,
	specs.ActKillThread:  unix.SECCOMP_RET_KILL_THREAD,
	specs.ActKillProcess: unix.SECCOMP_RET_KILL_PROCESS,
	specs.ActTrap:        unix.SECCOMP_RET_TRAP,
	specs.ActErrno:       unix.SECCOMP_RET_ERRNO,
	specs.ActTrace:       unix.SECCOMP_RET_TRACE,
	specs.ActAllow:       unix.SECCOMP_RET_ALLOW,
	specs.ActLog:         unix.SECCOMP_RET_LOG,
	specs.ActNotify:      unix.SECCOMP_RET_USER_NOTIF,
}

var knownOperators = map[specs.LinuxSeccompOperator]bool{
	specs.OpNotEqual:     true,
	specs.OpLessThan:     true,
	specs.OpLessEqual:    true,
	specs.OpEqualTo:      true,
	specs.OpGreaterEqual: true,
	specs.OpGreaterThan:  true,
	specs.OpMaskedEqual:  true,
}

// knownArchs lists every architecture name of the OCI spec. All are accepted
// so that one profile can serve several platforms, as with runc.
var knownArchs = []specs.Arch{
	specs.ArchX86, specs.ArchX86_64, specs.ArchX32, specs.ArchARM, specs.ArchAARCH64,
	specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL,
	specs.ArchMIPSEL64, specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64,
	specs.ArchPPC64LE, specs.ArchS390, specs.ArchS390X, specs.ArchPARISC,
	specs.ArchPARISC64, specs.ArchRISCV64, specs.ArchLOONGARCH64, specs.ArchM68K,
	specs.ArchSH, specs.ArchSHEB,
}

// filterFlags maps the OCI flag names to seccomp(2) filter flags. The spec
// defines only three names; the others are the kernel's own flag names,
// which runc also accepts.
var filterFlags = map[specs.LinuxSeccompFlag]uintptr{
	"SECCOMP_FILTER_FLAG_TSYNC":            unix.SECCOMP_FILTER_FLAG_TSYNC,
	specs.LinuxSeccompFlagLog:              unix.SECCOMP_FILTER_FLAG_LOG,
	specs.LinuxSeccompFlagSpecAllow:        unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
	"SECCOMP_FILTER_FLAG_NEW_LISTENER":     unix.SECCOMP_FILTER_FLAG_NEW_LISTENER,
	"SECCOMP_FILTER_FLAG_TSYNC_ESRCH":      unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH,
	specs.LinuxSeccompFlagWaitKillableRecv: unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
}

// KnownActions returns the OCI action names Compile accepts.
func KnownActions() []string {
	out := make([]string, 0, len(actionBases))
	for a := range actionBases {
		out = append(out, string(a))
	}
	sort.Strings(out)
	return out
}

// KnownArchs returns the OCI architecture names Compile accepts.
func KnownArchs() []string {
	out := make([]string, 0, len(knownArchs))
	for _, a := range knownArchs {
		out = append(out, string(a))
	}
	sort.Strings(out)
	return out
}

// KnownFlags returns the seccomp filter flag names Load accepts.
func KnownFlags() []string {
	out := make([]string, 0, len(filterFlags))
	for f := range filterFlags {
		out = append(out, string(f))
	}
	sort.Strings(out)
	return out
}

// KnownOperators returns the OCI argument operators Compile accepts.
func KnownOperators() []string {
	out := make([]string, 0, len(knownOperators))
	for op := range knownOperators {
		out = append(out, string(op))
	}
	sort.Strings(out)
	return out
}

// actionRet converts an OCI action and optional errno to the filter's return
// value.
func actionRet(act specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	base, ok := actionBases[act]
	if !ok {
		if act == "" {
			return 0, errors.New("action is empty")
		}
		return 0, fmt.Errorf("unknown action %q (known: %s)", act, strings.Join(KnownActions(), ", "))
	}
	if act != specs.ActErrno && act != specs.ActTrace {
		// The spec requires an error: silently ignoring the errno would
		// hide a profile bug.
		if errnoRet != nil {
			return 0, fmt.Errorf("errnoRet %d is not supported by action %s (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one)", *errnoRet, act)
		}
		return base, nil
	}
	data := defaultErrno
	if errnoRet != nil {
		// libseccomp truncates to 16 bits; refuse instead, a wrapped value
		// would return a different errno than the profile asks for.
		if *errnoRet > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("errnoRet %d of action %s does not fit the 16-bit return data", *errnoRet, act)
		}
		data = uint32(*errnoRet)
	}
	return base | data, nil
}

// ociCond is one validated OCI argument condition.
type ociCond struct {
	arg   int
	op    specs.LinuxSeccompOperator
	value uint64 // the datum; for MASKED_EQ the mask
	two   uint64 // MASKED_EQ: the datum compared with (arg & value)
}

// condGroups validates args and returns the condition sets a rule stands for:
// one set with every condition (ANDed), or, when an argument index repeats,
// one set per condition (ORed), which is what runc does because libseccomp
// cannot AND two conditions on the same argument.
func condGroups(args []specs.LinuxSeccompArg) ([][]ociCond, error) {
	conds := make([]ociCond, 0, len(args))
	var seen [maxArgs]bool
	repeated := false
	for i, a := range args {
		if a.Index >= maxArgs {
			return nil, fmt.Errorf("args[%d]: index %d out of range (syscalls have %d arguments)", i, a.Index, maxArgs)
		}
		if !knownOperators[a.Op] {
			return nil, fmt.Errorf("args[%d]: unknown operator %q (known: %s)", i, a.Op, strings.Join(KnownOperators(), ", "))
		}
		if seen[a.Index] {
			repeated = true
		}
		seen[a.Index] = true
		conds = append(conds, ociCond{arg: int(a.Index), op: a.Op, value: a.Value, two: a.ValueTwo})
	}
	if !repeated {
		return [][]ociCond{conds}, nil
	}
	groups := make([][]ociCond, len(conds))
	for i, c := range conds {
		groups[i] = []ociCond{c}
	}
	return groups, nil
}

// compileConfig is the validated, architecture-resolved form of a profile.
type compileConfig struct {
	defaultRet uint32
	// abis are the syscall ABIs to filter, native first.
	abis []abi
	// enosysStub reports for each ABI whether syscalls above the highest
	// one the profile names get ENOSYS.
	enosysStub map[abi]bool
	// tables holds the rules per ABI and syscall number.
	tables map[abi]map[uint32]*syscallRules
	// maxNr is the highest syscall number the profile names per ABI.
	maxNr map[abi]uint32
	hasNr map[abi]bool
}

// rawRule is a conditional rule before architecture-specific simplification.
type rawRule struct {
	conds []ociCond
	ret   uint32
}

// syscallRules collects everything the profile says about one syscall
// number of one ABI.
type syscallRules struct {
	hasUncond bool
	uncond    uint32
	rules     []rawRule
}

func (s *syscallRules) add(groups [][]ociCond, ret uint32) {
	if len(groups) == 1 && len(groups[0]) == 0 {
		// libseccomp keeps the first unconditional rule of a syscall and
		// ignores later ones.
		if !s.hasUncond {
			s.hasUncond, s.uncond = true, ret
		}
		return
	}
	for _, g := range groups {
		s.rules = append(s.rules, rawRule{conds: g, ret: ret})
	}
}

// Compile translates an OCI seccomp config to a classic BPF program for the
// native architecture, ready for Load. Unknown syscall names are skipped;
// invalid actions, operators, argument indexes, architectures or flags are
// errors.
func Compile(cfg *specs.LinuxSeccomp) ([]unix.SockFilter, error) {
	cc, err := resolve(cfg)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	prog, err := generate(cc)
	if err != nil {
		return nil, fmt.Errorf("seccomp: generating BPF: %w", err)
	}
	if len(prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: program has %d instructions, the kernel accepts at most %d", len(prog), unix.BPF_MAXINSNS)
	}
	return prog, nil
}

// resolve validates cfg and sorts its rules by ABI and syscall number.
func resolve(cfg *specs.LinuxSeccomp) (*compileConfig, error) {
	if cfg == nil {
		return nil, errors.New("nil config")
	}
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("native architecture %s is not supported (only amd64)", runtime.GOARCH)
	}
	if cfg.DefaultAction == "" {
		return nil, errors.New("defaultAction is required")
	}
	if cfg.DefaultAction == specs.ActNotify {
		// Every syscall the runtime makes after loading the filter, e.g.
		// handing the listener fd to the agent, would wait for that agent.
		return nil, errors.New("defaultAction SCMP_ACT_NOTIFY is not supported: the runtime could not pass on the listener")
	}
	defRet, err := actionRet(cfg.DefaultAction, cfg.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	for _, f := range cfg.Flags {
		if _, ok := filterFlags[f]; !ok {
			return nil, fmt.Errorf("unknown flag %q (known: %s)", f, strings.Join(KnownFlags(), ", "))
		}
	}

	cc := &compileConfig{
		defaultRet: defRet,
		abis:       []abi{abiX86_64},
		enosysStub: map[abi]bool{},
		tables:     map[abi]map[uint32]*syscallRules{},
		maxNr:      map[abi]uint32{},
		hasNr:      map[abi]bool{},
	}
	listed := map[abi]bool{}
	for i, a := range cfg.Architectures {
		known := false
		for _, k := range knownArchs {
			if a == k {
				known = true
				break
			}
		}
		if !known {
			return nil, fmt.Errorf("architectures[%d]: unknown architecture %q (known: %s)", i, a, strings.Join(KnownArchs(), ", "))
		}
		switch a {
		case specs.ArchX86_64:
			listed[abiX86_64] = true
		case specs.ArchX86:
			if !listed[abiI386] {
				cc.abis = append(cc.abis, abiI386)
			}
			listed[abiI386] = true
		case specs.ArchX32:
			if !listed[abiX32] {
				cc.abis = append(cc.abis, abiX32)
			}
			listed[abiX32] = true
		}
		// Any other architecture cannot issue syscalls on an x86_64
		// kernel, so it needs no code.
	}
	// runc only adds its ENOSYS stub for the architectures a profile lists
	// and only when the default action refuses syscalls.
	switch cfg.DefaultAction {
	case specs.ActAllow, specs.ActLog, specs.ActTrace:
	default:
		for a := range listed {
			cc.enosysStub[a] = true
		}
	}
	for _, a := range cc.abis {
		cc.tables[a] = map[uint32]*syscallRules{}
	}

	for i, sc := range cfg.Syscalls {
		if err := cc.addRule(sc); err != nil {
			return nil, fmt.Errorf("syscalls[%d] %v: %w", i, sc.Names, err)
		}
	}
	return cc, nil
}

// addRule validates one OCI rule and records it under every syscall number
// its names resolve to.
func (cc *compileConfig) addRule(sc specs.LinuxSyscall) error {
	if len(sc.Names) == 0 {
		return errors.New("names is empty")
	}
	ret, err := actionRet(sc.Action, sc.ErrnoRet)
	if err != nil {
		return err
	}
	groups, err := condGroups(sc.Args)
	if err != nil {
		return err
	}
	for _, name := range sc.Names {
		if name == "" {
			return errors.New("empty syscall name")
		}
		for _, a := range cc.abis {
			nrs := a.lookup(name)
			for _, nr := range nrs {
				// Like runc, the ENOSYS limit counts every name, even of
				// rules dropped below.
				if !cc.hasNr[a] || nr > cc.maxNr[a] {
					cc.maxNr[a], cc.hasNr[a] = nr, true
				}
			}
			if ret == cc.defaultRet {
				// Redundant: the default does the same.
				continue
			}
			table := cc.tables[a]
			for _, nr := range nrs {
				if table[nr] == nil {
					table[nr] = &syscallRules{}
				}
				table[nr].add(groups, ret)
			}
			if len(sc.Args) == 0 {
				// i386 programs may reach socket and SysV IPC syscalls through
				// the socketcall(2) and ipc(2) multiplexers; apply the rule
				// there too, as libseccomp does. Conditions cannot be
				// applied: the real arguments are behind a pointer.
				if mux, ok := a.multiplexed(name); ok {
					if table[mux.nr] == nil {
						table[mux.nr] = &syscallRules{}
					}
					table[mux.nr].add([][]ociCond{{mux.cond}}, ret)
				}
			}
		}
	}
	return nil
}
