package dns

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBusyboxNslookup checks the server against a real, non-Go client: the
// resolver code of busybox's nslookup, much like what musl-based container
// images run. busybox's nslookup only talks to port 53, so the server runs
// inside a fresh network namespace where it can own 127.0.0.1:53 without
// touching the host.
func TestBusyboxNslookup(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}

	ns := fmt.Sprintf("dt%08x", rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", ns, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}

	udp, tcp, err := listenInNetns(ns, "127.0.0.1:53")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, newTestServer(), udp, tcp)

	nslookup := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, busybox, "nslookup"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := nslookup("web", "127.0.0.1")
	if err != nil {
		t.Fatalf("nslookup web: %v\n%s", err, out)
	}
	t.Logf("nslookup web 127.0.0.1:\n%s", out)
	for _, ip := range []string{"10.89.0.3", "10.89.0.4"} {
		if !strings.Contains(out, "Address: "+ip) {
			t.Errorf("nslookup web: no %s in\n%s", ip, out)
		}
	}

	out, err = nslookup("-type=a", "DB.", "127.0.0.1")
	if err != nil || !strings.Contains(out, "Address: 10.89.0.5") {
		t.Errorf("nslookup -type=a DB.: %v\n%s", err, out)
	}

	out, err = nslookup("10.89.0.3", "127.0.0.1")
	if err != nil || !strings.Contains(out, "name = web") {
		t.Errorf("nslookup 10.89.0.3 (PTR): %v\n%s", err, out)
	}

	out, err = nslookup("nosuch", "127.0.0.1")
	if err == nil || !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("nslookup nosuch: %v, want failure with NXDOMAIN\n%s", err, out)
	}
}

// listenInNetns opens UDP and TCP sockets at addr inside the named network
// namespace. A socket belongs to the namespace it was created in, so only
// the creating thread needs to switch; the sockets keep working from any
// thread afterwards.
func listenInNetns(ns, addr string) (net.PacketConn, net.Listener, error) {
	type result struct {
		udp net.PacketConn
		tcp net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Not unlocked unless the thread is back in its own namespace: a
		// locked goroutine that exits takes its thread with it, so a thread
		// stuck in the test namespace never runs other goroutines.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		var r result
		r.udp, r.err = net.ListenPacket("udp", addr)
		if r.err == nil {
			r.tcp, r.err = net.Listen("tcp", addr)
			if r.err != nil {
				r.udp.Close()
			}
		}
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- r
	}()
	r := <-ch
	return r.udp, r.tcp, r.err
}
