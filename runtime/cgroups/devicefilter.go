package cgroups

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Device types as the kernel passes them in bpf_cgroup_dev_ctx.
const (
	bpfDevBlock = 1
	bpfDevChar  = 2
)

// compileDeviceFilter builds a BPF_PROG_TYPE_CGROUP_DEVICE program for
// rules. The context is struct bpf_cgroup_dev_ctx { u32 access_type; u32
// major; u32 minor; } with access_type = access<<16 | type. The program
// returns 1 to allow and 0 to deny.
func compileDeviceFilter(rules []specs.LinuxDeviceCgroup) ([]bpfInsn, error) {
	parsed, err := parseDevRules(rules)
	if err != nil {
		return nil, err
	}
	return compileDevState(emulateDevices(parsed)), nil
}

func compileDevState(st devState) []bpfInsn {
	var a bpfAsm
	a.emit(
		ldxW(bpfR2, bpfR1, 0), // access_type
		alu32Reg(unix.BPF_MOV, bpfR3, bpfR2),
		alu32Imm(unix.BPF_AND, bpfR3, 0xffff), // R3 = device type
		alu32Reg(unix.BPF_MOV, bpfR4, bpfR2),
		alu32Imm(unix.BPF_RSH, bpfR4, 16), // R4 = requested access
		ldxW(bpfR5, bpfR1, 4),             // R5 = major
		ldxW(bpfR6, bpfR1, 8),             // R6 = minor
	)
	exceptionVerdict, defaultVerdict := int32(1), int32(0)
	if st.defaultAllow {
		exceptionVerdict, defaultVerdict = 0, 1
	}
	// Each exception is one block; a failed comparison jumps to the first
	// instruction of the next block.
	for _, e := range st.exceptions {
		typ := int32(bpfDevChar)
		if e.typ == 'b' {
			typ = bpfDevBlock
		}
		a.jumpNext(unix.BPF_JNE, bpfR3, typ)
		if e.access != accAll {
			a.emit(alu32Reg(unix.BPF_MOV, bpfR7, bpfR4))
			if st.defaultAllow {
				// Deny exception: any overlap matches.
				a.emit(alu32Imm(unix.BPF_AND, bpfR7, int32(e.access)))
				a.jumpNext(unix.BPF_JEQ, bpfR7, 0)
			} else {
				// Allow exception: every requested bit must be covered.
				a.emit(alu32Imm(unix.BPF_AND, bpfR7, int32(accAll&^e.access)))
				a.jumpNext(unix.BPF_JNE, bpfR7, 0)
			}
		}
		if e.major >= 0 {
			a.jumpNext(unix.BPF_JNE, bpfR5, int32(e.major))
		}
		if e.minor >= 0 {
			a.jumpNext(unix.BPF_JNE, bpfR6, int32(e.minor))
		}
		a.emit(mov64Imm(bpfR0, exceptionVerdict), exitInsn())
		a.bindNext()
	}
	a.emit(mov64Imm(bpfR0, defaultVerdict), exitInsn())
	return a.insns
}

// setDevicesV2 loads the device program and attaches it to dir. It is
// attached with BPF_F_ALLOW_MULTI so programs of ancestors keep applying (a
// container can never gain access its parent lacks), and then the programs
// a previous Set attached to dir are detached, which makes update replace
// the rules instead of stacking them.
func setDevicesV2(dir string, rules []specs.LinuxDeviceCgroup) error {
	prog, err := loadDeviceProgram(rules)
	if err != nil {
		return err
	}
	defer prog.Close()

	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)

	old, err := bpfProgQuery(fd, unix.BPF_CGROUP_DEVICE)
	if err != nil {
		return fmt.Errorf("query device programs of %s: %w", dir, err)
	}
	if err := bpfProgAttach(fd, prog.fd, unix.BPF_CGROUP_DEVICE, unix.BPF_F_ALLOW_MULTI); err != nil {
		return fmt.Errorf("attach device program to %s: %w", dir, err)
	}
	var errs []error
	for _, id := range old {
		if err := detachProgram(fd, id); err != nil {
			errs = append(errs, fmt.Errorf("detach old device program %d from %s: %w", id, dir, err))
		}
	}
	return errors.Join(errs...)
}

// deviceProgram is a loaded device program; the kernel keeps it while it is
// attached to a cgroup, so it can be closed after attaching.
type deviceProgram struct {
	fd int
}

func (p *deviceProgram) Close() error {
	if p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	return err
}

// loadDeviceProgram compiles rules and loads the program into the kernel,
// which runs the verifier on it. The license only matters to the kernel for
// programs that call GPL-only helpers; this one calls no helper at all.
func loadDeviceProgram(rules []specs.LinuxDeviceCgroup) (*deviceProgram, error) {
	insns, err := compileDeviceFilter(rules)
	if err != nil {
		return nil, err
	}
	fd, err := bpfProgLoad(unix.BPF_PROG_TYPE_CGROUP_DEVICE, "hull_devices", "Apache-2.0", insns)
	if err != nil {
		return nil, fmt.Errorf("load device program: %w", err)
	}
	return &deviceProgram{fd: fd}, nil
}

// detachProgram detaches the program with the given id from the cgroup fd.
// A program that is gone already (detached by a concurrent update) is no
// error.
func detachProgram(fd int, id uint32) error {
	pfd, err := bpfProgGetFdByID(id)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	err = bpfProgDetach(fd, pfd, unix.BPF_CGROUP_DEVICE)
	if err == unix.ENOENT {
		return nil
	}
	return err
}
