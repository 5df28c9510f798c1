package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// engineRoot is a store with busybox whose containers are all removed, and
// whose leftovers are checked, when the test ends.
func engineRoot(t *testing.T) (root string, h func(args ...string) result) {
	t.Helper()
	root = bootstrapRoot(t)
	// A short run root, as /run/hull is: unix socket paths are limited to
	// 108 bytes.
	run, err := os.MkdirTemp("", "hr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	h = func(args ...string) result {
		t.Helper()
		return hull(t, root, append([]string{"--runroot", run}, args...)...)
	}
	t.Cleanup(func() {
		ids := strings.Fields(h("ps", "-a", "-q", "--no-trunc").stdout)
		if len(ids) > 0 {
			h(append([]string{"rm", "-f", "-v"}, ids...)...)
		}
		raw, _ := os.ReadFile("/proc/self/mountinfo")
		for _, line := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(line); len(f) > 4 && (strings.HasPrefix(f[4], root+"/") || strings.HasPrefix(f[4], run+"/")) {
				t.Errorf("mount left behind: %s", f[4])
			}
		}
		for _, id := range ids {
			for _, ctl := range []string{"memory", "pids", "cpu", "freezer"} {
				if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", ctl, "hull", id)); err == nil {
					t.Errorf("cgroup left behind: %s/hull/%s", ctl, id)
				}
			}
		}
		if ents, _ := os.ReadDir(filepath.Join(root, "storage", "rootfs")); len(ents) > 0 {
			t.Errorf("%d root filesystems left behind", len(ents))
		}
	})
	return root, h
}

func mustH(t *testing.T, r result, what string) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\n%s%s", what, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func TestRunForeground(t *testing.T) {
	_, h := engineRoot(t)
	r := h("run", "--name", "fg", "-e", "GREETING=hi there", "-w", "/tmp", "-h", "box", "busybox",
		"sh", "-c", `echo "$GREETING"; pwd; hostname; echo oops >&2; exit 3`)
	if r.code != 3 {
		t.Fatalf("exit %d, want 3 (%s)", r.code, r.stderr)
	}
	if r.stdout != "hi there\n/tmp\nbox\n" || r.stderr != "oops\n" {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}
	var st struct {
		Status   string
		ExitCode int
		Running  bool
	}
	json.Unmarshal([]byte(mustH(t, h("inspect", "--format", "{{json .State}}", "fg"), "inspect")), &st)
	if st.Status != "exited" || st.ExitCode != 3 || st.Running {
		t.Errorf("state %+v", st)
	}
	if out := mustH(t, h("ps", "-a", "--format", "{{.Names}} {{.Status}}"), "ps"); !strings.HasPrefix(out, "fg Exited (3)") {
		t.Errorf("ps: %q", out)
	}
	if out := mustH(t, h("ps", "--format", "{{.Names}}"), "ps"); out != "" {
		t.Errorf("ps without -a shows stopped containers: %q", out)
	}
	// Logs of a foreground run, both streams.
	if r := h("logs", "fg"); r.stdout != "hi there\n/tmp\nbox\n" || r.stderr != "oops\n" {
		t.Errorf("logs: %q %q", r.stdout, r.stderr)
	}
	// --rm leaves nothing.
	if out := mustH(t, h("run", "--rm", "busybox", "echo", "gone"), "run --rm"); out != "gone\n" {
		t.Errorf("run --rm: %q", out)
	}
	if out := mustH(t, h("ps", "-a", "-q"), "ps"); len(strings.Fields(out)) != 1 {
		t.Errorf("--rm left a container: %q", out)
	}
	mustH(t, h("rm", "fg"), "rm")
}

