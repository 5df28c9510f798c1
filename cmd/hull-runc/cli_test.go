package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/internal/testbundle"
)

var binary string

// TestMain builds hull-runc once; the tests drive it as containerd would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hull-runc-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "hull-runc")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build hull-runc: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	for _, d := range []string{"/sys/fs/cgroup/*/hull-cli-test", "/sys/fs/cgroup/unified/hull-cli-test"} {
		matches, _ := filepath.Glob(d)
		for _, p := range matches {
			os.Remove(p)
		}
	}
	os.Exit(code)
}

type cli struct {
	t    *testing.T
	root string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces, cgroups and mounts")
	}
	c := &cli{t: t, root: t.TempDir()}
	t.Cleanup(func() {
		out, _ := exec.Command(binary, "--root", c.root, "list", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			exec.Command(binary, "--root", c.root, "delete", "--force", id).Run()
		}
	})
	return c
}

// run executes hull-runc and returns stdout, stderr and the exit code.
func (c *cli) run(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command(binary, append([]string{"--root", c.root}, args...)...)
	// Files, not pipes: a detached container inherits stdout and would
	// keep a pipe open long after hull-runc has returned.
	outF, _ := os.CreateTemp(c.t.TempDir(), "stdout")
	errF, _ := os.CreateTemp(c.t.TempDir(), "stderr")
	defer outF.Close()
	defer errF.Close()
	cmd.Stdout, cmd.Stderr = outF, errF
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	outB, _ := os.ReadFile(outF.Name())
	errB, _ := os.ReadFile(errF.Name())
	out, errb := bytes.NewBuffer(outB), bytes.NewBuffer(errB)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run("", args...)
	if code != 0 {
		c.t.Fatalf("hull-runc %v: exit %d: %s", args, code, errs)
	}
	return out
}

func bundle(t *testing.T, args []string, mutate func(*specs.Spec)) (string, string) {
	id := fmt.Sprintf("cli%d", rand.IntN(1<<30))
	return testbundle.New(t, args, func(s *specs.Spec) {
		s.Linux.CgroupsPath = "/hull-cli-test/" + id
		if mutate != nil {
			mutate(s)
		}
	}), id
}

func TestVersionAndFeatures(t *testing.T) {
	out, err := exec.Command(binary, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	if !strings.HasPrefix(lines[0], "hull-runc version ") || !strings.HasPrefix(lines[1], "spec: 1.") {
		t.Errorf("--version printed %q", out)
	}
	out, err = exec.Command(binary, "features").Output()
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		OCIVersionMax string
		Linux         struct {
			Namespaces []string
			Seccomp    struct{ Enabled bool }
		}
	}
	if err := json.Unmarshal(out, &f); err != nil || len(f.Linux.Namespaces) < 7 || !f.Linux.Seccomp.Enabled {
		t.Errorf("features: %v %s", err, out)
	}
}

func TestSpecCommand(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command(binary, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("spec: %v %s", err, out)
	}
	var s specs.Spec
	data, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if err := json.Unmarshal(data, &s); err != nil || s.Process.Args[0] != "sh" || s.Root.Path != "rootfs" {
		t.Fatalf("spec wrote %s (%v)", data, err)
	}
	if out, err := exec.Command(binary, "spec", "--bundle", dir).CombinedOutput(); err == nil || !strings.Contains(string(out), "exists") {
		t.Errorf("spec over an existing config: %v %s", err, out)
	}
	rl := t.TempDir()
	exec.Command(binary, "spec", "--rootless", "--bundle", rl).Run()
	data, _ = os.ReadFile(filepath.Join(rl, "config.json"))
	if !strings.Contains(string(data), `"uidMappings"`) {
		t.Errorf("rootless spec has no uid mappings: %s", data)
	}
}

