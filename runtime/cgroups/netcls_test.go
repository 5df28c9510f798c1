package cgroups

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func attachedDevicePrograms(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ids, err := bpfProgQuery(fd, unix.BPF_CGROUP_DEVICE)
	if err != nil {
		t.Fatal(err)
	}
	return len(ids)
}

// checkNetwork runs the net_cls/net_prio checks with the hierarchies the
// calling process sees. It cleans up after itself.
func checkNetwork() (err error) {
	m, err := New("/" + uniqueName())
	if err != nil {
		return err
	}
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		err = errors.Join(err, m.Destroy())
	}()
	if err := m.Apply(cmd.Process.Pid); err != nil {
		return err
	}
	r := &specs.LinuxResources{Network: &specs.LinuxNetwork{
		ClassID:    ptr(uint32(0x100001)),
		Priorities: []specs.LinuxInterfacePriority{{Name: "lo", Priority: 5}},
	}}
	if err := m.Set(r); err != nil {
		return err
	}
	if got, err := readFile(m.Path("net_cls"), "net_cls.classid"); err != nil || got != "1048577" {
		return fmt.Errorf("net_cls.classid = %q, %v", got, err)
	}
	if got, err := readFile(m.Path("net_prio"), "net_prio.ifpriomap"); err != nil || !strings.Contains(got, "lo 5") {
		return fmt.Errorf("net_prio.ifpriomap = %q, %v", got, err)
	}
	return nil
}

// netclsHelper runs in a child with a private mount namespace: it mounts
// net_cls and net_prio there, so no other process on the machine sees the
// mounts, and runs checkNetwork. Exit 0 = pass, 1 = fail, 3 = cannot mount.
func netclsHelper() int {
	var dirs []string
	defer func() {
		// The kernel destroys a v1 hierarchy at unmount only if it has no
		// child cgroups left; removed cgroups linger until their last
		// task reference is gone. Wait for that so the hierarchies this
		// helper created do not outlive it.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && (numCgroups("net_cls") > 1 || numCgroups("net_prio") > 1) {
			time.Sleep(20 * time.Millisecond)
		}
		for _, d := range dirs {
			_ = unix.Unmount(d, unix.MNT_DETACH)
			_ = os.Remove(d)
		}
	}()
	mount := func(opts string) error {
		d, err := os.MkdirTemp("", "hull-cg-")
		if err != nil {
			return err
		}
		if err := unix.Mount("cgroup", d, "cgroup", 0, opts); err != nil {
			_ = os.Remove(d)
			return fmt.Errorf("mount %s: %w", opts, err)
		}
		dirs = append(dirs, d)
		return nil
	}
	// A hierarchy can only be mounted with the controller set it has; if
	// they exist co-mounted or separately, one of the forms fits.
	if err := mount("net_cls,net_prio"); err != nil {
		e1 := mount("net_cls")
		e2 := mount("net_prio")
		if e1 != nil || e2 != nil {
			fmt.Fprintln(os.Stderr, "cannot mount:", err, e1, e2)
			return 3
		}
	}
	if err := checkNetwork(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// numCgroups returns the cgroup count /proc/cgroups reports for the
// hierarchy of controller, or 0.
func numCgroups(controller string) int {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[0] == controller {
			n, _ := strconv.Atoi(f[2])
			return n
		}
	}
	return 0
}

func kernelHasController(name string) bool {
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[0] == name && f[3] == "1" {
			return true
		}
	}
	return false
}

func TestNetClsNetPrio(t *testing.T) {
	requireRoot(t)
	if !kernelHasController("net_cls") || !kernelHasController("net_prio") {
		t.Skip("kernel lacks net_cls or net_prio")
	}
	m, err := New("/x")
	if err != nil {
		t.Fatal(err)
	}
	if m.Path("net_cls") != "" && m.Path("net_prio") != "" {
		if err := checkNetwork(); err != nil {
			t.Fatal(err)
		}
		return
	}
	// Not mounted here: mount them in a private mount namespace.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=netcls")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		t.Skipf("cannot mount net_cls/net_prio: %s", out)
	default:
		t.Fatalf("helper: %v: %s", err, out)
	}
}
