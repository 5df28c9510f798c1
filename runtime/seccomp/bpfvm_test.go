package seccomp

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// seccompData mirrors struct seccomp_data, the input of a seccomp filter.
type seccompData struct {
	nr   uint32
	arch uint32
	ip   uint64
	args [6]uint64
}

func (d seccompData) bytes() []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[0:], d.nr)
	binary.LittleEndian.PutUint32(b[4:], d.arch)
	binary.LittleEndian.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

func x64(nr uint32, args ...uint64) seccompData {
	d := seccompData{nr: nr, arch: unix.AUDIT_ARCH_X86_64}
	copy(d.args[:], args)
	return d
}

func i386(nr uint32, args ...uint64) seccompData {
	d := seccompData{nr: nr, arch: unix.AUDIT_ARCH_I386}
	copy(d.args[:], args)
	return d
}

func x32(nr uint32, args ...uint64) seccompData {
	d := seccompData{nr: x32SyscallBit | nr, arch: unix.AUDIT_ARCH_X86_64}
	copy(d.args[:], args)
	return d
}

// checkProgram does what the kernel's checker does with the instructions we
// generate: every jump lands inside the program and forward, only known
// instructions appear, loads are aligned inside seccomp_data, and the
// program cannot fall off its end.
func checkProgram(prog []unix.SockFilter) error {
	if len(prog) == 0 || len(prog) > unix.BPF_MAXINSNS {
		return fmt.Errorf("program length %d", len(prog))
	}
	for pc, in := range prog {
		switch in.Code {
		case opLoadAbs:
			if in.K%4 != 0 || in.K >= 64 {
				return fmt.Errorf("pc %d: load of offset %d", pc, in.K)
			}
		case opAnd, opRet:
		case opJA:
			if uint64(pc)+1+uint64(in.K) >= uint64(len(prog)) {
				return fmt.Errorf("pc %d: ja %d out of range", pc, in.K)
			}
		case opJEQ, opJGT, opJGE, opJSET:
			if pc+1+int(in.Jt) >= len(prog) || pc+1+int(in.Jf) >= len(prog) {
				return fmt.Errorf("pc %d: jump %d/%d out of range", pc, in.Jt, in.Jf)
			}
		default:
			return fmt.Errorf("pc %d: unexpected code %#x", pc, in.Code)
		}
	}
	if last := prog[len(prog)-1]; last.Code != opRet && last.Code != opJA {
		return fmt.Errorf("program ends with %#x, not a return", last.Code)
	}
	return nil
}

// runBPF interprets a classic BPF seccomp program over d and returns the
// filter's return value and the number of instructions executed.
func runBPF(prog []unix.SockFilter, d seccompData) (uint32, int, error) {
	data := d.bytes()
	var acc uint32
	steps := 0
	for pc := 0; pc < len(prog); {
		in := prog[pc]
		steps++
		if steps > len(prog) {
			return 0, steps, fmt.Errorf("pc %d: loop", pc)
		}
		switch in.Code {
		case opLoadAbs:
			if in.K%4 != 0 || int(in.K)+4 > len(data) {
				return 0, steps, fmt.Errorf("pc %d: bad load offset %d", pc, in.K)
			}
			acc = binary.LittleEndian.Uint32(data[in.K:])
			pc++
		case opAnd:
			acc &= in.K
			pc++
		case opRet:
			return in.K, steps, nil
		case opJA:
			pc += 1 + int(in.K)
		case opJEQ, opJGT, opJGE, opJSET:
			var cond bool
			switch in.Code {
			case opJEQ:
				cond = acc == in.K
			case opJGT:
				cond = acc > in.K
			case opJGE:
				cond = acc >= in.K
			case opJSET:
				cond = acc&in.K != 0
			}
			if cond {
				pc += 1 + int(in.Jt)
			} else {
				pc += 1 + int(in.Jf)
			}
		default:
			return 0, steps, fmt.Errorf("pc %d: unsupported instruction %#x", pc, in.Code)
		}
	}
	return 0, steps, fmt.Errorf("fell off the end of the program")
}
