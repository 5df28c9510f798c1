package container

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/spec"
)

func TestRunOutputExitCodeAndCleanup(t *testing.T) {
	e := newEnv(t, []string{"sh", "-c", "echo hello; exit 3"}, nil)
	out, code := e.run()
	if out != "hello\n" || code != 3 {
		t.Fatalf("got %q exit %d, want hello and 3", out, code)
	}
	assertNoLeftovers(t, e)
}

func TestProcessSettings(t *testing.T) {
	umask := uint32(0o027)
	score := 123
	out := runOK(t, `hostname; id -u; id -g; id -G; umask; pwd; echo $FOO; ulimit -n; grep -E '^(NoNewPrivs|CapEff|CapBnd|CapPrm)' /proc/self/status; cat /proc/self/oom_score_adj; cat /proc/sys/kernel/domainname`,
		func(s *specs.Spec) {
			s.Hostname = "box1"
			s.Domainname = "example.test"
			s.Process.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{1002, 1003}, Umask: &umask}
			s.Process.Cwd = "/tmp"
			s.Process.Env = append(s.Process.Env, "FOO=bar")
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 777, Soft: 555}}
			s.Process.OOMScoreAdj = &score
			s.Process.Capabilities = &specs.LinuxCapabilities{
				Bounding:    []string{"CAP_CHOWN", "CAP_KILL"},
				Effective:   []string{"CAP_KILL"},
				Permitted:   []string{"CAP_KILL"},
				Inheritable: []string{"CAP_KILL"},
				Ambient:     []string{"CAP_KILL"},
			}
		})
	want := []string{"box1", "1000", "1001", "1001 1002 1003", "0027", "/tmp", "bar", "555",
		"NoNewPrivs:\t1", "123", "example.test"}
	for _, w := range want {
		if !strings.Contains(out, w+"\n") && !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	// CAP_KILL is bit 5 (0x20); bounding has CHOWN (bit 0) too.
	if !strings.Contains(out, "CapEff:\t0000000000000020") || !strings.Contains(out, "CapBnd:\t0000000000000021") {
		t.Errorf("capabilities wrong:\n%s", out)
	}
}

func TestRootfsMountsAndDevices(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "marker"), []byte("from-host"), 0o644)
	out := runOK(t, `
set -e
stat -c '%t:%T %a' /dev/null /dev/zero /dev/urandom
readlink /dev/fd; readlink /dev/ptmx
cat /data/marker; echo
touch /data/x 2>/dev/null && echo data-writable || echo data-readonly
touch /root-file 2>/dev/null && echo root-writable || echo root-readonly
wc -c < /proc/timer_list
ls /sys/firmware | wc -l
echo 1 > /proc/sys/vm/overcommit_memory 2>/dev/null && echo sys-writable || echo sys-readonly
grep -E ' /tmp | /dev/shm ' /proc/self/mountinfo | cut -d' ' -f5,6,9
ls /sys/fs/cgroup/memory >/dev/null && echo cgroup-ok
`, func(s *specs.Spec) {
		s.Root.Readonly = true
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/data", Type: "bind", Source: src, Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "size=1m"}})
	})
	for _, w := range []string{"1:3 666", "1:5 666", "1:9 666", "/proc/self/fd", "pts/ptmx", "from-host",
		"data-readonly", "root-readonly", "\n0\n", "sys-readonly", "/tmp rw,nosuid,nodev", "cgroup-ok"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestUserNamespace(t *testing.T) {
	out := runOK(t, `id -u; cat /proc/self/uid_map; touch /tmp/f && stat -c %u /tmp/f`, func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 65536}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 65536}}
	})
	if !strings.HasPrefix(out, "0\n") || !strings.Contains(out, "65536") {
		t.Errorf("user namespace not set up:\n%s", out)
	}
}

