package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cleaner removes what a validation program leaves behind: containers the
// runtime still lists, processes, mounts under work/, the test cgroups and
// the program's TMPDIR (where its bundles live). Whatever existed before the
// harness started is left alone.
type cleaner struct {
	rt string
	d  workDirs

	baseContainers map[string]bool
	baseMounts     map[string]bool
	baseCgroups    map[string]bool

	containers, procs, mounts, cgroups, tmpEntries int
	warnings                                       []string
}

const cgroupRoot = "/sys/fs/cgroup"

// Cgroups the validation programs create: runtime-tools' fixed paths
// (/cgrouptest, testdir/cgrouptest/container) and, for containers without a
// cgroupsPath, the container ID, a random UUID.
var testCgroupName = regexp.MustCompile(`^(cgrouptest|testdir|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)

func newCleaner(rt string, d workDirs) *cleaner {
	c := &cleaner{rt: rt, d: d, baseContainers: map[string]bool{}, baseMounts: map[string]bool{}, baseCgroups: map[string]bool{}}
	ids, err := c.listContainers()
	if err != nil {
		c.warn("cannot list the runtime's containers (%v); containers left behind will not be removed", err)
	}
	for _, id := range ids {
		c.baseContainers[id] = true
	}
	for _, m := range mountPoints() {
		c.baseMounts[m] = true
	}
	for _, g := range cgroupDirs() {
		c.baseCgroups[g] = true
	}
	return c
}

func (c *cleaner) warn(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

// command runs a short helper command with a time limit and returns its
// standard output.
func command(limit time.Duration, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := startRegistered(cmd); err != nil {
		return nil, err
	}
	timer := time.AfterFunc(limit, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	timer.Stop()
	unregister(cmd.Process.Pid)
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%v: %s", err, stderrDetail([]byte(msg)))
		}
	}
	return stdout.Bytes(), err
}

// listContainers asks the runtime for its container IDs ("list -q", falling
// back to the first column of "list").
func (c *cleaner) listContainers() ([]string, error) {
	out, err := command(10*time.Second, c.rt, "list", "-q")
	if err == nil {
		return strings.Fields(string(out)), nil
	}
	out, err2 := command(10*time.Second, c.rt, "list")
	if err2 != nil {
		return nil, errors.Join(err, err2)
	}
	var ids []string
	for i, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if i == 0 || len(f) == 0 {
			continue
		}
		ids = append(ids, f[0])
	}
	return ids, nil
}

func (c *cleaner) bundleOf(id string) (string, error) {
	out, err := command(10*time.Second, c.rt, "state", id)
	if err != nil {
		return "", err
	}
	var st struct {
		Bundle string `json:"bundle"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return "", err
	}
	return filepath.Clean(st.Bundle), nil
}

func (c *cleaner) afterProgram(w io.Writer, name, tmp string) {
	// 1. Containers that the program did not delete.
	if ids, err := c.listContainers(); err != nil {
		fmt.Fprintf(w, "cannot list containers: %v\n", err)
	} else {
		for _, id := range ids {
			if c.baseContainers[id] {
				continue
			}
			// Only containers whose bundle is one of ours: someone else
			// may use the same runtime root meanwhile.
			if b, err := c.bundleOf(id); err != nil || !underDir(b, c.d.root) {
				if err != nil {
					fmt.Fprintf(w, "container %s: state failed (%v); left alone\n", id, err)
				}
				c.baseContainers[id] = true
				continue
			}
			command(10*time.Second, c.rt, "kill", id, "KILL")
			_, err := command(20*time.Second, c.rt, "delete", "--force", id)
			if err != nil {
				_, err = command(20*time.Second, c.rt, "delete", id)
			}
			if err == nil {
				if _, serr := command(10*time.Second, c.rt, "state", id); serr == nil {
					err = errors.New("delete succeeded, but state still finds the container")
				}
			}
			if err != nil {
				fmt.Fprintf(w, "container %s left behind; delete failed: %v\n", id, err)
				c.warn("%s: container %s could not be deleted: %v", name, id, err)
				c.baseContainers[id] = true // warn once
			} else {
				fmt.Fprintf(w, "container %s left behind: deleted\n", id)
				c.containers++
			}
		}
	}

	// 2. Processes: adopted orphans (container processes, helpers).
	for _, p := range killAdopted() {
		fmt.Fprintf(w, "process %s left running: killed\n", p)
		c.procs++
	}

	// 3. Mounts under work/ (bundles live in work/tmp); others are reported.
	for _, m := range mountPoints() {
		if c.baseMounts[m] {
			continue
		}
		if underDir(m, c.d.root) {
			continue // handled below, deepest first
		}
		fmt.Fprintf(w, "new mount outside work/: %s (left alone)\n", m)
		c.warn("%s: new mount %s outside work/ (left alone)", name, m)
		c.baseMounts[m] = true
	}
	for _, m := range c.unmountUnder(c.d.root) {
		fmt.Fprintf(w, "mount %s left behind: %s\n", m.path, m.result)
	}

	// 4. Test cgroups.
	c.cleanCgroups(w, name)

	// 5. The program's TMPDIR.
	c.cleanTmp(w, tmp)
}

type unmountResult struct{ path, result string }

func (c *cleaner) unmountUnder(dir string) []unmountResult {
	var res []unmountResult
	for pass := 0; pass < 5; pass++ {
		var ms []string
		for _, m := range mountPoints() {
			if underDir(m, dir) {
				ms = append(ms, m)
			}
		}
		if len(ms) == 0 {
			break
		}
		sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
		for _, m := range ms {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
				res = append(res, unmountResult{m, "unmount failed: " + err.Error()})
			} else {
				res = append(res, unmountResult{m, "unmounted"})
				c.mounts++
			}
		}
	}
	return res
}

