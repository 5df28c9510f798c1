package container

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/runtime/caps"
	"github.com/hullproject/hull/runtime/nsenter"
	"github.com/hullproject/hull/runtime/seccomp"
)

// buildPlan turns a process (and the container's security settings) into
// what the container process applies to itself before execve.
func buildPlan(p *specs.Process, s *specs.Spec, exe string) (*nsenter.Plan, error) {
	pl := &nsenter.Plan{
		Flags: nsenter.PlanSetgroups,
		UID:   p.User.UID, GID: p.User.GID, Groups: p.User.AdditionalGids,
		Umask: 0xffffffff, Cwd: p.Cwd, Exe: exe, Args: p.Args, Env: p.Env,
	}
	if p.User.Umask != nil {
		pl.Umask = *p.User.Umask
	}
	if p.Capabilities != nil {
		set, _, err := caps.FromSpec(p.Capabilities)
		if err != nil {
			return nil, err
		}
		// A capability outside the runtime's own bounding set cannot be
		// granted (capset fails); leave it out, as crun does, and say so.
		if dropped := set.Limit(caps.Bounding()); len(dropped) > 0 {
			Warn("capabilities %v are not available to the runtime and were not granted", dropped)
		}
		pl.Flags |= nsenter.PlanCaps
		pl.Caps = [5]uint64{set.Bounding, set.Effective, set.Permitted, set.Inheritable, set.Ambient}
	}
	if p.NoNewPrivileges {
		pl.Flags |= nsenter.PlanNNP
	}
	// Security profiles are applied where the host enforces them and
	// refused where it would only pretend to: an ignored profile must not
	// look applied.
	if p.ApparmorProfile != "" && lsmEnabled("apparmor") {
		pl.AppArmor = p.ApparmorProfile
	}
	if (p.SelinuxLabel != "" || (s.Linux != nil && s.Linux.MountLabel != "")) && lsmEnabled("selinux") {
		return nil, errors.New("SELinux labels are not supported by hull-runc on a host that enforces SELinux")
	}
	if s.Linux != nil && s.Linux.Personality != nil {
		switch s.Linux.Personality.Domain {
		case specs.PerLinux:
			pl.Personality = 0x0000
		case specs.PerLinux32:
			pl.Personality = 0x0008
		default:
			return nil, &ExecError{Msg: "unknown personality domain " + string(s.Linux.Personality.Domain)}
		}
		pl.Flags |= nsenter.PlanPersonality
	}
	if s.Linux != nil && s.Linux.Seccomp != nil {
		prog, err := seccomp.Compile(s.Linux.Seccomp)
		if err != nil {
			return nil, err
		}
		flags, err := seccomp.KernelFlags(prog, s.Linux.Seccomp.Flags)
		if err != nil {
			return nil, err
		}
		// Handing a notify listener to listenerPath is not supported:
		// without the listener, notify rules answer ENOSYS.
		flags &^= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
		pl.Flags |= nsenter.PlanSeccomp
		pl.SeccompFlag = uint32(flags)
		pl.Seccomp = make([]byte, 0, 8*len(prog))
		for _, in := range prog {
			pl.Seccomp = binary.NativeEndian.AppendUint16(pl.Seccomp, in.Code)
			pl.Seccomp = append(pl.Seccomp, in.Jt, in.Jf)
			pl.Seccomp = binary.NativeEndian.AppendUint32(pl.Seccomp, in.K)
		}
	}
	return pl, nil
}

// lsmEnabled reports whether the host runs the named security module.
func lsmEnabled(name string) bool {
	data, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		if name == "apparmor" {
			v, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
			return err == nil && strings.HasPrefix(string(v), "Y")
		}
		return false
	}
	for _, m := range strings.Split(strings.TrimSpace(string(data)), ",") {
		if m == name {
			return true
		}
	}
	return false
}

// startHooks adds the startContainer hooks and the state they receive.
func (c *Container) startHooks(pl *nsenter.Plan) error {
	h := c.spec.Hooks
	if h == nil || len(h.StartContainer) == 0 {
		return nil
	}
	data, err := json.Marshal(c.hookState(Created))
	if err != nil {
		return err
	}
	pl.State = string(data)
	for _, hk := range h.StartContainer {
		nh := nsenter.Hook{Path: hk.Path, Args: hk.Args, Env: hk.Env}
		if hk.Timeout != nil && *hk.Timeout > 0 {
			nh.Timeout = uint32(*hk.Timeout)
		}
		pl.Hooks = append(pl.Hooks, nh)
	}
	return nil
}