func TestImageConfigRules(t *testing.T) {
	root, h := engineRoot(t)
	tarball := filepath.Join(t.TempDir(), "app.tar")
	// An image with an entrypoint, cmd, env, workdir, user and labels.
	must(t, root, "image", "mount", "busybox")
	mnt := strings.TrimSpace(must(t, root, "image", "mount", "busybox"))
	tarCmd := fmt.Sprintf("tar -C %s -cf %s .", mnt, tarball)
	if out, err := execSh(tarCmd); err != nil {
		t.Fatalf("%s: %v %s", tarCmd, err, out)
	}
	must(t, root, "image", "unmount", "busybox")
	must(t, root, "import",
		"-c", `ENTRYPOINT ["echo", "entry"]`, "-c", `CMD ["default"]`, "-c", "ENV APP=1",
		"-c", "WORKDIR /srv", "-c", "USER nobody", "-c", "LABEL team=core", tarball, "app:1")
	if out := mustH(t, h("run", "--rm", "app:1"), "run"); out != "entry default\n" {
		t.Errorf("entrypoint+cmd: %q", out)
	}
	if out := mustH(t, h("run", "--rm", "app:1", "mine"), "run"); out != "entry mine\n" {
		t.Errorf("cmd replaced: %q", out)
	}
	if out := mustH(t, h("run", "--rm", "--entrypoint", "sh", "app:1", "-c", "echo $APP $(pwd) $(id -u)"), "run"); out != "1 /srv 65534\n" {
		t.Errorf("--entrypoint, env, workdir, user: %q", out)
	}
	if out := mustH(t, h("run", "--rm", "-u", "www-data:mail", "--entrypoint", "id", "app:1"), "run"); !strings.HasPrefix(out, "uid=33(www-data) gid=8(mail)") {
		t.Errorf("-u name:group: %q", out)
	}
	if out := mustH(t, h("run", "--rm", "-u", "1000:1000", "--entrypoint", "id", "app:1"), "run"); !strings.HasPrefix(out, "uid=1000 gid=1000") {
		t.Errorf("-u uid:gid: %q", out)
	}
	if r := h("run", "--rm", "-u", "nosuchuser", "app:1"); r.code != 125 || !strings.Contains(r.stderr, "unable to find user nosuchuser") {
		t.Errorf("unknown user: %d %s", r.code, r.stderr)
	}
	mustH(t, h("create", "--name", "lab", "-l", "extra=yes", "app:1"), "create")
	if out := mustH(t, h("inspect", "--format", "{{.Config.Labels.team}} {{.Config.Labels.extra}} {{.Config.User}} {{.Path}} {{.Args}}", "lab"), "inspect"); out != "core yes nobody echo [entry default]\n" {
		t.Errorf("inspect: %q", out)
	}
	if out := mustH(t, h("ps", "-a", "--filter", "label=team=core", "--filter", "status=created", "--format", "{{.Names}}"), "ps"); out != "lab\n" {
		t.Errorf("ps filters: %q", out)
	}
	if out := mustH(t, h("ps", "-a", "--filter", "ancestor=app:1", "-q"), "ps"); len(strings.Fields(out)) != 1 {
		t.Errorf("ancestor filter: %q", out)
	}
	// The image is in use now.
	if r := h("rmi", "app:1"); r.code != 125 {
		t.Errorf("rmi of an image a container uses: exit %d", r.code)
	}
}

