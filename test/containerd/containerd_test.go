// Package containerd_test checks that the OCI runtime under test works as
// the runc binary of containerd's io.containerd.runc.v2 shim: it starts a
// private containerd (own socket, root and state under a temporary
// directory), imports a busybox image built from the host's static busybox,
// and drives containers with `ctr run --runc-binary <runtime>`.
//
// The runtime is $HULL_RUNC, else <repo>/bin/hull-runc (built by
// `make build`). To check the test itself against another runtime:
//
//	HULL_RUNC=$(command -v runc) go test ./test/containerd/ -v
//
// It needs root, and containerd, ctr and containerd-shim-runc-v2 (Debian:
// apt-get install -y containerd busybox-static).
package containerd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hullproject/hull/internal/fstest"
)

const (
	namespace = "hulltest"
	imageRepo = "docker.io/library/busybox"
	imageTag  = "hull-test"
	imageRef  = imageRepo + ":" + imageTag

	shimBinary = "containerd-shim-runc-v2"
	cmdTimeout = 30 * time.Second
)

// runtimeBinary returns the absolute path of the runtime under test.
func runtimeBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HULL_RUNC"); p != "" {
		abs, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("HULL_RUNC=%q: %v", p, err)
		}
		abs, err = filepath.Abs(abs)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	// go test runs in the package directory: test/containerd.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(wd, "..", "..", "bin", "hull-runc")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("runtime %s not found: run `make build` first (or set HULL_RUNC to a runc-compatible binary, e.g. HULL_RUNC=$(command -v runc)): %v", p, err)
	}
	return filepath.Clean(p)
}

