package monitor_test

// These tests run the real monitor (compiled by TestMain with gcc) over
// real busybox containers run by hull-runc, so they need root.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullproject/hull/internal/testbundle"
)

var (
	monitorBin string
	runcBin    string
)

const cgroupParent = "hull-monitor-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hull-monitor-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	monitorBin = filepath.Join(dir, "hull-monitor")
	runcBin = filepath.Join(dir, "hull-runc")
	sources, _ := filepath.Glob("*.c")
	// The same command as the Makefile's, so the tests see the binary
	// that ships.
	gcc := exec.Command("gcc", append([]string{"-O2", "-Wall", "-Wextra", "-static", "-o", monitorBin}, sources...)...)
	if out, err := gcc.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build hull-monitor: %v\n%s", err, out)
		os.Exit(1)
	} else if len(out) > 0 {
		fmt.Fprintf(os.Stderr, "gcc warnings:\n%s", out)
	}
	if out, err := exec.Command("go", "build", "-o", runcBin, "github.com/hullproject/hull/cmd/hull-runc").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build hull-runc: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	for _, pat := range []string{"/sys/fs/cgroup/*/" + cgroupParent, "/sys/fs/cgroup/unified/" + cgroupParent} {
		matches, _ := filepath.Glob(pat)
		for _, d := range matches {
			os.Remove(d)
		}
	}
	os.Exit(code)
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9]+`)

// mon is one test's container and its monitor.
type mon struct {
	t                                *testing.T
	id, dir, root, bundle, log, errf string
	cmd                              *exec.Cmd
	done                             chan struct{} // closed when a directly started monitor exits
	pid                              int
}

type syncMsg struct {
	Pid   int    `json:"pid"`
	Error string `json:"error"`
}

type healthLog struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	ExitCode int       `json:"exitCode"`
	Output   string    `json:"output"`
}

type monState struct {
	Status       string    `json:"status"`
	Pid          int       `json:"pid"`
	StartedAt    time.Time `json:"startedAt"`
	FinishedAt   time.Time `json:"finishedAt"`
	ExitCode     int       `json:"exitCode"`
	OOMKilled    bool      `json:"oomKilled"`
	RestartCount int       `json:"restartCount"`
	Error        string    `json:"error"`
	Health       *struct {
		Status        string      `json:"status"`
		FailingStreak int         `json:"failingStreak"`
		Log           []healthLog `json:"log"`
	} `json:"health"`
}

type logLine struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

func memCgroupDir(id string) string {
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err == nil {
		return filepath.Join("/sys/fs/cgroup/memory", cgroupParent, id)
	}
	return filepath.Join("/sys/fs/cgroup", cgroupParent, id)
}

func newMon(t *testing.T, args []string, mutate func(*specs.Spec)) *mon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs real containers")
	}
	name := strings.Trim(unsafeChars.ReplaceAllString(t.Name(), "-"), "-")
	if len(name) > 30 {
		name = name[len(name)-30:]
	}
	m := &mon{t: t, id: fmt.Sprintf("m%s-%d", name, rand.IntN(1<<30))}
	m.dir = t.TempDir()
	m.root = t.TempDir()
	m.log = filepath.Join(m.dir, "ctr.log")
	m.errf = filepath.Join(t.TempDir(), "monitor.stderr")
	m.bundle = testbundle.New(t, args, func(s *specs.Spec) {
		s.Linux.CgroupsPath = "/" + cgroupParent + "/" + m.id
		if mutate != nil {
			mutate(s)
		}
	})
	t.Cleanup(m.cleanup)
	return m
}

// cleanup leaves nothing behind, whatever state the test stopped in.
func (m *mon) cleanup() {
	if pid := m.monitorPid(); pid > 0 && !processGone(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if m.done != nil {
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			m.t.Errorf("monitor did not exit after SIGKILL")
		}
	}
	if out, err := exec.Command(runcBin, "--root", m.root, "delete", "--force", m.id).CombinedOutput(); err != nil {
		m.t.Errorf("cleanup: delete --force: %v: %s", err, out)
	}
	for _, pat := range []string{"/sys/fs/cgroup/*/" + cgroupParent + "/" + m.id, "/sys/fs/cgroup/unified/" + cgroupParent + "/" + m.id} {
		matches, _ := filepath.Glob(pat)
		for _, d := range matches {
			os.Remove(d)
		}
	}
	if m.t.Failed() {
		if data, err := os.ReadFile(m.errf); err == nil && len(data) > 0 {
			m.t.Logf("monitor stderr:\n%s", data)
		}
	}
}

func (m *mon) args(extra ...string) []string {
	return append([]string{"--id", m.id, "--bundle", m.bundle, "--dir", m.dir, "--runtime", runcBin,
		"--runtime-root", m.root, "--sync-fd", "3"}, extra...)
}

func readSync(t *testing.T, r *os.File) syncMsg {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(60 * time.Second))
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("read sync fd: %v (read %q)", err, line)
	}
	var msg syncMsg
	if err := json.Unmarshal([]byte(line), &msg); err != nil {
		t.Fatalf("sync line %q: %v", line, err)
	}
	return msg
}

// start runs the monitor as our child, as hull does (in a new session),
// and returns its sync message.
func (m *mon) start(extra ...string) syncMsg {
	m.t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		m.t.Fatal(err)
	}
	defer r.Close()
	errf, err := os.Create(m.errf)
	if err != nil {
		m.t.Fatal(err)
	}
	defer errf.Close()
	m.cmd = exec.Command(monitorBin, m.args(extra...)...)
	m.cmd.ExtraFiles = []*os.File{w}
	m.cmd.Stderr = errf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	w.Close()
	m.pid = m.cmd.Process.Pid
	m.done = make(chan struct{})
	go func() {
		m.cmd.Wait()
		close(m.done)
	}()
	return readSync(m.t, r)
}

func (m *mon) mustStart(extra ...string) syncMsg {
	m.t.Helper()
	msg := m.start(extra...)
	if msg.Error != "" || msg.Pid <= 0 {
		m.t.Fatalf("monitor did not start the container: %+v", msg)
	}
	return msg
}

func (m *mon) monitorPid() int {
	if m.pid > 0 {
		return m.pid
	}
	data, err := os.ReadFile(filepath.Join(m.dir, "monitor.pid"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

// processGone: no such process, or a zombie (gone but for its parent).
func processGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(data, ')')
	return i < 0 || i+2 >= len(data) || data[i+2] == 'Z'
}

func (m *mon) state() monState {
	m.t.Helper()
	data, err := os.ReadFile(filepath.Join(m.dir, "state.json"))
	if err != nil {
		m.t.Fatalf("read state.json: %v", err)
	}
	var s monState
	if err := json.Unmarshal(data, &s); err != nil {
		m.t.Fatalf("parse state.json %q: %v", data, err)
	}
	return s
}

// waitFor polls until cond holds; the deadline is only a guard against a
// hung test, never a measurement.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *mon) waitState(what string, cond func(monState) bool) monState {
	m.t.Helper()
	var s monState
	waitFor(m.t, what, func() bool {
		s = m.state()
		return cond(s)
	})
	return s
}

// waitExit waits for the monitor to finish and checks what it leaves.
func (m *mon) waitExit() monState {
	m.t.Helper()
	if m.done != nil {
		select {
		case <-m.done:
		case <-time.After(90 * time.Second):
			m.t.Fatalf("monitor still running; state: %+v", m.state())
		}
		if code := m.cmd.ProcessState.ExitCode(); code != 0 {
			m.t.Errorf("monitor exit status %d, want 0", code)
		}
	} else {
		pid := m.monitorPid()
		waitFor(m.t, "the monitor to exit", func() bool { return processGone(pid) })
	}
	s := m.state()
	if s.Status != "exited" || s.Pid != 0 {
		m.t.Errorf("final state %+v, want status exited and pid 0", s)
	}
	if _, err := os.Stat(filepath.Join(m.root, m.id)); !os.IsNotExist(err) {
		m.t.Errorf("container still in the runtime root after the monitor exited (stat: %v)", err)
	}
	for _, f := range []string{"attach.sock", "ctl"} {
		if _, err := os.Stat(filepath.Join(m.dir, f)); !os.IsNotExist(err) {
			m.t.Errorf("%s left behind (stat: %v)", f, err)
		}
	}
	return s
}

func (m *mon) runc(args ...string) {
	m.t.Helper()
	full := append([]string{"--root", m.root}, args...)
	if out, err := exec.Command(runcBin, full...).CombinedOutput(); err != nil {
		m.t.Fatalf("hull-runc %v: %v: %s", args, err, out)
	}
}

func (m *mon) ctl(line string) {
	m.t.Helper()
	f, err := os.OpenFile(filepath.Join(m.dir, "ctl"), os.O_WRONLY, 0)
	if err != nil {
		m.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		m.t.Fatal(err)
	}
}

func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	var lines []logLine
	for _, raw := range bytes.SplitAfter(data, []byte("\n")) {
		if len(raw) == 0 {
			continue
		}
		if raw[len(raw)-1] != '\n' {
			t.Fatalf("log %s ends in an incomplete record %q", path, raw)
		}
		var l logLine
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatalf("log record %q: %v", raw, err)
		}
		lines = append(lines, l)
	}
	return lines
}

func logText(lines []logLine) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Log)
	}
	return b.String()
}

func TestLogStreamsAndSplitting(t *testing.T) {
	t.Parallel()
	script := `echo out; echo err >&2; printf 'a\tb\001c\377d"\303\251\n'; ` +
		`head -c 20000 /dev/zero | tr '\000' x; echo; printf partial`
	m := newMon(t, []string{"sh", "-c", script}, nil)
	m.mustStart("--log-path", m.log)
	s := m.waitExit()
	if s.ExitCode != 0 {
		t.Errorf("exitCode %d, want 0", s.ExitCode)
	}
	lines := readLog(t, m.log)
	var stdout, stderr []string
	for _, l := range lines {
		switch l.Stream {
		case "stdout":
			stdout = append(stdout, l.Log)
		case "stderr":
			stderr = append(stderr, l.Log)
		default:
			t.Errorf("record with stream %q", l.Stream)
		}
		if l.Time.Before(s.StartedAt) || l.Time.After(s.FinishedAt) {
			t.Errorf("record time %v outside the run [%v, %v]", l.Time, s.StartedAt, s.FinishedAt)
		}
	}
	want := []string{"out\n", "a\tb\x01c\uFFFDd\"é\n", strings.Repeat("x", 16384), strings.Repeat("x", 20000-16384) + "\n", "partial"}
	if len(stdout) != len(want) {
		t.Fatalf("stdout records %s, want %s", summarize(stdout), summarize(want))
	}
	for i := range want {
		if stdout[i] != want[i] {
			t.Errorf("stdout record %d = %.60q (len %d), want %.60q (len %d)", i, stdout[i], len(stdout[i]), want[i], len(want[i]))
		}
	}
	if len(stderr) != 1 || stderr[0] != "err\n" {
		t.Errorf("stderr records %q, want [\"err\\n\"]", stderr)
	}
}

// summarize shows records by their start and length: some are 16 KiB.
func summarize(records []string) string {
	var parts []string
	for _, r := range records {
		parts = append(parts, fmt.Sprintf("%.20q(%d)", r, len(r)))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func TestLogRotation(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sh", "-c", `i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done`}, nil)
	m.mustStart("--log-path", m.log, "--log-max-size", "1024", "--log-max-file", "3")
	m.waitExit()
	files, _ := filepath.Glob(m.log + "*")
	want := []string{m.log, m.log + ".1", m.log + ".2"}
	if strings.Join(files, " ") != strings.Join(want, " ") {
		t.Fatalf("log files %v, want %v", files, want)
	}
	// Oldest to newest, the lines must follow on from each other, and
	// the newest is the last line written.
	next := -1
	for _, f := range []string{m.log + ".2", m.log + ".1", m.log} {
		if fi, err := os.Stat(f); err != nil || fi.Size() > 1024 {
			t.Errorf("%s: size over the limit (%v, %v)", f, fi.Size(), err)
		}
		for _, l := range readLog(t, f) {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(l.Log, "line-"), "\n"))
			if err != nil {
				t.Fatalf("unexpected record %q in %s", l.Log, f)
			}
			if next >= 0 && n != next {
				t.Errorf("%s: line %d follows line %d", f, n, next-1)
			}
			next = n + 1
		}
	}
	if next != 300 {
		t.Errorf("newest line in the log is %d, want 299", next-1)
	}
}

// With a single file, rotation empties it.
func TestLogRotationOneFile(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sh", "-c", `i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done`}, nil)
	m.mustStart("--log-path", m.log, "--log-max-size", "1024", "--log-max-file", "1")
	m.waitExit()
	if files, _ := filepath.Glob(m.log + "*"); len(files) != 1 {
		t.Fatalf("log files %v, want only %s", files, m.log)
	}
	if fi, err := os.Stat(m.log); err != nil || fi.Size() > 1024 || fi.Size() == 0 {
		t.Fatalf("log size %v (%v), want 1..1024", fi.Size(), err)
	}
	lines := readLog(t, m.log)
	if last := lines[len(lines)-1].Log; last != "line-299\n" {
		t.Errorf("last record %q, want line-299", last)
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sh", "-c", "exit 3"}, nil)
	m.mustStart()
	s := m.waitExit()
	if s.ExitCode != 3 || s.OOMKilled || s.RestartCount != 0 {
		t.Errorf("state %+v, want exitCode 3, not OOM-killed, no restart", s)
	}
	if s.FinishedAt.Before(s.StartedAt) || s.StartedAt.IsZero() {
		t.Errorf("startedAt %v, finishedAt %v", s.StartedAt, s.FinishedAt)
	}
}

func TestKilledBySignal(t *testing.T) {
	t.Parallel()
	t.Run("KILL", func(t *testing.T) {
		t.Parallel()
		m := newMon(t, []string{"sleep", "100"}, nil)
		m.mustStart()
		m.runc("kill", m.id, "KILL")
		if s := m.waitExit(); s.ExitCode != 137 || s.OOMKilled {
			t.Errorf("state %+v, want exitCode 137 and no OOM", s)
		}
	})
	// SIGTERM to the monitor is a stop: it passes the signal on and does
	// not restart the container. Without a pid namespace the container's
	// process is not an init, which would ignore SIGTERM.
	t.Run("TERM", func(t *testing.T) {
		t.Parallel()
		m := newMon(t, []string{"sleep", "100"}, func(s *specs.Spec) {
			var ns []specs.LinuxNamespace
			for _, n := range s.Linux.Namespaces {
				if n.Type != specs.PIDNamespace {
					ns = append(ns, n)
				}
			}
			s.Linux.Namespaces = ns
		})
		m.mustStart("--restart", "always")
		// SIGHUP and SIGINT are not for a detached monitor; pending
		// signals arrive lowest first, so these come before the TERM.
		for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM} {
			if err := syscall.Kill(m.pid, sig); err != nil {
				t.Fatal(err)
			}
		}
		if s := m.waitExit(); s.ExitCode != 143 || s.RestartCount != 0 {
			t.Errorf("state %+v, want exitCode 143 and no restart", s)
		}
	})
}

func TestOOMKilled(t *testing.T) {
	t.Parallel()
	limit := int64(16 << 20)
	m := newMon(t, []string{"tail", "/dev/zero"}, func(s *specs.Spec) {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		mem := &specs.LinuxMemory{Limit: &limit}
		// With swap the container would crawl instead of dying.
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
			mem.Swap = &limit
		}
		s.Linux.Resources.Memory = mem
	})
	m.mustStart("--oom-cgroup", memCgroupDir(m.id))
	if s := m.waitExit(); !s.OOMKilled || s.ExitCode != 137 {
		t.Errorf("state %+v, want oomKilled and exitCode 137", s)
	}
}

func TestRestartOnFailure(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sh", "-c", "echo run; exit 1"}, nil)
	m.mustStart("--log-path", m.log, "--restart", "on-failure", "--restart-max", "3")
	s := m.waitExit()
	if s.RestartCount != 3 || s.ExitCode != 1 {
		t.Errorf("state %+v, want restartCount 3 and exitCode 1", s)
	}
	if got := logText(readLog(t, m.log)); got != strings.Repeat("run\n", 4) {
		t.Errorf("log %q, want four runs", got)
	}
}

func TestRestartAlwaysThenStop(t *testing.T) {
	t.Parallel()
	// The first run exits 0 (always restarts it anyway); the second
	// stays up until it is stopped.
	m := newMon(t, []string{"sh", "-c", "[ -f /ran ] && exec sleep 100; touch /ran; exit 0"}, nil)
	m.mustStart("--restart", "always")
	m.waitState("the restart", func(s monState) bool { return s.RestartCount == 1 && s.Status == "running" })
	m.ctl("stop")
	m.runc("kill", m.id, "KILL")
	if s := m.waitExit(); s.RestartCount != 1 || s.ExitCode != 137 {
		t.Errorf("state %+v, want no restart after the stop", s)
	}
}

// A stop between runs (during the back-off, or while a run is up) ends
// the restarting for good.
func TestStopWhileRestarting(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sh", "-c", "exit 1"}, nil)
	m.mustStart("--restart", "always")
	m.waitState("two restarts", func(s monState) bool { return s.RestartCount >= 2 })
	m.ctl("stop")
	s := m.waitExit()
	after := m.state()
	if after.RestartCount != s.RestartCount || s.ExitCode != 1 {
		t.Errorf("state %+v, then %+v", s, after)
	}
}

func TestRestartFailsToStart(t *testing.T) {
	t.Parallel()
	// The first run removes its own shell, so the restart cannot start.
	m := newMon(t, []string{"sh", "-c", "rm /bin/sh; exit 1"}, nil)
	m.mustStart("--restart", "on-failure")
	s := m.waitExit()
	if s.RestartCount != 1 || s.Error == "" || s.ExitCode != 127 {
		t.Errorf("state %+v, want restartCount 1, an error and exitCode 127", s)
	}
}

func TestCreateFails(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"/no/such/binary"}, nil)
	msg := m.start()
	if msg.Error == "" || msg.Pid != 0 {
		t.Fatalf("sync message %+v, want an error", msg)
	}
	t.Logf("error: %s", msg.Error)
	<-m.done
	if code := m.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("monitor exit status %d, want 1", code)
	}
	if _, err := os.Stat(filepath.Join(m.root, m.id)); !os.IsNotExist(err) {
		t.Errorf("container left in the runtime root (stat: %v)", err)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sh", "-c", "sleep 1; touch /tmp/ok; sleep 2; rm /tmp/ok; sleep 30"}, nil)
	// Failures before /tmp/ok exists fall in the start period, so the
	// status goes starting -> healthy -> unhealthy.
	m.mustStart("--health-shell", "echo probe; test -f /tmp/ok", "--health-interval", "200000000",
		"--health-retries", "2", "--health-start-period", "30000000000")
	var seen []string
	s := m.waitState("unhealthy", func(s monState) bool {
		if s.Health == nil {
			return false
		}
		if len(seen) == 0 || seen[len(seen)-1] != s.Health.Status {
			seen = append(seen, s.Health.Status)
		}
		return s.Health.Status == "unhealthy"
	})
	if strings.Join(seen, ",") != "starting,healthy,unhealthy" {
		t.Errorf("health went %v, want starting, healthy, unhealthy", seen)
	}
	h := s.Health
	if h.FailingStreak < 2 || len(h.Log) == 0 || len(h.Log) > 5 {
		t.Errorf("health %+v: want a failing streak of 2+ and 1-5 log entries", h)
	}
	for _, e := range h.Log {
		if e.Output != "probe\n" || e.End.Before(e.Start) {
			t.Errorf("health log entry %+v", e)
		}
	}
	if last := h.Log[len(h.Log)-1]; last.ExitCode != 1 {
		t.Errorf("last check %+v, want exit code 1", last)
	}
	m.runc("kill", m.id, "KILL")
	m.waitExit()
}

func TestHealthTimeout(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sleep", "100"}, nil)
	// The exec form: each --health-cmd is one argument.
	m.mustStart("--health-cmd", "sleep", "--health-cmd", "1000", "--health-interval", "200000000",
		"--health-timeout", "300000000", "--health-retries", "1")
	s := m.waitState("unhealthy", func(s monState) bool { return s.Health != nil && s.Health.Status == "unhealthy" })
	e := s.Health.Log[0]
	if e.ExitCode != -1 || e.Output != "Health check exceeded timeout (300ms)" {
		t.Errorf("health log entry %+v", e)
	}
	// The timed-out command itself is killed, not just `runtime exec`.
	procs := filepath.Join(memCgroupDir(m.id), "cgroup.procs")
	waitFor(t, "the timed-out check to be killed", func() bool {
		data, err := os.ReadFile(procs)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range strings.Fields(string(data)) {
			cmdline, _ := os.ReadFile("/proc/" + p + "/cmdline")
			pid, _ := strconv.Atoi(p)
			if bytes.Equal(cmdline, []byte("sleep\x001000\x00")) && !processGone(pid) {
				return false
			}
		}
		return true
	})
	m.runc("kill", m.id, "KILL")
	m.waitExit()
}

func dialAttach(t *testing.T, m *mon) *net.UnixConn {
	t.Helper()
	path := filepath.Join(m.dir, "attach.sock")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("attach.sock: %v, mode %v", err, fi.Mode())
	}
	// Past the 107 bytes a socket address holds, connect through a
	// descriptor of the directory, as the monitor binds.
	if len(path) >= 108 {
		d, err := os.Open(m.dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		path = fmt.Sprintf("/proc/self/fd/%d/attach.sock", d.Fd())
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	if hdr[1] != 0 || hdr[2] != 0 || hdr[3] != 0 {
		return 0, nil, fmt.Errorf("bad frame header %x", hdr)
	}
	payload := make([]byte, binary.BigEndian.Uint32(hdr[4:]))
	_, err := io.ReadFull(r, payload)
	return hdr[0], payload, err
}

// readUntil reads frames until the concatenated payload of stream
// contains want.
func readUntil(t *testing.T, c *net.UnixConn, stream byte, want string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	var got strings.Builder
	for !strings.Contains(got.String(), want) {
		s, p, err := readFrame(c)
		if err != nil {
			t.Fatalf("read frame: %v (got %q so far)", err, got.String())
		}
		if s != stream {
			t.Fatalf("frame for stream %d, want %d", s, stream)
		}
		got.Write(p)
	}
	return got.String()
}

func TestAttachOutput(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"}, nil)
	m.mustStart()
	c := dialAttach(t, m)
	out := readUntil(t, c, 1, "\n")
	// Three consecutive ticks, whichever the first one was.
	var first int
	if _, err := fmt.Sscanf(out[strings.Index(out, "tick"):], "tick %d", &first); err != nil {
		t.Fatalf("output %q", out)
	}
	readUntil(t, c, 1, fmt.Sprintf("tick %d\n", first+2))
	m.runc("kill", m.id, "KILL")
	m.waitExit()
	// The container's exit ends the attach stream.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		if _, _, err := readFrame(c); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("after exit: %v, want EOF", err)
			}
			break
		}
	}
}

func TestAttachStdin(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"cat"}, nil)
	m.mustStart("--stdin", "--log-path", m.log)
	c := dialAttach(t, m)
	if _, err := c.Write([]byte("hello monitor\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, 1, "hello monitor\n")
	// A client that has finished sending still gets output.
	c.CloseWrite()
	c2 := dialAttach(t, m)
	c2.Write([]byte("second\n"))
	readUntil(t, c, 1, "second\n")
	m.runc("kill", m.id, "KILL")
	m.waitExit()
	if got := logText(readLog(t, m.log)); got != "hello monitor\nsecond\n" {
		t.Errorf("log %q", got)
	}
}

func TestAttachSlowClientDropped(t *testing.T) {
	t.Parallel()
	const size = 4 << 20
	script := fmt.Sprintf(`while [ ! -f /tmp/go ]; do echo wait; sleep 0.05; done; head -c %d /dev/zero | tr '\000' y; echo; echo done; sleep 100`, size)
	m := newMon(t, []string{"sh", "-c", script}, nil)
	m.mustStart("--log-path", m.log)
	slow := dialAttach(t, m)
	// One frame shows the client was accepted; then it stops reading.
	readUntil(t, slow, 1, "wait\n")
	if err := os.WriteFile(filepath.Join(m.bundle, "rootfs", "tmp", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the output in the log", func() bool {
		data, _ := os.ReadFile(m.log)
		return bytes.Contains(data, []byte(`"log":"done\n"`))
	})
	if s := m.state(); s.Status != "running" {
		t.Fatalf("state %+v", s)
	}
	// The slow client was dropped: what it can read ends well before
	// the output does, in EOF, while the container still runs.
	slow.SetReadDeadline(time.Now().Add(60 * time.Second))
	n, err := io.Copy(io.Discard, slow)
	if err != nil {
		t.Fatalf("slow client: %v after %d bytes, want EOF", err, n)
	}
	if n >= size {
		t.Errorf("slow client read %d bytes: not dropped", n)
	}
	if got := strings.Count(logText(readLog(t, m.log)), "y"); got != size {
		t.Errorf("log has %d bytes of output, want %d", got, size)
	}
	m.runc("kill", m.id, "KILL")
	m.waitExit()
}

func TestTTY(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sh", "-c", "tty; read x; stty size"}, func(s *specs.Spec) {
		s.Process.Terminal = true
	})
	m.mustStart("--tty", "--stdin", "--log-path", m.log)
	// The resize is read before the input below, which lets the
	// container go on to print its size.
	m.ctl("resize 30 100")
	c := dialAttach(t, m)
	if _, err := c.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, 1, "30 100")
	if s := m.waitExit(); s.ExitCode != 0 {
		t.Errorf("exitCode %d", s.ExitCode)
	}
	lines := readLog(t, m.log)
	for _, l := range lines {
		if l.Stream != "stdout" {
			t.Errorf("record on stream %q with a terminal", l.Stream)
		}
	}
	text := logText(lines)
	if !strings.Contains(text, "/dev/pts/") || !strings.Contains(text, "30 100\r\n") {
		t.Errorf("log %q: want the tty name and the size 30 100", text)
	}
}

// A state dir too deep for a socket address still works, console socket
// included.
func TestLongStateDir(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sh", "-c", "read x; echo got $x"}, func(s *specs.Spec) {
		s.Process.Terminal = true
	})
	m.dir = filepath.Join(m.dir, strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	m.mustStart("--tty", "--stdin")
	c := dialAttach(t, m)
	if _, err := c.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, 1, "got hi")
	m.waitExit()
}

// hull starts the monitor and exits; the monitor and its container must
// carry on without it.
func TestSurvivesParent(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sleep", "100"}, nil)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	errf, err := os.Create(m.errf)
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	sh := exec.Command("/bin/sh", append([]string{"-c", `"$0" "$@" &`, monitorBin}, m.args()...)...)
	sh.ExtraFiles = []*os.File{w}
	sh.Stderr = errf
	if err := sh.Run(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	msg := readSync(t, r)
	if msg.Error != "" {
		t.Fatalf("sync: %+v", msg)
	}
	pid := m.monitorPid()
	if pid <= 0 || processGone(pid) {
		t.Fatalf("monitor %d is not running", pid)
	}
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if sid, _ := strconv.Atoi(fields[3]); sid != pid {
		t.Errorf("monitor session %d, want its own (%d)", sid, pid)
	}
	out, err := exec.Command(runcBin, "--root", m.root, "state", m.id).Output()
	if err != nil || !strings.Contains(string(out), `"running"`) {
		t.Fatalf("container state: %v %s", err, out)
	}
	if s := m.state(); s.Status != "running" || s.Pid != msg.Pid {
		t.Errorf("state %+v, want running with pid %d", s, msg.Pid)
	}
	m.runc("kill", m.id, "KILL")
	if s := m.waitExit(); s.ExitCode != 137 {
		t.Errorf("exitCode %d", s.ExitCode)
	}
}

func TestIdleRSS(t *testing.T) {
	t.Parallel()
	m := newMon(t, []string{"sleep", "100"}, nil)
	m.mustStart("--log-path", m.log, "--health-shell", "true", "--health-interval", "100000000")
	m.waitState("a health check", func(s monState) bool { return s.Health != nil && len(s.Health.Log) > 0 })
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (strings.HasPrefix(k, "Rss") || k == "VmRSS") {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			fields[k] = n
		}
	}
	t.Logf("idle monitor: VmRSS %d kB (anon %d kB, file %d kB)", fields["VmRSS"], fields["RssAnon"], fields["RssFile"])
	if fields["VmRSS"] == 0 || fields["VmRSS"] > 2048 {
		t.Errorf("VmRSS %d kB, want at most 2048 kB", fields["VmRSS"])
	}
	m.runc("kill", m.id, "KILL")
	m.waitExit()
}
