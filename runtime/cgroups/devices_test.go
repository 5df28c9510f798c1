package cgroups

import (
	"fmt"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func num(v int64) *int64 { return &v }

func rule(allow bool, typ string, major, minor *int64, access string) specs.LinuxDeviceCgroup {
	return specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Major: major, Minor: minor, Access: access}
}

func TestDevRuleV1Strings(t *testing.T) {
	cases := []struct {
		in   specs.LinuxDeviceCgroup
		want []string
	}{
		{rule(false, "", nil, nil, "rwm"), []string{"a"}},
		{rule(true, "a", nil, nil, ""), []string{"a"}},
		{rule(true, "c", num(1), num(3), "rwm"), []string{"c 1:3 rwm"}},
		{rule(true, "c", num(136), nil, "rw"), []string{"c 136:* rw"}},
		{rule(true, "b", nil, num(-1), "m"), []string{"b *:* m"}},
		{rule(true, "c", num(5), num(1), "wr"), []string{"c 5:1 rw"}},
		// A partial 'a' rule would mean "everything" to the v1 kernel;
		// it is split into block and char rules instead.
		{rule(true, "a", num(7), nil, "r"), []string{"b 7:* r", "c 7:* r"}},
	}
	for _, c := range cases {
		rs, err := parseDevRules([]specs.LinuxDeviceCgroup{c.in})
		if err != nil {
			t.Fatalf("%+v: %v", c.in, err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, r.v1String())
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%+v: got %q, want %q", c.in, got, c.want)
		}
	}
	for _, bad := range []specs.LinuxDeviceCgroup{
		rule(true, "p", nil, nil, "r"),
		rule(true, "c", num(1), num(3), "rx"),
		rule(true, "c", num(-5), nil, "r"),
		rule(true, "c", num(1<<40), nil, "r"),
	} {
		if _, err := parseDevRule(bad); err == nil {
			t.Errorf("invalid rule %+v accepted", bad)
		}
	}
}

func TestEmulateDevices(t *testing.T) {
	rs, err := parseDevRules([]specs.LinuxDeviceCgroup{
		rule(false, "a", nil, nil, "rwm"),
		rule(true, "c", num(1), num(3), "r"),
		rule(true, "c", num(1), num(3), "w"), // merges with the previous rule
		rule(true, "c", num(1), num(5), "rwm"),
		rule(false, "c", num(1), num(5), "w"), // narrows it to rm
		rule(true, "b", num(8), nil, "m"),
		rule(true, "c", num(4), num(4), "r"),
		rule(false, "c", num(4), num(4), "r"), // removes it
	})
	if err != nil {
		t.Fatal(err)
	}
	st := emulateDevices(rs)
	if st.defaultAllow {
		t.Fatal("default should be deny")
	}
	want := []devException{
		{'c', 1, 3, accRead | accWrite},
		{'c', 1, 5, accRead | accMknod},
		{'b', 8, -1, accMknod},
	}
	if fmt.Sprint(st.exceptions) != fmt.Sprint(want) {
		t.Errorf("exceptions = %v, want %v", st.exceptions, want)
	}
	if !st.allowed('c', 1, 3, accRead|accWrite) || st.allowed('c', 1, 3, accMknod) ||
		st.allowed('c', 1, 5, accWrite) || !st.allowed('b', 8, 99, accMknod) || st.allowed('c', 4, 4, accRead) {
		t.Error("allowed() disagrees with the exception list")
	}
	// Allow-all followed by denies: a deny-list.
	rs, _ = parseDevRules([]specs.LinuxDeviceCgroup{
		rule(true, "", nil, nil, ""),
		rule(false, "c", num(1), num(7), "w"),
	})
	st = emulateDevices(rs)
	if !st.defaultAllow || st.allowed('c', 1, 7, accRead|accWrite) || !st.allowed('c', 1, 7, accRead) || !st.allowed('b', 1, 7, accWrite) {
		t.Errorf("deny-list semantics wrong: %+v", st)
	}
}

