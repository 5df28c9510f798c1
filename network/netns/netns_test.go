package netns_test

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/network/netns"
	"github.com/hullproject/hull/network/netns/netnstest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// create makes a namespace that is deleted when the test ends, pass or
// fail.
func create(t testing.TB) (name, path string) {
	t.Helper()
	name = netnstest.Name(4)
	path, err := netns.Create(name)
	if err != nil {
		t.Fatalf("Create(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("cleanup: Delete(%s): %v", name, err)
		}
	})
	return name, path
}

func ipNetnsList(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		// "NAME" or "NAME (id: N)"
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func nsInode(t testing.TB, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func TestCreateDelete(t *testing.T) {
	netnstest.RequireRoot(t)
	name := netnstest.Name(4)
	path, err := netns.Create(name)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { netns.Delete(name) })
	if path != netns.Path(name) || path != netns.Dir+"/"+name {
		t.Fatalf("path = %q, want %q", path, netns.Dir+"/"+name)
	}
	if !netns.Exists(name) {
		t.Fatalf("Exists(%s) = false after Create", name)
	}
	if !contains(ipNetnsList(t), name) {
		t.Fatalf("ip netns list does not show %s", name)
	}
	if ok, err := netnstest.IsMountPoint(netns.Dir); err != nil || !ok {
		t.Fatalf("%s is not a mount point after Create (err %v)", netns.Dir, err)
	}
	// A new namespace, not ours: its inode differs from the test's.
	if nsInode(t, path) == nsInode(t, "/proc/self/ns/net") {
		t.Fatalf("%s is the test's own network namespace", path)
	}
	out, err := exec.Command("ip", "netns", "exec", name, "ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec %s ip link: %v\n%s", name, err, out)
	}
	// Only lo, and up: a fresh namespace, with the loopback Create raised.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], " lo:") || !strings.Contains(lines[0], ",UP") {
		t.Fatalf("links in %s:\n%s\nwant only lo, up", name, out)
	}

	if err := netns.Delete(name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if netns.Exists(name) {
		t.Fatalf("Exists(%s) = true after Delete", name)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still there after Delete: %v", path, err)
	}
	if contains(ipNetnsList(t), name) {
		t.Fatalf("ip netns list still shows %s", name)
	}
	if mounts, err := netnstest.MountsUnder(netns.Dir, name); err != nil || len(mounts) > 0 {
		t.Fatalf("mounts left after Delete: %v (err %v)", mounts, err)
	}
	if out, err := exec.Command("ip", "netns", "exec", name, "true").CombinedOutput(); err == nil {
		t.Fatalf("ip netns exec %s works after Delete:\n%s", name, out)
	}
}

func TestCreateTwice(t *testing.T) {
	netnstest.RequireRoot(t)
	name, path := create(t)
	ino := nsInode(t, path)
	_, err := netns.Create(name)
	if err == nil {
		t.Fatal("second Create of the same name succeeded")
	}
	if !errors.Is(err, os.ErrExist) {
		t.Errorf("second Create: %v, want an error wrapping os.ErrExist", err)
	}
	// The failed Create must not have unmounted or replaced the first.
	if nsInode(t, path) != ino {
		t.Fatal("the namespace changed under the failed second Create")
	}
}

func TestDeleteMissing(t *testing.T) {
	netnstest.RequireRoot(t)
	if err := netns.Delete(netnstest.Name(4)); err != nil {
		t.Fatalf("Delete of a missing namespace: %v", err)
	}
}

// A file left by a crash between creating it and mounting onto it is not a
// namespace: Delete must still clear it.
func TestDeleteStaleFile(t *testing.T) {
	netnstest.RequireRoot(t)
	name, _ := create(t) // also makes sure Dir exists
	stale := name + "s"
	if err := os.WriteFile(netns.Path(stale), nil, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(netns.Path(stale)) })
	if !netns.Exists(stale) {
		t.Fatal("Exists = false for a stale file")
	}
	if err := netns.Delete(stale); err != nil {
		t.Fatalf("Delete(stale): %v", err)
	}
	if netns.Exists(stale) {
		t.Fatal("stale file still there after Delete")
	}
}

func TestInvalidNames(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "../x", strings.Repeat("x", 256)} {
		if _, err := netns.Create(name); err == nil {
			t.Errorf("Create(%q) succeeded", name)
			netns.Delete(name)
		}
		if err := netns.Delete(name); err == nil {
			t.Errorf("Delete(%q) succeeded", name)
		}
		if netns.Exists(name) {
			t.Errorf("Exists(%q) = true", name)
		}
	}
}

