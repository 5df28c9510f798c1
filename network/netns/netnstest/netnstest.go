// Package netnstest is for tests that make real network namespaces,
// bridges and veth pairs on the machine that runs them: names that cannot
// collide with the host's, and a TestMain that leaves netns.Dir as it
// found it.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/network/netns"
	"github.com/hullproject/hull/runtime/mountinfo"
)

// Prefix starts every name a test makes, so leftovers are easy to find and
// nothing of the host's can be mistaken for a test's.
const Prefix = "ht"

// Name is Prefix and n random bytes in hex: Name(4) is 10 characters,
// short enough for an interface name (at most 15).
func Name(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return Prefix + hex.EncodeToString(b)
}

// RequireRoot skips a test that needs to make namespaces and links.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes network namespaces and links")
	}
}

// Main runs a package's tests and then undoes the one thing netns.Create
// leaves on purpose: the bind mount of netns.Dir on itself (and the
// directory), if neither was there before. Test binaries of different
// packages run in parallel; each holds a lock on /run for its whole run,
// so one never sees the Dir mount another made as the machine's own
// and none tears it down under another.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run()
	}
	// /run always exists and locking a directory creates nothing, so the
	// lock itself leaves no trace.
	lock, err := unix.Open("/run", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "netnstest: open /run:", err)
		return 1
	}
	defer unix.Close(lock)
	if err := unix.Flock(lock, unix.LOCK_EX); err != nil {
		fmt.Fprintln(os.Stderr, "netnstest: lock /run:", err)
		return 1
	}
	_, statErr := os.Stat(netns.Dir)
	dirExisted := statErr == nil
	wasMount, err := IsMountPoint(netns.Dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "netnstest:", err)
		return 1
	}
	code := m.Run()
	if !wasMount {
		// A plain unmount, not MNT_DETACH: it fails with EBUSY while any
		// namespace is still bound inside, which is then not ours to end.
		if err := unix.Unmount(netns.Dir, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			fmt.Fprintf(os.Stderr, "netnstest: leaving %s mounted: %v\n", netns.Dir, err)
		}
	}
	if !dirExisted {
		os.Remove(netns.Dir) // fails, harmlessly, if anything is inside
	}
	return code
}

// IsMountPoint reports whether path is the mount point of some mount in
// this mount namespace.
func IsMountPoint(path string) (bool, error) {
	lines, err := MountPoints()
	if err != nil {
		return false, err
	}
	for _, mp := range lines {
		if mp == path {
			return true, nil
		}
	}
	return false, nil
}

// MountPoints lists the mount points in /proc/self/mountinfo.
func MountPoints() ([]string, error) {
	ms, err := mountinfo.Read(nil)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out, nil
}

// MountsUnder lists mount points at or below dir whose last element
// starts with prefix, to find namespaces a test left mounted.
func MountsUnder(dir, prefix string) ([]string, error) {
	all, err := MountPoints()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, mp := range all {
		if strings.HasPrefix(mp, dir+"/"+prefix) {
			out = append(out, mp)
		}
	}
	return out, nil
}

// EntriesUnder lists entries of dir whose names start with prefix.
func EntriesUnder(dir, prefix string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
