package seccomp

import (
	"fmt"
	"sort"

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

// x32 numbers some of its syscalls from 512 to 547 (see x32Legacy), numbers
// x86_64 leaves unused.
const (
	x32LegacyFirst = 512
	x32LegacyEnd   = 548 // first number after the range
)

// destKind tells what a run of syscall numbers leads to.
type destKind int

const (
	// destRet returns ret.
	destRet destKind = iota
	// destDecision runs the rules of decision.
	destDecision
	// destSplit returns ret for an x86_64 syscall and x32Ret for an x32
	// one: the x86_64 search also serves x32, and the two may differ on
	// numbers without rules (the ENOSYS answer depends on the ABI).
	destSplit
)

type dest struct {
	kind   destKind
	ret    uint32
	x32Ret uint32
	d      decision
	id     string
}

func retDest(v uint32) dest { return dest{kind: destRet, ret: v, id: fmt.Sprintf("r%x", v)} }

// interval is a run of syscall numbers handled alike, from lo up to the
// next interval's lo.
type interval struct {
	lo   uint32
	dest dest
}

// generator emits the program.
type generator struct {
	asm assembler
	cc  *compileConfig
}

// pool holds what the code for one seccomp_data.arch value shares: return
// instructions, blocks used by several searches or intervals, and split
// handlers. It is emitted after that code, so every jump to it goes forward.
type pool struct {
	rets     map[uint32]label
	retOrder []uint32
	shared   map[string]label
	pending  []dest
	// uses counts the intervals leading to each destination; a decision
	// used once is emitted inside the search, next to its only jump.
	uses map[string]int
}

func newPool(searches ...[]interval) *pool {
	p := &pool{rets: map[uint32]label{}, shared: map[string]label{}, uses: map[string]int{}}
	for _, ivs := range searches {
		for _, iv := range ivs {
			p.uses[iv.dest.id]++
		}
	}
	return p
}

func (g *generator) retLabel(p *pool, v uint32) label {
	l, ok := p.rets[v]
	if !ok {
		l = g.asm.newLabel()
		p.rets[v] = l
		p.retOrder = append(p.retOrder, v)
	}
	return l
}

// inline reports whether the search emits dest itself.
func (p *pool) inline(d dest) bool {
	return d.kind == destDecision && p.uses[d.id] == 1
}

// label returns the pool label for a destination that is not inlined.
func (g *generator) label(p *pool, d dest) label {
	if d.kind == destRet {
		return g.retLabel(p, d.ret)
	}
	l, ok := p.shared[d.id]
	if !ok {
		l = g.asm.newLabel()
		p.shared[d.id] = l
		p.pending = append(p.pending, d)
	}
	return l
}

// flush emits the pool: shared blocks and handlers, then returns.
func (g *generator) flush(p *pool) {
	for _, d := range p.pending {
		g.asm.bind(p.shared[d.id])
		g.emitDest(p, d)
	}
	p.pending = nil
	for _, v := range p.retOrder {
		g.asm.bind(p.rets[v])
		g.asm.ret(v)
	}
	p.retOrder = nil
}

// emitDest emits a decision block or a split handler.
func (g *generator) emitDest(p *pool, d dest) {
	a := &g.asm
	switch d.kind {
	case destDecision:
		g.emitDecision(d.d)
	case destSplit:
		// The search ran on the number without the x32 bit; the original
		// is still in seccomp_data. Only x32 syscalls take the x86_64
		// search with a number at or above the bit.
		a.load(offNr)
		a.jump(opJGE, x32SyscallBit, g.retLabel(p, d.x32Ret), g.retLabel(p, d.ret))
	default:
		a.fail(fmt.Errorf("destination kind %d has no code", d.kind))
	}
}

// emitDecision emits the rules of one syscall, each jumping to its own
// returns placed right after them: blocks sit far from the shared returns,
// and one local return is cheaper than a long jump per condition.
func (g *generator) emitDecision(d decision) {
	a := &g.asm
	rets := map[uint32]label{}
	var order []uint32
	ret := func(v uint32) label {
		l, ok := rets[v]
		if !ok {
			l = a.newLabel()
			rets[v] = l
			order = append(order, v)
		}
		return l
	}
	for i, r := range d.rules {
		var fail label
		if i == len(d.rules)-1 {
			fail = ret(d.fallback)
		} else {
			fail = a.newLabel()
		}
		for j, c := range r.conds {
			if j == len(r.conds)-1 {
				g.emitCmp(c, ret(r.ret), fail)
				continue
			}
			ok := a.newLabel()
			g.emitCmp(c, ok, fail)
			a.bind(ok)
		}
		if i != len(d.rules)-1 {
			a.bind(fail)
		}
	}
	for _, v := range order {
		a.bind(rets[v])
		a.ret(v)
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

// gapRule says what a syscall number without rules gets: the default, or
// ENOSYS above the highest number a profile names (see Compile).
type gapRule struct {
	stub bool
	max  uint32
}

func (cc *compileConfig) gapRule(a abi) gapRule {
	return gapRule{stub: cc.enosysStub[a] && cc.hasNr[a], max: cc.maxNr[a]}
}

func (r gapRule) ret(nr uint32, def uint32) uint32 {
	if r.stub && nr > r.max {
		return retErrnoENOSYS
	}
	return def
}

// intervals splits the numbers [lo, hi] into runs with the same handling.
// Numbers with rules go to their decision (looked up by rules), the others
// to gap. gap only changes at the numbers in cuts, so each gap is split
// there. Runs of equally handled numbers merge, so a typical allow-list
// needs one comparison per run rather than one per syscall.
func (g *generator) intervals(rules func(nr uint32) (decision, bool), nrs []uint32, lo, hi uint32, gap func(nr uint32) dest, cuts []uint32) []interval {
	var ivs []interval
	add := func(start uint32, d dest) {
		if len(ivs) > 0 && ivs[len(ivs)-1].dest.id == d.id {
			return
		}
		ivs = append(ivs, interval{lo: start, dest: d})
	}
	fill := func(from, to uint32) {
		add(from, gap(from))
		for _, c := range cuts {
			if c > from && c <= to {
				add(c, gap(c))
			}
		}
	}
	sort.Slice(nrs, func(i, j int) bool { return nrs[i] < nrs[j] })
	sort.Slice(cuts, func(i, j int) bool { return cuts[i] < cuts[j] })
	cur := uint64(lo) // first number not yet covered
	for _, nr := range nrs {
		if nr < lo || nr > hi {
			continue
		}
		d, ok := rules(nr)
		if !ok {
			continue
		}
		if uint64(nr) > cur {
			fill(uint32(cur), nr-1)
		}
		if len(d.rules) == 0 {
			add(nr, retDest(d.fallback))
		} else {
			add(nr, dest{kind: destDecision, d: d, id: "d" + d.key()})
		}
		cur = uint64(nr) + 1
	}
	if cur <= uint64(hi) {
		fill(uint32(cur), hi)
	}
	return ivs
}

// tableRules adapts an ABI's rule table for intervals. The search runs on
// table numbers minus add (the x32 legacy search on numbers without the x32
// bit).
func (g *generator) tableRules(a abi, add uint32) (func(uint32) (decision, bool), []uint32) {
	table := g.cc.tables[a]
	nrs := make([]uint32, 0, len(table))
	for nr := range table {
		nrs = append(nrs, nr-add)
	}
	return func(nr uint32) (decision, bool) {
		s, ok := table[nr+add]
		if !ok {
			return decision{}, false
		}
		return decide(s, a.wideArgs(), g.cc.defaultRet), true
	}, nrs
}

// entry returns the label a search over ivs starts at and whether the
// search must be emitted there (else the label belongs to the pool).
func (g *generator) entry(p *pool, ivs []interval) (label, bool) {
	if len(ivs) == 1 && !p.inline(ivs[0].dest) {
		return g.label(p, ivs[0].dest), false
	}
	return g.asm.newLabel(), true
}

// emitSearch emits, at label at, the binary search over ivs with the
// syscall number in the accumulator. Each node is a single JGE; its lower
// half follows it directly. A decision used only here is emitted in place.
func (g *generator) emitSearch(p *pool, ivs []interval, at label) {
	g.asm.bind(at)
	if len(ivs) == 1 {
		g.emitDest(p, ivs[0].dest)
		return
	}
	mid := len(ivs) / 2
	left, right := ivs[:mid], ivs[mid:]
	lt, emitLeft := g.entry(p, left)
	rt, emitRight := g.entry(p, right)
	g.asm.jump(opJGE, right[0].lo, rt, lt)
	if emitLeft {
		g.emitSearch(p, left, lt)
	}
	if emitRight {
		g.emitSearch(p, right, rt)
	}
}

// generate lays out the whole program:
//
//	load arch
//	arch == x86_64? -> x86_64
//	arch == i386?   -> i386 (when filtered)
//	return KILL_PROCESS
//	x86_64: load nr
//	        nr < X32 bit? -> search
//	        nr == -1? -> default
//	        no x32: return KILL_PROCESS
//	        x32: clear the bit; 512 <= nr < 548? -> x32 legacy search
//	search: x86_64 numbers (x32 uses the same numbers for the rest)
//	x32 legacy search; shared blocks and returns
//	i386:   load nr; search i386 numbers; shared blocks and returns
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
	def := cc.defaultRet

	x64Label, i386Label := a.newLabel(), a.newLabel()
	a.load(offArch)
	a.jump(opJEQ, unix.AUDIT_ARCH_X86_64, x64Label, next)
	if hasI386 {
		a.jump(opJEQ, unix.AUDIT_ARCH_I386, i386Label, next)
	}
	// libseccomp's bad-arch answer is KILL (thread); the process is the
	// safer unit, a half-killed multi-threaded program may hang.
	a.ret(unix.SECCOMP_RET_KILL_PROCESS)

	// x86_64 and x32. An x32 syscall outside the legacy range has the
	// number of the x86_64 syscall of the same name plus the x32 bit and
	// exactly the same rules (see abi.lookup), so it runs the x86_64
	// search with the bit cleared; only numbers without rules may differ.
	gap64, gap32 := cc.gapRule(abiX86_64), cc.gapRule(abiX32)
	gapMain := func(nr uint32) dest {
		r64 := gap64.ret(nr, def)
		if !hasX32 {
			return retDest(r64)
		}
		r32 := gap32.ret(x32SyscallBit|nr, def)
		if r32 == r64 {
			return retDest(r64)
		}
		return dest{kind: destSplit, ret: r64, x32Ret: r32, id: fmt.Sprintf("s%x,%x", r64, r32)}
	}
	var cuts []uint32
	if gap64.stub {
		cuts = append(cuts, gap64.max+1)
	}
	if hasX32 && gap32.stub {
		cuts = append(cuts, (gap32.max&^x32SyscallBit)+1)
	}
	rules64, nrs64 := g.tableRules(abiX86_64, 0)
	mainIvs := g.intervals(rules64, nrs64, 0, max32, gapMain, cuts)
	var legacyIvs []interval
	if hasX32 {
		rules32, nrs32 := g.tableRules(abiX32, x32SyscallBit)
		gapLegacy := func(nr uint32) dest { return retDest(gap32.ret(x32SyscallBit|nr, def)) }
		var legacyCuts []uint32
		if gap32.stub {
			legacyCuts = append(legacyCuts, (gap32.max&^x32SyscallBit)+1)
		}
		legacyIvs = g.intervals(rules32, nrs32, x32LegacyFirst, x32LegacyEnd-1, gapLegacy, legacyCuts)
	}
	p := newPool(mainIvs, legacyIvs)

	a.bind(x64Label)
	a.load(offNr)
	mainRoot, emitMain := g.entry(p, mainIvs)
	a.jump(opJGE, x32SyscallBit, next, mainRoot)
	// Tracers skip a syscall by setting its number to -1, and the filter
	// runs again then; like libseccomp, treat it as an x86_64 syscall
	// without rules rather than as x32.
	a.jump(opJEQ, max32, g.retLabel(p, def), next)
	var legacyRoot label
	emitLegacy := false
	if hasX32 {
		legacyRoot, emitLegacy = g.entry(p, legacyIvs)
		a.and(^uint32(x32SyscallBit))
		a.jump(opJGE, x32LegacyEnd, mainRoot, next)
		a.jump(opJGE, x32LegacyFirst, legacyRoot, mainRoot)
	} else {
		a.ret(unix.SECCOMP_RET_KILL_PROCESS)
	}
	if emitMain {
		g.emitSearch(p, mainIvs, mainRoot)
	}
	if emitLegacy {
		g.emitSearch(p, legacyIvs, legacyRoot)
	}
	g.flush(p)

	if hasI386 {
		gap := cc.gapRule(abiI386)
		var cuts []uint32
		if gap.stub {
			cuts = append(cuts, gap.max+1)
		}
		rules, nrs := g.tableRules(abiI386, 0)
		ivs := g.intervals(rules, nrs, 0, max32, func(nr uint32) dest { return retDest(gap.ret(nr, def)) }, cuts)
		q := newPool(ivs)
		a.bind(i386Label)
		root, emit := g.entry(q, ivs)
		if emit {
			a.load(offNr)
			g.emitSearch(q, ivs, root)
		} else {
			a.jumpTo(root)
		}
		g.flush(q)
	}
	return a.assemble()
}
