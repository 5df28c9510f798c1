package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hullproject/hull/engine/security"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// initPath is where --init puts hull-init in the container.
const initPath = "/sbin/hull-init"

// cpuPeriod is the CFS period --cpus is expressed against, as Docker's.
const cpuPeriod = 100000

// buildSpec makes the OCI runtime configuration of a container whose root
// filesystem is mounted at rootPath; runDir holds its generated /etc files.
func (e *Engine) buildSpec(c *Container, rootPath, runDir, netPath string) (*specs.Spec, error) {
	user, err := ResolveUser(rootPath, c.Config.User)
	if err != nil {
		return nil, err
	}
	h := &c.Host
	caps := security.DefaultCapabilities()
	if h.Privileged {
		caps = security.AllCapabilities()
	}
	if caps, err = security.ApplyCapChanges(caps, h.CapAdd, h.CapDrop); err != nil {
		return nil, err
	}
	env := append([]string(nil), c.Config.Env...)
	env = setDefaultEnv(env, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	env = setEnv(env, "HOSTNAME", c.Config.Hostname)
	if c.Config.Tty {
		env = setDefaultEnv(env, "TERM", "xterm")
	}
	env = setDefaultEnv(env, "HOME", user.Home)
	cwd := c.Config.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: c.Config.Tty,
			User:     specs.User{UID: user.UID, GID: user.GID, AdditionalGids: user.AdditionalGids},
			Args:     append([]string{c.Path}, c.Args...),
			Env:      env,
			Cwd:      cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: noNewPrivileges(h.SecurityOpt),
		},
		Root:     &specs.Root{Path: rootPath, Readonly: h.ReadonlyRootfs},
		Hostname: c.Config.Hostname,
		Mounts:   defaultMounts(h.Privileged),
		Linux: &specs.Linux{
			CgroupsPath: "/hull/" + c.ID,
			Resources:   &specs.LinuxResources{},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
		},
	}
	if c.Config.Domainname != "" {
		s.Domainname = c.Config.Domainname
	}
	for _, u := range h.Ulimits {
		s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{
			Type: "RLIMIT_" + strings.ToUpper(u.Name), Soft: uint64(u.Soft), Hard: uint64(u.Hard),
		})
	}
	switch h.NetworkMode {
	case "host":
		// The host's network namespace, hostname files and all.
	default:
		// netPath: the namespace setupNetwork made (bridge networks) or
		// another container's; "" is a new, empty one (none).
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netPath})
	}
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: "/etc/" + f, Type: "bind", Source: filepath.Join(runDir, f),
			Options: []string{"rbind", "rprivate"},
		})
	}
	mounts, err := e.userMounts(c)
	if err != nil {
		return nil, err
	}
	s.Mounts = append(s.Mounts, mounts...)
	if h.Init {
		// hull-init runs as pid 1 in front of the program: it reaps
		// orphans and passes signals on (see cmd/hull-init).
		if _, err := os.Stat(e.Init); err != nil {
			return nil, fmt.Errorf("--init: hull-init not found (%s): %w", e.Init, err)
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: initPath, Type: "bind", Source: e.Init, Options: []string{"rbind", "ro"}})
		s.Process.Args = append([]string{initPath, "--"}, s.Process.Args...)
	}
	setResources(s.Linux.Resources, h)
	if h.Privileged {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		s.Linux.Devices = hostDevices()
	} else {
		s.Linux.MaskedPaths = security.MaskedPaths()
		s.Linux.ReadonlyPaths = security.ReadonlyPaths()
		if !seccompUnconfined(h.SecurityOpt) {
			s.Linux.Seccomp = security.DefaultSeccomp(caps)
		}
	}
	return s, nil
}

