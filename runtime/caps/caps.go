// Package caps maps capability names to numbers and applies the five OCI
// capability sets to the calling thread.
package caps

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// names is indexed by capability number (linux/capability.h).
var names = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

var (
	lastOnce sync.Once
	last     int
)

// Last returns the highest capability number the running kernel knows.
func Last() int {
	lastOnce.Do(func() {
		last = len(names) - 1
		data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
		if err != nil {
			return
		}
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			last = n
		}
	})
	return last
}

// Known returns the names of every capability this build and kernel know.
func Known() []string {
	n := Last() + 1
	if n > len(names) {
		n = len(names)
	}
	return append([]string(nil), names[:n]...)
}

// Parse returns the number of a capability name such as "CAP_SYS_ADMIN".
func Parse(name string) (int, error) {
	up := strings.ToUpper(name)
	if !strings.HasPrefix(up, "CAP_") {
		up = "CAP_" + up
	}
	for i, n := range names {
		if n == up {
			return i, nil
		}
	}
	return -1, fmt.Errorf("unknown capability %q", name)
}

// Set holds the five sets as bit masks.
type Set struct {
	Bounding, Effective, Inheritable, Permitted, Ambient uint64
}

// FromSpec converts OCI capability lists. Names this kernel does not know
// are returned in ignored rather than failing, as runc does, so one spec
// works across kernel versions; names nobody knows are an error.
func FromSpec(c *specs.LinuxCapabilities) (s Set, ignored []string, err error) {
	if c == nil {
		return s, nil, nil
	}
	conv := func(list []string) (uint64, error) {
		var m uint64
		for _, name := range list {
			n, err := Parse(name)
			if err != nil {
				return 0, err
			}
			if n > Last() {
				ignored = append(ignored, name)
				continue
			}
			m |= 1 << uint(n)
		}
		return m, nil
	}
	if s.Bounding, err = conv(c.Bounding); err != nil {
		return
	}
	if s.Effective, err = conv(c.Effective); err != nil {
		return
	}
	if s.Inheritable, err = conv(c.Inheritable); err != nil {
		return
	}
	if s.Permitted, err = conv(c.Permitted); err != nil {
		return
	}
	s.Ambient, err = conv(c.Ambient)
	return
}

// Bounding returns the calling thread's bounding set.
func Bounding() uint64 {
	var m uint64
	for n := 0; n <= Last() && n < 64; n++ {
		if r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(n), 0, 0, 0); err == nil && r == 1 {
			m |= 1 << uint(n)
		}
	}
	return m
}

// Limit removes from every set the capabilities outside mask (what the
// runtime itself may grant) and returns the names it removed.
func (s *Set) Limit(mask uint64) []string {
	all := s.Bounding | s.Effective | s.Inheritable | s.Permitted | s.Ambient
	var dropped []string
	for n := 0; n < 64; n++ {
		if all&^mask&(1<<uint(n)) != 0 && n < len(names) {
			dropped = append(dropped, names[n])
		}
	}
	s.Bounding &= mask
	s.Effective &= mask
	s.Inheritable &= mask
	s.Permitted &= mask
	s.Ambient &= mask
	return dropped
}

// DropBounding removes every capability not in s.Bounding from the calling
// thread's bounding set. It needs CAP_SETPCAP, so it runs before Apply.
func (s Set) DropBounding() error {
	for n := 0; n <= Last(); n++ {
		if s.Bounding&(1<<uint(n)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(n), 0, 0, 0); err != nil {
			if err == unix.EINVAL {
				continue // the kernel does not know this one
			}
			return fmt.Errorf("drop %s from bounding set: %w", names[n], err)
		}
	}
	return nil
}

// Apply sets the effective, permitted and inheritable sets of the calling
// thread, then raises the ambient ones. The kernel only allows an ambient
// capability that is also permitted and inheritable; others are skipped, as
// runc does, because the default spec lists ambient capabilities without
// inheritable ones.
func (s Set) Apply() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := 0; i < 2; i++ {
		shift := uint(32 * i)
		data[i].Effective = uint32(s.Effective >> shift)
		data[i].Permitted = uint32(s.Permitted >> shift)
		data[i].Inheritable = uint32(s.Inheritable >> shift)
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for n := 0; n <= Last(); n++ {
		bit := uint64(1) << uint(n)
		if s.Ambient&bit == 0 || s.Permitted&bit == 0 || s.Inheritable&bit == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(n), 0, 0); err != nil {
			return fmt.Errorf("raise ambient %s: %w", names[n], err)
		}
	}
	return nil
}