// cleanTmp removes a program's TMPDIR, or with tmp == "" everything in
// work/tmp. It refuses while anything is still mounted below.
func (c *cleaner) cleanTmp(w io.Writer, tmp string) {
	target := tmp
	if target == "" {
		target = c.d.tmp
		for _, r := range c.unmountUnder(c.d.root) {
			fmt.Fprintf(w, "mount %s: %s\n", r.path, r.result)
		}
	}
	for _, m := range mountPoints() {
		if m == target || underDir(m, target) {
			fmt.Fprintf(w, "not removing %s: %s is still mounted\n", target, m)
			c.warn("%s is still mounted; %s kept", m, target)
			return
		}
	}
	if tmp != "" {
		ents, _ := os.ReadDir(tmp)
		for _, e := range ents {
			fmt.Fprintf(w, "left in TMPDIR: %s: removed\n", e.Name())
			c.tmpEntries++
		}
	}
	if err := os.RemoveAll(target); err != nil {
		fmt.Fprintf(w, "removing %s: %v\n", target, err)
		c.warn("removing %s: %v", target, err)
	}
}

func (c *cleaner) cleanCgroups(w io.Writer, name string) {
	var left []string
	for _, g := range cgroupDirs() {
		if c.baseCgroups[g] {
			continue
		}
		for _, p := range cgroupNameParts(g) {
			if testCgroupName.MatchString(p) {
				left = append(left, g)
				break
			}
		}
	}
	// Deepest first, so that children go before their parents.
	sort.Slice(left, func(i, j int) bool { return strings.Count(left[i], "/") > strings.Count(left[j], "/") })
	for _, g := range left {
		var err error
		for try := 0; try < 20; try++ {
			if err = syscall.Rmdir(g); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			if !errors.Is(err, syscall.EBUSY) {
				break
			}
			// A cgroup whose processes are still exiting, or that a
			// runtime left populated. Only runtime-tools' fixed test
			// paths are emptied by force: a UUID-named cgroup could
			// belong to someone else's container.
			if try == 5 && fixedTestCgroup(g) {
				killCgroupProcs(g)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil && !isCgroupFS(g) {
			// A runtime that believed it wrote cgroup files wrote plain
			// ones: crun in v1 mode with the hybrid cgroup2 mount
			// unmounted from its mount namespace creates
			// unified/<id>/cgroup.procs in the /sys/fs/cgroup tmpfs.
			err = os.RemoveAll(g)
		}
		if err != nil {
			fmt.Fprintf(w, "cgroup %s left behind: rmdir failed: %v\n", g, err)
			c.warn("%s: cgroup %s could not be removed: %v", name, g, err)
			c.baseCgroups[g] = true
		} else {
			fmt.Fprintf(w, "cgroup %s left behind: removed\n", g)
			c.cgroups++
		}
	}
}

func fixedTestCgroup(g string) bool {
	for _, p := range cgroupNameParts(g) {
		if p == "cgrouptest" || p == "testdir" {
			return true
		}
	}
	return false
}

// killCgroupProcs kills the processes in a cgroup that a validation program
// created (and that the runtime did not clean up).
func killCgroupProcs(g string) {
	for _, f := range []string{"cgroup.procs", "tasks"} {
		data, err := os.ReadFile(filepath.Join(g, f))
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(s); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	killAdopted()
}

func (c *cleaner) finalReport(w io.Writer) {
	if ids, err := c.listContainers(); err == nil {
		for _, id := range ids {
			if !c.baseContainers[id] {
				c.warn("container %s still listed by the runtime", id)
			}
		}
	}
	fmt.Fprintf(w, "# cleanup after the programs: %d containers deleted, %d processes killed, %d mounts unmounted, %d cgroups removed, %d TMPDIR entries removed\n",
		c.containers, c.procs, c.mounts, c.cgroups, c.tmpEntries)
	for _, s := range c.warnings {
		fmt.Fprintf(w, "# cleanup warning: %s\n", s)
	}
}

func underDir(p, dir string) bool {
	return strings.HasPrefix(p, dir+"/")
}

// mountPoints returns the mount points of the harness's mount namespace.
func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupDirs lists every cgroup directory: under each v1 hierarchy and the
// hybrid v2 one in /sys/fs/cgroup/*, or under /sys/fs/cgroup itself on a
// pure cgroup v2 host. The hierarchy roots themselves are not listed.
func cgroupDirs() []string {
	var roots []string
	var st syscall.Statfs_t
	if syscall.Statfs(cgroupRoot, &st) == nil && st.Type == cgroup2Magic {
		roots = []string{cgroupRoot}
	} else {
		hs, _ := os.ReadDir(cgroupRoot)
		for _, h := range hs {
			if h.IsDir() { // not the cpu,cpuacct style symlinks
				roots = append(roots, filepath.Join(cgroupRoot, h.Name()))
			}
		}
	}
	var out []string
	for _, r := range roots {
		filepath.WalkDir(r, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if e.IsDir() && p != r {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

const (
	cgroup2Magic = 0x63677270
	cgroupMagic  = 0x27e0eb
)

func isCgroupFS(p string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return true // unknown: do not remove recursively
	}
	return st.Type == cgroup2Magic || st.Type == cgroupMagic
}

// cgroupNameParts returns the path components of a cgroup below its
// hierarchy root.
func cgroupNameParts(g string) []string {
	rel, _ := filepath.Rel(cgroupRoot, g)
	parts := strings.Split(rel, string(filepath.Separator))
	var st syscall.Statfs_t
	if syscall.Statfs(cgroupRoot, &st) == nil && st.Type == cgroup2Magic {
		return parts
	}
	return parts[1:] // parts[0] names the hierarchy
}
