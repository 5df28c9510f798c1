package seccomp

import (
	"fmt"
	"sort"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data (little-endian, as on every ABI filtered
// here): the low half of an argument comes first.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// cmp is a condition simplified for one ABI.
type cmp struct {
	arg   int
	op    specs.LinuxSeccompOperator
	value uint64 // datum (MASKED_EQ: compared with arg & mask)
	mask  uint64 // MASKED_EQ only
	wide  bool   // compare 64 bits; else only the low 32 bits exist
}

// verdict is what a condition is known to be before the filter runs.
type verdict int

const (
	varies verdict = iota
	alwaysTrue
	neverTrue
)

const max32 = 0xffffffff

// simplify specialises c for an ABI whose arguments are wide (64-bit) or
// not. A 32-bit argument is a zero-extended value, so conditions on values
// beyond 32 bits are decided here and never reach the filter. Conditions
// that always or never hold are reported instead of compiled.
func simplify(c ociCond, wide bool) (cmp, verdict) {
	out := cmp{arg: c.arg, op: c.op, value: c.value, wide: wide}
	limit := uint64(max32)
	if wide {
		limit = ^uint64(0)
	}
	if !wide && c.op != specs.OpMaskedEqual && c.value > limit {
		// The argument is below the value whatever it is.
		switch c.op {
		case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual:
			return out, alwaysTrue
		default:
			return out, neverTrue
		}
	}
	switch c.op {
	case specs.OpLessThan:
		if c.value == 0 {
			return out, neverTrue
		}
	case specs.OpLessEqual:
		if c.value == limit {
			return out, alwaysTrue
		}
	case specs.OpGreaterEqual:
		if c.value == 0 {
			return out, alwaysTrue
		}
	case specs.OpGreaterThan:
		if c.value == limit {
			return out, neverTrue
		}
	case specs.OpMaskedEqual:
		out.mask = c.value & limit
		out.value = c.two
		if out.value&^out.mask != 0 {
			// A bit outside the mask can never be equal.
			return out, neverTrue
		}
		if out.mask == 0 {
			return out, alwaysTrue
		}
	}
	return out, varies
}

// rule is a conditional rule ready for code generation.
type rule struct {
	conds []cmp
	ret   uint32
}

// decision is the complete, simplified handling of one syscall: the rules
// tried in order, then fallback.
type decision struct {
	rules    []rule
	fallback uint32
}

func (d decision) key() string {
	var b strings.Builder
	for _, r := range d.rules {
		fmt.Fprintf(&b, "%x:", r.ret)
		for _, c := range r.conds {
			fmt.Fprintf(&b, "%d,%s,%x,%x,%t;", c.arg, c.op, c.value, c.mask, c.wide)
		}
		b.WriteByte('|')
	}
	fmt.Fprintf(&b, "=%x", d.fallback)
	return b.String()
}

// decide simplifies the rules of one syscall for an ABI.
func decide(s *syscallRules, wide bool, defaultRet uint32) decision {
	if s.hasUncond {
		return decision{fallback: s.uncond}
	}
	d := decision{fallback: defaultRet}
rules:
	for _, r := range s.rules {
		out := rule{ret: r.ret}
		for _, c := range r.conds {
			sc, v := simplify(c, wide)
			switch v {
			case neverTrue:
				continue rules
			case varies:
				out.conds = append(out.conds, sc)
			}
		}
		if len(out.conds) == 0 {
			// Always matches: later rules are unreachable.
			d.fallback = r.ret
			break
		}
		d.rules = append(d.rules, out)
	}
	// A last rule returning what the fallback returns changes nothing.
	for len(d.rules) > 0 && d.rules[len(d.rules)-1].ret == d.fallback {
		d.rules = d.rules[:len(d.rules)-1]
	}
	return d
}

// generator emits the program.
type generator struct {
	asm assembler
	cc  *compileConfig
}

// pool holds the return instructions and rule blocks shared by the code of
// one seccomp_data.arch value; they are emitted after that code so every
// jump to them goes forward.
type pool struct {
	retLabels map[uint32]label
	retOrder  []uint32
	blocks    map[string]label
	pending   []pendingBlock
}

type pendingBlock struct {
	at label
	d  decision
}

func newPool() *pool {
	return &pool{retLabels: map[uint32]label{}, blocks: map[string]label{}}
}

func (g *generator) retLabel(p *pool, val uint32) label {
	l, ok := p.retLabels[val]
	if !ok {
		l = g.asm.newLabel()
		p.retLabels[val] = l
		p.retOrder = append(p.retOrder, val)
	}
	return l
}

// decisionLabel returns where a syscall with decision d jumps to: straight
// to a return when there is nothing to check, else to a (shared) block.
func (g *generator) decisionLabel(p *pool, d decision) label {
	if len(d.rules) == 0 {
		return g.retLabel(p, d.fallback)
	}
	k := d.key()
	l, ok := p.blocks[k]
	if !ok {
		l = g.asm.newLabel()
		p.blocks[k] = l
		p.pending = append(p.pending, pendingBlock{at: l, d: d})
	}
	return l
}

// flush emits the pool's blocks, then its returns.
func (g *generator) flush(p *pool) {
	// Blocks may create return labels, so emit them first.
	for _, b := range p.pending {
		g.asm.bind(b.at)
		g.emitDecision(p, b.d)
	}
	p.pending = nil
	for _, v := range p.retOrder {
		g.asm.bind(p.retLabels[v])
		g.asm.ret(v)
	}
	p.retOrder = nil
}

func (g *generator) emitDecision(p *pool, d decision) {
	for i, r := range d.rules {
		var fail label
		if i == len(d.rules)-1 {
			fail = g.retLabel(p, d.fallback)
		} else {
			fail = g.asm.newLabel()
		}
		for j, c := range r.conds {
			if j == len(r.conds)-1 {
				g.emitCmp(c, g.retLabel(p, r.ret), fail)
				continue
			}
			ok := g.asm.newLabel()
			g.emitCmp(c, ok, fail)
			g.asm.bind(ok)
		}
		if i != len(d.rules)-1 {
			g.asm.bind(fail)
		}
	}
}

// emitCmp emits a condition that continues at ok when it holds and at fail
// otherwise. 64-bit comparisons are done on the high half first; only when
// it is equal does the low half decide.
func (g *generator) emitCmp(c cmp, ok, fail label) {
	a := &g.asm
	offLo := uint32(offArgs + 8*c.arg)
	offHi := offLo + 4
	lo, hi := uint32(c.value), uint32(c.value>>32)
	switch c.op {
	case specs.OpEqualTo:
		if c.wide {
			a.load(offHi)
			a.jump(opJEQ, hi, next, fail)
		}
		a.load(offLo)
		a.jump(opJEQ, lo, ok, fail)
	case specs.OpNotEqual:
		if c.wide {
			a.load(offHi)
			a.jump(opJEQ, hi, next, ok)
		}
		a.load(offLo)
		a.jump(opJEQ, lo, fail, ok)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		if c.wide {
			a.load(offHi)
			if hi != max32 {
				a.jump(opJGT, hi, ok, next)
			}
			if hi != 0 { // else not greater means equal
				a.jump(opJEQ, hi, next, fail)
			}
		}
		a.load(offLo)
		if c.op == specs.OpGreaterThan {
			a.jump(opJGT, lo, ok, fail)
		} else {
			a.jump(opJGE, lo, ok, fail)
		}
	case specs.OpLessThan, specs.OpLessEqual:
		if c.wide {
			a.load(offHi)
			if hi != max32 {
				a.jump(opJGT, hi, fail, next)
			}
			if hi != 0 {
				a.jump(opJEQ, hi, next, ok)
			}
		}
		a.load(offLo)
		if c.op == specs.OpLessThan {
			a.jump(opJGE, lo, fail, ok)
		} else {
			a.jump(opJGT, lo, fail, ok)
		}
	case specs.OpMaskedEqual:
		type half struct {
			off        uint32
			mask, want uint32
		}
		var halves []half
		if c.wide && c.mask>>32 != 0 {
			halves = append(halves, half{offHi, uint32(c.mask >> 32), hi})
		}
		if uint32(c.mask) != 0 {
			halves = append(halves, half{offLo, uint32(c.mask), lo})
		}
		// simplify guarantees a non-zero mask, so there is a last half.
		for i, h := range halves {
			to := next
			if i == len(halves)-1 {
				to = ok
			}
			a.load(h.off)
			switch {
			case h.want == 0:
				// No bit of the mask may be set: one JSET does it.
				a.jump(opJSET, h.mask, fail, to)
			case h.mask == max32:
				a.jump(opJEQ, h.want, to, fail)
			default:
				a.and(h.mask)
				a.jump(opJEQ, h.want, to, fail)
			}
		}
	default:
		a.fail(fmt.Errorf("operator %q reached code generation", c.op))
	}
}

// interval is a run of syscall numbers handled alike, from lo up to the
// next interval's lo.
type interval struct {
	lo     uint32
	target label
}

// intervals splits the syscall numbers [lo, hi] of an ABI into runs with
// the same handling: numbers with rules go to their decision, others to the
// default or, above the profile's highest number when stub is set, to
// ENOSYS. Runs of allowed syscalls merge, so a typical allow-list needs one
// comparison per run rather than per syscall.
func (g *generator) intervals(p *pool, a abi, lo, hi uint32, stub bool) []interval {
	cc := g.cc
	stub = stub && cc.hasNr[a]
	gap := func(nr uint32) label {
		if stub && nr > cc.maxNr[a] {
			return g.retLabel(p, retErrnoENOSYS)
		}
		return g.retLabel(p, cc.defaultRet)
	}
	nrs := make([]uint32, 0, len(cc.tables[a]))
	for nr := range cc.tables[a] {
		if nr >= lo && nr <= hi {
			nrs = append(nrs, nr)
		}
	}
	sort.Slice(nrs, func(i, j int) bool { return nrs[i] < nrs[j] })

	var ivs []interval
	add := func(start uint32, t label) {
		if len(ivs) > 0 && ivs[len(ivs)-1].target == t {
			return
		}
		ivs = append(ivs, interval{lo: start, target: t})
	}
	fill := func(from, to uint32) {
		add(from, gap(from))
		if stub && cc.maxNr[a] >= from && cc.maxNr[a] < to {
			add(cc.maxNr[a]+1, gap(cc.maxNr[a]+1))
		}
	}
	cur := uint64(lo) // first number not yet covered
	for _, nr := range nrs {
		if uint64(nr) > cur {
			fill(uint32(cur), nr-1)
		}
		d := decide(cc.tables[a][nr], a.wideArgs(), cc.defaultRet)
		add(nr, g.decisionLabel(p, d))
		cur = uint64(nr) + 1
	}
	if cur <= uint64(hi) {
		fill(uint32(cur), hi)
	}
	return ivs
}

// entry returns the label a search over ivs starts at: the only target, or
// a new label the caller binds by emitting the search with emitNode.
func (g *generator) entry(ivs []interval) label {
	if len(ivs) == 1 {
		return ivs[0].target
	}
	return g.asm.newLabel()
}

// emitSearch emits the binary search over ivs, with the syscall number in
// the accumulator, at its entry label. Each node is a single JGE and the
// lower half follows it directly.
func (g *generator) emitSearch(ivs []interval, at label) {
	if len(ivs) < 2 {
		return
	}
	g.asm.bind(at)
	mid := len(ivs) / 2
	left, right := ivs[:mid], ivs[mid:]
	lt, rt := g.entry(left), g.entry(right)
	g.asm.jump(opJGE, right[0].lo, rt, lt)
	g.emitSearch(left, lt)
	g.emitSearch(right, rt)
}

// generate lays out the whole program:
//
//	load arch
//	arch == x86_64? -> x86_64
//	arch == i386?   -> i386 (when filtered)
//	return KILL_PROCESS
//	x86_64: load nr; nr >= X32 bit? -> high; search x86_64 numbers
//	high:   nr == -1? -> default; search x32 numbers (or kill)
//	blocks and returns of x86_64 and x32
//	i386:   load nr; search i386 numbers; blocks and returns
func generate(cc *compileConfig) ([]unix.SockFilter, error) {
	g := &generator{cc: cc}
	a := &g.asm
	hasI386, hasX32 := false, false
	for _, x := range cc.abis {
		switch x {
		case abiI386:
			hasI386 = true
		case abiX32:
			hasX32 = true
		}
	}

	x64, i386 := a.newLabel(), a.newLabel()
	a.load(offArch)
	a.jump(opJEQ, unix.AUDIT_ARCH_X86_64, x64, next)
	if hasI386 {
		a.jump(opJEQ, unix.AUDIT_ARCH_I386, i386, next)
	}
	// libseccomp's bad-arch answer is KILL (thread); the process is the
	// safer unit, a half-killed multi-threaded program may hang.
	a.ret(unix.SECCOMP_RET_KILL_PROCESS)

	p := newPool()
	a.bind(x64)
	a.load(offNr)
	high := a.newLabel()
	ivs := g.intervals(p, abiX86_64, 0, x32SyscallBit-1, cc.enosysStub[abiX86_64])
	root := g.entry(ivs)
	a.jump(opJGE, x32SyscallBit, high, root)
	g.emitSearch(ivs, root)

	a.bind(high)
	// Tracers skip a syscall by setting its number to -1, and the filter
	// runs again then; like libseccomp, treat it as an x86_64 syscall
	// without rules rather than as a foreign ABI.
	var x32Ivs []interval
	x32Root := g.retLabel(p, unix.SECCOMP_RET_KILL_PROCESS)
	if hasX32 {
		x32Ivs = g.intervals(p, abiX32, x32SyscallBit, max32-1, cc.enosysStub[abiX32])
		x32Root = g.entry(x32Ivs)
	}
	a.jump(opJEQ, max32, g.retLabel(p, cc.defaultRet), x32Root)
	g.emitSearch(x32Ivs, x32Root)
	g.flush(p)

	if hasI386 {
		q := newPool()
		a.bind(i386)
		ivs := g.intervals(q, abiI386, 0, max32, cc.enosysStub[abiI386])
		root := g.entry(ivs)
		if len(ivs) == 1 {
			a.jumpTo(root)
		} else {
			a.load(offNr)
			g.emitSearch(ivs, root)
		}
		g.flush(q)
	}
	return a.assemble()
}