func setResources(r *specs.LinuxResources, h *HostConfig) {
	if h.Memory > 0 || h.MemoryReservation > 0 || h.MemorySwap != 0 {
		m := &specs.LinuxMemory{}
		if h.Memory > 0 {
			m.Limit = &h.Memory
			// Docker: without --memory-swap a container may use as much
			// swap as memory; -1 is unlimited.
			swap := 2 * h.Memory
			if h.MemorySwap > 0 || h.MemorySwap == -1 {
				swap = h.MemorySwap
			}
			m.Swap = &swap
		}
		if h.MemoryReservation > 0 {
			m.Reservation = &h.MemoryReservation
		}
		r.Memory = m
	}
	if h.NanoCpus > 0 || h.CPUShares > 0 || h.CpusetCpus != "" {
		cpu := &specs.LinuxCPU{}
		if h.NanoCpus > 0 {
			period := uint64(cpuPeriod)
			quota := h.NanoCpus * cpuPeriod / 1e9
			cpu.Period, cpu.Quota = &period, &quota
		}
		if h.CPUShares > 0 {
			shares := uint64(h.CPUShares)
			cpu.Shares = &shares
		}
		cpu.Cpus = h.CpusetCpus
		r.CPU = cpu
	}
	if h.PidsLimit != nil && *h.PidsLimit > 0 {
		limit := *h.PidsLimit
		r.Pids = &specs.LinuxPids{Limit: &limit}
	}
}

// defaultMounts are the file systems every container gets, as Docker
// mounts them.
func defaultMounts(privileged bool) []specs.Mount {
	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	cgOpts := []string{"nosuid", "noexec", "nodev", "relatime", "ro"}
	if privileged {
		sysOpts = sysOpts[:3]
		cgOpts = cgOpts[:4]
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: cgOpts},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
	}
}

// hostDevices lists the host's device nodes for a privileged container.
func hostDevices() []specs.LinuxDevice {
	var out []specs.LinuxDevice
	filepath.Walk("/dev", func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if info.IsDir() && (p == "/dev/pts" || p == "/dev/shm" || p == "/dev/mqueue") {
			return filepath.SkipDir
		}
		st, ok := info.Sys().(*unix.Stat_t)
		if !ok || p == "/dev/console" {
			return nil
		}
		var typ string
		switch info.Mode().Type() {
		case os.ModeDevice | os.ModeCharDevice:
			typ = "c"
		case os.ModeDevice:
			typ = "b"
		default:
			return nil
		}
		mode := info.Mode().Perm()
		uid, gid := st.Uid, st.Gid
		out = append(out, specs.LinuxDevice{
			Path: p, Type: typ, Major: int64(unix.Major(uint64(st.Rdev))), Minor: int64(unix.Minor(uint64(st.Rdev))),
			FileMode: &mode, UID: &uid, GID: &gid,
		})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func noNewPrivileges(opts []string) bool {
	for _, o := range opts {
		if o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true" {
			return true
		}
	}
	return false
}

func seccompUnconfined(opts []string) bool {
	for _, o := range opts {
		if o == "seccomp=unconfined" || o == "seccomp:unconfined" {
			return true
		}
	}
	return false
}

// validateSecurityOpts accepts what hull implements of --security-opt.
func validateSecurityOpts(opts []string) error {
	for _, o := range opts {
		switch {
		case o == "no-new-privileges", o == "no-new-privileges:true", o == "no-new-privileges=true",
			o == "no-new-privileges:false", o == "no-new-privileges=false",
			o == "seccomp=unconfined", o == "seccomp:unconfined":
		default:
			return fmt.Errorf("invalid --security-opt %q (supported: no-new-privileges, seccomp=unconfined)", o)
		}
	}
	return nil
}

func envKey(kv string) string { k, _, _ := strings.Cut(kv, "="); return k }

// setEnv sets k=v, replacing an earlier k.
func setEnv(env []string, k, v string) []string {
	for i, kv := range env {
		if envKey(kv) == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

// setDefaultEnv sets k=v unless k is set.
func setDefaultEnv(env []string, k, v string) []string {
	for _, kv := range env {
		if envKey(kv) == k {
			return env
		}
	}
	return append(env, k+"="+v)
}
