package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// engineRoot is a store with busybox whose containers are all removed, and
// whose leftovers are checked, when the test ends.
func engineRoot(t *testing.T) (root string, h func(args ...string) result) {
	t.Helper()
	root, _, h = engineRootRun(t)
	return root, h
}

// engineRootRun is engineRoot that also returns the run root.
func engineRootRun(t *testing.T) (root, run string, h func(args ...string) result) {
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
	return root, run, h
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

func TestDetachedLifecycle(t *testing.T) {
	_, h := engineRoot(t)
	id := strings.TrimSpace(mustH(t, h("run", "-d", "--name", "web", "-l", "role=web", "busybox", "sh", "-c",
		"trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done"), "run -d"))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q", id)
	}
	waitFor(t, "log line", func() bool { return h("logs", "web").stdout == "ready\n" })
	if out := mustH(t, h("ps", "--format", "{{.Names}} {{.State}}"), "ps"); out != "web running\n" {
		t.Errorf("ps: %q", out)
	}
	var st struct {
		Status  string
		Running bool
		Pid     int
	}
	json.Unmarshal([]byte(mustH(t, h("inspect", "--format", "{{json .State}}", "web"), "inspect")), &st)
	if !st.Running || st.Pid <= 0 {
		t.Fatalf("state %+v", st)
	}
	// exec lands in every namespace and the cgroup of the container.
	// The container's cgroup is the root of its cgroup namespace; the
	// exec'd shell is listed in it.
	out := mustH(t, h("exec", "web", "sh", "-c", "grep -qx $$ /sys/fs/cgroup/memory/cgroup.procs && echo in-cgroup; hostname"), "exec")
	if out != "in-cgroup\n"+id[:12]+"\n" {
		t.Errorf("exec cgroup/hostname: %q", out)
	}
	for _, ns := range []string{"pid", "mnt", "uts", "ipc", "net", "cgroup"} {
		want, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", st.Pid, ns))
		got := strings.TrimSpace(mustH(t, h("exec", "web", "readlink", "/proc/self/ns/"+ns), "exec readlink"))
		if got != want {
			t.Errorf("exec %s namespace %s, container's %s", ns, got, want)
		}
	}
	if r := h("exec", "web", "nosuchcmd"); r.code != 127 {
		t.Errorf("exec of a missing command: %d", r.code)
	}
	if r := h("exec", "-u", "nobody", "web", "id", "-u"); r.stdout != "65534\n" {
		t.Errorf("exec -u: %q", r.stdout)
	}
	if r := h("exec", "-e", "X=1", "-w", "/tmp", "web", "sh", "-c", "echo $X $(pwd)"); r.stdout != "1 /tmp\n" {
		t.Errorf("exec -e -w: %q", r.stdout)
	}
	if out := mustH(t, h("top", "web"), "top"); !strings.Contains(out, "root") || !regexp.MustCompile(`\d\d:\d\d\s+\?\s+00:00:\d\d`).MatchString(out) {
		t.Errorf("top: no user name, start time, terminal or CPU time as ps -ef shows them:\n%s", out)
	}
	if out := mustH(t, h("top", "web"), "top"); !strings.Contains(out, "PID") || !strings.Contains(out, "sleep") && !strings.Contains(out, "sh -c") {
		t.Errorf("top: %q", out)
	}
	out = mustH(t, h("stats", "--no-stream", "web"), "stats")
	if !strings.Contains(out, "MEM USAGE / LIMIT") || !strings.Contains(out, "web") {
		t.Errorf("stats: %q", out)
	}
	mustH(t, h("pause", "web"), "pause")
	if out := mustH(t, h("ps", "--format", "{{.Status}}"), "ps"); !strings.Contains(out, "(Paused)") {
		t.Errorf("paused: %q", out)
	}
	mustH(t, h("unpause", "web"), "unpause")
	// A running container is not removed without -f.
	if r := h("rm", "web"); r.code != 125 {
		t.Errorf("rm of a running container: %d", r.code)
	}
	start := time.Now()
	mustH(t, h("stop", "web"), "stop")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v though the container handles TERM", d)
	}
	if out := mustH(t, h("logs", "web"), "logs"); out != "ready\ngot TERM\n" {
		t.Errorf("logs after stop: %q", out)
	}
	if out := mustH(t, h("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "web"), "inspect"); out != "exited 0\n" {
		t.Errorf("after stop: %q", out)
	}
	// start again, then kill.
	mustH(t, h("start", "web"), "start")
	waitFor(t, "second ready", func() bool { return strings.Count(h("logs", "web").stdout, "ready") == 2 })
	mustH(t, h("kill", "web"), "kill")
	if out := strings.TrimSpace(mustH(t, h("wait", "web"), "wait")); out != "137" {
		t.Errorf("wait after kill: %q", out)
	}
	mustH(t, h("rm", "web"), "rm")
	// run -d then rm -f.
	mustH(t, h("run", "-d", "--name", "gone", "busybox", "sleep", "300"), "run -d")
	mustH(t, h("rm", "-f", "gone"), "rm -f")
	if out := mustH(t, h("ps", "-a", "-q"), "ps"); out != "" {
		t.Errorf("containers left: %q", out)
	}
	if out, _ := exec.Command("pgrep", "-f", "hull-monitor --id "+id).Output(); len(out) > 0 {
		t.Errorf("monitor still running: %s", out)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestHealthAndRestart(t *testing.T) {
	_, h := engineRoot(t)
	mustH(t, h("run", "-d", "--name", "hc", "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms", "--health-retries", "2",
		"busybox", "sh", "-c", "sleep 0.6; touch /tmp/ok; sleep 1.5; rm /tmp/ok; sleep 300"), "run -d")
	health := func() string {
		return strings.TrimSpace(h("inspect", "--format", "{{.State.Health.Status}}", "hc").stdout)
	}
	if s := health(); s != "starting" {
		t.Errorf("health at start: %q", s)
	}
	waitFor(t, "healthy", func() bool { return health() == "healthy" })
	if out := mustH(t, h("ps", "--filter", "health=healthy", "--format", "{{.Names}} {{.Status}}"), "ps"); !strings.Contains(out, "hc Up") || !strings.Contains(out, "(healthy)") {
		t.Errorf("ps healthy: %q", out)
	}
	waitFor(t, "unhealthy", func() bool { return health() == "unhealthy" })
	var hs struct {
		Status        string
		FailingStreak int
		Log           []struct {
			ExitCode int
			Output   string
		}
	}
	json.Unmarshal([]byte(mustH(t, h("inspect", "--format", "{{json .State.Health}}", "hc"), "inspect")), &hs)
	if hs.FailingStreak < 2 || len(hs.Log) == 0 || len(hs.Log) > 5 || hs.Log[len(hs.Log)-1].ExitCode != 1 {
		t.Errorf("health state: %+v", hs)
	}
	mustH(t, h("rm", "-f", "hc"), "rm")

	// on-failure:3 restarts exactly three times.
	mustH(t, h("run", "-d", "--name", "flaky", "--restart", "on-failure:3", "busybox", "sh", "-c", "echo run; exit 2"), "run -d")
	if code := strings.TrimSpace(mustH(t, h("wait", "flaky"), "wait")); code != "2" {
		t.Errorf("wait: %q", code)
	}
	if out := mustH(t, h("inspect", "--format", "{{.RestartCount}} {{.State.Status}}", "flaky"), "inspect"); out != "3 exited\n" {
		t.Errorf("restart count: %q", out)
	}
	if out := mustH(t, h("logs", "flaky"), "logs"); out != "run\nrun\nrun\nrun\n" {
		t.Errorf("logs of 4 runs: %q", out)
	}
	// always, then a stop: no restart after it.
	mustH(t, h("run", "-d", "--name", "always", "--restart", "always", "busybox", "sleep", "300"), "run -d")
	mustH(t, h("stop", "-t", "0", "always"), "stop")
	time.Sleep(500 * time.Millisecond)
	if out := mustH(t, h("inspect", "--format", "{{.State.Status}}", "always"), "inspect"); out != "exited\n" {
		t.Errorf("always after stop: %q", out)
	}
}

func TestMonitorKilledPsTellsTheTruth(t *testing.T) {
	root, h := engineRoot(t)
	_ = root
	id := strings.TrimSpace(mustH(t, h("run", "-d", "busybox", "sleep", "300"), "run -d"))
	out, _ := exec.Command("pgrep", "-f", "hull-monitor --id "+id).Output()
	pid := strings.TrimSpace(string(out))
	if pid == "" {
		t.Fatal("no monitor")
	}
	exec.Command("kill", "-9", pid).Run()
	time.Sleep(200 * time.Millisecond)
	// The container keeps running, and ps says so.
	if out := mustH(t, h("ps", "--format", "{{.State}}", "--filter", "id="+id), "ps"); out != "running\n" {
		t.Errorf("after the monitor died: %q", out)
	}
	mustH(t, h("exec", id, "true"), "exec")
	// Killed now with nobody watching: ps says exited.
	var st struct{ Pid int }
	json.Unmarshal([]byte(mustH(t, h("inspect", "--format", "{{json .State}}", id), "inspect")), &st)
	exec.Command("kill", "-9", fmt.Sprint(st.Pid)).Run()
	waitFor(t, "exited", func() bool {
		return strings.TrimSpace(h("ps", "-a", "--format", "{{.State}}", "--filter", "id="+id).stdout) == "exited"
	})
	mustH(t, h("rm", id), "rm")
}

func TestParallelRunPsStopRm(t *testing.T) {
	_, h := engineRoot(t)
	const n = 50
	ids := make([]string, n)
	errs := make(chan string, n*4)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := h("run", "-d", "--name", fmt.Sprintf("p%02d", i), "busybox", "sleep", "300")
			if r.code != 0 {
				errs <- fmt.Sprintf("run %d: %s", i, r.stderr)
				return
			}
			ids[i] = strings.TrimSpace(r.stdout)
		}(i)
	}
	wg.Wait()
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h("ps", "-q")
			if r.code != 0 || len(strings.Fields(r.stdout)) != n {
				errs <- fmt.Sprintf("ps during the run: %d lines: %s", len(strings.Fields(r.stdout)), r.stderr)
			}
		}()
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprintf("p%02d", i)
			if i%2 == 0 {
				if r := h("stop", "-t", "1", name); r.code != 0 {
					errs <- "stop " + name + ": " + r.stderr
				}
				if r := h("rm", name); r.code != 0 {
					errs <- "rm " + name + ": " + r.stderr
				}
			} else if r := h("rm", "-f", name); r.code != 0 {
				errs <- "rm -f " + name + ": " + r.stderr
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if out := mustH(t, h("ps", "-a", "-q"), "ps"); out != "" {
		t.Errorf("containers left: %q", out)
	}
	for _, id := range ids {
		if out, _ := exec.Command("pgrep", "-f", "hull-monitor --id "+id).Output(); id != "" && len(out) > 0 {
			t.Errorf("monitor of %s left: %s", id[:12], out)
		}
	}
}

