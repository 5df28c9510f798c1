// Package security provides the default confinement a Docker user expects
// from every container: Docker's default capability set and how --cap-add
// and --cap-drop change it, the masked and read-only /proc and /sys paths,
// and a seccomp profile with the effect of Docker's default profile. The
// engine puts these into each container's OCI spec.
package security // Docker-equivalent default confinement for containers

import (
	"fmt"
	"strings"

	"github.com/hullproject/hull/runtime/caps"
)

// defaultCaps is Docker's default capability set (moby's oci/caps defaults).
var defaultCaps = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// DefaultCapabilities returns Docker's default capability set (14
// capabilities) as "CAP_..." names. The slice is the caller's.
func DefaultCapabilities() []string {
	return append([]string(nil), defaultCaps...)
}

// AllCapabilities returns every capability the running kernel knows, for
// --privileged and --cap-add ALL. The slice is the caller's.
func AllCapabilities() []string {
	return caps.Known()
}

// allKeyword is the pseudo-capability of --cap-add ALL / --cap-drop ALL.
const allKeyword = "ALL"

// normalizeCap turns "sys_admin", "CAP_SYS_ADMIN" or "all" into the
// canonical "CAP_SYS_ADMIN" or "ALL".
func normalizeCap(name string) string {
	up := strings.ToUpper(strings.TrimSpace(name))
	if up == allKeyword {
		return up
	}
	if !strings.HasPrefix(up, "CAP_") {
		up = "CAP_" + up
	}
	return up
}

// normalizeCaps canonicalises and validates --cap-add / --cap-drop names,
// removing duplicates. Names are checked against every capability this build
// knows, not only those of the running kernel, as Docker does: a spec naming
// a capability an older kernel lacks still starts (the runtime skips it).
func normalizeCaps(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	seen := map[string]bool{}
	for _, n := range names {
		c := normalizeCap(n)
		if c != allKeyword {
			if _, err := caps.Parse(c); err != nil {
				return nil, fmt.Errorf("unknown capability: %q", c)
			}
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out, nil
}

// ApplyCapChanges applies --cap-add and --cap-drop to base the way Docker
// does. Names are case-insensitive, with or without "CAP_", and "ALL" is
// allowed in both lists:
//
//   - add contains ALL: every capability of the kernel except those dropped
//     (dropping ALL at the same time has no effect);
//   - otherwise drop contains ALL: exactly the added capabilities;
//   - otherwise: base without the dropped ones, then the added ones.
//
// An unknown name is an error "unknown capability: ...". The result has no
// duplicates; base is not modified.
func ApplyCapChanges(base []string, add, drop []string) ([]string, error) {
	addN, err := normalizeCaps(add)
	if err != nil {
		return nil, err
	}
	dropN, err := normalizeCaps(drop)
	if err != nil {
		return nil, err
	}
	dropped := map[string]bool{}
	for _, c := range dropN {
		dropped[c] = true
	}
	var out []string
	seen := map[string]bool{}
	push := func(c string) {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	switch {
	case contains(addN, allKeyword):
		for _, c := range AllCapabilities() {
			if !dropped[c] {
				push(c)
			}
		}
	case dropped[allKeyword]:
		for _, c := range addN {
			push(c)
		}
	default:
		for _, c := range base {
			c = normalizeCap(c)
			if !dropped[c] {
				push(c)
			}
		}
		for _, c := range addN {
			push(c)
		}
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// MaskedPaths returns the paths Docker hides from containers: files behind
// /dev/null, directories behind an empty read-only tmpfs. The slice is the
// caller's.
func MaskedPaths() []string {
	return []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
}

// ReadonlyPaths returns the paths Docker mounts read-only in containers. The
// slice is the caller's.
func ReadonlyPaths() []string {
	return []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
}
