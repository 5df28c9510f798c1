package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ControllerError reports a controller that resources were requested for
// but that cannot be used for this cgroup.
type ControllerError struct {
	Controller string
	Reason     string // optional detail
}

func (e *ControllerError) Error() string {
	if e.Reason == "" {
		return "cgroup controller " + e.Controller + " not available"
	}
	return "cgroup controller " + e.Controller + " not available: " + e.Reason
}

func notAvailable(controller string) error {
	return &ControllerError{Controller: controller}
}

// v1dir is the cgroup directory of one v1 hierarchy.
type v1dir struct {
	controllers []string
	mountpoint  string
	dir         string
}

func (d v1dir) has(c string) bool { return slices.Contains(d.controllers, c) }

type manager struct {
	mode    Mode
	v1      []v1dir
	v2      string          // cgroup2 directory, "" without a cgroup2 mount
	v2mount string          // mount point of the cgroup2 hierarchy
	v2avail map[string]bool // controllers the cgroup2 hierarchy offers at its root

	mu      sync.Mutex
	created []string // directories this manager created, in creation order
	made    bool     // every directory exists (set by a complete Apply)
}

func newManager(l layout, cgroupsPath string) (*manager, error) {
	if len(l.v1) == 0 && l.v2 == nil {
		return nil, errors.New("no cgroup hierarchy is mounted")
	}
	m := &manager{mode: l.mode(), v2avail: map[string]bool{}}
	for _, h := range l.v1 {
		dir, err := h.resolve(cgroupsPath)
		if err != nil {
			return nil, fmt.Errorf("resolve cgroups path %q: %w", cgroupsPath, err)
		}
		m.v1 = append(m.v1, v1dir{controllers: h.controllers, mountpoint: h.mountpoint, dir: dir})
	}
	if l.v2 != nil {
		dir, err := l.v2.resolve(cgroupsPath)
		if err != nil {
			return nil, fmt.Errorf("resolve cgroups path %q: %w", cgroupsPath, err)
		}
		m.v2, m.v2mount = dir, l.v2.mountpoint
		// The root's cgroup.controllers is what can be enabled below it;
		// in hybrid mode it lists only the controllers no v1 hierarchy
		// has claimed.
		if avail, err := readControllers(l.v2.mountpoint, "cgroup.controllers"); err == nil {
			m.v2avail = avail
		}
	}
	return m, nil
}

// v1Dir returns the v1 directory that holds controller, or "".
func (m *manager) v1Dir(controller string) string {
	for _, d := range m.v1 {
		if d.has(controller) {
			return d.dir
		}
	}
	return ""
}

// target picks where a controller lives: a v1 hierarchy if one has it,
// otherwise the cgroup2 hierarchy if it offers it to this cgroup. requested
// says whether the caller asks for a real (non-zero, non-unlimited) setting;
// if not, an unavailable controller is skipped instead of failing. An
// available controller is always returned, so "unlimited" still resets an
// earlier limit.
func (m *manager) target(v1name, v2name string, requested bool) (dir string, v2 bool, skip bool, err error) {
	if d := m.v1Dir(v1name); d != "" {
		return d, false, false, nil
	}
	if m.v2 != "" && v2name != "" && m.v2avail[v2name] {
		err := m.v2Enabled(v2name)
		switch {
		case err == nil:
			return m.v2, true, false, nil
		case !requested:
			return "", false, true, nil
		}
		return "", false, false, err
	}
	if !requested {
		return "", false, true, nil
	}
	name := v1name
	if m.mode == Unified && v2name != "" {
		name = v2name
	}
	return "", false, false, notAvailable(name)
}

// v2Enabled checks that controller is enabled for the cgroup2 directory,
// i.e. its parent delegated it through cgroup.subtree_control.
func (m *manager) v2Enabled(controller string) error {
	ctrls, err := readControllers(m.v2, "cgroup.controllers")
	if err != nil {
		return fmt.Errorf("check controller %s: %w", controller, err)
	}
	if !ctrls[controller] {
		return &ControllerError{Controller: controller,
			Reason: "not enabled for " + m.v2 + " (the parent's cgroup.subtree_control does not delegate it)"}
	}
	return nil
}

func (m *manager) Path(controller string) string {
	switch controller {
	case "", "unified":
		return m.v2
	}
	if d := m.v1Dir(controller); d != "" {
		return d
	}
	if m.v2 != "" && m.v2avail[controller] {
		return m.v2
	}
	return ""
}

// dirs returns every distinct cgroup directory of this manager.
func (m *manager) dirs() []string {
	var out []string
	for _, d := range m.v1 {
		if !slices.Contains(out, d.dir) {
			out = append(out, d.dir)
		}
	}
	if m.v2 != "" {
		out = append(out, m.v2)
	}
	return out
}

func (m *manager) Exists() bool {
	for _, d := range m.dirs() {
		if dirExists(d) {
			return true
		}
	}
	return false
}

func (m *manager) Apply(pid int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	done := map[string]bool{}
	// Once every directory exists (a runtime calls Apply(0) first, then
	// Apply for each process), only the moves remain to do.
	made := m.made
	for _, d := range m.v1 {
		if done[d.dir] {
			continue
		}
		done[d.dir] = true
		if !made {
			if err := m.mkdirs(d.mountpoint, d.dir, nil); err != nil {
				return err
			}
			if d.has("cpuset") {
				if err := inheritCpuset(d.mountpoint, d.dir); err != nil {
					return err
				}
			}
		}
		if err := joinCgroup(d.dir, pid); err != nil {
			return err
		}
	}
	if m.v2 != "" {
		if !made {
			if err := m.mkdirs(m.v2mount, m.v2, enableControllers); err != nil {
				return err
			}
		}
		if err := joinCgroup(m.v2, pid); err != nil {
			return err
		}
	}
	m.made = true
	return nil
}