func TestTerminalAttachFollowRotation(t *testing.T) {
	root, h := engineRoot(t)
	// -it gets a real pty of the terminal's size (script(1) gives us one).
	runRoot, _ := os.MkdirTemp("", "hr")
	defer os.RemoveAll(runRoot)
	line := fmt.Sprintf("stty rows 33 cols 111; %s --root %s --runroot %s run -it --rm busybox sh -c 'tty; stty size'", hullBin, root, runRoot)
	out, err := exec.Command("script", "-qec", line, "/dev/null").Output()
	if err != nil {
		t.Fatalf("run -it: %v %q", err, out)
	}
	if !strings.Contains(string(out), "/dev/pts/") || !strings.Contains(string(out), "33 111") {
		t.Errorf("run -it: %q", out)
	}
	// logs -f follows until the container ends.
	mustH(t, h("run", "-d", "--name", "ticker", "busybox", "sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.3; done"), "run -d")
	if out := mustH(t, h("logs", "-f", "ticker"), "logs -f"); out != "tick1\ntick2\ntick3\n" {
		t.Errorf("logs -f: %q", out)
	}
	// attach streams a running container's output and returns its code.
	mustH(t, h("run", "-d", "--name", "talker", "busybox", "sh", "-c", "sleep 0.5; echo hello; echo err >&2; exit 5"), "run -d")
	r := h("attach", "talker")
	if r.code != 5 || r.stdout != "hello\n" || r.stderr != "err\n" {
		t.Errorf("attach: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// start -a of a stopped container.
	r = h("start", "-a", "talker")
	if r.code != 5 || !strings.Contains(r.stdout, "hello") {
		t.Errorf("start -a: %d %q", r.code, r.stdout)
	}
	// --log-opt rotation keeps max-file files of about max-size.
	mustH(t, h("run", "--name", "chatty", "--log-opt", "max-size=2k", "--log-opt", "max-file=2", "busybox", "sh", "-c", "for i in $(seq 200); do echo line $i; done"), "run")
	logPath := strings.TrimSpace(mustH(t, h("inspect", "--format", "{{.LogPath}}", "chatty"), "inspect"))
	for _, p := range []string{logPath, logPath + ".1"} {
		st, err := os.Stat(p)
		if err != nil || st.Size() > 2048 {
			t.Errorf("%s: %v %v", p, st, err)
		}
	}
	if _, err := os.Stat(logPath + ".2"); err == nil {
		t.Errorf("more than max-file files")
	}
	if out := mustH(t, h("logs", "--tail", "1", "chatty"), "logs"); out != "line 200\n" {
		t.Errorf("last line after rotation: %q", out)
	}
	// --stop-signal and --stop-timeout.
	mustH(t, h("run", "-d", "--name", "usr1", "--stop-signal", "USR1", "--stop-timeout", "1", "busybox", "sh", "-c", "trap 'echo usr1; exit 0' USR1; while true; do sleep 0.1; done"), "run -d")
	time.Sleep(300 * time.Millisecond)
	mustH(t, h("stop", "usr1"), "stop")
	if out := mustH(t, h("logs", "usr1"), "logs"); out != "usr1\n" {
		t.Errorf("stop signal: %q", out)
	}
}

func TestImageVolumesHealthcheckNetworkModes(t *testing.T) {
	root, h := engineRoot(t)
	mnt := strings.TrimSpace(must(t, root, "image", "mount", "busybox"))
	tarball := filepath.Join(t.TempDir(), "img.tar")
	if out, err := execSh(fmt.Sprintf("tar -C %s -cf %s .", mnt, tarball)); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	must(t, root, "image", "unmount", "busybox")
	must(t, root, "import", "-c", "VOLUME /data", "-c", "HEALTHCHECK --interval=100ms CMD true",
		"-c", `CMD ["sleep", "300"]`, "-c", "STOPSIGNAL SIGKILL", tarball, "withvol:1")
	mustH(t, h("run", "-d", "--name", "vol", "withvol:1"), "run -d")
	vols := strings.Fields(mustH(t, h("volume", "ls", "-q"), "volume ls"))
	if len(vols) != 1 || len(vols[0]) != 64 {
		t.Fatalf("anonymous volume for the image's VOLUME: %v", vols)
	}
	if out := mustH(t, h("inspect", "--format", "{{range .Mounts}}{{.Type}} {{.Destination}}{{end}} {{.Config.StopSignal}}", "vol"), "inspect"); out != "volume /data SIGKILL\n" {
		t.Errorf("mounts: %q", out)
	}
	waitFor(t, "image health check", func() bool {
		return strings.TrimSpace(h("inspect", "--format", "{{.State.Health.Status}}", "vol").stdout) == "healthy"
	})
	// --no-healthcheck turns the image's off.
	mustH(t, h("run", "-d", "--name", "nohc", "--no-healthcheck", "withvol:1"), "run -d")
	if out := mustH(t, h("inspect", "--format", "{{if .State.Health}}health{{else}}none{{end}}", "nohc"), "inspect"); out != "none\n" {
		t.Errorf("--no-healthcheck: %q", out)
	}
	mustH(t, h("rm", "-f", "-v", "vol", "nohc"), "rm -f -v")
	if out := mustH(t, h("volume", "ls", "-q"), "volume ls"); out != "" {
		t.Errorf("rm -v left volumes: %q", out)
	}
	// --network none: only loopback; host: the host's interfaces and name.
	if out := mustH(t, h("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"), "run"); out != "lo\n" {
		t.Errorf("--network none: %q", out)
	}
	// Host network: the host's name and interfaces (those present before
	// and after the run; other things on the machine may add some).
	hostName, _ := os.Hostname()
	names := func() map[string]bool {
		set := map[string]bool{}
		ents, _ := os.ReadDir("/sys/class/net")
		for _, e := range ents {
			set[e.Name()] = true
		}
		return set
	}
	before := names()
	out := mustH(t, h("run", "--rm", "--network", "host", "busybox", "sh", "-c", "hostname; ls /sys/class/net"), "run host")
	after := names()
	lines := strings.Fields(out)
	if len(lines) == 0 || lines[0] != hostName {
		t.Errorf("--network host hostname: %q", out)
	}
	seen := map[string]bool{}
	for _, l := range lines[1:] {
		seen[l] = true
	}
	for n := range before {
		if after[n] && !seen[n] {
			t.Errorf("--network host: the container lacks the host's %s: %q", n, out)
		}
	}
}

func TestWaitRmAndPsFilters(t *testing.T) {
	_, h := engineRoot(t)
	// wait gets the exit code of a --rm container that its monitor removes.
	mustH(t, h("run", "-d", "--rm", "--name", "brief", "busybox", "sh", "-c", "sleep 0.3; exit 3"), "run -d --rm")
	if out := strings.TrimSpace(mustH(t, h("wait", "brief"), "wait")); out != "3" {
		t.Errorf("wait of a --rm container: %q", out)
	}
	// A name filter lists running containers only; a status filter lists
	// stopped ones without -a, as Docker's ps does.
	mustH(t, h("run", "--name", "stopped1", "busybox", "true"), "run")
	if out := mustH(t, h("ps", "-q", "--filter", "name=stopped1"), "ps"); out != "" {
		t.Errorf("ps --filter name= shows a stopped container: %q", out)
	}
	if out := mustH(t, h("ps", "--format", "{{.Names}}", "--filter", "status=exited"), "ps"); out != "stopped1\n" {
		t.Errorf("ps --filter status=exited: %q", out)
	}
	// exec -e NAME takes the caller's value.
	mustH(t, h("run", "-d", "--name", "envc", "busybox", "sleep", "30"), "run -d")
	os.Setenv("HULL_TEST_PASSED", "through")
	defer os.Unsetenv("HULL_TEST_PASSED")
	if out := mustH(t, h("exec", "-e", "HULL_TEST_PASSED", "-e", "HULL_TEST_UNSET_XYZ", "envc", "sh", "-c", "echo $HULL_TEST_PASSED; env | grep -c HULL_TEST_UNSET_XYZ; true"), "exec"); out != "through\n0\n" {
		t.Errorf("exec -e NAME: %q", out)
	}
	mustH(t, h("rm", "-f", "envc", "stopped1"), "rm")
}

// TestCpTarStreams covers `cp CONTAINER:SRC -` and `cp - CONTAINER:DEST`,
// which speak tar on stdout and stdin as docker cp does, and -a.
func TestCpTarStreams(t *testing.T) {
	root, run, h := engineRootRun(t)
	mustH(t, h("run", "--name", "tar", "busybox", "sh", "-c",
		"mkdir -p /d/e && echo deep > /d/e/f && ln -s e/f /d/link && chown 1234:55 /d/e/f && mkdir /in && ln -s / /in/escape"), "run")

	// Out: a file alone, named after its last element.
	out := mustH(t, h("cp", "tar:/d/e/f", "-"), "cp file -")
	tr := tar.NewReader(strings.NewReader(out))
	hdr, err := tr.Next()
	if err != nil || hdr.Name != "f" || hdr.Uid != 1234 || hdr.Gid != 55 {
		t.Fatalf("cp file -: first entry %+v, %v", hdr, err)
	}
	if body, _ := io.ReadAll(tr); string(body) != "deep\n" {
		t.Errorf("cp file -: content %q", body)
	}
	// Out: a directory, with its own name as the prefix.
	names := map[string]*tar.Header{}
	tr = tar.NewReader(strings.NewReader(mustH(t, h("cp", "tar:/d", "-"), "cp dir -")))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[hdr.Name] = hdr
	}
	for _, want := range []string{"d/", "d/e/", "d/e/f", "d/link"} {
		if names[want] == nil {
			t.Errorf("cp dir -: no entry %q in %v", want, names)
		}
	}
	if l := names["d/link"]; l != nil && (l.Typeflag != tar.TypeSymlink || l.Linkname != "e/f") {
		t.Errorf("cp dir -: d/link = %+v", l)
	}

	// In: a tar on stdin, unpacked inside the container's root even where
	// the container has a symlink to / on the way, and owned by root
	// unless -a.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		name, body string
		uid        int
	}{{"new.txt", "hello\n", 4321}, {"escape/etc/hull-cp-tar-test", "no\n", 0}} {
		tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Uid: e.uid, Typeflag: tar.TypeReg})
		tw.Write([]byte(e.body))
	}
	tw.Close()
	in := func(dest string, extra ...string) result {
		args := append(append([]string{"--runroot", run, "cp"}, extra...), "-", dest)
		return hullStdin(t, root, nil, bytes.NewReader(buf.Bytes()), args...)
	}
	mustH(t, in("tar:/in"), "cp - into /in")
	if _, err := os.Stat("/etc/hull-cp-tar-test"); err == nil {
		os.Remove("/etc/hull-cp-tar-test")
		t.Fatal("cp - wrote through a container symlink onto the host")
	}
	check := mustH(t, h("cp", "tar:/in/new.txt", "-"), "cp back")
	tr = tar.NewReader(strings.NewReader(check))
	if hdr, err := tr.Next(); err != nil || hdr.Uid != 0 {
		t.Errorf("cp - without -a: owner %+v %v, want root", hdr, err)
	}
	mustH(t, in("tar:/in", "-a"), "cp -a - into /in")
	tr = tar.NewReader(strings.NewReader(mustH(t, h("cp", "tar:/in/new.txt", "-"), "cp back")))
	if hdr, err := tr.Next(); err != nil || hdr.Uid != 4321 {
		t.Errorf("cp -a -: owner %+v %v, want 4321", hdr, err)
	}
	back := t.TempDir()
	mustH(t, h("cp", "tar:/in", back), "cp dir back")
	// The entry under the symlink to / stays inside the destination:
	// symlinks met while unpacking resolve within it.
	tr = tar.NewReader(strings.NewReader(mustH(t, h("cp", "tar:/in/etc/hull-cp-tar-test", "-"), "cp back from /in/etc")))
	if _, err := tr.Next(); err != nil {
		t.Errorf("/in/etc/hull-cp-tar-test: %v", err)
	} else if body, _ := io.ReadAll(tr); string(body) != "no\n" {
		t.Errorf("/in/etc/hull-cp-tar-test: %q", body)
	}
	for f, want := range map[string]string{"in/new.txt": "hello\n", "in/escape": ""} {
		fi, err := os.Lstat(filepath.Join(back, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if want != "" {
			if raw, _ := os.ReadFile(filepath.Join(back, f)); string(raw) != want {
				t.Errorf("%s: %q, want %q", f, raw, want)
			}
		} else if fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: not the container's symlink", f)
		}
	}
	// Bad input: an entry that climbs out, not a tar, a destination that
	// is no directory, "-" on the container side.
	buf.Reset()
	tw = tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "../up.txt", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
	tw.Write([]byte("up\n"))
	tw.Close()
	if r := in("tar:/in"); r.code != 125 || !strings.Contains(r.stderr, "escapes") {
		t.Errorf("cp - with ../: exit %d, %q", r.code, r.stderr)
	}
	buf.Reset()
	buf.WriteString("this is not a tar archive, not even close to one\n")
	if r := in("tar:/in"); r.code != 125 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("cp - of garbage: exit %d, %q", r.code, r.stderr)
	}
	if r := in("tar:/in/new.txt"); r.code != 125 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("cp - onto a file: exit %d, %q", r.code, r.stderr)
	}
	if r := h("cp", "tar:-", "/tmp"); r.code != 125 {
		t.Errorf("cp tar:- : exit %d", r.code)
	}
}