func TestLimitsAndSecurity(t *testing.T) {
	_, h := engineRoot(t)
	run := func(args ...string) string {
		t.Helper()
		return mustH(t, h(append([]string{"run", "--rm"}, args...)...), strings.Join(args, " "))
	}
	out := run("--memory", "64m", "--memory-reservation", "32m", "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "50",
		"busybox", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.soft_limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/pids/pids.max")
	if strings.Fields(out) == nil || strings.Join(strings.Fields(out), " ") != "67108864 33554432 50000 512 50" {
		t.Errorf("limits seen in the container's cgroups: %q", out)
	}
	// Enforced: memory.
	r := h("run", "--name", "oom", "--memory", "16m", "busybox", "tail", "/dev/zero")
	if r.code != 137 {
		t.Errorf("tail /dev/zero under 16m: exit %d (%s)", r.code, r.stderr)
	}
	if out := mustH(t, h("inspect", "--format", "{{.State.OOMKilled}} {{.State.ExitCode}}", "oom"), "inspect"); out != "true 137\n" {
		t.Errorf("OOMKilled: %q", out)
	}
	// Enforced: pids. A fork bomb hits the limit; sh reports fork failures.
	r = h("run", "--rm", "--pids-limit", "10", "busybox", "sh", "-c", "for i in $(seq 30); do sleep 5 & done; wait; echo done")
	if !strings.Contains(r.stderr, "can't fork") && !strings.Contains(r.stderr, "Resource temporarily unavailable") {
		t.Errorf("--pids-limit 10: no fork failure: %d %q", r.code, r.stderr)
	}
	// Docker's default capabilities, and --cap-drop / --cap-add / --privileged.
	if out := run("busybox", "grep", "CapEff", "/proc/self/status"); !strings.Contains(out, "00000000a80425fb") {
		t.Errorf("default caps: %q", out)
	}
	if out := run("--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE", "busybox", "grep", "CapEff", "/proc/self/status"); !strings.Contains(out, "0000000000000400") {
		t.Errorf("cap-drop ALL + cap-add: %q", out)
	}
	if r := h("run", "--rm", "busybox", "sh", "-c", "unshare -m true"); r.code == 0 {
		t.Error("unshare works in a default container")
	}
	if out := run("--privileged", "busybox", "sh", "-c", "unshare -m true && mount -t tmpfs none /tmp && echo ok"); !strings.HasPrefix(out, "ok\n") {
		t.Errorf("--privileged: %q", out)
	}
	// Only the standard devices.
	for _, name := range strings.Fields(run("busybox", "ls", "/dev")) {
		switch name {
		case "console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero":
		default:
			t.Errorf("unexpected /dev/%s in a default container", name)
		}
	}
	if out := run("--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs", "/proc/self/status"); !strings.Contains(out, "1") {
		t.Errorf("no-new-privileges: %q", out)
	}
	if out := run("busybox", "sh", "-c", "grep Seccomp: /proc/self/status; cat /proc/kcore 2>&1 | wc -c; echo x > /proc/sys/kernel/hostname 2>&1 || echo ro"); !strings.Contains(out, "Seccomp:\t2") || !strings.Contains(out, "ro") {
		t.Errorf("seccomp and masked/read-only /proc: %q", out)
	}
	// Read-only root with a tmpfs, a bind mount read-only, a named volume.
	if r := h("run", "--rm", "--read-only", "busybox", "touch", "/x"); r.code == 0 {
		t.Error("--read-only root is writable")
	}
	if out := run("--read-only", "--tmpfs", "/scratch:size=1m", "busybox", "sh", "-c", "touch /scratch/x && echo ok"); out != "ok\n" {
		t.Errorf("--tmpfs: %q", out)
	}
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "in"), []byte("from host"), 0o644)
	if out := run("-v", host+":/data:ro", "busybox", "sh", "-c", "cat /data/in; touch /data/x 2>/dev/null || echo ro"); out != "from hostro\n" {
		t.Errorf("bind :ro: %q", out)
	}
	run("-v", "keep:/v", "busybox", "sh", "-c", "echo persisted > /v/f")
	if out := run("-v", "keep:/v", "busybox", "cat", "/v/f"); out != "persisted\n" {
		t.Errorf("named volume: %q", out)
	}
	if out := mustH(t, h("volume", "ls", "--format", "{{.Name}}"), "volume ls"); out != "keep\n" {
		t.Errorf("volume ls: %q", out)
	}
	mustH(t, h("volume", "rm", "keep"), "volume rm")
	if out := run("--ulimit", "nofile=512:1024", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn"); out != "512\n1024\n" {
		t.Errorf("--ulimit: %q", out)
	}
}

