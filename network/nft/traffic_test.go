package nft

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// These tests program a real table (named hulltest<random>, never "hull")
// and send real traffic, but only between network namespaces, bridges and
// veths they create themselves (names "nt<random>..."), on subnets in
// 10.198.0.0/16. Everything is removed in t.Cleanup, also on failure.

const ioTimeout = time.Second

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (nftables, network namespaces)")
	}
}

func requireIP(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2) to build the test topology")
	}
}

// TestMain keeps the lock files of the tests' throwaway tables out of the
// machine's /run/lock.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hull-nft-locks")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lockDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testTables creates a uniquely named table and deletes it at cleanup.
func testTables(t *testing.T) *Tables {
	t.Helper()
	tb := New(fmt.Sprintf("hulltest%08x", rand.Uint32()))
	t.Cleanup(func() {
		if err := tb.Delete(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := tb.Ensure(); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return tb
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// writeSysctl sets a /proc/sys value and restores the old one at cleanup.
func writeSysctl(t *testing.T, path, value string) {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The interface may be gone already (bridge deleted): then there
		// is nothing to restore.
		if _, err := os.Stat(path); err == nil {
			_ = os.WriteFile(path, old, 0o644)
		}
	})
}

// inNS runs fn on an OS thread moved into the named network namespace.
// Sockets created by fn stay in that namespace and can be used from any
// goroutine afterwards. The thread is never unlocked, so when the goroutine
// ends the runtime discards it instead of reusing a thread that sits in
// the wrong namespace.
func inNS(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// serveTCP answers every connection with "hi <peer address>" so the client
// learns which source address the server saw.
func serveTCP(t *testing.T, ns, addr string) {
	t.Helper()
	var l net.Listener
	if err := inNS(ns, func() (err error) { l, err = net.Listen("tcp4", addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hi %s\n", c.RemoteAddr())
			c.Close()
		}
	}()
}

// serveUDP answers every datagram with "hi <peer address>".
func serveUDP(t *testing.T, ns, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(ns, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte("hi "+from.String()+"\n"), from)
		}
	}()
}

// ask connects from namespace ns ("" for the host) to addr and returns the
// peer address the server reported.
func ask(ns, proto, addr string) (string, error) {
	var conn net.Conn
	err := inNS(ns, func() (err error) {
		conn, err = net.DialTimeout(proto+"4", addr, ioTimeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	if proto == "udp" {
		if _, err := conn.Write([]byte("ping")); err != nil {
			return "", err
		}
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	peer, ok := strings.CutPrefix(strings.TrimSpace(line), "hi ")
	if !ok {
		return "", fmt.Errorf("unexpected answer %q", line)
	}
	host, _, err := net.SplitHostPort(peer)
	return host, err
}

// mustReach asserts that addr answers from ns and that the server saw
// wantPeer as the source ("" to not check). UDP gets a few tries because a
// datagram can be lost while neighbours are being resolved.
func mustReach(t *testing.T, ns, proto, addr, wantPeer string) {
	t.Helper()
	tries := 1
	if proto == "udp" {
		tries = 3
	}
	var err error
	var peer string
	for i := 0; i < tries; i++ {
		if peer, err = ask(ns, proto, addr); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("%s %s from %q: %v", proto, addr, nsLabel(ns), err)
		return
	}
	if wantPeer != "" && peer != wantPeer {
		t.Errorf("%s %s from %q: server saw source %s, want %s", proto, addr, nsLabel(ns), peer, wantPeer)
	}
}

func mustNotReach(t *testing.T, ns, proto, addr string) {
	t.Helper()
	if peer, err := ask(ns, proto, addr); err == nil {
		t.Errorf("%s %s from %q answered (server saw %s), want blocked", proto, addr, nsLabel(ns), peer)
	}
}

func nsLabel(ns string) string {
	if ns == "" {
		return "host"
	}
	return ns
}

// topology is the test network:
//
//	host ── b1 10.198.A.1/24 ── c1 .2, c2 .3        network n1
//	     ── b2 10.198.A+1.1/24 ── c3 .2             network n2
//	     ── b3 10.198.A+2.1/24 ── c4 .2             network n3 (internal)
//	     ── veth 10.198.250.O+1/30 ── out .O+2      "outside host", routes 10.198.0.0/16 via the host
type topology struct {
	prefix         string
	bridges        [3]string
	subnets        [3]*net.IPNet
	gw             [3]string // bridge addresses
	c1, c2, c3, c4 string    // namespaces
	ip1, ip2       string
	ip3, ip4       string
	out            string // namespace
	outIP, hostOut string // outside namespace's and host's veth addresses
}

func newTopology(t *testing.T) *topology {
	t.Helper()
	p := fmt.Sprintf("nt%04x", rand.IntN(1<<16))
	a := 1 + rand.IntN(240)
	o := 4 * rand.IntN(64)
	tp := &topology{prefix: p, out: p + "out", c1: p + "c1", c2: p + "c2", c3: p + "c3", c4: p + "c4"}
	for i := range 3 {
		tp.bridges[i] = fmt.Sprintf("%sb%d", p, i+1)
		_, tp.subnets[i], _ = net.ParseCIDR(fmt.Sprintf("10.198.%d.0/24", a+i))
		tp.gw[i] = fmt.Sprintf("10.198.%d.1", a+i)
	}
	tp.ip1 = fmt.Sprintf("10.198.%d.2", a)
	tp.ip2 = fmt.Sprintf("10.198.%d.3", a)
	tp.ip3 = fmt.Sprintf("10.198.%d.2", a+1)
	tp.ip4 = fmt.Sprintf("10.198.%d.2", a+2)
	tp.hostOut = fmt.Sprintf("10.198.250.%d", o+1)
	tp.outIP = fmt.Sprintf("10.198.250.%d", o+2)

	// Cleanup first, so that a failure halfway still removes what was
	// made. Deleting a namespace deletes the veth ends inside it and with
	// them their host-side peers.
	t.Cleanup(func() {
		for _, ns := range []string{tp.c1, tp.c2, tp.c3, tp.c4, tp.out} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
		for _, l := range []string{tp.bridges[0], tp.bridges[1], tp.bridges[2], p + "o", p + "v1", p + "v2", p + "v3", p + "v4"} {
			_ = exec.Command("ip", "link", "del", l).Run()
		}
	})

	// Forwarding first: switching it rewrites per-interface settings.
	writeSysctl(t, "/proc/sys/net/ipv4/ip_forward", "1")
	for i, br := range tp.bridges {
		run(t, "ip", "link", "add", br, "type", "bridge")
		run(t, "ip", "addr", "add", tp.gw[i]+"/24", "dev", br)
		run(t, "ip", "link", "set", br, "up")
		// Needed to route the DNATed 127.0.0.1 packets out of the bridge.
		writeSysctl(t, "/proc/sys/net/ipv4/conf/"+br+"/route_localnet", "1")
	}
	attach := func(ns, veth, br, ip, gw string) {
		run(t, "ip", "netns", "add", ns)
		run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		run(t, "ip", "link", "set", veth, "master", br, "up")
		// With br_netfilter (bridge-nf-call-iptables=1) a DNATed packet
		// whose new destination is on the same bridge is bridged straight
		// back instead of routed, so a container reaching its own
		// published port needs its bridge port to send frames back where
		// they came from. The engine does the same when it attaches a
		// container.
		run(t, "ip", "link", "set", veth, "type", "bridge_slave", "hairpin", "on")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", ns, "route", "add", "default", "via", gw)
	}
	attach(tp.c1, p+"v1", tp.bridges[0], tp.ip1, tp.gw[0])
	attach(tp.c2, p+"v2", tp.bridges[0], tp.ip2, tp.gw[0])
	attach(tp.c3, p+"v3", tp.bridges[1], tp.ip3, tp.gw[1])
	attach(tp.c4, p+"v4", tp.bridges[2], tp.ip4, tp.gw[2])

	run(t, "ip", "netns", "add", tp.out)
	run(t, "ip", "link", "add", p+"o", "type", "veth", "peer", "name", "eth0", "netns", tp.out)
	run(t, "ip", "addr", "add", tp.hostOut+"/30", "dev", p+"o")
	run(t, "ip", "link", "set", p+"o", "up")
	run(t, "ip", "-n", tp.out, "link", "set", "lo", "up")
	run(t, "ip", "-n", tp.out, "addr", "add", tp.outIP+"/30", "dev", "eth0")
	run(t, "ip", "-n", tp.out, "link", "set", "eth0", "up")
	// The outside host knows the container subnets are behind this host,
	// so the isolation checks test our rules, not a missing route.
	run(t, "ip", "-n", tp.out, "route", "add", "10.198.0.0/16", "via", tp.hostOut)
	return tp
}

// freePort returns a host port that nothing holds and nothing publishes.
func freePort(t *testing.T, tb *Tables, proto string) uint16 {
	t.Helper()
	for range 50 {
		p := uint16(20000 + rand.IntN(20000))
		if tb.CheckPort(nil, p, proto) == nil {
			return p
		}
	}
	t.Fatal("no free port found")
	return 0
}

func hp(host string, port uint16) string { return net.JoinHostPort(host, strconv.Itoa(int(port))) }

// tagged counts the rules whose tag satisfies match.
func tagged(t *testing.T, tb *Tables, match func(string) bool) int {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := tb.rules(c)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rs {
		if match(r.tag) {
			n++
		}
	}
	return n
}

func TestTraffic(t *testing.T) {
	requireRoot(t)
	requireIP(t)
	tb := testTables(t)
	tp := newTopology(t)

	nets := []Network{
		{Name: tp.prefix + "n1", Bridge: tp.bridges[0], Subnet: tp.subnets[0]},
		{Name: tp.prefix + "n2", Bridge: tp.bridges[1], Subnet: tp.subnets[1]},
		{Name: tp.prefix + "n3", Bridge: tp.bridges[2], Subnet: tp.subnets[2], Internal: true},
	}
	for _, n := range nets {
		if err := tb.AddNetwork(n); err != nil {
			t.Fatalf("AddNetwork %s: %v", n.Name, err)
		}
	}

	// "Containers" serve on port 80 (tcp) and 5353 (udp); the outside host
	// on 8080.
	for _, ns := range []string{tp.c1, tp.c2, tp.c3, tp.c4} {
		serveTCP(t, ns, ":80")
	}
	serveUDP(t, tp.c1, ":5353")
	serveTCP(t, tp.out, ":8080")
	serveUDP(t, tp.out, ":8080")

	owner := tp.prefix + "ctr1"
	owner2 := tp.prefix + "ctr2"
	tcpPort := freePort(t, tb, "tcp")
	udpPort := freePort(t, tb, "udp")
	err := tb.AddPorts(owner, []Port{
		{HostPort: tcpPort, Proto: "tcp", ContainerIP: net.ParseIP(tp.ip1), ContainerPort: 80, Bridge: tp.bridges[0]},
		{HostPort: udpPort, Proto: "udp", ContainerIP: net.ParseIP(tp.ip1), ContainerPort: 5353, Bridge: tp.bridges[0]},
	})
	if err != nil {
		t.Fatalf("AddPorts: %v", err)
	}
	// A port bound to one host address only: c3 (network n2) on the
	// host's outside-facing address.
	onePort := freePort(t, tb, "tcp")
	err = tb.AddPorts(owner2, []Port{
		{HostIP: net.ParseIP(tp.hostOut), HostPort: onePort, Proto: "tcp", ContainerIP: net.ParseIP(tp.ip3), ContainerPort: 80, Bridge: tp.bridges[1]},
	})
	if err != nil {
		t.Fatalf("AddPorts: %v", err)
	}
	if out, err := exec.Command("nft", "list", "table", "ip", tb.Name).CombinedOutput(); err == nil {
		t.Logf("ruleset:\n%s", out)
	}

	t.Run("published", func(t *testing.T) {
		// From the host through loopback: needs output DNAT, route_localnet
		// and the 127.0.0.0/8 masquerade, which makes the source the
		// bridge address.
		mustReach(t, "", "tcp", hp("127.0.0.1", tcpPort), tp.gw[0])
		mustReach(t, "", "udp", hp("127.0.0.1", udpPort), tp.gw[0])
		// From the host through its own bridge address.
		mustReach(t, "", "tcp", hp(tp.gw[0], tcpPort), tp.gw[0])
		// From outside through the host's address: the client address is
		// kept (no masquerade on the way in).
		mustReach(t, tp.out, "tcp", hp(tp.hostOut, tcpPort), tp.outIP)
		mustReach(t, tp.out, "udp", hp(tp.hostOut, udpPort), tp.outIP)
		// Hairpin: the container to its own published port, and a peer
		// on the same network, both through the host address.
		mustReach(t, tp.c1, "tcp", hp(tp.gw[0], tcpPort), tp.gw[0])
		mustReach(t, tp.c2, "tcp", hp(tp.gw[0], tcpPort), tp.gw[0])
		// A port bound to one host address answers there only.
		mustReach(t, tp.out, "tcp", hp(tp.hostOut, onePort), tp.outIP)
		mustNotReach(t, "", "tcp", hp("127.0.0.1", onePort))
	})

	t.Run("isolation", func(t *testing.T) {
		// Same network: direct.
		mustReach(t, tp.c2, "tcp", hp(tp.ip1, 80), tp.ip2)
		// Other network: blocked both ways.
		mustNotReach(t, tp.c3, "tcp", hp(tp.ip1, 80))
		mustNotReach(t, tp.c1, "tcp", hp(tp.ip3, 80))
		// Outside: only published ports, not the container directly,
		// although the outside host has a route to it.
		mustNotReach(t, tp.out, "tcp", hp(tp.ip1, 80))
	})

	t.Run("masquerade", func(t *testing.T) {
		// Outbound traffic leaves with the host's address.
		mustReach(t, tp.c1, "tcp", hp(tp.outIP, 8080), tp.hostOut)
		mustReach(t, tp.c3, "udp", hp(tp.outIP, 8080), tp.hostOut)
	})

	t.Run("internal", func(t *testing.T) {
		mustNotReach(t, tp.c4, "tcp", hp(tp.outIP, 8080))
		mustNotReach(t, tp.c4, "tcp", hp(tp.ip1, 80))
		mustNotReach(t, tp.c1, "tcp", hp(tp.ip4, 80))
		// The host itself still reaches it (not forwarded traffic).
		mustReach(t, "", "tcp", hp(tp.ip4, 80), tp.gw[2])
	})

	t.Run("PortInUse", func(t *testing.T) {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		held := uint16(l.Addr().(*net.TCPAddr).Port)
		lo := net.ParseIP("127.0.0.1")
		if !tb.PortInUse(lo, held, "tcp") || !tb.PortInUse(nil, held, "tcp") {
			t.Errorf("port %d held by a listener not reported in use", held)
		}
		if !tb.PortInUse(nil, tcpPort, "tcp") || !tb.PortInUse(lo, tcpPort, "tcp") || !tb.PortInUse(nil, udpPort, "udp") {
			t.Errorf("published ports not reported in use")
		}
		if !tb.PortInUse(net.ParseIP(tp.hostOut), onePort, "tcp") || !tb.PortInUse(nil, onePort, "tcp") {
			t.Errorf("port published on one address not reported in use")
		}
		// Another address than the one published on is free.
		if tb.PortInUse(lo, onePort, "tcp") {
			t.Errorf("port published on %s reported in use on 127.0.0.1", tp.hostOut)
		}
		if err := tb.CheckPort(nil, tcpPort, "tcp"); err == nil || !strings.Contains(err.Error(), owner) {
			t.Errorf("CheckPort error %v does not name the owner", err)
		}
		if tb.PortInUse(nil, tcpPort, "udp") {
			t.Errorf("tcp publication reported for udp")
		}
	})

	t.Run("remove", func(t *testing.T) {
		owners, err := tb.Owners()
		if err != nil || strings.Join(owners, ",") != owner+","+owner2 {
			t.Fatalf("Owners = %v, %v", owners, err)
		}
		if err := tb.RemovePorts(owner); err != nil {
			t.Fatal(err)
		}
		prefix := "port:" + owner + ":"
		if n := tagged(t, tb, func(s string) bool { return strings.HasPrefix(s, prefix) }); n != 0 {
			t.Errorf("%d rules of %s left", n, owner)
		}
		mustNotReach(t, "", "tcp", hp("127.0.0.1", tcpPort))
		if tb.PortInUse(nil, tcpPort, "tcp") {
			t.Errorf("removed port still in use")
		}
		// The other owner is untouched.
		mustReach(t, tp.out, "tcp", hp(tp.hostOut, onePort), tp.outIP)
		if err := tb.RemovePorts(owner2); err != nil {
			t.Fatal(err)
		}
		if owners, err := tb.Owners(); err != nil || len(owners) != 0 {
			t.Errorf("Owners after removal = %v, %v", owners, err)
		}
		for _, n := range nets {
			if err := tb.RemoveNetwork(n.Name); err != nil {
				t.Fatal(err)
			}
			if c := tagged(t, tb, func(s string) bool { return s == netTag(n.Name) }); c != 0 {
				t.Errorf("%d rules of network %s left", c, n.Name)
			}
		}
		if c := tagged(t, tb, func(string) bool { return true }); c != 0 {
			t.Errorf("%d tagged rules left", c)
		}
		// With no rules the isolation is gone (policy accept), which
		// shows the removed rules were the ones doing it.
		mustReach(t, tp.c3, "tcp", hp(tp.ip1, 80), "")
	})
}

// TestLifecycle checks Ensure under concurrency, idempotent AddNetwork and
// AddPorts, and that Delete leaves no table. No traffic, no topology.
func TestLifecycle(t *testing.T) {
	requireRoot(t)
	tb := testTables(t)

	// Concurrent Ensure calls (each with its own netlink socket, as
	// separate processes would have) must all succeed and leave one set
	// of jumps.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- New(tb.Name).Ensure()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Ensure: %v", err)
		}
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := c.GetRules(tb.table(), tb.chain(chainForward))
	if err != nil || len(fwd) != len(forwardStages) {
		t.Fatalf("forward chain has %d rules (%v), want %d jumps", len(fwd), err, len(forwardStages))
	}

	_, sn, _ := net.ParseCIDR("10.198.251.0/24")
	n := Network{Name: "lc", Bridge: "ntlcbr0", Subnet: sn}
	for range 2 {
		if err := tb.AddNetwork(n); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := tagged(t, tb, func(s string) bool { return s == "net:lc" }), len(networkRules(n)); got != want {
		t.Errorf("AddNetwork twice: %d rules, want %d", got, want)
	}
	ports := []Port{{HostPort: 1, Proto: "tcp", ContainerIP: net.ParseIP("10.198.251.2"), ContainerPort: 80, Bridge: "ntlcbr0"}}
	for range 2 {
		if err := tb.AddPorts("o1", ports); err != nil {
			t.Fatal(err)
		}
	}
	if got := tagged(t, tb, func(s string) bool { return strings.HasPrefix(s, "port:o1:") }); got != 4 {
		t.Errorf("AddPorts twice: %d rules, want 4", got)
	}
	// A batch with one bad port publishes nothing.
	bad := append(ports, Port{HostPort: 2, Proto: "icmp", ContainerIP: net.ParseIP("10.198.251.2"), ContainerPort: 80, Bridge: "ntlcbr0"})
	if err := tb.AddPorts("o2", bad); err == nil {
		t.Error("AddPorts with an invalid port succeeded")
	}
	if owners, _ := tb.Owners(); strings.Join(owners, ",") != "o1" {
		t.Errorf("Owners = %v, want [o1]", owners)
	}
	if nets, _ := tb.Networks(); strings.Join(nets, ",") != "lc" {
		t.Errorf("Networks = %v, want [lc]", nets)
	}
	// Removing what is not there is fine.
	if err := tb.RemovePorts("nobody"); err != nil {
		t.Error(err)
	}
	if err := tb.RemoveNetwork("nonet"); err != nil {
		t.Error(err)
	}

	if err := tb.Delete(); err != nil {
		t.Fatal(err)
	}
	if ok, err := tb.exists(c); err != nil || ok {
		t.Fatalf("table still exists after Delete (%v)", err)
	}
	if err := tb.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := tb.Owners(); !errors.Is(err, ErrNoTable) {
		t.Errorf("Owners without table: %v, want ErrNoTable", err)
	}
	if err := tb.AddNetwork(n); !errors.Is(err, ErrNoTable) {
		t.Errorf("AddNetwork without table: %v, want ErrNoTable", err)
	}
	// Without a table, port checks fall back to the socket check.
	if tb.PortInUse(nil, 1, "tcp") {
		t.Error("port 1 reported in use without table")
	}
}

// TestConcurrentReplace has many writers replace the same network's rules
// at once, as parallel hull processes do on a machine where no lock is
// shared (two stores, or another tool): each must succeed, and one set of
// rules must remain.
func TestConcurrentReplace(t *testing.T) {
	requireRoot(t)
	tb := testTables(t)
	_, sn, _ := net.ParseCIDR("10.89.250.0/24")
	n := Network{Name: "race", Bridge: "hullrace0", Subnet: sn}
	const writers, rounds = 24, 4
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				if err := tb.AddNetwork(n); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	all := func(string) bool { return true }
	if got, want := tagged(t, tb, all), len(networkRules(n)); got != want {
		t.Errorf("%d rules after the race, want one set of %d", got, want)
	}
}