// TestCpVolumes: cp reads and writes the volumes and bind mounts of a
// container, running or not, as docker cp does, and refuses to write into
// a read-only one.
func TestCpVolumes(t *testing.T) {
	_, h := engineRoot(t)
	host := t.TempDir()
	bind := filepath.Join(host, "bind")
	ro := filepath.Join(host, "ro")
	for _, d := range []string{bind, ro} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(bind, "b.txt"), []byte("bound\n"), 0o644)
	os.WriteFile(filepath.Join(ro, "r.txt"), []byte("read only\n"), 0o644)
	mustH(t, h("run", "-d", "--name", "vol", "-v", "cpvol:/vol", "-v", bind+":/bind", "-v", ro+":/ro:ro", "--tmpfs", "/scratch",
		"busybox", "sh", "-c", "echo in-volume > /vol/v.txt; echo in-tmpfs > /scratch/s.txt; sleep 300"), "run -d")
	waitFor(t, "the volume file", func() bool { return h("cp", "vol:/vol/v.txt", filepath.Join(host, "v.txt")).code == 0 })
	if raw, _ := os.ReadFile(filepath.Join(host, "v.txt")); string(raw) != "in-volume\n" {
		t.Errorf("cp from a volume of a running container: %q", raw)
	}
	// A running container's tmpfs is read as the container sees it.
	mustH(t, h("cp", "vol:/scratch/s.txt", filepath.Join(host, "s.txt")), "cp from a tmpfs")
	if raw, _ := os.ReadFile(filepath.Join(host, "s.txt")); string(raw) != "in-tmpfs\n" {
		t.Errorf("cp from a tmpfs of a running container: %q", raw)
	}
	mustH(t, h("cp", "vol:/bind/b.txt", filepath.Join(host, "b.txt")), "cp from a bind mount")
	if raw, _ := os.ReadFile(filepath.Join(host, "b.txt")); string(raw) != "bound\n" {
		t.Errorf("cp from a bind mount: %q", raw)
	}
	os.WriteFile(filepath.Join(host, "up.txt"), []byte("up\n"), 0o644)
	mustH(t, h("cp", filepath.Join(host, "up.txt"), "vol:/vol/"), "cp into a volume")
	if out := mustH(t, h("exec", "vol", "cat", "/vol/up.txt"), "exec cat"); out != "up\n" {
		t.Errorf("the container does not see what cp put in its volume: %q", out)
	}
	mustH(t, h("cp", filepath.Join(host, "up.txt"), "vol:/bind/up.txt"), "cp into a bind mount")
	if raw, _ := os.ReadFile(filepath.Join(bind, "up.txt")); string(raw) != "up\n" {
		t.Errorf("cp into a bind mount: %q", raw)
	}
	if r := h("cp", filepath.Join(host, "up.txt"), "vol:/ro/"); r.code != 125 || !strings.Contains(r.stderr, "read-only") {
		t.Errorf("cp into a read-only bind: exit %d, %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(ro, "up.txt")); err == nil {
		t.Error("cp wrote into a read-only bind mount")
	}
	// Stopped: the volume is still there to read.
	mustH(t, h("stop", "-t", "1", "vol"), "stop")
	out := mustH(t, h("cp", "vol:/vol", "-"), "cp a volume as a tar")
	tr := tar.NewReader(strings.NewReader(out))
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		seen[hdr.Name] = true
	}
	if !seen["vol/v.txt"] || !seen["vol/up.txt"] {
		t.Errorf("cp vol:/vol -: entries %v", seen)
	}
	mustH(t, h("rm", "-v", "vol"), "rm")
}