func TestJoinNamespacesByPath(t *testing.T) {
	a := newEnv(t, []string{"sleep", "100"}, func(s *specs.Spec) { s.Hostname = "shared-uts" })
	ca, _, err := a.create(CreateOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Start(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(ca.State.Pid)
	out := runOK(t, `hostname; readlink /proc/self/ns/net`, func(s *specs.Spec) {
		s.Hostname = ""
		for i, ns := range s.Linux.Namespaces {
			if ns.Type == specs.UTSNamespace || ns.Type == specs.NetworkNamespace {
				s.Linux.Namespaces[i].Path = "/proc/" + pid + "/ns/" + map[specs.LinuxNamespaceType]string{specs.UTSNamespace: "uts", specs.NetworkNamespace: "net"}[ns.Type]
			}
		}
	})
	want, _ := os.Readlink("/proc/" + pid + "/ns/net")
	if !strings.Contains(out, "shared-uts") || !strings.Contains(out, want) {
		t.Errorf("joined namespaces not shared: got %q, want uts shared-uts and %s", out, want)
	}
}

func TestCreateStartStateKillDelete(t *testing.T) {
	e := newEnv(t, []string{"sleep", "100"}, nil)
	c, _, err := e.create(CreateOpts{PidFile: filepath.Join(e.root, "pid")})
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st != Created {
		t.Fatalf("status after create = %s", st)
	}
	data, _ := os.ReadFile(filepath.Join(e.root, "pid"))
	if string(data) != strconv.Itoa(c.State.Pid) {
		t.Errorf("pid file %q, state pid %d", data, c.State.Pid)
	}
	// The init is alive but still ours, blocked before exec.
	if cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(c.State.Pid) + "/cmdline"); !strings.Contains(string(cmd), "init") {
		t.Errorf("created init runs %q, want our init", cmd)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st != Running {
		t.Fatalf("status after start = %s", st)
	}
	if err := c.Start(); err == nil {
		t.Error("second start succeeded")
	}
	if err := c.Delete(false); err == nil {
		t.Error("delete of a running container without force succeeded")
	}
	if err := c.Pause(); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st != Paused {
		t.Errorf("status after pause = %s", st)
	}
	if err := c.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := c.Signal(unix.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Wait(c.State.Pid); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st != Stopped {
		t.Errorf("status after kill = %s", st)
	}
	if err := c.Signal(unix.SIGTERM, false); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "container not running") {
		t.Errorf("kill of stopped container: %v", err)
	}
	if err := c.Delete(false); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(e.root, e.id); !errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("load after delete: %v", err)
	}
	assertNoLeftovers(t, e)
}

func TestExecJoinsNamespacesAndCgroup(t *testing.T) {
	e := newEnv(t, []string{"sleep", "100"}, nil)
	c, _, err := e.create(CreateOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	r, w, _ := os.Pipe()
	p := *c.Spec().Process
	p.Args = []string{"sh", "-c", "for n in pid net mnt uts ipc cgroup; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup | grep memory; exit 5"}
	pid, err := c.Exec(ExecOpts{Process: &p, Stdio: Stdio{Out: w, Err: w}})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := readAll(r)
	code, _ := Wait(pid)
	if code != 5 {
		t.Errorf("exec exit code %d, want 5", code)
	}
	initPid := strconv.Itoa(c.State.Pid)
	for _, n := range []string{"pid", "net", "mnt", "uts", "ipc", "cgroup"} {
		want, _ := os.Readlink("/proc/" + initPid + "/ns/" + n)
		if !strings.Contains(out, want) {
			t.Errorf("exec not in init's %s namespace %s:\n%s", n, want, out)
		}
	}
	if !strings.Contains(out, "memory:/\n") {
		t.Errorf("exec not in the container's cgroup (cgroup namespace root):\n%s", out)
	}
	p.Args = []string{"no-such-program"}
	_, err = c.Exec(ExecOpts{Process: &p})
	var ee *ExecError
	if !errors.As(err, &ee) || !ee.NotFound() {
		t.Errorf("exec of missing program: %v", err)
	}
}

func readAll(f *os.File) (string, error) {
	defer f.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String(), nil
		}
	}
}

func TestCgroupLimitsEnforced(t *testing.T) {
	limit := int64(16 << 20)
	pids := int64(10)
	e := newEnv(t, []string{"sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; cat /sys/fs/cgroup/pids/pids.max; for i in $(seq 20); do sleep 5 & done 2>&1 | head -1; tail /dev/zero"},
		func(s *specs.Spec) {
			s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit}
			s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pids}
		})
	out, code := e.run()
	if !strings.Contains(out, "16777216\n10\n") {
		t.Errorf("limits not visible in the container:\n%s", out)
	}
	if !strings.Contains(out, "Resource temporarily unavailable") && !strings.Contains(out, "can't fork") {
		t.Errorf("pids limit did not stop forks:\n%s", out)
	}
	if code != 137 {
		t.Errorf("tail /dev/zero under a 16 MiB limit exited %d, want 137 (OOM kill)", code)
	}
}

func TestSeccompDeniesSyscall(t *testing.T) {
	out := runOK(t, `mkdir /tmp/x 2>&1; echo done`, func(s *specs.Spec) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno,
				ErrnoRet: func() *uint { v := uint(unix.EXDEV); return &v }()}},
		}
	})
	if !strings.Contains(out, "Invalid cross-device link") || !strings.Contains(out, "done") {
		t.Errorf("seccomp errno not applied:\n%s", out)
	}
}