func TestDo(t *testing.T) {
	netnstest.RequireRoot(t)
	_, path := create(t)
	want := nsInode(t, path)

	// Pin the test to its thread so "the caller's thread" is one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := nsInode(t, "/proc/thread-self/ns/net")

	var inside uint64
	err := netns.Do(path, func() error {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			return err
		}
		inside = st.Ino
		return nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if inside != want {
		t.Fatalf("fn ran in namespace inode %d, want %d", inside, want)
	}
	if after := nsInode(t, "/proc/thread-self/ns/net"); after != before {
		t.Fatalf("caller's thread moved from namespace %d to %d", before, after)
	}

	sentinel := errors.New("from fn")
	if err := netns.Do(path, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
	if err := netns.Do(netns.Dir+"/"+netnstest.Name(4), func() error { return nil }); err == nil {
		t.Fatal("Do on a missing path succeeded")
	}
	// A file that is not a namespace: setns fails and fn must not run.
	ran := false
	if err := netns.Do("/proc/self/status", func() error { ran = true; return nil }); err == nil || ran {
		t.Fatalf("Do on a non-namespace: err %v, fn ran %v", err, ran)
	}
	if after := nsInode(t, "/proc/thread-self/ns/net"); after != before {
		t.Fatalf("caller's thread moved from namespace %d to %d", before, after)
	}
}

// Threads Do hands back must be back in the host namespace: many calls, then
// every other goroutine's thread is checked by running work on it.
func TestDoLeavesNoThreadInside(t *testing.T) {
	netnstest.RequireRoot(t)
	_, path := create(t)
	host := nsInode(t, "/proc/self/ns/net")
	for i := 0; i < 50; i++ {
		if err := netns.Do(path, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan uint64, 64)
	for i := 0; i < cap(done); i++ {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var st unix.Stat_t
			unix.Stat("/proc/thread-self/ns/net", &st)
			done <- st.Ino
		}()
	}
	for i := 0; i < cap(done); i++ {
		if ino := <-done; ino != host {
			t.Fatalf("a thread is in namespace %d, not the host's %d", ino, host)
		}
	}
}

func TestDoPanic(t *testing.T) {
	netnstest.RequireRoot(t)
	_, path := create(t)
	defer func() {
		if p := recover(); p != "boom" {
			t.Fatalf("recovered %v, want the panic of fn", p)
		}
	}()
	netns.Do(path, func() error { panic("boom") })
}

func TestConcurrentCreate(t *testing.T) {
	netnstest.RequireRoot(t)
	name := netnstest.Name(4)
	t.Cleanup(func() { netns.Delete(name) })
	const n = 8
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, err := netns.Create(name)
			errs <- err
		}()
	}
	ok := 0
	for i := 0; i < n; i++ {
		if err := <-errs; err == nil {
			ok++
		} else if !errors.Is(err, os.ErrExist) {
			t.Errorf("Create: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent Creates of one name succeeded, want 1", ok)
	}
}

func TestLeak(t *testing.T) {
	netnstest.RequireRoot(t)
	if testing.Short() {
		t.Skip("short")
	}
	prefix := netnstest.Name(2)
	t.Cleanup(func() { deleteAll(prefix) })
	for i := 0; i < 200; i++ {
		name := prefix + string(rune('a'+i%26)) + strings.Repeat("z", i/26)
		if _, err := netns.Create(name); err != nil {
			t.Fatalf("Create #%d: %v", i, err)
		}
		if err := netns.Delete(name); err != nil {
			t.Fatalf("Delete #%d: %v", i, err)
		}
	}
	if left, err := netnstest.EntriesUnder(netns.Dir, prefix); err != nil || len(left) > 0 {
		t.Fatalf("entries left in %s: %v (err %v)", netns.Dir, left, err)
	}
	if left, err := netnstest.MountsUnder(netns.Dir, prefix); err != nil || len(left) > 0 {
		t.Fatalf("mounts left: %v (err %v)", left, err)
	}
}

func BenchmarkCreateDelete(b *testing.B) {
	netnstest.RequireRoot(b)
	prefix := netnstest.Name(3)
	b.Cleanup(func() { deleteAll(prefix) })
	i := 0
	for b.Loop() {
		name := prefix + itoa(i)
		i++
		if _, err := netns.Create(name); err != nil {
			b.Fatal(err)
		}
		if err := netns.Delete(name); err != nil {
			b.Fatal(err)
		}
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}

// deleteAll removes whatever a failed loop left under the prefix.
func deleteAll(prefix string) {
	left, _ := netnstest.EntriesUnder(netns.Dir, prefix)
	for _, name := range left {
		netns.Delete(name)
	}
}
