package cgroups

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The encodings below are those of the eBPF instruction set documentation
// (Documentation/bpf/standardization/instruction-set.rst), written out by
// hand so that a wrong constant in the encoder cannot hide.
func TestBPFInsnEncoding(t *testing.T) {
	if hostBigEndian {
		t.Skip("expected bytes are little-endian")
	}
	if s := unsafe.Sizeof(bpfInsn{}); s != 8 {
		t.Fatalf("sizeof(bpfInsn) = %d", s)
	}
	cases := []struct {
		ins  bpfInsn
		want []byte
	}{
		{ldxW(bpfR2, bpfR1, 0), []byte{0x61, 0x12, 0, 0, 0, 0, 0, 0}},
		{ldxW(bpfR6, bpfR1, 8), []byte{0x61, 0x16, 8, 0, 0, 0, 0, 0}},
		{alu32Reg(unix.BPF_MOV, bpfR3, bpfR2), []byte{0xbc, 0x23, 0, 0, 0, 0, 0, 0}},
		{alu32Imm(unix.BPF_AND, bpfR3, 0xffff), []byte{0x54, 0x03, 0, 0, 0xff, 0xff, 0, 0}},
		{alu32Imm(unix.BPF_RSH, bpfR4, 16), []byte{0x74, 0x04, 0, 0, 16, 0, 0, 0}},
		{mov64Imm(bpfR0, 1), []byte{0xb7, 0, 0, 0, 1, 0, 0, 0}},
		{mov64Imm(bpfR0, -1), []byte{0xb7, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}},
		{jmpImm(unix.BPF_JNE, bpfR5, 136, 7), []byte{0x55, 0x05, 7, 0, 136, 0, 0, 0}},
		{jmpImm(unix.BPF_JEQ, bpfR7, 0, 0x1234), []byte{0x15, 0x07, 0x34, 0x12, 0, 0, 0, 0}},
		{exitInsn(), []byte{0x95, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, c := range cases {
		got := unsafe.Slice((*byte)(unsafe.Pointer(&c.ins)), 8)
		if !bytes.Equal(got, c.want) {
			t.Errorf("%+v encodes as % x, want % x", c.ins, got, c.want)
		}
		if c.ins.dst() != bpfReg(c.want[1]&0xf) || c.ins.src() != bpfReg(c.want[1]>>4) {
			t.Errorf("%+v: dst %d src %d", c.ins, c.ins.dst(), c.ins.src())
		}
	}
}

// The attribute blocks must match union bpf_attr on every architecture,
// 32-bit ones included (where Go aligns uint64 to 4 bytes).
func TestBPFAttrLayout(t *testing.T) {
	var load bpfProgLoadAttr
	var att bpfAttachAttr
	var q bpfQueryAttr
	var get bpfGetFdByIDAttr
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"load.insns", unsafe.Offsetof(load.insns), 8},
		{"load.license", unsafe.Offsetof(load.license), 16},
		{"load.log_level", unsafe.Offsetof(load.logLevel), 24},
		{"load.log_buf", unsafe.Offsetof(load.logBuf), 32},
		{"load.kern_version", unsafe.Offsetof(load.kernVersion), 40},
		{"load.prog_name", unsafe.Offsetof(load.progName), 48},
		{"load.expected_attach_type", unsafe.Offsetof(load.expectedAttachType), 68},
		{"sizeof load", unsafe.Sizeof(load), 72},
		{"attach.attach_bpf_fd", unsafe.Offsetof(att.attachBpfFd), 4},
		{"attach.attach_type", unsafe.Offsetof(att.attachType), 8},
		{"attach.attach_flags", unsafe.Offsetof(att.attachFlags), 12},
		{"attach.expected_revision", unsafe.Offsetof(att.expectedRevision), 24},
		{"sizeof attach", unsafe.Sizeof(att), 32},
		{"query.attach_flags", unsafe.Offsetof(q.attachFlags), 12},
		{"query.prog_ids", unsafe.Offsetof(q.progIDs), 16},
		{"query.prog_cnt", unsafe.Offsetof(q.progCnt), 24},
		{"query.prog_attach_flags", unsafe.Offsetof(q.progAttachFlags), 32},
		{"query.revision", unsafe.Offsetof(q.revision), 56},
		{"sizeof query", unsafe.Sizeof(q), 64},
		{"get_fd_by_id.open_flags", unsafe.Offsetof(get.openFlags), 8},
	} {
		if c.got != c.want {
			t.Errorf("%s at %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestBPFJumpsToNextBlock(t *testing.T) {
	var a bpfAsm
	a.jumpNext(unix.BPF_JNE, bpfR3, 2)
	a.emit(mov64Imm(bpfR7, 0))
	a.jumpNext(unix.BPF_JEQ, bpfR7, 0)
	a.emit(exitInsn())
	a.bindNext()
	a.emit(exitInsn())
	if len(a.insns) != 5 || a.insns[0].off != 3 || a.insns[2].off != 1 || len(a.pending) != 0 {
		t.Errorf("insns %+v pending %v", a.insns, a.pending)
	}
}

// A program the verifier rejects comes back with the verifier's reasons.
func TestBPFLoadVerifierLog(t *testing.T) {
	requireRoot(t)
	// R0 is never set, so the kernel refuses to return it.
	_, err := bpfProgLoad(unix.BPF_PROG_TYPE_CGROUP_DEVICE, "hull_bad", "Apache-2.0", []bpfInsn{exitInsn()})
	if err == nil {
		t.Fatal("verifier accepted a program that returns an unset R0")
	}
	if !errors.Is(err, unix.EACCES) || !strings.Contains(err.Error(), "verifier log") || !strings.Contains(err.Error(), "R0") {
		t.Errorf("error %q", err)
	}
	t.Log(err)

	// A good one loads, and its fd does not leak into children.
	prog, err := loadDeviceProgram(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	flags, err := unix.FcntlInt(uintptr(prog.fd), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("program fd flags %#x, %v", flags, err)
	}
}
