package container

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullproject/hull/internal/testbundle"
)

// Create re-executes the test binary as the container process; the nsenter
// constructor linked into it takes over before TestMain would run.
func TestMain(m *testing.M) {
	code := m.Run()
	// Remove the parent cgroups the tests' containers lived under.
	for _, dir := range []string{"/sys/fs/cgroup/*/hull-test", "/sys/fs/cgroup/unified/hull-test"} {
		matches, _ := filepath.Glob(dir)
		for _, d := range matches {
			os.Remove(d)
		}
	}
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces, cgroups and mounts")
	}
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9]+`)

func testID(t *testing.T) string {
	name := unsafeChars.ReplaceAllString(t.Name(), "-")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return fmt.Sprintf("t%s-%d", strings.Trim(name, "-"), rand.IntN(1<<30))
}

// env is one test container's bundle and state root.
type env struct {
	t      *testing.T
	root   string
	bundle string
	id     string
}

func newEnv(t *testing.T, args []string, mutate func(*specs.Spec)) *env {
	t.Helper()
	requireRoot(t)
	e := &env{t: t, root: t.TempDir(), id: testID(t)}
	e.bundle = testbundle.New(t, args, func(s *specs.Spec) {
		s.Linux.CgroupsPath = "/hull-test/" + e.id
		if mutate != nil {
			mutate(s)
		}
	})
	t.Cleanup(func() {
		if c, err := Load(e.root, e.id); err == nil {
			if err := c.Delete(true); err != nil {
				t.Errorf("cleanup delete: %v", err)
			}
		}
	})
	return e
}

// create creates the container with stdout and stderr going to a buffer
// that done() returns once the container's side has closed.
func (e *env) create(o CreateOpts) (*Container, func() string, error) {
	r, w, err := os.Pipe()
	if err != nil {
		e.t.Fatal(err)
	}
	o.Bundle = e.bundle
	o.Stdio = Stdio{Out: w, Err: w}
	c, err := Create(e.root, e.id, o)
	w.Close()
	var buf bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&buf, r)
		r.Close()
		close(copied)
	}()
	return c, func() string { <-copied; return buf.String() }, err
}

// run creates, starts and waits for the container, then deletes it.
func (e *env) run() (string, int) {
	e.t.Helper()
	c, output, err := e.create(CreateOpts{})
	if err != nil {
		e.t.Fatalf("create: %v", err)
	}
	if err := c.Start(); err != nil {
		e.t.Fatalf("start: %v (output %q)", err, output())
	}
	code, err := Wait(c.State.Pid)
	if err != nil {
		e.t.Fatalf("wait: %v", err)
	}
	out := output()
	if err := c.Delete(false); err != nil {
		e.t.Fatalf("delete: %v", err)
	}
	return out, code
}

// runOK runs a shell script in a fresh container and returns its output.
func runOK(t *testing.T, script string, mutate func(*specs.Spec)) string {
	t.Helper()
	e := newEnv(t, []string{"sh", "-c", script}, mutate)
	out, code := e.run()
	if code != 0 {
		t.Fatalf("container exited %d; output:\n%s", code, out)
	}
	return out
}

func assertNoLeftovers(t *testing.T, e *env) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(e.root, e.id)); !os.IsNotExist(err) {
		t.Errorf("state dir of %s still exists", e.id)
	}
	for _, ctl := range []string{"memory", "pids", "cpu", "devices", "freezer"} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", ctl, "hull-test", e.id)); !os.IsNotExist(err) {
			t.Errorf("cgroup %s/hull-test/%s still exists", ctl, e.id)
		}
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
