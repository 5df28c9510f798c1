package security

import (
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullproject/hull/runtime/caps"
	"github.com/hullproject/hull/runtime/seccomp"
)

func TestDefaultCapabilities(t *testing.T) {
	got := DefaultCapabilities()
	if len(got) != 14 {
		t.Fatalf("%d default capabilities, want 14: %v", len(got), got)
	}
	var mask uint64
	for _, c := range got {
		n, err := caps.Parse(c)
		if err != nil {
			t.Fatalf("default capability %s: %v", c, err)
		}
		mask |= 1 << uint(n)
	}
	// Docker's CapEff/CapBnd as /proc/self/status shows it.
	if mask != 0xa80425fb {
		t.Errorf("default capability mask %#x, want 0xa80425fb", mask)
	}
	got[0] = "CAP_SYS_ADMIN"
	if DefaultCapabilities()[0] == "CAP_SYS_ADMIN" {
		t.Error("DefaultCapabilities returns a shared slice")
	}
}

func TestAllCapabilities(t *testing.T) {
	all := AllCapabilities()
	if len(all) != caps.Last()+1 && len(all) != len(caps.Known()) {
		t.Errorf("AllCapabilities has %d entries, kernel knows %d", len(all), caps.Last()+1)
	}
	for _, c := range append(DefaultCapabilities(), "CAP_SYS_ADMIN", "CAP_NET_ADMIN") {
		if !contains(all, c) {
			t.Errorf("AllCapabilities lacks %s", c)
		}
	}
}

func sorted(s []string) []string {
	s = append([]string{}, s...)
	sort.Strings(s)
	return s
}