func TestLifecycleThroughCLI(t *testing.T) {
	c := newCLI(t)
	b, id := bundle(t, []string{"sleep", "100"}, func(s *specs.Spec) {
		s.Annotations = map[string]string{"org.example/key": "v"}
	})
	pidFile := filepath.Join(t.TempDir(), "pid")
	c.ok("create", "--bundle", b, "--pid-file", pidFile, id)
	var st map[string]any
	json.Unmarshal([]byte(c.ok("state", id)), &st)
	pid, _ := os.ReadFile(pidFile)
	if st["status"] != "created" || fmt.Sprint(st["pid"]) != string(pid) || st["bundle"] != b ||
		st["rootfs"] != filepath.Join(b, "rootfs") || st["created"] == nil || st["ociVersion"] == nil {
		t.Errorf("state after create: %v (pid file %s)", st, pid)
	}
	if ann, _ := st["annotations"].(map[string]any); ann["org.example/key"] != "v" {
		t.Errorf("annotations missing from state: %v", st)
	}
	c.ok("start", id)
	var list []map[string]any
	json.Unmarshal([]byte(c.ok("list", "--format", "json")), &list)
	if len(list) != 1 || list[0]["status"] != "running" {
		t.Errorf("list: %v", list)
	}
	var pids []int
	json.Unmarshal([]byte(c.ok("ps", "--format", "json", id)), &pids)
	if len(pids) != 1 || fmt.Sprint(pids[0]) != string(pid) {
		t.Errorf("ps: %v", pids)
	}
	if _, errs, code := c.run("", "kill", id, "NOSUCHSIG"); code == 0 || !strings.Contains(errs, "unknown signal") {
		t.Errorf("kill with unknown signal: %d %s", code, errs)
	}
	if _, errs, code := c.run("", "delete", id); code == 0 || !strings.Contains(errs, "not stopped") {
		t.Errorf("delete running: %d %s", code, errs)
	}
	c.ok("pause", id)
	json.Unmarshal([]byte(c.ok("state", id)), &st)
	if st["status"] != "paused" {
		t.Errorf("after pause: %v", st["status"])
	}
	c.ok("resume", id)
	c.ok("kill", id, "9")
	waitStatus(t, c, id, "stopped")
	if _, errs, code := c.run("", "kill", id, "TERM"); code == 0 || !strings.Contains(errs, "container not running") {
		t.Errorf("kill stopped: %d %s", code, errs)
	}
	c.ok("delete", id)
	if _, errs, code := c.run("", "state", id); code == 0 || !strings.Contains(errs, "does not exist") {
		t.Errorf("state after delete: %d %s", code, errs)
	}
	c.ok("delete", "--force", id) // already gone: --force succeeds quietly
}

func waitStatus(t *testing.T, c *cli, id, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st map[string]any
		json.Unmarshal([]byte(c.ok("state", id)), &st)
		if st["status"] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %v, want %s", st["status"], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunForegroundExitCode(t *testing.T) {
	c := newCLI(t)
	b, id := bundle(t, []string{"sh", "-c", "echo out; echo err >&2; exit 42"}, nil)
	out, errs, code := c.run("", "run", "--bundle", b, id)
	if code != 42 || out != "out\n" || errs != "err\n" {
		t.Errorf("run: exit %d stdout %q stderr %q", code, out, errs)
	}
	if ls := c.ok("list", "-q"); ls != "" {
		t.Errorf("run left containers: %q", ls)
	}
	b2, id2 := bundle(t, []string{"sleep", "100"}, nil)
	c.ok("run", "--detach", "--bundle", b2, id2)
	waitStatus(t, c, id2, "running")
	c.ok("delete", "--force", id2)
}