// runFilter interprets the small instruction subset compileDevState emits,
// decoding the encoded instructions the kernel gets, so the program's
// decisions can be checked without loading it.
func runFilter(t *testing.T, insns []bpfInsn, typ uint32, major, minor uint32, access uint32) uint64 {
	t.Helper()
	ctx := []uint32{access<<16 | typ, major, minor}
	var reg [11]uint64
	for pc, steps := 0, 0; pc < len(insns); steps++ {
		if steps > 10000 {
			t.Fatal("program does not terminate")
		}
		ins := insns[pc]
		pc++
		if ins.dst() > bpfR7 || ins.src() > bpfR7 {
			t.Fatalf("unexpected register in %+v", ins)
		}
		class, op, src := ins.code&0x07, ins.code&0xf0, ins.code&unix.BPF_X
		switch class {
		case unix.BPF_LDX:
			if ins.code != unix.BPF_LDX|unix.BPF_MEM|unix.BPF_W || ins.src() != bpfR1 ||
				ins.off < 0 || ins.off%4 != 0 || int(ins.off/4) >= len(ctx) {
				t.Fatalf("unexpected load %+v", ins)
			}
			reg[ins.dst()] = uint64(ctx[ins.off/4])
		case unix.BPF_ALU, unix.BPF_ALU64:
			v := uint64(int64(ins.imm))
			if src == unix.BPF_X {
				v = reg[ins.src()]
			}
			switch op {
			case unix.BPF_MOV:
			case unix.BPF_AND:
				v &= reg[ins.dst()]
			case unix.BPF_RSH:
				if class == unix.BPF_ALU {
					v = uint64(uint32(reg[ins.dst()]) >> (v & 31))
				} else {
					v = reg[ins.dst()] >> (v & 63)
				}
			default:
				t.Fatalf("unexpected alu op %+v", ins)
			}
			if class == unix.BPF_ALU {
				v = uint64(uint32(v))
			}
			reg[ins.dst()] = v
		case unix.BPF_JMP:
			if op == unix.BPF_EXIT {
				return reg[bpfR0]
			}
			if src != unix.BPF_K {
				t.Fatalf("unexpected jump %+v", ins)
			}
			jump := false
			switch imm := uint64(int64(ins.imm)); op {
			case unix.BPF_JEQ:
				jump = reg[ins.dst()] == imm
			case unix.BPF_JNE:
				jump = reg[ins.dst()] != imm
			default:
				t.Fatalf("unexpected jump %+v", ins)
			}
			if jump {
				// Forward jumps only: the kernel rejects loops here.
				if ins.off < 0 || pc+int(ins.off) > len(insns) {
					t.Fatalf("jump out of the program at %d: %+v", pc-1, ins)
				}
				pc += int(ins.off)
			}
		default:
			t.Fatalf("unexpected instruction %+v", ins)
		}
	}
	t.Fatal("program fell off the end")
	return 0
}

func TestDeviceFilterMatchesEmulator(t *testing.T) {
	ruleSets := map[string][]specs.LinuxDeviceCgroup{
		"runc-default": {
			rule(false, "", nil, nil, "rwm"),
			rule(true, "c", nil, nil, "m"),
			rule(true, "b", nil, nil, "m"),
			rule(true, "c", num(1), num(3), "rwm"),
			rule(true, "c", num(1), num(5), "rwm"),
			rule(true, "c", num(1), num(7), "rwm"),
			rule(true, "c", num(5), num(0), "rwm"),
			rule(true, "c", num(136), nil, "rwm"),
			rule(true, "c", num(10), num(200), "rw"),
		},
		"deny-list": {
			rule(true, "a", nil, nil, "rwm"),
			rule(false, "c", num(1), num(5), "w"),
			rule(false, "b", nil, nil, "r"),
		},
		"only-null":  {rule(true, "c", num(1), num(3), "rwm")},
		"empty-deny": {rule(false, "a", nil, nil, "")},
		"merge": {
			rule(true, "c", num(1), num(3), "r"),
			rule(true, "c", num(1), num(3), "w"),
			rule(true, "a", num(4), nil, "m"),
		},
	}
	devs := []struct {
		typ          byte
		major, minor int64
	}{{'c', 1, 3}, {'c', 1, 5}, {'c', 1, 7}, {'c', 5, 0}, {'c', 136, 4}, {'c', 10, 200}, {'b', 8, 0}, {'b', 4, 1}, {'c', 4, 2}, {'c', 2, 3}}
	for name, rules := range ruleSets {
		insns, err := compileDeviceFilter(rules)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		parsed, _ := parseDevRules(rules)
		st := emulateDevices(parsed)
		for _, d := range devs {
			for acc := uint8(1); acc <= accAll; acc++ {
				bt := uint32(bpfDevChar)
				if d.typ == 'b' {
					bt = bpfDevBlock
				}
				got := runFilter(t, insns, bt, uint32(d.major), uint32(d.minor), uint32(acc)) == 1
				if want := st.allowed(d.typ, d.major, d.minor, acc); got != want {
					t.Errorf("%s: %c %d:%d %s: program says %v, emulator %v", name, d.typ, d.major, d.minor, accessString(acc), got, want)
				}
			}
		}
	}
	// Spot checks against intent, independent of the emulator.
	insns, _ := compileDeviceFilter(ruleSets["runc-default"])
	if runFilter(t, insns, bpfDevChar, 1, 3, uint32(accRead|accWrite)) != 1 {
		t.Error("/dev/null rw denied")
	}
	if runFilter(t, insns, bpfDevBlock, 8, 0, uint32(accRead)) != 0 {
		t.Error("block read allowed")
	}
	if runFilter(t, insns, bpfDevBlock, 8, 0, uint32(accMknod)) != 1 {
		t.Error("block mknod denied")
	}
	if runFilter(t, insns, bpfDevChar, 10, 200, uint32(accMknod)) != 1 {
		t.Error("tun mknod denied (covered by c *:* m)")
	}
}
