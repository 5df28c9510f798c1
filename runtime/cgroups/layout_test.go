package cgroups

import (
	"strings"
	"testing"
)

const hybridMountinfo = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 22 0:32 /process_api /mnt/mem\040bind rw,relatime - cgroup cgroup rw,memory
`

const hybridProcCgroup = `12:name=systemd:/user.slice
11:net_cls,net_prio:/
4:memory:/process_api/abc
3:cpuset:/
2:cpu,cpuacct:/a/b
1:pids:/not-mounted
0::/user.slice/session-1.scope
`

func mustLayout(t *testing.T, mi, pc string) layout {
	t.Helper()
	mounts, err := parseMountinfo(strings.NewReader(mi))
	if err != nil {
		t.Fatal(err)
	}
	cgs, err := parseProcCgroup(strings.NewReader(pc))
	if err != nil {
		t.Fatal(err)
	}
	return buildLayout(mounts, cgs)
}

func TestParseMountinfoKeepsOnlyCgroups(t *testing.T) {
	mounts, err := parseMountinfo(strings.NewReader(hybridMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) != 7 {
		t.Fatalf("got %d cgroup mounts, want 7: %+v", len(mounts), mounts)
	}
	last := mounts[6]
	if last.mountpoint != "/mnt/mem bind" || last.root != "/process_api" {
		t.Errorf("escaped mount point not decoded: %+v", last)
	}
	if _, err := parseMountinfo(strings.NewReader("1 2 3 - cgroup\n")); err == nil {
		t.Error("short line accepted")
	}
}

func TestParseProcCgroupColonInPath(t *testing.T) {
	cgs, err := parseProcCgroup(strings.NewReader("0::/a:b\n5:memory:/x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cgs[0].path != "/a:b" || cgs[0].controllers != nil || cgs[1].controllers[0] != "memory" {
		t.Errorf("bad parse: %+v", cgs)
	}
	if _, err := parseProcCgroup(strings.NewReader("x:memory:/\n")); err == nil {
		t.Error("bad id accepted")
	}
}

func TestLayoutHybrid(t *testing.T) {
	l := mustLayout(t, hybridMountinfo, hybridProcCgroup)
	if l.mode() != Hybrid {
		t.Errorf("mode = %v, want hybrid", l.mode())
	}
	// pids is in /proc/self/cgroup but not mounted: left out.
	if len(l.v1) != 5 {
		t.Fatalf("got %d v1 hierarchies, want 5: %+v", len(l.v1), l.v1)
	}
	for _, h := range l.v1 {
		if h.has("memory") && h.mountpoint != "/sys/fs/cgroup/memory" {
			t.Errorf("memory mount = %s; the hierarchy-root mount must win over a bind mount", h.mountpoint)
		}
	}
	if l.v2 == nil || l.v2.mountpoint != "/sys/fs/cgroup/unified" {
		t.Fatalf("v2 = %+v", l.v2)
	}
}

func TestResolvePaths(t *testing.T) {
	l := mustLayout(t, hybridMountinfo, hybridProcCgroup)
	m, err := newManager(l, "/hull/c1")
	if err != nil {
		t.Fatal(err)
	}
	// newManager read the real cgroup2 root of this machine; the test
	// must not depend on what it offers.
	m.v2avail = map[string]bool{}
	want := map[string]string{
		"memory":       "/sys/fs/cgroup/memory/hull/c1",
		"cpu":          "/sys/fs/cgroup/cpu,cpuacct/hull/c1",
		"cpuacct":      "/sys/fs/cgroup/cpu,cpuacct/hull/c1",
		"net_prio":     "/sys/fs/cgroup/net_cls,net_prio/hull/c1",
		"name=systemd": "/sys/fs/cgroup/systemd/hull/c1",
		"":             "/sys/fs/cgroup/unified/hull/c1",
		"unified":      "/sys/fs/cgroup/unified/hull/c1",
		"pids":         "", // not mounted, and the fake v2 root offers nothing
	}
	for c, w := range want {
		if got := m.Path(c); got != w {
			t.Errorf("absolute: Path(%q) = %q, want %q", c, got, w)
		}
	}
	// Relative paths hang below the caller's own cgroup per hierarchy.
	m, err = newManager(l, "hull/c1")
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]string{
		"memory":       "/sys/fs/cgroup/memory/process_api/abc/hull/c1",
		"cpu":          "/sys/fs/cgroup/cpu,cpuacct/a/b/hull/c1",
		"cpuset":       "/sys/fs/cgroup/cpuset/hull/c1",
		"name=systemd": "/sys/fs/cgroup/systemd/user.slice/hull/c1",
		"":             "/sys/fs/cgroup/unified/user.slice/session-1.scope/hull/c1",
	}
	for c, w := range want {
		if got := m.Path(c); got != w {
			t.Errorf("relative: Path(%q) = %q, want %q", c, got, w)
		}
	}
	// ".." must not climb above the mount point.
	m, err = newManager(l, "/../../etc")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Path("memory"); got != "/sys/fs/cgroup/memory/etc" {
		t.Errorf("escaping path resolved to %q", got)
	}
	if _, err := newManager(l, "../../x"); err != nil {
		t.Fatal(err)
	}
	m, _ = newManager(l, "../../x")
	if got := m.Path("memory"); got != "/sys/fs/cgroup/memory/process_api/abc/x" {
		t.Errorf("relative path escaped the own cgroup: %q", got)
	}
	// Destroy removes the subtree, so the root and the caller's own
	// cgroup are refused.
	for _, bad := range []string{"", "/", "/a/..", ".", "a/.."} {
		if _, err := newManager(l, bad); err == nil {
			t.Errorf("cgroups path %q accepted", bad)
		}
	}
}

func TestLayoutContainerBindMount(t *testing.T) {
	// Inside a container without a cgroup namespace the mount root is the
	// container's cgroup and /proc/self/cgroup shows the full path.
	mi := "40 31 0:38 /docker/ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
	l := mustLayout(t, mi, "0::/docker/ctr/init\n")
	if l.mode() != Unified {
		t.Fatalf("mode = %v", l.mode())
	}
	m, err := newManager(l, "sub")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Path(""); got != "/sys/fs/cgroup/init/sub" {
		t.Errorf("Path = %q", got)
	}
}

func TestModes(t *testing.T) {
	legacy := mustLayout(t, "35 31 0:32 / /cg/memory rw - cgroup cgroup rw,memory\n", "4:memory:/\n0::/\n")
	if legacy.mode() != Legacy {
		t.Errorf("legacy detected as %v", legacy.mode())
	}
	unified := mustLayout(t, "35 31 0:32 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/x\n")
	if unified.mode() != Unified {
		t.Errorf("unified detected as %v", unified.mode())
	}
	if _, err := newManager(layout{}, "/x"); err == nil {
		t.Error("manager without hierarchies accepted")
	}
}