func joinCgroup(dir string, pid int) error {
	if pid <= 0 {
		return nil
	}
	return writeFile(dir, "cgroup.procs", strconv.Itoa(pid))
}

// mkdirs creates dir and its missing parents below mount. beforeChild, if
// set, runs on each existing level before its child is created; cgroup2
// uses it to delegate controllers down the path.
func (m *manager) mkdirs(mount, dir string, beforeChild func(parent string)) error {
	rel, err := filepath.Rel(mount, dir)
	if err != nil {
		return fmt.Errorf("cgroup %s outside %s: %w", dir, mount, err)
	}
	if rel == "." {
		return nil
	}
	cur := mount
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if beforeChild != nil {
			beforeChild(cur)
		}
		cur = filepath.Join(cur, part)
		err := os.Mkdir(cur, 0o755)
		switch {
		case err == nil:
			m.created = append(m.created, cur)
		case errors.Is(err, fs.ErrExist):
		default:
			return fmt.Errorf("mkdir %s: %w", cur, err)
		}
	}
	return nil
}

// enableControllers delegates every controller dir offers to its children.
// Failures are ignored on purpose: a parent that holds processes cannot
// delegate (the "no internal processes" rule), and that must not stop the
// container from starting. Set reports a controller that ended up missing
// when resources are actually requested for it.
func enableControllers(dir string) {
	avail, err := readControllers(dir, "cgroup.controllers")
	if err != nil {
		return
	}
	enabled, err := readControllers(dir, "cgroup.subtree_control")
	if err != nil {
		return
	}
	names := make([]string, 0, len(avail))
	for c := range avail {
		if !enabled[c] {
			names = append(names, c)
		}
	}
	slices.Sort(names)
	for _, c := range names {
		_ = writeFile(dir, "cgroup.subtree_control", "+"+c)
	}
}

// inheritCpuset fills empty cpuset.cpus/cpuset.mems from the parent on every
// level below mount: a v1 cpuset cgroup starts empty and the kernel refuses
// to attach tasks to it until both are set.
func inheritCpuset(mount, dir string) error {
	rel, err := filepath.Rel(mount, dir)
	if err != nil || rel == "." {
		return nil
	}
	parent := mount
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur := filepath.Join(parent, part)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := readFile(cur, f)
			if err != nil {
				return err
			}
			if v != "" {
				continue
			}
			pv, err := readFile(parent, f)
			if err != nil {
				return err
			}
			if err := writeFile(cur, f, pv); err != nil {
				return err
			}
		}
		parent = cur
	}
	return nil
}

// pidsDir is the directory whose subtree defines "the container's
// processes": the one Freeze acts on, so that freeze, list and kill agree.
func (m *manager) pidsDir() string {
	if d := m.v1Dir("freezer"); d != "" {
		return d
	}
	if m.v2 != "" {
		return m.v2
	}
	if len(m.v1) > 0 {
		return m.v1[0].dir
	}
	return ""
}

func (m *manager) Pids() ([]int, error) {
	dir := m.pidsDir()
	dirs, err := subdirs(dir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, d := range dirs {
		pids, err := readProcs(d)
		if err != nil {
			// A sub-cgroup removed during the walk has no processes.
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		out = append(out, pids...)
	}
	return out, nil
}

func (m *manager) Destroy() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	// One retry budget for all hierarchies: a cgroup that stays busy
	// (live processes) fails fast instead of once per hierarchy.
	deadline := time.Now().Add(destroyRetry)
	m.made = false
	var errs []error
	for _, d := range m.dirs() {
		if err := removeTree(d, deadline); err != nil {
			errs = append(errs, err)
		}
	}
	// Parents created by Apply are removed too when they became empty;
	// another container may share them, so "not empty" is no error.
	for i := len(m.created) - 1; i >= 0; i-- {
		err := syscall.Rmdir(m.created[i])
		if err != nil && !errors.Is(err, syscall.ENOENT) &&
			!errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EBUSY) {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", m.created[i], err))
		}
	}
	m.created = nil
	return errors.Join(errs...)
}

// destroyRetry bounds how long Destroy retries EBUSY.
const destroyRetry = time.Second

// removeTree removes dir and every sub-cgroup in it, deepest first, since
// cgroupfs only allows removing empty directories one at a time.
func removeTree(dir string, deadline time.Time) error {
	// A container's cgroup rarely has sub-cgroups: try the directory
	// itself before listing it (a listing of a cgroupfs directory costs
	// more than the rmdir).
	if err := syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
		return nil
	}
	dirs, err := subdirs(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := rmdirRetry(dirs[i], deadline); err != nil {
			return err
		}
	}
	return nil
}

// rmdirRetry retries EBUSY until deadline: the kernel keeps a cgroup busy
// until exited tasks are fully released, which happens asynchronously.
func rmdirRetry(dir string, deadline time.Time) error {
	delay := 5 * time.Millisecond
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
		time.Sleep(delay)
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}