func TestRunBadInput(t *testing.T) {
	root, h := engineRoot(t)
	mustH(t, h("create", "--name", "taken", "busybox"), "create")
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"run", "--rm", "busybox", "nosuchcommand"}, 127},
		{[]string{"run", "--rm", "busybox", "/etc/passwd"}, 126},
		{[]string{"run", "--memory", "12x", "busybox", "true"}, 125},
		{[]string{"run", "--cpus", "-1", "busybox", "true"}, 125},
		{[]string{"run", "--name", "taken", "busybox", "true"}, 125},
		{[]string{"run", "-v", "/no/such/dir:/x", "busybox", "true"}, 125},
		{[]string{"run", "127.0.0.1:1/no/such:image", "true"}, 125},
		{[]string{"run", "--pull", "never", "nosuchimage", "true"}, 125},
		{[]string{"run", "--restart", "sometimes", "busybox", "true"}, 125},
		{[]string{"run", "--network", "bridge0", "busybox", "true"}, 125},
		{[]string{"start", "nosuchcontainer"}, 125},
		{[]string{"rm", "nosuchcontainer"}, 125},
		{[]string{"logs", "nosuchcontainer"}, 125},
	}
	for _, c := range cases {
		r := h(c.args...)
		if r.code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, r.code, c.code, r.stderr)
		}
		// One error line (a pull may say first that it pulls, as Docker's does).
		var errLines []string
		for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			if !strings.HasPrefix(l, "Unable to find image") {
				errLines = append(errLines, l)
			}
		}
		if len(errLines) != 1 || !strings.HasPrefix(errLines[0], "Error: ") {
			t.Errorf("%v: not one clear line: %q", c.args, r.stderr)
		}
	}
	// Only the "taken" container exists; nothing else was left.
	if out := mustH(t, h("ps", "-a", "--format", "{{.Names}}"), "ps"); out != "taken\n" {
		t.Errorf("containers after bad input: %q", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "storage", "rootfs")); len(ents) != 1 {
		t.Errorf("%d root filesystems, want 1", len(ents))
	}
	if out := mustH(t, h("volume", "ls", "-q"), "volume ls"); out != "" {
		t.Errorf("volumes left: %q", out)
	}
}

