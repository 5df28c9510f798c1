package cgroups

// A minimal eBPF toolkit for the device controller of cgroup v2: an encoder
// for the few instructions the device program uses, and wrappers around the
// bpf(2) commands needed to load it and attach it to a cgroup. It replaces a
// general eBPF library, which would link ELF, DWARF, compression and crypto
// packages into every hull-runc process.

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bpfInsn is struct bpf_insn. The two register numbers share a byte: dst_reg
// is the low nibble on little-endian machines and the high one on big-endian
// machines (the C bit-field order follows the byte order).
type bpfInsn struct {
	code uint8
	regs uint8
	off  int16
	imm  int32
}

type bpfReg uint8

const (
	bpfR0 bpfReg = iota
	bpfR1
	bpfR2
	bpfR3
	bpfR4
	bpfR5
	bpfR6
	bpfR7
)

var hostBigEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 0
}()

func bpfRegs(dst, src bpfReg) uint8 {
	if hostBigEndian {
		return uint8(dst)<<4 | uint8(src)&0xf
	}
	return uint8(src)<<4 | uint8(dst)&0xf
}

func (i bpfInsn) dst() bpfReg {
	if hostBigEndian {
		return bpfReg(i.regs >> 4)
	}
	return bpfReg(i.regs & 0xf)
}

func (i bpfInsn) src() bpfReg {
	if hostBigEndian {
		return bpfReg(i.regs & 0xf)
	}
	return bpfReg(i.regs >> 4)
}

// ldxW is dst = *(u32 *)(src + off).
func ldxW(dst, src bpfReg, off int16) bpfInsn {
	return bpfInsn{code: unix.BPF_LDX | unix.BPF_MEM | unix.BPF_W, regs: bpfRegs(dst, src), off: off}
}

// alu32Imm is the 32-bit dst op= imm (op is BPF_MOV, BPF_AND, BPF_RSH...);
// the result is zero-extended into the 64-bit register.
func alu32Imm(op uint8, dst bpfReg, imm int32) bpfInsn {
	return bpfInsn{code: unix.BPF_ALU | unix.BPF_K | op, regs: bpfRegs(dst, 0), imm: imm}
}

// alu32Reg is the 32-bit dst op= src.
func alu32Reg(op uint8, dst, src bpfReg) bpfInsn {
	return bpfInsn{code: unix.BPF_ALU | unix.BPF_X | op, regs: bpfRegs(dst, src)}
}

// mov64Imm is dst = imm, sign-extended to 64 bits.
func mov64Imm(dst bpfReg, imm int32) bpfInsn {
	return bpfInsn{code: unix.BPF_ALU64 | unix.BPF_K | unix.BPF_MOV, regs: bpfRegs(dst, 0), imm: imm}
}

// jmpImm is "if dst op imm goto pc+1+off", comparing all 64 bits of dst with
// the sign-extended imm (op is BPF_JEQ, BPF_JNE...).
func jmpImm(op uint8, dst bpfReg, imm int32, off int16) bpfInsn {
	return bpfInsn{code: unix.BPF_JMP | unix.BPF_K | op, regs: bpfRegs(dst, 0), off: off, imm: imm}
}

// exitInsn returns R0 to the kernel.
func exitInsn() bpfInsn {
	return bpfInsn{code: unix.BPF_JMP | unix.BPF_EXIT}
}

// bpfAsm collects instructions. Forward jumps are emitted with jumpNext and
// all point at the instruction that follows the next call to bindNext.
type bpfAsm struct {
	insns   []bpfInsn
	pending []int
}

func (a *bpfAsm) emit(insns ...bpfInsn) {
	a.insns = append(a.insns, insns...)
}

func (a *bpfAsm) jumpNext(op uint8, dst bpfReg, imm int32) {
	a.pending = append(a.pending, len(a.insns))
	a.emit(jmpImm(op, dst, imm, 0))
}

func (a *bpfAsm) bindNext() {
	for _, i := range a.pending {
		off := len(a.insns) - i - 1
		if off > 1<<15-1 {
			panic("bpf: jump offset out of range")
		}
		a.insns[i].off = int16(off)
	}
	a.pending = a.pending[:0]
}

// Attribute blocks of bpf(2), laid out as the members of union bpf_attr for
// the commands used. Pointers are passed as u64; the memory they point to is
// pinned for the duration of the call (see pinned). Each block is as large as
// what the kernel may write back into it: BPF_PROG_QUERY, for one, stores
// query.revision (offset 56) on kernels since 6.16 whatever size is passed.

type bpfProgLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              uint64
	license            uint64
	logLevel           uint32
	logSize            uint32
	logBuf             uint64
	kernVersion        uint32
	progFlags          uint32
	progName           [unix.BPF_OBJ_NAME_LEN]byte
	progIfindex        uint32
	expectedAttachType uint32
}

type bpfAttachAttr struct {
	targetFd         uint32
	attachBpfFd      uint32
	attachType       uint32
	attachFlags      uint32
	replaceBpfFd     uint32
	relativeFd       uint32
	expectedRevision uint64
}

type bpfQueryAttr struct {
	targetFd        uint32
	attachType      uint32
	queryFlags      uint32
	attachFlags     uint32
	progIDs         uint64
	progCnt         uint32
	_               uint32
	progAttachFlags uint64
	linkIDs         uint64
	linkAttachFlags uint64
	revision        uint64
}