func TestExecThroughCLI(t *testing.T) {
	c := newCLI(t)
	b, id := bundle(t, []string{"sleep", "100"}, nil)
	c.ok("run", "-d", "--bundle", b, id)
	out := c.ok("exec", "-e", "X=1", "--cwd", "/tmp", "-u", "1000:1000", id, "sh", "-c", "echo $X $(pwd) $(id -u):$(id -g)")
	if out != "1 /tmp 1000:1000\n" {
		t.Errorf("inline exec printed %q", out)
	}
	proc := specs.Process{Args: []string{"sh", "-c", "echo from-process-file; exit 4"}, Cwd: "/", Env: []string{"PATH=/bin"}}
	data, _ := json.Marshal(proc)
	pf := filepath.Join(t.TempDir(), "process.json")
	os.WriteFile(pf, data, 0o644)
	out, _, code := c.run("", "exec", "--process", pf, id)
	if out != "from-process-file\n" || code != 4 {
		t.Errorf("exec --process: %q exit %d", out, code)
	}
	pidFile := filepath.Join(t.TempDir(), "exec.pid")
	c.ok("exec", "--detach", "--pid-file", pidFile, id, "sleep", "50")
	data, _ = os.ReadFile(pidFile)
	if len(data) == 0 {
		t.Error("exec --detach wrote no pid file")
	}
	if _, errs, code := c.run("", "exec", id, "nonexistent-cmd"); code == 0 || !strings.Contains(errs, "not found") {
		t.Errorf("exec of missing command: %d %s", code, errs)
	}
}

func TestUpdateResources(t *testing.T) {
	c := newCLI(t)
	b, id := bundle(t, []string{"sleep", "100"}, nil)
	c.ok("run", "-d", "--bundle", b, id)
	out, errs, code := c.run(`{"memory":{"limit":33554432},"pids":{"limit":50}}`, "update", "--resources", "-", id)
	if code != 0 {
		t.Fatalf("update: %s %s", out, errs)
	}
	mem, _ := os.ReadFile("/sys/fs/cgroup/memory/hull-cli-test/" + id + "/memory.limit_in_bytes")
	pids, _ := os.ReadFile("/sys/fs/cgroup/pids/hull-cli-test/" + id + "/pids.max")
	if strings.TrimSpace(string(mem)) != "33554432" || strings.TrimSpace(string(pids)) != "50" {
		t.Errorf("after update: memory %q pids %q", mem, pids)
	}
}

func TestConsoleSocket(t *testing.T) {
	c := newCLI(t)
	b, id := bundle(t, []string{"sh", "-c", "tty; sleep 100"}, func(s *specs.Spec) { s.Process.Terminal = true })
	sock := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan *os.File, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer conn.Close()
		uc := conn.(*net.UnixConn)
		buf, oob := make([]byte, 64), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
		if err != nil {
			got <- nil
			return
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		fds, _ := unix.ParseUnixRights(&msgs[0])
		got <- os.NewFile(uintptr(fds[0]), "master")
	}()
	c.ok("create", "--bundle", b, "--console-socket", sock, id)
	master := <-got
	if master == nil {
		t.Fatal("no pty master received")
	}
	defer master.Close()
	c.ok("start", id)
	buf := make([]byte, 256)
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := master.Read(buf)
	if !strings.Contains(string(buf[:n]), "/dev/pts/0") {
		t.Errorf("container's tty is %q, want /dev/pts/0", buf[:n])
	}
	if _, errs, code := c.run("", "create", "--bundle", b, "--console-socket", "/nonexistent.sock", id+"x"); code == 0 || !strings.Contains(errs, "console socket") {
		t.Errorf("bad console socket: %d %s", code, errs)
	}
}

func TestLogFormatJSONAndSystemdCgroup(t *testing.T) {
	c := newCLI(t)
	logFile := filepath.Join(t.TempDir(), "log.json")
	_, _, code := c.run("", "--log", logFile, "--log-format", "json", "state", "nope")
	if code == 0 {
		t.Fatal("state of unknown container succeeded")
	}
	data, _ := os.ReadFile(logFile)
	var rec map[string]string
	if err := json.Unmarshal(bytes.TrimSpace(data), &rec); err != nil || rec["level"] != "error" || !strings.Contains(rec["msg"], "does not exist") {
		t.Errorf("log record %q (%v)", data, err)
	}
	if _, errs, code := c.run("", "--systemd-cgroup", "list"); code == 0 || !strings.Contains(errs, "systemd-cgroup") {
		t.Errorf("--systemd-cgroup: %d %s", code, errs)
	}
}