func TestHooksRunInOrderWithState(t *testing.T) {
	log := filepath.Join(t.TempDir(), "hooks.log")
	hook := func(name string) specs.Hook {
		return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", `read -r state; echo "` + name + ` $state" >> ` + log}}
	}
	e := newEnv(t, []string{"true"}, func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{
			CreateRuntime: []specs.Hook{hook("createRuntime")},
			Poststart:     []specs.Hook{hook("poststart")},
			Poststop:      []specs.Hook{hook("poststop")},
		}
		// These two run inside the container: the hook program must exist
		// there and write where the container can, so log to the bundle.
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/hooklog", Type: "bind", Source: filepath.Dir(log), Options: []string{"bind"}})
		in := func(name string) specs.Hook {
			return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", `state=$(cat); echo "` + name + ` $state" >> /hooklog/hooks.log`}}
		}
		s.Hooks.CreateContainer = []specs.Hook{hook("createContainer")}
		s.Hooks.StartContainer = []specs.Hook{in("startContainer")}
	})
	if out, code := e.run(); code != 0 {
		t.Logf("container output %q", out)
		t.Fatalf("exit %d", code)
	}
	data, _ := os.ReadFile(log)
	var order []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		name, state, _ := strings.Cut(l, " ")
		order = append(order, name)
		if !strings.Contains(state, `"id":"`+e.id+`"`) {
			t.Errorf("%s hook got state %s (log %q)", name, state, data)
		}
	}
	if got := strings.Join(order, ","); got != "createRuntime,createContainer,startContainer,poststart,poststop" {
		t.Errorf("hook order %s", got)
	}
}

func TestBadInputLeavesNothing(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	cases := map[string]struct {
		mutate func(bundle string)
		want   string
	}{
		"missing config": {func(b string) { os.Remove(filepath.Join(b, "config.json")) }, "no config.json"},
		"malformed":      {func(b string) { os.WriteFile(filepath.Join(b, "config.json"), []byte("{nope"), 0o644) }, "parse"},
		"unknown ns": {func(b string) {
			s, _ := spec.Load(b)
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
			writeSpec(t, b, s)
		}, `unknown namespace type "bogus"`},
		"missing rootfs": {func(b string) { os.RemoveAll(filepath.Join(b, "rootfs")) }, "rootfs"},
		"missing program": {func(b string) {
			s, _ := spec.Load(b)
			s.Process.Args = []string{"/no/such"}
			writeSpec(t, b, s)
		}, "/no/such"},
		"bad mount": {func(b string) {
			s, _ := spec.Load(b)
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "bind", Source: "/does/not/exist"})
			writeSpec(t, b, s)
		}, "/does/not/exist"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, []string{"true"}, nil)
			e.root = root
			tc.mutate(e.bundle)
			_, _, err := e.create(CreateOpts{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create error %v, want one mentioning %q", err, tc.want)
			}
			assertNoLeftovers(t, e)
		})
	}
	t.Run("duplicate id", func(t *testing.T) {
		e := newEnv(t, []string{"sleep", "10"}, nil)
		if _, _, err := e.create(CreateOpts{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.create(CreateOpts{}); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("duplicate create: %v", err)
		}
	})
	t.Run("bad console socket", func(t *testing.T) {
		e := newEnv(t, []string{"true"}, func(s *specs.Spec) { s.Process.Terminal = true })
		_, _, err := e.create(CreateOpts{ConsoleSocket: "/nonexistent/sock"})
		if err == nil || !strings.Contains(err.Error(), "console socket") {
			t.Errorf("create with bad console socket: %v", err)
		}
		assertNoLeftovers(t, e)
	})
}

func writeSpec(t *testing.T, bundle string, s *specs.Spec) {
	t.Helper()
	if s == nil {
		t.Fatal("spec did not load")
	}
	data, err := jsonMarshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestStartReportsDeadInit(t *testing.T) {
	e := newEnv(t, []string{"sleep", "10"}, nil)
	c, _, err := e.create(CreateOpts{})
	if err != nil {
		t.Fatal(err)
	}
	unix.Kill(c.State.Pid, unix.SIGKILL)
	Wait(c.State.Pid)
	done := make(chan error, 1)
	go func() { done <- c.Start() }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("start of a dead container succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("start hung on a dead init")
	}
}

func TestNoPivotAndSysctl(t *testing.T) {
	e := newEnv(t, []string{"sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax; ls /bin/busybox"}, func(s *specs.Spec) {
		s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1", "kernel.msgmax": "4242"}
	})
	c, output, err := e.create(CreateOpts{NoPivot: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	code, _ := Wait(c.State.Pid)
	out := output()
	if code != 0 || out != "1\n4242\n/bin/busybox\n" {
		t.Errorf("no-pivot container with sysctls: exit %d, output %q", code, out)
	}
	// A sysctl outside the container's namespaces is refused.
	e2 := newEnv(t, []string{"true"}, func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"vm.swappiness": "1"} })
	if _, _, err := e2.create(CreateOpts{}); err == nil || !strings.Contains(err.Error(), "not namespaced") {
		t.Errorf("host sysctl accepted: %v", err)
	}
	assertNoLeftovers(t, e2)
}
