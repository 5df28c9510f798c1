// Package testbundle builds OCI bundles with a busybox root filesystem made
// from the host's static busybox (Debian's busybox-static), for tests and
// benchmarks that need a real container and no registry.
package testbundle

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullproject/hull/runtime/spec"
)

// BusyboxPath finds a statically linked busybox on the host.
func BusyboxPath() (string, error) {
	if p := os.Getenv("HULL_BUSYBOX"); p != "" {
		return p, nil
	}
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no static busybox found (install Debian's busybox-static)")
}

var (
	appletsOnce sync.Once
	applets     []string
	appletsErr  error
)

func appletList(bb string) ([]string, error) {
	appletsOnce.Do(func() {
		out, err := exec.Command(bb, "--list").Output()
		if err != nil {
			appletsErr = fmt.Errorf("%s --list: %w", bb, err)
			return
		}
		applets = strings.Fields(string(out))
	})
	return applets, appletsErr
}

// Rootfs populates dir with a busybox root filesystem: the binary in /bin,
// a symlink per applet, /etc/passwd and /etc/group with root and nobody, and
// the empty directories a runtime mounts over.
func Rootfs(dir string) error {
	bb, err := BusyboxPath()
	if err != nil {
		return err
	}
	names, err := appletList(bb)
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root", "home", "var", "usr/bin", "sbin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := copyFile(bb, filepath.Join(dir, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	for _, n := range names {
		if n == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", n)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Spec returns the default spec adjusted for non-interactive tests: no
// terminal, a writable root, and the given arguments.
func Spec(args ...string) *specs.Spec {
	s := spec.Default(false, 0, 0)
	s.Process.Terminal = false
	s.Process.Args = args
	s.Root.Readonly = false
	return s
}

// Write puts config.json for s into the bundle directory.
func Write(bundle string, s *specs.Spec) error {
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644)
}

// Make creates a bundle in dir (rootfs/ plus config.json).
func Make(dir string, s *specs.Spec) error {
	if err := Rootfs(filepath.Join(dir, "rootfs")); err != nil {
		return err
	}
	return Write(dir, s)
}

// New creates a bundle in a test temporary directory. mutate, if not nil,
// adjusts the spec before it is written.
func New(t testing.TB, args []string, mutate func(*specs.Spec)) string {
	t.Helper()
	dir := t.TempDir()
	s := Spec(args...)
	if mutate != nil {
		mutate(s)
	}
	if err := Make(dir, s); err != nil {
		t.Fatalf("make bundle: %v", err)
	}
	return dir
}