func TestPreserveFDs(t *testing.T) {
	c := newCLI(t)
	b, id := bundle(t, []string{"sh", "-c", "cat <&3"}, nil)
	r, w, _ := os.Pipe()
	w.WriteString("through-fd-3")
	w.Close()
	cmd := exec.Command(binary, "--root", c.root, "run", "--preserve-fds", "1", "--bundle", b, id)
	cmd.ExtraFiles = []*os.File{r}
	out, err := cmd.Output()
	if err != nil || string(out) != "through-fd-3" {
		t.Errorf("preserved fd: %q %v", out, err)
	}
}

// CVE-2019-5736: a process in the container holds the runtime's binary
// open through /proc/1/exe while the init still is our binary, then tries
// to write it once the binary no longer runs. The host binary must not
// change.
func TestAttackOverwriteRuntimeBinary(t *testing.T) {
	c := newCLI(t)
	// A private copy, so a successful attack could not hurt other tests.
	rt := filepath.Join(t.TempDir(), "hull-runc")
	data, _ := os.ReadFile(binary)
	os.WriteFile(rt, data, 0o755)
	before := sha256.Sum256(data)
	resultDir := t.TempDir()
	b, id := bundle(t, []string{"sleep", "100"}, func(s *specs.Spec) {
		all := []string{"CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE", "CAP_SYS_ADMIN"}
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/result", Type: "bind", Source: resultDir, Options: []string{"bind"}})
	})
	run := func(args ...string) {
		cmd := exec.Command(rt, append([]string{"--root", c.root}, args...)...)
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	run("create", "--bundle", b, id)
	attack := `
exec 3</proc/1/exe || { echo "open-failed" > /result/out; exit 0; }
echo opened > /result/opened
while [ "$(readlink /proc/1/exe)" != /bin/busybox ]; do usleep 1000; done
sleep 0.2
if echo pwned > /proc/self/fd/3; then echo "write-succeeded" > /result/out; else echo "write-failed" > /result/out; fi
`
	run("exec", "--detach", "--cap", "CAP_SYS_PTRACE", "--cap", "CAP_DAC_OVERRIDE", id, "sh", "-c", attack)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(resultDir, "opened")); err == nil {
			break
		}
		if _, err := os.Stat(filepath.Join(resultDir, "out")); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	run("start", id)
	var res []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if res, _ = os.ReadFile(filepath.Join(resultDir, "out")); len(res) > 0 {
			break
		}
	}
	after, _ := os.ReadFile(rt)
	if sha256.Sum256(after) != before {
		t.Fatalf("the runtime binary on the host was modified (attack result %q)", res)
	}
	if strings.TrimSpace(string(res)) == "write-succeeded" {
		t.Fatalf("attacker wrote through /proc/1/exe")
	}
	if len(res) == 0 {
		t.Fatal("the attack did not report a result")
	}
	t.Logf("attack result: %s", bytes.TrimSpace(res))
}

func TestRunForwardsSignals(t *testing.T) {
	c := newCLI(t)
	b, id := bundle(t, []string{"sh", "-c", `trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done`}, nil)
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "--root", c.root, "run", "--bundle", b, id)
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(out.Name())
		if strings.Contains(string(data), "ready") {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("container never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(unix.SIGTERM)
	err = cmd.Wait()
	data, _ := os.ReadFile(out.Name())
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 || !strings.Contains(string(data), "got-term") {
		t.Errorf("run after SIGTERM: %v, output %q; want exit 7 and got-term", err, data)
	}
}

func TestSocketActivation(t *testing.T) {
	c := newCLI(t)
	b, id := bundle(t, []string{"sh", "-c", `echo "$LISTEN_FDS $LISTEN_PID"; cat <&3`}, nil)
	r, w, _ := os.Pipe()
	w.WriteString("socket-data")
	w.Close()
	cmd := exec.Command(binary, "--root", c.root, "run", "--bundle", b, id)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1")
	cmd.ExtraFiles = []*os.File{r}
	out, err := cmd.Output()
	if err != nil || string(out) != "1 1\nsocket-data" {
		t.Errorf("socket activation: %q %v", out, err)
	}
}
