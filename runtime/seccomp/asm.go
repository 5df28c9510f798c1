package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// label names a position in the program; jumps refer to labels so that code
// can be generated before its layout is known.
type label int

// next is the instruction right after the jump.
const next label = -1

// Instruction codes the generator uses.
const (
	opLoadAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	opAnd     = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	opJA      = unix.BPF_JMP | unix.BPF_JA
	opJEQ     = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	opJGT     = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
	opJGE     = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	opJSET    = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	opRet     = unix.BPF_RET | unix.BPF_K
)

// maxCondJump is the farthest a conditional jump reaches: its offsets are
// 8-bit.
const maxCondJump = 255

type insn struct {
	code   uint16
	k      uint32
	jt, jf label // conditional jumps
	to     label // BPF_JA
}

func (in insn) isCond() bool {
	return in.code&0x07 == unix.BPF_JMP && in.code != opJA
}

// assembler collects instructions with symbolic jumps and lays them out.
// Classic BPF only jumps forward, so every label must be bound after the
// jumps to it.
type assembler struct {
	insns  []insn
	labels []int // instruction index per label, -1 while unbound
	err    error
}

func (a *assembler) newLabel() label {
	a.labels = append(a.labels, -1)
	return label(len(a.labels) - 1)
}

// bind places l at the next instruction emitted.
func (a *assembler) bind(l label) {
	if l < 0 || int(l) >= len(a.labels) || a.labels[l] >= 0 {
		a.fail(fmt.Errorf("label %d bound twice or invalid", l))
		return
	}
	a.labels[l] = len(a.insns)
}

func (a *assembler) fail(err error) {
	if a.err == nil {
		a.err = err
	}
}

func (a *assembler) load(off uint32) { a.insns = append(a.insns, insn{code: opLoadAbs, k: off}) }
func (a *assembler) and(mask uint32) { a.insns = append(a.insns, insn{code: opAnd, k: mask}) }
func (a *assembler) ret(val uint32)  { a.insns = append(a.insns, insn{code: opRet, k: val}) }
func (a *assembler) jumpTo(to label) { a.insns = append(a.insns, insn{code: opJA, to: to}) }
func (a *assembler) jump(code uint16, k uint32, jt, jf label) {
	a.insns = append(a.insns, insn{code: code, k: k, jt: jt, jf: jf})
}

// target resolves the label a jump at index i refers to.
func (a *assembler) target(i int, l label) (int, error) {
	t := i + 1
	if l != next {
		if l < 0 || int(l) >= len(a.labels) || a.labels[l] < 0 {
			return 0, fmt.Errorf("instruction %d jumps to unbound label %d", i, l)
		}
		t = a.labels[l]
	}
	if t <= i || t >= len(a.insns) {
		return 0, fmt.Errorf("instruction %d jumps to %d, outside the forward range", i, t)
	}
	return t, nil
}

// assemble lays the program out. A conditional jump farther than 255
// instructions gets a trampoline right after it: an unconditional jump
// (32-bit offset), or a copy of the target when that is a return, which
// is as short and saves a jump. Trampolines only push code apart, so the
// set of far jumps only grows and the loop ends.
func (a *assembler) assemble() ([]unix.SockFilter, error) {
	if a.err != nil {
		return nil, a.err
	}
	n := len(a.insns)
	jt := make([]int, n)
	jf := make([]int, n)
	for i, in := range a.insns {
		var err error
		switch {
		case in.isCond():
			if jt[i], err = a.target(i, in.jt); err == nil {
				jf[i], err = a.target(i, in.jf)
			}
		case in.code == opJA:
			jt[i], err = a.target(i, in.to)
		}
		if err != nil {
			return nil, err
		}
	}

	farT := make([]bool, n)
	farF := make([]bool, n)
	pos := make([]int, n+1)
	for {
		p := 0
		for i := range a.insns {
			pos[i] = p
			p++
			if farT[i] {
				p++
			}
			if farF[i] {
				p++
			}
		}
		pos[n] = p
		changed := false
		for i, in := range a.insns {
			if !in.isCond() {
				continue
			}
			if !farT[i] && pos[jt[i]]-pos[i]-1 > maxCondJump {
				farT[i], changed = true, true
			}
			if !farF[i] && pos[jf[i]]-pos[i]-1 > maxCondJump {
				farF[i], changed = true, true
			}
		}
		if !changed {
			break
		}
	}

	out := make([]unix.SockFilter, 0, pos[n])
	trampoline := func(t int) unix.SockFilter {
		if a.insns[t].code == opRet {
			return unix.SockFilter{Code: opRet, K: a.insns[t].k}
		}
		at := len(out)
		return unix.SockFilter{Code: opJA, K: uint32(pos[t] - at - 1)}
	}
	for i, in := range a.insns {
		switch {
		case in.isCond():
			base := pos[i] + 1
			slot := 0 // trampolines emitted so far for this jump
			var t, f uint8
			if farT[i] {
				t = uint8(slot)
				slot++
			} else {
				t = uint8(pos[jt[i]] - base)
			}
			if farF[i] {
				f = uint8(slot)
			} else {
				f = uint8(pos[jf[i]] - base)
			}
			out = append(out, unix.SockFilter{Code: in.code, Jt: t, Jf: f, K: in.k})
			if farT[i] {
				out = append(out, trampoline(jt[i]))
			}
			if farF[i] {
				out = append(out, trampoline(jf[i]))
			}
		case in.code == opJA:
			out = append(out, unix.SockFilter{Code: opJA, K: uint32(pos[jt[i]] - pos[i] - 1)})
		default:
			out = append(out, unix.SockFilter{Code: in.code, K: in.k})
		}
	}
	if len(out) != pos[n] {
		return nil, fmt.Errorf("layout mismatch: %d instructions emitted, %d planned", len(out), pos[n])
	}
	return out, nil
}
