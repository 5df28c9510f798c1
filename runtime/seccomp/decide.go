package seccomp

import (
	"fmt"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
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