func TestLogsSinceTail(t *testing.T) {
	_, h := engineRoot(t)
	mustH(t, h("run", "--name", "lines", "busybox", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; sleep 1.2; echo late1; echo late2"), "run")
	if out := mustH(t, h("logs", "--tail", "2", "lines"), "logs"); out != "late1\nlate2\n" {
		t.Errorf("--tail 2: %q", out)
	}
	if out := mustH(t, h("logs", "--tail", "0", "lines"), "logs"); out != "" {
		t.Errorf("--tail 0: %q", out)
	}
	if out := mustH(t, h("logs", "--since", "1s", "lines"), "logs"); out != "late1\nlate2\n" {
		t.Errorf("--since 1s: %q", out)
	}
	out := mustH(t, h("logs", "-t", "lines"), "logs")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 7 || !strings.HasSuffix(lines[5], " late1") {
		t.Fatalf("logs -t: %q", out)
	}
	late := strings.Fields(lines[5])[0]
	ts, err := time.Parse(time.RFC3339Nano, late)
	if err != nil {
		t.Fatalf("timestamp %q: %v", late, err)
	}
	// --until the first late line's time keeps the five early lines;
	// --since it (as a Unix timestamp) keeps the late ones.
	if out := mustH(t, h("logs", "--until", late, "lines"), "logs"); out != "line1\nline2\nline3\nline4\nline5\n" {
		t.Errorf("--until %s: %q", late, out)
	}
	unix := fmt.Sprintf("%d.%09d", ts.Unix(), ts.Nanosecond())
	if out := mustH(t, h("logs", "--since", unix, "lines"), "logs"); out != "late1\nlate2\n" {
		t.Errorf("--since %s: %q", unix, out)
	}
	if r := h("logs", "--since", "yesterday-ish", "lines"); r.code != 125 {
		t.Errorf("bad --since: %d", r.code)
	}
}

func execSh(line string) ([]byte, error) { return exec.Command("sh", "-c", line).CombinedOutput() }

func TestCpBothWaysStaysInTheContainer(t *testing.T) {
	_, h := engineRoot(t)
	// The container leaves symlinks that point at the host's paths.
	mustH(t, h("run", "--name", "cp", "busybox", "sh", "-c", "ln -s / /escape; ln -s /etc/shadow /leak; mkdir /data; echo inside > /data/f"), "run")
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "file"), []byte("from host\n"), 0o640)
	os.MkdirAll(filepath.Join(host, "dir/sub"), 0o755)
	os.WriteFile(filepath.Join(host, "dir/sub/x"), []byte("x\n"), 0o644)

	mustH(t, h("cp", filepath.Join(host, "file"), "cp:/data/copied"), "cp to")
	mustH(t, h("cp", filepath.Join(host, "dir"), "cp:/data/"), "cp dir to")
	// Through the symlink to "/": lands in the container's /etc.
	mustH(t, h("cp", filepath.Join(host, "file"), "cp:/escape/etc/hull-cp-test"), "cp through symlink")
	if _, err := os.Stat("/etc/hull-cp-test"); err == nil {
		os.Remove("/etc/hull-cp-test")
		t.Fatal("cp wrote through a container symlink onto the host")
	}
	back := t.TempDir()
	mustH(t, h("cp", "cp:/etc/hull-cp-test", filepath.Join(back, "t")), "cp back")
	mustH(t, h("cp", "cp:/data", back), "cp dir back")
	for f, want := range map[string]string{"t": "from host\n", "data/copied": "from host\n", "data/dir/sub/x": "x\n", "data/f": "inside\n"} {
		if raw, err := os.ReadFile(filepath.Join(back, f)); err != nil || string(raw) != want {
			t.Errorf("%s: %q %v", f, raw, err)
		}
	}
	mustH(t, h("rm", "cp"), "rm")
	mustH(t, h("run", "--name", "cp2", "busybox", "true"), "run")
	mustH(t, h("run", "--name", "cp3", "busybox", "sh", "-c", "ln -s /etc/shadow /leak; mkdir -p /d/e; echo deep > /d/e/f"), "run")
	// The container's /leak points at its own /etc/shadow, which busybox
	// lacks: an error, never the host's shadow file.
	if r := h("cp", "cp3:/leak", filepath.Join(host, "leak")); r.code == 0 {
		raw, _ := os.ReadFile(filepath.Join(host, "leak"))
		if strings.Contains(string(raw), "root:") {
			t.Fatal("cp read the host's /etc/shadow through a container symlink")
		}
	}
	mustH(t, h("cp", "cp3:/d", host), "cp dir from")
	if raw, err := os.ReadFile(filepath.Join(host, "d/e/f")); err != nil || string(raw) != "deep\n" {
		t.Errorf("cp from: %q %v", raw, err)
	}
	mustH(t, h("cp", "cp3:/etc/passwd", filepath.Join(host, "pw")), "cp file from")
	if raw, _ := os.ReadFile(filepath.Join(host, "pw")); !strings.HasPrefix(string(raw), "root:x:0:0") {
		t.Errorf("cp file from: %q", raw)
	}
}

func TestInit(t *testing.T) {
	_, h := engineRoot(t)
	out := mustH(t, h("run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$"), "run --init")
	if !strings.HasPrefix(out, "/sbin/hull-init -- sh -c") || strings.HasSuffix(out, "\n1\n") {
		t.Errorf("--init: pid 1 is not hull-init: %q", out)
	}
	if r := h("run", "--rm", "--init", "busybox", "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("--init exit status: %d", r.code)
	}
	// The program as pid 2 gets the default action of SIGTERM, which a
	// pid 1 would not: kill from inside ends it at once.
	if r := h("run", "--rm", "--init", "busybox", "sh", "-c", "sleep 30 & kill -TERM $$; wait"); r.code != 143 {
		t.Errorf("--init: SIGTERM to the program: exit %d", r.code)
	}
}
