package container

import (
	"fmt"
	goruntime "runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// inNamespaces runs fn on a dedicated OS thread that has joined the given
// namespaces of process pid (names as in /proc/<pid>/ns). This is how the
// runtime builds a container from the outside: Linux keeps namespace
// membership, root and working directory per thread, so one thread can live
// in the container's mount namespace while the rest of the Go program stays
// on the host. The thread is never reused: the goroutine exits still locked
// to it, which makes the Go runtime end the thread. (New Go threads are not
// cloned from a locked thread, so nothing leaks into the runtime's others.)
func inNamespaces(pid int, names []string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		errc <- func() error {
			// A private fs context lets this thread alone change root
			// and cwd, which setns(CLONE_NEWNS) requires and does.
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				return fmt.Errorf("unshare fs context: %w", err)
			}
			for _, name := range names {
				if err := joinNamespace(pid, name); err != nil {
					return err
				}
			}
			return fn()
		}()
	}()
	return <-errc
}

func joinNamespace(pid int, name string) error {
	path := "/proc/" + strconv.Itoa(pid) + "/ns/" + name
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, 0); err != nil {
		return fmt.Errorf("join %s namespace of %d: %w", name, pid, err)
	}
	return nil
}

// OffMainThread runs fn on an ordinary goroutine and waits for it. The
// programs that use this package lock their main goroutine to the main
// thread (so that no namespace-joining thread can ever be the main one,
// which cannot be thrown away); but a locked goroutine that returns from a
// blocking system call must wait until the scheduler hands a P back to its
// own thread, which on a busy two-CPU machine took 0.3-0.5 ms, several times
// per container start. Their work therefore runs here, while the main
// goroutine only waits.
func OffMainThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- fn() }()
	return <-errc
}
