// Package netns makes, removes and enters named network namespaces, kept
// where iproute2 keeps them so that `ip netns list` and `ip netns exec`
// see the ones hull makes for its containers.
//
// Everything is done with system calls on locked OS threads: a container
// start pays for this, and spawning `ip` would cost milliseconds.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Dir is where named namespaces live, as iproute2 keeps them.
const Dir = "/run/netns"

// Path is where the namespace called name is bound.
func Path(name string) string { return filepath.Join(Dir, name) }

// Exists reports whether a namespace of that name is present under Dir.
// It looks only for the entry, as `ip netns list` does, so a stale empty
// file left by a crash counts too: Create would refuse that name and
// Delete clears it.
func Exists(name string) bool {
	if validName(name) != nil {
		return false
	}
	_, err := os.Lstat(Path(name))
	return err == nil
}

// validName refuses names that would escape Dir or that iproute2 could not
// list, since the name becomes a path.
func validName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("netns: invalid name %q", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("netns: invalid name %q: contains '/' or NUL", name)
	case len(name) > unix.NAME_MAX:
		return fmt.Errorf("netns: invalid name %q: longer than %d bytes", name, unix.NAME_MAX)
	}
	return nil
}

// Create makes a new network namespace bound at Dir/name, as
// `ip netns add NAME` does, and brings its loopback up. The calling
// thread's namespace is not changed. It fails, with an error wrapping
// os.ErrExist, if the name is taken.
func Create(name string) (path string, err error) {
	if err := validName(name); err != nil {
		return "", err
	}
	if err := ensureDir(); err != nil {
		return "", err
	}
	path = Path(name)
	// O_EXCL is what makes two concurrent Creates of one name safe: only
	// one of them gets the file, and only its owner mounts onto it.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return "", fmt.Errorf("netns: create %s: %w", name, os.ErrExist)
		}
		return "", fmt.Errorf("netns: create %s: %w", path, err)
	}
	unix.Close(fd)
	if err := onThread(func() error { return newNamespaceAt(path) }); err != nil {
		// Nothing may be left: the mount, if it happened, goes first so
		// that the file can be removed.
		unix.Unmount(path, unix.MNT_DETACH)
		os.Remove(path)
		return "", fmt.Errorf("netns: create %s: %w", name, err)
	}
	return path, nil
}

// newNamespaceAt runs on a locked thread that onThread either restores or
// throws away: it moves that thread into a fresh network namespace, pins
// the namespace by bind-mounting it on path, and brings lo up there.
func newNamespaceAt(path string) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
	}
	// thread-self, not self: only this thread is in the new namespace.
	if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount namespace on %s: %w", path, err)
	}
	return loopbackUp()
}

// loopbackUp sets IFF_UP on lo in the calling thread's namespace. An
// ioctl on a throwaway socket is one system call cheaper than netlink and
// needs no link lookup.
func loopbackUp() error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring lo up: socket: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: SIOCGIFFLAGS: %w", err)
	}
	flags := ifr.Uint16()
	if flags&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(flags | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// Delete unmounts and removes Dir/name. A missing namespace is not an
// error, so teardown can be repeated after a crash. The namespace itself
// lives on while a process is still in it or holds it open.
func Delete(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	path := Path(name)
	// MNT_DETACH, as iproute2 does: a process with the file open (say an
	// `ip netns exec` in progress) must not make Delete fail.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		// EINVAL: not a mount point (a stale file from a crash); ENOENT:
		// gone already. Anything else would leave the namespace pinned.
		return fmt.Errorf("netns: delete %s: unmount: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: delete %s: %w", name, err)
	}
	return nil
}

// Do runs fn on a locked OS thread switched into the network namespace at
// path and switches it back afterwards; if switching back fails the thread
// is thrown away rather than returned to the scheduler. The calling
// goroutine's thread is never touched. Goroutines that fn starts do not
// run in the namespace.
func Do(path string, fn func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: open %s: %w", path, err)
	}
	defer unix.Close(target)
	var fnErr error
	err = onThread(func() error {
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("netns: enter %s: %w", path, err)
		}
		fnErr = fn()
		return nil
	})
	if err != nil {
		return err
	}
	return fnErr
}

// onThread runs fn on a fresh goroutine locked to its OS thread, so that
// namespace changes never reach the caller's thread. Afterwards the
// thread is put back into the network namespace it started in and
// unlocked for reuse; if that cannot be done it stays locked, and the Go
// runtime ends a thread whose goroutine exits locked. A panic in fn is
// carried to the caller once the thread is dealt with.
func onThread(fn func() error) error {
	type result struct {
		err    error
		panicV any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var res result
		defer func() { done <- res }()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			res.err = fmt.Errorf("open current network namespace: %w", err)
			return // thread untouched but locked: dropped, harmless
		}
		defer unix.Close(orig)
		defer func() {
			if p := recover(); p != nil {
				res.panicV = p
			}
			if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
		}()
		res.err = fn()
	}()
	res := <-done
	if res.panicV != nil {
		panic(res.panicV)
	}
	return res.err
}

// dirReady remembers, for this process, that Dir is a shared mount point:
// checking once is enough, since hull is short-lived and only iproute2 or
// hull ever set it up.
var (
	dirMu    sync.Mutex
	dirReady bool
)

// ensureDir makes Dir a shared mount point bound on itself, as iproute2
// does, so that namespaces bound under it propagate to mount namespaces
// made later (a container's, `ip netns exec`'s) and unmounting one in any
// of them unmounts it everywhere instead of pinning the namespace.
func ensureDir() error {
	dirMu.Lock()
	defer dirMu.Unlock()
	if dirReady {
		return nil
	}
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("netns: make %s: %w", Dir, err)
	}
	// Fast path: already a mount point (made by us earlier, by iproute2,
	// or by the system); marking it shared again is cheap and idempotent.
	err := unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		dirReady = true
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("netns: make %s shared: %w", Dir, err)
	}
	// EINVAL: not a mount point yet. Two processes doing this at once
	// would stack two bind mounts; a lock on the directory serialises
	// them. The bind mount below is of the same directory, so the lock
	// taken on the underlying inode is the one later openers see too.
	lock, err := unix.Open(Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: open %s: %w", Dir, err)
	}
	defer unix.Close(lock)
	if err := unix.Flock(lock, unix.LOCK_EX); err != nil {
		return fmt.Errorf("netns: lock %s: %w", Dir, err)
	}
	// Someone may have finished while we waited for the lock.
	err = unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		if err := unix.Mount(Dir, Dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("netns: bind %s on itself: %w", Dir, err)
		}
		err = unix.Mount("", Dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("netns: make %s shared: %w", Dir, err)
	}
	dirReady = true
	return nil
}