type bpfGetFdByIDAttr struct {
	id        uint32
	nextID    uint32
	openFlags uint32
}

// pinned returns the address of p as a u64 for an attribute block, after
// pinning the object it points into. Passing p on as an interface also makes
// the compiler allocate that object on the heap, where it cannot move while
// the kernel holds only its address.
func pinned(pin *runtime.Pinner, p unsafe.Pointer) uint64 {
	pin.Pin(p)
	return uint64(uintptr(p))
}

// bpfCall runs one bpf(2) command. The verifier gives up with EAGAIN when a
// signal is pending, which the Go runtime's preemption signals make
// possible, so those are retried along with EINTR.
func bpfCall(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	for try := 0; ; try++ {
		r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
		if (errno == unix.EINTR || errno == unix.EAGAIN && cmd == unix.BPF_PROG_LOAD) && try < 10 {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(r), nil
	}
}

// bpfLogSize is the verifier log buffer size. Kernels since 6.4 keep the
// end of a log that does not fit, which is where the reason for a rejection
// is; older ones keep the start.
const bpfLogSize = 256 << 10

// bpfLogMax bounds the part of a verifier log quoted in an error.
const bpfLogMax = 4 << 10

// bpfProgLoad loads a program that calls no helpers and returns its fd,
// which is close-on-exec. If the kernel rejects the program, it is loaded a
// second time with a verifier log, whose end is included in the error.
func bpfProgLoad(progType uint32, name, license string, insns []bpfInsn) (int, error) {
	if len(insns) == 0 {
		return -1, errors.New("empty program")
	}
	fd, err := bpfProgLoadLog(progType, name, license, insns, nil)
	if err == nil {
		return fd, nil
	}
	log := make([]byte, bpfLogSize)
	fd, err2 := bpfProgLoadLog(progType, name, license, insns, log)
	if err2 == nil {
		return fd, nil
	}
	if n := bytes.IndexByte(log, 0); n >= 0 {
		log = log[:n]
	}
	log = bytes.TrimSpace(log)
	if len(log) == 0 {
		return -1, err
	}
	if len(log) > bpfLogMax {
		log = log[len(log)-bpfLogMax:]
		if n := bytes.IndexByte(log, '\n'); n >= 0 {
			log = log[n+1:]
		}
		log = append([]byte("...\n"), log...)
	}
	return -1, fmt.Errorf("%w; verifier log:\n%s", err, log)
}

func bpfProgLoadLog(progType uint32, name, license string, insns []bpfInsn, log []byte) (int, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	lic := append([]byte(license), 0)
	attr := bpfProgLoadAttr{
		progType: progType,
		insnCnt:  uint32(len(insns)),
		insns:    pinned(&pin, unsafe.Pointer(&insns[0])),
		license:  pinned(&pin, unsafe.Pointer(&lic[0])),
	}
	// The kernel accepts [A-Za-z0-9_.] in names; the last byte stays NUL.
	copy(attr.progName[:len(attr.progName)-1], name)
	if len(log) > 0 {
		attr.logLevel = 1
		attr.logSize = uint32(len(log))
		attr.logBuf = pinned(&pin, unsafe.Pointer(&log[0]))
	}
	return bpfCall(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}

// bpfProgAttach attaches the program progFd to the cgroup targetFd.
func bpfProgAttach(targetFd, progFd int, attachType, flags uint32) error {
	attr := bpfAttachAttr{
		targetFd:    uint32(targetFd),
		attachBpfFd: uint32(progFd),
		attachType:  attachType,
		attachFlags: flags,
	}
	_, err := bpfCall(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// bpfProgDetach detaches the program progFd from the cgroup targetFd.
func bpfProgDetach(targetFd, progFd int, attachType uint32) error {
	attr := bpfAttachAttr{
		targetFd:    uint32(targetFd),
		attachBpfFd: uint32(progFd),
		attachType:  attachType,
	}
	_, err := bpfCall(unix.BPF_PROG_DETACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// bpfProgQuery returns the ids of the programs attached to the cgroup
// targetFd itself (not those inherited from its ancestors).
func bpfProgQuery(targetFd int, attachType uint32) ([]uint32, error) {
	// A cgroup holds at most 64 programs per attach type
	// (BPF_CGROUP_MAX_PROGS), so one call is enough unless that changes.
	ids := make([]uint32, 64)
	for {
		var pin runtime.Pinner
		attr := bpfQueryAttr{
			targetFd:   uint32(targetFd),
			attachType: attachType,
			progIDs:    pinned(&pin, unsafe.Pointer(&ids[0])),
			progCnt:    uint32(len(ids)),
		}
		_, err := bpfCall(unix.BPF_PROG_QUERY, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		pin.Unpin()
		switch {
		case err == unix.ENOSPC && int(attr.progCnt) > len(ids):
			ids = make([]uint32, attr.progCnt)
		case err != nil:
			return nil, err
		case int(attr.progCnt) > len(ids):
			return nil, fmt.Errorf("kernel reported %d programs for a buffer of %d", attr.progCnt, len(ids))
		default:
			return ids[:attr.progCnt], nil
		}
	}
}

// bpfProgGetFdByID returns a close-on-exec fd for the loaded program id.
func bpfProgGetFdByID(id uint32) (int, error) {
	attr := bpfGetFdByIDAttr{id: id}
	return bpfCall(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}