func TestApplyCapChanges(t *testing.T) {
	base := DefaultCapabilities()
	without := func(drop ...string) []string {
		var out []string
		for _, c := range base {
			if !contains(drop, c) {
				out = append(out, c)
			}
		}
		return out
	}
	allBut := func(drop ...string) []string {
		var out []string
		for _, c := range AllCapabilities() {
			if !contains(drop, c) {
				out = append(out, c)
			}
		}
		return out
	}
	cases := []struct {
		name      string
		add, drop []string
		want      []string
		err       string
	}{
		{name: "no changes", want: base},
		{name: "add one", add: []string{"NET_ADMIN"}, want: append(append([]string{}, base...), "CAP_NET_ADMIN")},
		{name: "add with prefix, any case", add: []string{"cap_sys_admin", "Sys_Ptrace"},
			want: append(append([]string{}, base...), "CAP_SYS_ADMIN", "CAP_SYS_PTRACE")},
		{name: "add present is no duplicate", add: []string{"CHOWN", "CAP_CHOWN"}, want: base},
		{name: "drop one", drop: []string{"NET_RAW"}, want: without("CAP_NET_RAW")},
		{name: "drop several, mixed spelling", drop: []string{"cap_mknod", "setfcap", "CAP_KILL"},
			want: without("CAP_MKNOD", "CAP_SETFCAP", "CAP_KILL")},
		{name: "drop absent", drop: []string{"SYS_ADMIN"}, want: base},
		{name: "drop and add same", add: []string{"CHOWN"}, drop: []string{"CHOWN"},
			want: append(without("CAP_CHOWN"), "CAP_CHOWN")},
		{name: "drop all", drop: []string{"ALL"}, want: []string{}},
		{name: "drop all, add one", add: []string{"net_bind_service"}, drop: []string{"all"},
			want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "drop all, add two", add: []string{"CHOWN", "SETUID"}, drop: []string{"ALL"},
			want: []string{"CAP_CHOWN", "CAP_SETUID"}},
		{name: "add all", add: []string{"ALL"}, want: AllCapabilities()},
		{name: "add all, drop one", add: []string{"all"}, drop: []string{"SYS_ADMIN"}, want: allBut("CAP_SYS_ADMIN")},
		{name: "add all wins over drop all", add: []string{"ALL"}, drop: []string{"ALL"}, want: AllCapabilities()},
		{name: "unknown add", add: []string{"FOO"}, err: `unknown capability: "CAP_FOO"`},
		{name: "unknown drop", drop: []string{"CAP_BAR"}, err: `unknown capability: "CAP_BAR"`},
		{name: "unknown with all", add: []string{"ALL", "NOPE"}, err: "unknown capability"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := append([]string{}, base...)
			got, err := ApplyCapChanges(in, c.add, c.drop)
			if !reflect.DeepEqual(in, base) {
				t.Errorf("base modified: %v", in)
			}
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == nil {
				t.Fatal("nil result")
			}
			if !reflect.DeepEqual(sorted(got), sorted(c.want)) {
				t.Errorf("got %v\nwant %v", got, c.want)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	m, r := MaskedPaths(), ReadonlyPaths()
	if len(m) != 11 || !contains(m, "/proc/kcore") || !contains(m, "/sys/devices/virtual/powercap") {
		t.Errorf("masked paths %v", m)
	}
	if len(r) != 5 || !contains(r, "/proc/sys") || !contains(r, "/proc/sysrq-trigger") {
		t.Errorf("read-only paths %v", r)
	}
	m[0], r[0] = "x", "x"
	if MaskedPaths()[0] == "x" || ReadonlyPaths()[0] == "x" {
		t.Error("paths are shared slices")
	}
}

// rules returns the profile's actions per syscall name: "allow",
// "allow-if" (conditional allow) or "errno:N".
func rules(p *specs.LinuxSeccomp) map[string][]string {
	out := map[string][]string{}
	for _, sc := range p.Syscalls {
		var what string
		switch {
		case sc.Action == specs.ActAllow && len(sc.Args) == 0:
			what = "allow"
		case sc.Action == specs.ActAllow:
			what = "allow-if"
		case sc.Action == specs.ActErrno && sc.ErrnoRet != nil:
			what = "errno:" + strconv.Itoa(int(*sc.ErrnoRet))
		default:
			what = string(sc.Action)
		}
		for _, n := range sc.Names {
			out[n] = append(out[n], what)
		}
	}
	return out
}

func TestDefaultSeccompShape(t *testing.T) {
	p := DefaultSeccomp(DefaultCapabilities())
	if p.DefaultAction != specs.ActErrno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != 1 {
		t.Errorf("default action %s errno %v, want SCMP_ACT_ERRNO EPERM", p.DefaultAction, p.DefaultErrnoRet)
	}
	if runtime.GOARCH == "amd64" {
		want := []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
		if !reflect.DeepEqual(p.Architectures, want) {
			t.Errorf("architectures %v, want %v", p.Architectures, want)
		}
	}
	r := rules(p)
	for _, n := range []string{"read", "write", "execve", "openat", "mmap", "futex", "wait4", "exit_group", "chroot", "ptrace", "getdents64", "statx"} {
		if !contains(r[n], "allow") {
			t.Errorf("%s not allowed: %v", n, r[n])
		}
	}
	for _, n := range []string{"mount", "umount2", "unshare", "setns", "pivot_root", "reboot", "init_module", "kexec_load",
		"settimeofday", "clock_settime", "acct", "iopl", "syslog", "bpf", "keyctl", "add_key", "io_uring_setup", "userfaultfd", "kcmp", "open_by_handle_at"} {
		if len(r[n]) != 0 {
			t.Errorf("%s in default profile: %v", n, r[n])
		}
	}
	if !reflect.DeepEqual(r["clone"], []string{"allow-if"}) || !reflect.DeepEqual(r["clone3"], []string{"errno:38"}) {
		t.Errorf("clone %v clone3 %v", r["clone"], r["clone3"])
	}
	if len(r["personality"]) != 4 || len(r["socket"]) != 1 || r["socket"][0] != "allow-if" {
		t.Errorf("personality %v socket %v", r["personality"], r["socket"])
	}

	admin := rules(DefaultSeccomp([]string{"sys_admin"}))
	for _, n := range []string{"mount", "umount2", "unshare", "setns", "pivot_root", "clone", "clone3", "bpf", "sethostname"} {
		if !contains(admin[n], "allow") {
			t.Errorf("CAP_SYS_ADMIN: %s not allowed: %v", n, admin[n])
		}
	}
	if len(admin["clone3"]) != 1 || len(admin["chroot"]) != 0 {
		t.Errorf("CAP_SYS_ADMIN: clone3 %v chroot %v", admin["clone3"], admin["chroot"])
	}

	all := rules(DefaultSeccomp(AllCapabilities()))
	for _, n := range []string{"reboot", "init_module", "finit_module", "delete_module", "settimeofday", "clock_settime",
		"acct", "iopl", "ioperm", "syslog", "kcmp", "pidfd_getfd", "vhangup", "mbind", "open_by_handle_at", "perf_event_open"} {
		if !contains(all[n], "allow") {
			t.Errorf("all capabilities: %s not allowed: %v", n, all[n])
		}
	}
	for _, n := range []string{"kexec_load", "keyctl", "io_uring_setup", "userfaultfd", "swapon"} {
		if len(all[n]) != 0 {
			t.Errorf("all capabilities: %s allowed: %v", n, all[n])
		}
	}
}

func TestDefaultSeccompCompiles(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("runtime/seccomp compiles for amd64 only")
	}
	for name, c := range map[string][]string{
		"none":     nil,
		"default":  DefaultCapabilities(),
		"sysadmin": append(DefaultCapabilities(), "CAP_SYS_ADMIN"),
		"all":      AllCapabilities(),
	} {
		prog, err := seccomp.Compile(DefaultSeccomp(c))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		t.Logf("%s capabilities: %d BPF instructions", name, len(prog))
	}
}
