package security

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullproject/hull/internal/testbundle"
)

// runcBin is hull-runc built by TestMain, empty when it could not be built
// (the container tests then fail with the reason in buildErr).
var (
	runcBin  string
	buildErr error
)

// cgroupParent holds the test containers' cgroups, removed after the run.
const cgroupParent = "hull-security-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hull-security-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildErr = buildRunc(dir)
	code := m.Run()
	os.RemoveAll(dir)
	for _, pattern := range []string{"/sys/fs/cgroup/" + cgroupParent, "/sys/fs/cgroup/*/" + cgroupParent} {
		matches, _ := filepath.Glob(pattern)
		for _, p := range matches {
			os.Remove(p)
		}
	}
	os.Exit(code)
}

// buildRunc builds ./cmd/hull-runc of this module into dir.
func buildRunc(dir string) error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("not inside a Go module")
	}
	bin := filepath.Join(dir, "hull-runc")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/hull-runc")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build hull-runc: %v\n%s", err, out)
	}
	runcBin = bin
	return nil
}

// result is what a container printed and its exit status.
type result struct {
	out  string // stdout and stderr together
	code int
}

// runContainer runs args in a busybox container confined the Docker way:
// capabilities capList, the seccomp profile for filterCaps, the masked and
// read-only paths. It returns the container's output and exit status.
func runContainer(t *testing.T, capList, filterCaps []string, args ...string) result {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("runtime/seccomp compiles for amd64 only")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces, cgroups and mounts")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if _, err := testbundle.BusyboxPath(); err != nil {
		t.Skip(err)
	}
	id := fmt.Sprintf("sec%d", rand.IntN(1<<30))
	bundle := testbundle.New(t, args, func(s *specs.Spec) {
		s.Linux.CgroupsPath = "/" + cgroupParent + "/" + id
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding:    append([]string(nil), capList...),
			Effective:   append([]string(nil), capList...),
			Permitted:   append([]string(nil), capList...),
			Inheritable: append([]string(nil), capList...),
		}
		// Docker's default: the filter must load while the runtime still
		// holds its capabilities.
		s.Process.NoNewPrivileges = false
		s.Linux.Seccomp = DefaultSeccomp(filterCaps)
		s.Linux.MaskedPaths = MaskedPaths()
		s.Linux.ReadonlyPaths = ReadonlyPaths()
	})
	state := t.TempDir()
	t.Cleanup(func() {
		exec.Command(runcBin, "--root", state, "delete", "--force", id).Run()
	})
	// A file, not a pipe: nothing the container leaves behind can keep
	// the test waiting for EOF.
	outF, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer outF.Close()
	cmd := exec.Command(runcBin, "--root", state, "run", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = outF, outF
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("hull-runc run: %v", err)
	}
	data, err := os.ReadFile(outF.Name())
	if err != nil {
		t.Fatal(err)
	}
	return result{out: string(data), code: code}
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func TestContainerDefaults(t *testing.T) {
	def := DefaultCapabilities()
	ok := func(t *testing.T, r result, wantOut ...string) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("exit %d, want 0:\n%s", r.code, r.out)
		}
		for _, w := range wantOut {
			if !strings.Contains(r.out, w) {
				t.Errorf("output lacks %q:\n%s", w, r.out)
			}
		}
	}
	fails := func(t *testing.T, r result, wantOut string) {
		t.Helper()
		if r.code == 0 {
			t.Fatalf("exit 0, want a failure:\n%s", r.out)
		}
		if !strings.Contains(r.out, wantOut) {
			t.Errorf("output lacks %q:\n%s", wantOut, r.out)
		}
	}
	all := AllCapabilities()
	cases := []struct {
		name  string
		caps  []string
		args  []string
		check func(*testing.T, result)
		// filter, when set, are the capabilities the seccomp profile is
		// made for instead of caps: with more capabilities than the
		// filter allows for, only seccomp can refuse.
		filter []string
	}{
		{"ordinary commands", def,
			sh("ls / && cat /proc/self/status && echo ok > /tmp/x && cat /tmp/x && ps && date && sleep 0.1 && wc -c /etc/passwd && id"),
			func(t *testing.T, r result) {
				ok(t, r, "ok\n", "uid=0(root)", "/etc/passwd")
				// Docker's default set, in every set but ambient.
				for _, l := range []string{"CapInh:\t00000000a80425fb", "CapPrm:\t00000000a80425fb",
					"CapEff:\t00000000a80425fb", "CapBnd:\t00000000a80425fb", "CapAmb:\t0000000000000000", "Seccomp:\t2"} {
					if !strings.Contains(r.out, l) {
						t.Errorf("status lacks %q:\n%s", l, r.out)
					}
				}
			}, nil},
		{"pipes, fork and exec", def,
			sh("for i in 1 2 3; do echo $i; done | sort -r | tr '\\n' , && (true) && env | grep -c PATH && find /etc -type f | xargs cat > /dev/null && echo done"),
			func(t *testing.T, r result) { ok(t, r, "3,2,1,", "done") }, nil},
		{"unshare user namespace", def, sh("unshare -U true"),
			func(t *testing.T, r result) { fails(t, r, "Operation not permitted") }, nil},
		{"unshare mount namespace", def, sh("unshare -m true"),
			func(t *testing.T, r result) { fails(t, r, "Operation not permitted") }, nil},
		{"mount", def, sh("mount -t tmpfs none /tmp"),
			// busybox reports EPERM as "permission denied (are you root?)".
			func(t *testing.T, r result) { fails(t, r, "permission denied") }, nil},
		{"sethostname", def, sh("hostname evil"),
			func(t *testing.T, r result) { fails(t, r, "Operation not permitted") }, nil},
		{"masked paths", def,
			sh("cat /proc/kcore | wc -c; wc -c < /proc/keys; wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l"),
			func(t *testing.T, r result) {
				// /proc/kcore is absent on kernels without CONFIG_PROC_KCORE;
				// the others have content on the host.
				f := strings.Fields(r.out)
				if len(f) < 4 || f[len(f)-4] != "0" {
					t.Errorf("/proc/kcore readable: %q", r.out)
				}
				if len(f) < 4 || f[len(f)-3] != "0" || f[len(f)-2] != "0" || f[len(f)-1] != "0" {
					t.Errorf("/proc/keys, /proc/timer_list or /sys/firmware not masked: %q", r.out)
				}
			}, nil},
		{"proc sys read-only", def, sh("cat /proc/sys/kernel/hostname && echo evil > /proc/sys/kernel/hostname"),
			func(t *testing.T, r result) { fails(t, r, "Read-only file system") }, nil},
		{"sysrq-trigger read-only", def, sh("test -e /proc/sysrq-trigger || { echo absent; exit 0; }; echo h > /proc/sysrq-trigger"),
			func(t *testing.T, r result) {
				if r.code == 0 && strings.TrimSpace(r.out) == "absent" {
					t.Skip("kernel without /proc/sysrq-trigger")
				}
				fails(t, r, "Read-only file system")
			}, nil},
		{"chown with CAP_CHOWN", def, sh("echo x > /tmp/x && chown 123:456 /tmp/x && stat -c %u:%g /tmp/x"),
			func(t *testing.T, r result) { ok(t, r, "123:456") }, nil},
		{"chroot with CAP_SYS_CHROOT", def, sh("chroot / true && echo chrooted"),
			func(t *testing.T, r result) { ok(t, r, "chrooted") }, nil},
		{"chroot without CAP_SYS_CHROOT", without(def, "CAP_SYS_CHROOT"), sh("chroot / true"),
			func(t *testing.T, r result) { fails(t, r, "Operation not permitted") }, nil},
		{"setuid and drop to nobody", def, sh("su -s /bin/sh nobody -c id 2>&1 || setpriv --reuid=65534 --regid=65534 --clear-groups id"),
			func(t *testing.T, r result) { ok(t, r, "uid=65534") }, nil},
		{"personality PER_LINUX32", def, sh("linux32 uname -m"),
			func(t *testing.T, r result) { ok(t, r, "i686") }, nil},
		{"mknod with CAP_MKNOD", def, sh("mknod /tmp/null c 1 3 && echo made"),
			func(t *testing.T, r result) { ok(t, r, "made") }, nil},
		{"all caps: unshare mount namespace", all, sh("unshare -m true && echo unshared"),
			func(t *testing.T, r result) { ok(t, r, "unshared") }, nil},
		{"all caps: mount", all, sh("mount -t tmpfs none /tmp && grep ' /tmp tmpfs' /proc/mounts"),
			func(t *testing.T, r result) { ok(t, r, "/tmp tmpfs") }, nil},
		{"all caps: unshare user and pid namespaces", all, sh("unshare -U -p -f true && echo unshared"),
			func(t *testing.T, r result) { ok(t, r, "unshared") }, nil},
		{"all caps: syslog", all, sh("dmesg | head -1 && echo read"),
			func(t *testing.T, r result) { ok(t, r, "read") }, nil},
		{"all caps, default filter: unshare mount namespace", all, sh("unshare -m true"),
			func(t *testing.T, r result) { fails(t, r, "Operation not permitted") }, def},
		{"all caps, default filter: unshare user namespace", all, sh("unshare -U true"),
			func(t *testing.T, r result) { fails(t, r, "Operation not permitted") }, def},
		{"all caps, default filter: mount", all, sh("mount -t tmpfs none /tmp"),
			func(t *testing.T, r result) { fails(t, r, "permission denied") }, def},
		{"all caps, default filter: sethostname", all, sh("hostname evil"),
			func(t *testing.T, r result) { fails(t, r, "Operation not permitted") }, def},
		{"all caps, default filter: syslog", all, sh("dmesg"),
			func(t *testing.T, r result) { fails(t, r, "Operation not permitted") }, def},
		{"all caps, default filter: chroot allowed", all, sh("chroot / true && echo chrooted"),
			func(t *testing.T, r result) { ok(t, r, "chrooted") }, def},
		{"sys admin: sethostname", append(DefaultCapabilities(), "CAP_SYS_ADMIN"), sh("hostname sec && hostname"),
			func(t *testing.T, r result) { ok(t, r, "sec") }, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			filter := c.filter
			if filter == nil {
				filter = c.caps
			}
			c.check(t, runContainer(t, c.caps, filter, c.args...))
		})
	}
}

func without(list []string, drop string) []string {
	var out []string
	for _, c := range list {
		if c != drop {
			out = append(out, c)
		}
	}
	return out
}
