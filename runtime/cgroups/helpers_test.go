package cgroups

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a helper process (see TestMain).
const helperEnv = "HULL_CGROUPS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "netcls" {
		os.Exit(netclsHelper())
	}
	os.Exit(m.Run())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration test needs root")
	}
}

func uniqueName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "hull-test-" + hex.EncodeToString(b)
}

// fixture owns a manager and the processes a test starts; its cleanup
// thaws, kills and destroys even when the test failed half way.
type fixture struct {
	t     *testing.T
	m     *manager
	procs []*gated
}

func newFixture(t *testing.T, l layout, cgroupsPath string) *fixture {
	t.Helper()
	m, err := newManager(l, cgroupsPath)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, m: m}
	t.Cleanup(f.cleanup)
	return f
}

// hostFixture uses the machine's real layout.
func hostFixture(t *testing.T) *fixture {
	t.Helper()
	requireRoot(t)
	l, err := loadLayout()
	if err != nil {
		t.Fatal(err)
	}
	return newFixture(t, l, "/"+uniqueName())
}

// v2Fixture sees only the cgroup2 hierarchy, as on a unified host. On a
// hybrid host this exercises the v2 code paths (freezer, eBPF devices,
// unified files) with the real kernel.
func v2Fixture(t *testing.T) *fixture {
	t.Helper()
	requireRoot(t)
	l, err := loadLayout()
	if err != nil {
		t.Fatal(err)
	}
	if l.v2 == nil {
		t.Skip("no cgroup2 hierarchy mounted")
	}
	l.v1 = nil
	return newFixture(t, l, "/"+uniqueName())
}

func (f *fixture) cleanup() {
	// A frozen v1 task cannot die, so thaw first; errors are expected
	// when the cgroup was never created.
	_ = f.m.Thaw()
	for _, p := range f.procs {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
	if err := f.m.Destroy(); err != nil {
		f.t.Errorf("cleanup: destroy: %v", err)
	}
	if f.m.Exists() {
		f.t.Errorf("cleanup: cgroup still exists")
	}
}

// gated is a shell that blocks on stdin before running its script, so it
// can be moved into a cgroup before it does the interesting work.
type gated struct {
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	stdout, stderr bytes.Buffer
	pid            int
}

func (f *fixture) start(script string) *gated {
	f.t.Helper()
	g := &gated{}
	g.cmd = exec.Command("sh", "-c", "read _ || exit 99; "+script)
	g.cmd.Stdout, g.cmd.Stderr = &g.stdout, &g.stderr
	var err error
	if g.stdin, err = g.cmd.StdinPipe(); err != nil {
		f.t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	g.pid = g.cmd.Process.Pid
	f.procs = append(f.procs, g)
	return g
}

func (g *gated) release(t *testing.T) {
	t.Helper()
	if _, err := g.stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	_ = g.stdin.Close()
}

// finish waits for a script that terminates on its own.
func (g *gated) finish(t *testing.T) (stdout, stderr string) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- g.cmd.Wait() }()
	select {
	case <-errc:
	case <-time.After(30 * time.Second):
		t.Fatalf("process %d did not finish", g.pid)
	}
	return g.stdout.String(), g.stderr.String()
}

// waitFor polls cond; it bounds waiting for the kernel, it does not
// measure anything.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// procStat returns the state letter and utime+stime ticks of pid.
func procStat(t *testing.T, pid int) (string, uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// comm may contain spaces; fields restart after the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return f[0], ut + st
}

func readT(t *testing.T, dir, name string) string {
	t.Helper()
	s, err := readFile(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func expectFile(t *testing.T, dir, name, want string) {
	t.Helper()
	if got := readT(t, dir, name); got != want {
		t.Errorf("%s = %q, want %q", filepath.Join(dir, name), got, want)
	}
}
