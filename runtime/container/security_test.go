package container

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CVE-2021-30465: a mount destination that walks through a symlink in the
// image must stay inside the rootfs, whatever the link points to.
func TestAttackMountThroughSymlinkStaysInRoot(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "marker"), []byte("volume"), 0o644)
	hostVictim := t.TempDir() // an absolute host path the link names
	e := newEnv(t, []string{"sh", "-c", "cat /evil/marker; echo; ls /escape"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/evil/", Type: "bind", Source: src, Options: []string{"bind"}},
			specs.Mount{Destination: "/escape/sub", Type: "tmpfs", Source: "tmpfs"})
	})
	rootfs := filepath.Join(e.bundle, "rootfs")
	// /evil -> ../../../../ (climbs out if resolved on the host),
	// /escape -> an absolute host directory.
	if err := os.Symlink("../../../../../../../../tmp/hull-evil-target", filepath.Join(rootfs, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hostVictim, filepath.Join(rootfs, "escape")); err != nil {
		t.Fatal(err)
	}
	out, code := e.run()
	if code != 0 || !strings.Contains(out, "volume") {
		t.Fatalf("exit %d, output %q", code, out)
	}
	if _, err := os.Stat("/tmp/hull-evil-target"); err == nil {
		os.RemoveAll("/tmp/hull-evil-target")
		t.Error("mount through a symlink created a directory on the host")
	}
	if _, err := os.Stat(filepath.Join(hostVictim, "sub")); err == nil {
		t.Error("mount through an absolute symlink reached the host directory")
	}
	// The mount landed inside the rootfs, where the link resolves in-root.
	if _, err := os.Stat(filepath.Join(rootfs, "tmp", "hull-evil-target")); err != nil {
		t.Errorf("mount target was not created inside the rootfs: %v", err)
	}
}

// CVE-2025-31133: masking binds /dev/null over sensitive files; if the
// container's /dev/null is not the real device (here a symlink into /proc
// in a bind-mounted /dev), create must refuse rather than bind the target.
func TestAttackFakeDevNullRefused(t *testing.T) {
	for name, plant := range map[string]func(dir string) error{
		"symlink": func(dir string) error {
			return os.Symlink("/proc/sys/kernel/core_pattern", filepath.Join(dir, "null"))
		},
		"regular file": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "null"), nil, 0o666)
		},
	} {
		t.Run(name, func(t *testing.T) {
			devDir := t.TempDir()
			if err := plant(devDir); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
			e := newEnv(t, []string{"true"}, func(s *specs.Spec) {
				var mounts []specs.Mount
				for _, m := range s.Mounts {
					if !strings.HasPrefix(m.Destination, "/dev") {
						mounts = append(mounts, m)
					}
				}
				s.Mounts = append(mounts, specs.Mount{Destination: "/dev", Type: "bind", Source: devDir, Options: []string{"rbind"}})
			})
			_, _, err := e.create(CreateOpts{})
			if err == nil || !strings.Contains(err.Error(), "not the null device") {
				t.Fatalf("create with a fake /dev/null: %v", err)
			}
			after, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
			if string(before) != string(after) {
				t.Errorf("core_pattern changed: %q -> %q", before, after)
			}
			assertNoLeftovers(t, e)
		})
	}
}

// CVE-2024-21626: no runtime descriptor may reach the container, and a cwd
// naming one (/proc/self/fd/N) must not put the process outside the root.
func TestAttackLeakedDescriptors(t *testing.T) {
	// The shell itself holds nothing but stdio (stat opens no descriptor).
	out := runOK(t, `for n in $(seq 3 64); do [ -e /proc/$$/fd/$n ] && echo "fd $n: $(readlink /proc/$$/fd/$n)"; done; true`, nil)
	if strings.TrimSpace(out) != "" {
		t.Errorf("descriptors leaked into the container: %q", out)
	}
	for fd := 3; fd <= 12; fd++ {
		e := newEnv(t, []string{"sh", "-c", "pwd; ls .."}, func(s *specs.Spec) {
			s.Process.Cwd = "/proc/self/fd/" + strconv.Itoa(fd)
		})
		c, output, err := e.create(CreateOpts{})
		if err != nil {
			continue // refused at create: fine
		}
		if err := c.Start(); err != nil {
			continue // refused at start: fine
		}
		code, _ := Wait(c.State.Pid)
		out := output()
		if code == 0 && !strings.HasPrefix(out, "/proc/self/fd") {
			t.Errorf("cwd /proc/self/fd/%d led to %q", fd, out)
		}
	}
}