// TestStartAllAfterAReboot plays a reboot (monitors and containers killed
// at once, nobody to restart them) and brings the containers back as a
// daemon would at boot: start --all --filter restart-policy=always, the
// command of contrib/systemd/hull-restart.service.
func TestStartAllAfterAReboot(t *testing.T) {
	_, h := engineRoot(t)
	for name, policy := range map[string]string{"rb-always": "always", "rb-no": "no", "rb-unless": "unless-stopped"} {
		mustH(t, h("run", "-d", "--name", name, "--restart", policy, "busybox", "sleep", "300"), "run "+name)
	}
	// The reboot: every monitor, then every container, killed.
	for _, name := range []string{"rb-always", "rb-no", "rb-unless"} {
		id := strings.TrimSpace(mustH(t, h("inspect", "-f", "{{.Id}}", name), "inspect"))
		if out, _ := exec.Command("pgrep", "-f", "hull-monitor --id "+id).Output(); len(out) > 0 {
			exec.Command("kill", "-9", strings.Fields(string(out))[0]).Run()
		}
		pid := strings.TrimSpace(mustH(t, h("inspect", "-f", "{{.State.Pid}}", name), "inspect"))
		exec.Command("kill", "-9", pid).Run()
	}
	waitFor(t, "all exited", func() bool {
		return strings.TrimSpace(h("ps", "-q").stdout) == ""
	})
	out := mustH(t, h("start", "--all", "--filter", "restart-policy=always"), "start --all --filter")
	if out != "rb-always\n" {
		t.Errorf("start --all --filter restart-policy=always printed %q", out)
	}
	if names := mustH(t, h("ps", "--format", "{{.Names}}"), "ps"); names != "rb-always\n" {
		t.Errorf("running after the boot start: %q", names)
	}
	out = mustH(t, h("start", "--all"), "start --all")
	if lines := strings.Fields(out); len(lines) != 2 {
		t.Errorf("start --all started %q, want the two others", out)
	}
	if n := len(strings.Fields(mustH(t, h("ps", "-q"), "ps"))); n != 3 {
		t.Errorf("%d running after start --all, want 3", n)
	}
	// Bad input: a filter without --all, an unknown policy, --all with names.
	for _, args := range [][]string{
		{"start", "--filter", "restart-policy=always", "rb-no"},
		{"start", "--all", "--filter", "restart-policy=sometimes"},
		{"start", "--all", "rb-no"},
	} {
		if r := h(args...); r.code != 125 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("hull %s: exit %d, %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	mustH(t, h("rm", "-f", "rb-always", "rb-no", "rb-unless"), "rm")
}