// env is one private containerd plus the paths the test hands to ctr.
type env struct {
	t        *testing.T
	dir      string // everything lives under here
	sock     string // containerd grpc address
	runtime  string // runtime binary under test
	runcRoot string // --runc-root: the runtime's --root is runcRoot/<namespace>
	fifoDir  string // ctr's stdio fifos
	daemon   *exec.Cmd
	exited   chan struct{} // closed when the daemon exits
	logPath  string
	pids     []int // container init pids seen, killed at cleanup if still there
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// ctr runs ctr against the private daemon in the test namespace. It fails
// the test only if ctr could not be run at all (or timed out).
func (e *env) ctr(args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	full := append([]string{"--address", e.sock, "--namespace", namespace}, args...)
	cmd := exec.CommandContext(ctx, "ctr", full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		r.code = ee.ExitCode()
	default:
		e.t.Fatalf("ctr %s: %v (%s)\n%s", strings.Join(args, " "), err, r, e.daemonLogTail())
	}
	return r
}

// mustCtr runs ctr and fails the test unless it exits 0.
func (e *env) mustCtr(args ...string) result {
	e.t.Helper()
	r := e.ctr(args...)
	if r.code != 0 {
		e.t.Fatalf("ctr %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// runFlags are the `ctr run` flags selecting the runtime under test and
// keeping its state and the stdio fifos inside the test directory.
func (e *env) runFlags(runtime string) []string {
	return []string{
		"--runtime", "io.containerd.runc.v2",
		"--runc-binary", runtime,
		"--runc-root", e.runcRoot,
		"--fifo-dir", e.fifoDir,
	}
}

func (e *env) daemonLogTail() string {
	data, err := os.ReadFile(e.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "containerd log (tail):\n" + strings.Join(lines, "\n")
}

const configTemplate = `version = 2
root = %[1]q
state = %[2]q
oom_score = 0
# Only what ctr needs: no CRI (kubelet), no snapshotters needing special
# filesystems or devices, no tracing exporters.
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
`

// startContainerd writes a config, starts containerd on a private socket
// and waits until it answers. Cleanup is registered before it returns.
func startContainerd(t *testing.T, runtime string) *env {
	t.Helper()
	dir := t.TempDir() // removed after the cleanups registered below
	e := &env{
		t:        t,
		dir:      dir,
		sock:     filepath.Join(dir, "containerd.sock"),
		runtime:  runtime,
		runcRoot: filepath.Join(dir, "runc"),
		fifoDir:  filepath.Join(dir, "fifo"),
		exited:   make(chan struct{}),
		logPath:  filepath.Join(dir, "containerd.log"),
	}
	for _, d := range []string{e.runcRoot, e.fifoDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	config := fmt.Sprintf(configTemplate,
		filepath.Join(dir, "root"), filepath.Join(dir, "state"),
		e.sock, e.sock+".ttrpc", filepath.Join(dir, "opt"))
	configPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(e.logPath)
	if err != nil {
		t.Fatal(err)
	}

	// The shims put their sockets under /run/containerd/s whatever the
	// daemon's state dir is; remember whether those dirs were ours to remove.
	runDirExisted := exists("/run/containerd")
	sockDirExisted := exists("/run/containerd/s")

	e.daemon = exec.Command("containerd", "--config", configPath)
	e.daemon.Stdout, e.daemon.Stderr = logFile, logFile
	e.daemon.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := e.daemon.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start containerd: %v", err)
	}
	go func() {
		e.daemon.Wait()
		logFile.Close()
		close(e.exited)
	}()
	t.Cleanup(func() {
		e.cleanup()
		if !sockDirExisted {
			os.Remove("/run/containerd/s") // only if empty
		}
		if !runDirExisted {
			os.Remove("/run/containerd")
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-e.exited:
			t.Fatalf("containerd exited during startup\n%s", e.daemonLogTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := exec.CommandContext(ctx, "ctr", "--address", e.sock, "version").Run()
		cancel()
		if err == nil {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s within 20s: %v\n%s", e.sock, err, e.daemonLogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// quiet runs ctr for cleanup: bounded, errors ignored.
func (e *env) quiet(args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	full := append([]string{"--address", e.sock, "--namespace", namespace}, args...)
	out, _ := exec.CommandContext(ctx, "ctr", full...).Output()
	return string(out)
}

// cleanup removes every task and container, stops containerd, makes sure
// no shim or container process of ours survives and unmounts whatever the
// daemon left under the test directory.
func (e *env) cleanup() {
	t := e.t
	select {
	case <-e.exited:
	default:
		for _, id := range strings.Fields(e.quiet("containers", "list", "--quiet")) {
			e.quiet("tasks", "kill", "--signal", "SIGKILL", id)
			e.quiet("tasks", "delete", "--force", id)
			e.quiet("containers", "delete", id)
		}
		e.daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("containerd did not stop on SIGTERM within 10s; killing it")
			e.daemon.Process.Kill()
			<-e.exited
		}
	}

	// Shims of deleted tasks exit on their own; give them a moment.
	var shims []int
	for deadline := time.Now().Add(5 * time.Second); ; {
		shims = e.shimPids()
		if len(shims) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(shims) > 0 {
		t.Errorf("shim processes still running after cleanup: %v (killing them)", shims)
		for _, pid := range shims {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, pid := range e.pids {
		if cmdline(pid) == "sleep\x00300\x00" {
			t.Errorf("container process %d still running after cleanup (killing it)", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}

	unmountUnder(t, e.dir)

	// runc-style runtimes leave the parent cgroup (/<namespace>) of
	// /<namespace>/<id> behind in every hierarchy; remove it if empty.
	if ms, _ := filepath.Glob("/sys/fs/cgroup/*/" + namespace); len(ms) > 0 {
		for _, m := range ms {
			syscall.Rmdir(m)
		}
	}
	syscall.Rmdir("/sys/fs/cgroup/" + namespace) // cgroup v2 only hosts
}

func cmdline(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(data)
}

// shimPids lists the containerd-shim-runc-v2 processes serving our daemon.
func (e *env) shimPids() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		args := strings.Split(cmdline(pid), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != shimBinary {
			continue
		}
		for i, a := range args {
			if a == "-address" && i+1 < len(args) && args[i+1] == e.sock {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// unmountUnder lazily unmounts every mount point at or below dir, last
// mounted first (containerd leaves overlay rootfs and similar mounts behind
// when a task is not deleted cleanly).
func unmountUnder(t *testing.T, dir string) {
	mps := fstest.MountPoints(t, dir)
	for i := len(mps) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mps[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Errorf("umount %s: %v", mps[i], err)
		}
	}
}

// taskStatus returns the STATUS column of `ctr task ls` for id, "" if the
// task is not listed.
func (e *env) taskStatus(id string) (pid int, status string) {
	e.t.Helper()
	out := e.mustCtr("tasks", "list").stdout
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id {
			pid, _ = strconv.Atoi(f[1])
			return pid, f[2]
		}
	}
	return 0, ""
}

func (e *env) waitStatus(id, want string, timeout time.Duration) int {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pid, status := e.taskStatus(id)
		if status == want {
			return pid
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s: status %q, want %q after %v\n%s", id, status, want, timeout,
				e.ctr("tasks", "list").stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) containerListed(id string) bool {
	e.t.Helper()
	for _, c := range strings.Fields(e.mustCtr("containers", "list", "--quiet").stdout) {
		if c == id {
			return true
		}
	}
	return false
}

// runtimeState asks the runtime itself about a container, as the shim does.
func (e *env) runtimeState(id string) (status string, pid int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, e.runtime,
		"--root", filepath.Join(e.runcRoot, namespace), "state", id).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", 0, err
	}
	var st struct {
		Status string `json:"status"`
		Pid    int    `json:"pid"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return "", 0, fmt.Errorf("runtime state output %q: %w", out, err)
	}
	return st.Status, st.Pid, nil
}

func ppid(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...; comm may hold spaces, so cut at the last ')'.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

func TestContainerdRuncV2Shim(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it starts containerd and real containers")
	}
	runtime := runtimeBinary(t)
	for _, tool := range []string{"containerd", "ctr", shimBinary} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian: apt-get install -y containerd): skipping the containerd interop test", tool)
		}
	}
	t.Logf("runtime under test: %s", runtime)

	e := startContainerd(t, runtime)

	archive := filepath.Join(e.dir, "busybox-oci.tar")
	if err := writeImageArchive(e.dir, imageRef, imageTag, archive); err != nil {
		t.Fatalf("build image archive: %v", err)
	}
	e.mustCtr("images", "import", "--base-name", imageRepo, archive)
	if out := e.mustCtr("images", "list", "--quiet").stdout; !strings.Contains(out, imageRef) {
		t.Fatalf("image %s not listed after import: %q", imageRef, out)
	}

	suffix := strconv.Itoa(os.Getpid()) // cgroup paths are host-global
	ok := t.Run("run-rm", func(t *testing.T) {
		e.t = t
		id := "hull-rm-" + suffix
		args := append([]string{"run", "--rm"}, e.runFlags(e.runtime)...)
		r := e.mustCtr(append(args, imageRef, id, "echo", "hello-hull")...)
		if got := strings.TrimSpace(r.stdout); got != "hello-hull" {
			t.Errorf("ctr run --rm ... echo hello-hull: stdout %q, want %q (%s)", r.stdout, "hello-hull", r)
		}
		if e.containerListed(id) {
			t.Errorf("container %s still listed after ctr run --rm", id)
		}
	})
	ok = t.Run("detached-exec-kill", func(t *testing.T) {
		e.t = t
		id := "hull-detached-" + suffix
		args := append([]string{"run", "--detach"}, e.runFlags(e.runtime)...)
		e.mustCtr(append(args, imageRef, id, "sleep", "300")...)

		pid := e.waitStatus(id, "RUNNING", 10*time.Second)
		e.pids = append(e.pids, pid)
		if got := cmdline(pid); got != "sleep\x00300\x00" {
			t.Errorf("task pid %d runs %q, want sleep 300", pid, got)
		}
		// The container's init is a child of a shim serving our daemon.
		parent := ppid(pid)
		found := false
		for _, s := range e.shimPids() {
			found = found || s == parent
		}
		if !found {
			t.Errorf("parent %d of task pid %d is not a %s of this containerd (shims: %v)", parent, pid, shimBinary, e.shimPids())
		}
		// The runtime under test has the container in the root the shim was
		// told to use, with the same pid: the shim created it through it.
		if status, spid, err := e.runtimeState(id); err != nil {
			t.Errorf("%s state %s: %v", e.runtime, id, err)
		} else if status != "running" || spid != pid {
			t.Errorf("%s state %s: status %q pid %d, want running pid %d", e.runtime, id, status, spid, pid)
		}

		r := e.mustCtr("tasks", "exec", "--exec-id", "e1", "--fifo-dir", e.fifoDir, id, "sh", "-c", "echo from-exec")
		if got := strings.TrimSpace(r.stdout); got != "from-exec" {
			t.Errorf("exec echo: stdout %q, want %q (%s)", r.stdout, "from-exec", r)
		}
		r = e.ctr("tasks", "exec", "--exec-id", "e2", "--fifo-dir", e.fifoDir, id, "sh", "-c", "exit 3")
		if r.code != 3 {
			t.Errorf("exec `sh -c 'exit 3'`: %s, want exit 3", r)
		}
		if _, status := e.taskStatus(id); status != "RUNNING" {
			t.Errorf("task %s status %q after the execs, want RUNNING", id, status)
		}

		// sleep is pid 1 of its namespace and ignores SIGTERM: kill it.
		e.mustCtr("tasks", "kill", "--signal", "SIGKILL", id)
		e.waitStatus(id, "STOPPED", 10*time.Second)
		e.mustCtr("tasks", "delete", id)
		if _, status := e.taskStatus(id); status != "" {
			t.Errorf("task %s still listed (%s) after ctr task delete", id, status)
		}
		if _, _, err := e.runtimeState(id); err == nil {
			t.Errorf("%s state %s succeeds after the task was deleted", e.runtime, id)
		}
		e.mustCtr("containers", "delete", id)
		if e.containerListed(id) {
			t.Errorf("container %s still listed after ctr container delete", id)
		}
	}) && ok
	ok = t.Run("runc-binary-honoured", func(t *testing.T) {
		e.t = t
		// A wrapper that logs every call and execs the runtime under test:
		// the log shows the shim ran exactly the binary it was given, for
		// each step of the container's life, with the root it was given.
		callLog := filepath.Join(e.dir, "runtime-calls.log")
		wrapper := filepath.Join(e.dir, "runtime-wrapper")
		script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %q\nexec %q \"$@\"\n", callLog, e.runtime)
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		id := "hull-wrapped-" + suffix
		args := append([]string{"run", "--rm"}, e.runFlags(wrapper)...)
		r := e.mustCtr(append(args, imageRef, id, "echo", "via-wrapper")...)
		if got := strings.TrimSpace(r.stdout); got != "via-wrapper" {
			t.Errorf("stdout %q, want %q (%s)", r.stdout, "via-wrapper", r)
		}
		data, err := os.ReadFile(callLog)
		if err != nil {
			t.Fatalf("the shim never ran the --runc-binary given (%v)", err)
		}
		root := "--root " + filepath.Join(e.runcRoot, namespace)
		for _, verb := range []string{"create", "start", "delete"} {
			found := false
			for _, line := range strings.Split(string(data), "\n") {
				f := strings.Fields(line)
				hasVerb := false
				for _, w := range f {
					hasVerb = hasVerb || w == verb
				}
				if hasVerb && len(f) > 0 && f[len(f)-1] == id && strings.Contains(line, root) {
					found = true
				}
			}
			if !found {
				t.Errorf("no `%s ... %s` call with %q in the runtime call log:\n%s", verb, id, root, data)
			}
		}
		t.Logf("runtime calls by the shim:\n%s", data)
	}) && ok
	e.t = t
	if !ok {
		t.Log(e.daemonLogTail())
	}
}
