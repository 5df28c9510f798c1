package cgroups

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Access bits, with the values the kernel uses in bpf_cgroup_dev_ctx so the
// eBPF program can compare them directly.
const (
	accMknod uint8 = 1
	accRead  uint8 = 2
	accWrite uint8 = 4
	accAll         = accMknod | accRead | accWrite
)

// devRule is a validated OCI device rule. typ is 'a', 'b' or 'c'; a major
// or minor of -1 is the "*" wildcard.
type devRule struct {
	allow        bool
	typ          byte
	major, minor int64
	access       uint8
}

func parseDevRule(r specs.LinuxDeviceCgroup) (devRule, error) {
	d := devRule{allow: r.Allow, major: -1, minor: -1}
	switch r.Type {
	case "", "a":
		d.typ = 'a'
	case "b", "c":
		d.typ = r.Type[0]
	default:
		return d, fmt.Errorf("invalid device rule type %q", r.Type)
	}
	for _, p := range []struct {
		src *int64
		dst *int64
	}{{r.Major, &d.major}, {r.Minor, &d.minor}} {
		if p.src == nil || *p.src == -1 {
			continue
		}
		// The eBPF program compares against 32-bit immediates.
		if *p.src < 0 || *p.src > math.MaxInt32 {
			return d, fmt.Errorf("invalid device number %d", *p.src)
		}
		*p.dst = *p.src
	}
	if r.Access == "" {
		// An unset access means every access, as with an unset type.
		d.access = accAll
	}
	for _, c := range r.Access {
		switch c {
		case 'r':
			d.access |= accRead
		case 'w':
			d.access |= accWrite
		case 'm':
			d.access |= accMknod
		default:
			return d, fmt.Errorf("invalid device access %q", r.Access)
		}
	}
	return d, nil
}

// isAll reports whether the rule covers every device and access, which the
// kernel treats as switching the default policy.
func (d devRule) isAll() bool {
	return d.typ == 'a' && d.major < 0 && d.minor < 0 && d.access == accAll
}

// expand turns an 'a' rule that is narrower than "everything" into the same
// rule for block and char devices; the v1 kernel interface would otherwise
// read any 'a' as "everything".
func (d devRule) expand() []devRule {
	if d.typ != 'a' || d.isAll() {
		return []devRule{d}
	}
	b, c := d, d
	b.typ, c.typ = 'b', 'c'
	return []devRule{b, c}
}

func numString(n int64) string {
	if n < 0 {
		return "*"
	}
	return strconv.FormatInt(n, 10)
}

func accessString(a uint8) string {
	var b strings.Builder
	if a&accRead != 0 {
		b.WriteByte('r')
	}
	if a&accWrite != 0 {
		b.WriteByte('w')
	}
	if a&accMknod != 0 {
		b.WriteByte('m')
	}
	return b.String()
}

// v1String formats the rule for devices.allow / devices.deny.
func (d devRule) v1String() string {
	if d.isAll() {
		return "a"
	}
	return fmt.Sprintf("%c %s:%s %s", d.typ, numString(d.major), numString(d.minor), accessString(d.access))
}

func parseDevRules(rules []specs.LinuxDeviceCgroup) ([]devRule, error) {
	var out []devRule
	for _, r := range rules {
		d, err := parseDevRule(r)
		if err != nil {
			return nil, err
		}
		out = append(out, d.expand()...)
	}
	return out, nil
}

// setDevicesV1 starts from "deny everything" and then applies the rules in
// order, as the spec demands; the kernel merges them like devState does.
func setDevicesV1(dir string, rules []specs.LinuxDeviceCgroup) error {
	parsed, err := parseDevRules(rules)
	if err != nil {
		return err
	}
	if err := writeFile(dir, "devices.deny", "a"); err != nil {
		return err
	}
	for _, d := range parsed {
		file := "devices.deny"
		if d.allow {
			file = "devices.allow"
		}
		if err := writeFile(dir, file, d.v1String()); err != nil {
			return err
		}
	}
	return nil
}

// devException is an entry of the exception list: a device key and the
// accesses that differ from the default policy.
type devException struct {
	typ          byte // 'b' or 'c'
	major, minor int64
	access       uint8
}

// devState is the outcome of applying rules the way the v1 devices
// controller does: a default policy plus exceptions. Compiling this state
// (instead of the raw rule list) gives the eBPF program exactly the v1
// semantics, including merged accesses of repeated rules.
type devState struct {
	defaultAllow bool
	exceptions   []devException
}

// emulateDevices applies rules to a "deny everything" start state.
func emulateDevices(rules []devRule) devState {
	var st devState
	for _, r := range rules {
		if r.isAll() {
			st = devState{defaultAllow: r.allow}
			continue
		}
		i := st.find(r)
		if r.allow != st.defaultAllow {
			// A rule against the default adds (or widens) an exception.
			if i >= 0 {
				st.exceptions[i].access |= r.access
			} else {
				st.exceptions = append(st.exceptions, devException{typ: r.typ, major: r.major, minor: r.minor, access: r.access})
			}
			continue
		}
		// A rule agreeing with the default narrows the exception with the
		// same key, as the kernel does (no partial matching).
		if i >= 0 {
			st.exceptions[i].access &^= r.access
			if st.exceptions[i].access == 0 {
				st.exceptions = append(st.exceptions[:i], st.exceptions[i+1:]...)
			}
		}
	}
	return st
}

func (st *devState) find(r devRule) int {
	for i, e := range st.exceptions {
		if e.typ == r.typ && e.major == r.major && e.minor == r.minor {
			return i
		}
	}
	return -1
}

// allowed evaluates a request against the state with the kernel's matching
// rules: with a deny default, one exception must cover all requested
// accesses; with an allow default, any overlap with an exception denies.
func (st devState) allowed(typ byte, major, minor int64, access uint8) bool {
	for _, e := range st.exceptions {
		if e.typ != typ || (e.major >= 0 && e.major != major) || (e.minor >= 0 && e.minor != minor) {
			continue
		}
		if st.defaultAllow {
			if e.access&access != 0 {
				return false
			}
		} else if access&^e.access == 0 {
			return true
		}
	}
	return st.defaultAllow
}
