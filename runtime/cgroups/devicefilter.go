package cgroups

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
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
func compileDeviceFilter(rules []specs.LinuxDeviceCgroup) (asm.Instructions, error) {
	parsed, err := parseDevRules(rules)
	if err != nil {
		return nil, err
	}
	return compileDevState(emulateDevices(parsed)), nil
}

func compileDevState(st devState) asm.Instructions {
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // access_type
		asm.Mov.Reg32(asm.R3, asm.R2),
		asm.And.Imm32(asm.R3, 0xffff), // R3 = device type
		asm.Mov.Reg32(asm.R4, asm.R2),
		asm.RSh.Imm32(asm.R4, 16),                // R4 = requested access
		asm.LoadMem(asm.R5, asm.R1, 4, asm.Word), // R5 = major
		asm.LoadMem(asm.R6, asm.R1, 8, asm.Word), // R6 = minor
	}
	exceptionVerdict, defaultVerdict := int64(1), int64(0)
	if st.defaultAllow {
		exceptionVerdict, defaultVerdict = 0, 1
	}
	// Each exception is one block; a failed comparison jumps to the label
	// on the first instruction of the next block.
	label := ""
	add := func(ins asm.Instruction) {
		if label != "" {
			ins = ins.WithSymbol(label)
			label = ""
		}
		insns = append(insns, ins)
	}
	for i, e := range st.exceptions {
		next := fmt.Sprintf("exception_%d_end", i)
		typ := int32(bpfDevChar)
		if e.typ == 'b' {
			typ = bpfDevBlock
		}
		add(asm.JNE.Imm(asm.R3, typ, next))
		if e.access != accAll {
			add(asm.Mov.Reg32(asm.R7, asm.R4))
			if st.defaultAllow {
				// Deny exception: any overlap matches.
				add(asm.And.Imm32(asm.R7, int32(e.access)))
				add(asm.JEq.Imm(asm.R7, 0, next))
			} else {
				// Allow exception: every requested bit must be covered.
				add(asm.And.Imm32(asm.R7, int32(accAll&^e.access)))
				add(asm.JNE.Imm(asm.R7, 0, next))
			}
		}
		if e.major >= 0 {
			add(asm.JNE.Imm(asm.R5, int32(e.major), next))
		}
		if e.minor >= 0 {
			add(asm.JNE.Imm(asm.R6, int32(e.minor), next))
		}
		add(asm.Mov.Imm(asm.R0, int32(exceptionVerdict)))
		add(asm.Return())
		label = next
	}
	add(asm.Mov.Imm(asm.R0, int32(defaultVerdict)))
	add(asm.Return())
	return insns
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

	old, err := link.QueryPrograms(link.QueryOptions{Target: fd, Attach: ebpf.AttachCGroupDevice})
	if err != nil {
		return fmt.Errorf("query device programs of %s: %w", dir, err)
	}
	err = link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  fd,
		Program: prog,
		Attach:  ebpf.AttachCGroupDevice,
		Flags:   unix.BPF_F_ALLOW_MULTI,
	})
	if err != nil {
		return fmt.Errorf("attach device program to %s: %w", dir, err)
	}
	var errs []error
	for _, ap := range old.Programs {
		if err := detachProgram(fd, ap.ID); err != nil {
			errs = append(errs, fmt.Errorf("detach old device program %d from %s: %w", ap.ID, dir, err))
		}
	}
	return errors.Join(errs...)
}

// loadDeviceProgram compiles rules and loads the program into the kernel,
// which runs the verifier on it.
func loadDeviceProgram(rules []specs.LinuxDeviceCgroup) (*ebpf.Program, error) {
	insns, err := compileDeviceFilter(rules)
	if err != nil {
		return nil, err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "hull_devices",
		Type:         ebpf.CGroupDevice,
		License:      "Apache-2.0",
		Instructions: insns,
	})
	if err != nil {
		return nil, fmt.Errorf("load device program: %w", err)
	}
	return prog, nil
}

func detachProgram(fd int, id ebpf.ProgramID) error {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return err
	}
	defer p.Close()
	return link.RawDetachProgram(link.RawDetachProgramOptions{
		Target:  fd,
		Program: p,
		Attach:  ebpf.AttachCGroupDevice,
	})
}
