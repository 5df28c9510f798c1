package bridge_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/network/bridge"
	"github.com/hullproject/hull/network/netns"
	"github.com/hullproject/hull/network/netns/netnstest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// testNet is a bridge with gateway 10.199.X.1/24, removed when the test
// ends.
type testNet struct {
	bridge  string
	x       byte
	gateway *net.IPNet
}

func (n testNet) ip(host byte) net.IP { return net.IPv4(10, 199, n.x, host).To4() }

func (n testNet) addr(host byte) *net.IPNet {
	return &net.IPNet{IP: n.ip(host), Mask: net.CIDRMask(24, 32)}
}

// subnetMu makes sure tests of this binary never pick the same /24 twice
// while one is in use.
var subnetMu sync.Mutex

// freeSubnet picks a 10.199.X.0/24 no interface of this machine has an
// address in, so a concurrent run (or anything else) is never disturbed.
func freeSubnet(t testing.TB) byte {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list addresses: %v", err)
	}
	used := map[byte]bool{}
	for _, a := range addrs {
		if v4 := a.IP.To4(); v4 != nil && v4[0] == 10 && v4[1] == 199 {
			used[v4[2]] = true
		}
	}
	for range 1000 {
		var b [1]byte
		rand.Read(b[:])
		if x := b[0]; x != 0 && x != 255 && !used[x] {
			return x
		}
	}
	t.Fatal("no free /24 in 10.199.0.0/16")
	return 0
}

func newNet(t testing.TB, mtu int) testNet {
	t.Helper()
	subnetMu.Lock()
	defer subnetMu.Unlock()
	n := testNet{bridge: netnstest.Name(3), x: freeSubnet(t)}
	n.gateway = n.addr(1)
	t.Cleanup(func() {
		if err := bridge.Delete(n.bridge); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := bridge.Ensure(n.bridge, n.gateway, mtu); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return n
}

func newNS(t testing.TB) (name, path string) {
	t.Helper()
	name = netnstest.Name(4)
	path, err := netns.Create(name)
	if err != nil {
		t.Fatalf("netns.Create: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name, path
}

// attach plugs a namespace in and detaches it when the test ends.
func attach(t testing.TB, n testNet, nsPath string, ep bridge.Endpoint) {
	t.Helper()
	t.Cleanup(func() {
		if err := bridge.Detach(ep.HostIf); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := bridge.Attach(n.bridge, nsPath, ep); err != nil {
		t.Fatalf("Attach: %v", err)
	}
}

// nsHandle is a netlink handle inside the namespace at path.
func nsHandle(t testing.TB, path string) *netlink.Handle {
	t.Helper()
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func linkGone(t testing.TB, name string) {
	t.Helper()
	if bridge.Exists(name) {
		t.Fatalf("link %s still exists", name)
	}
	out, err := exec.Command("ip", "link", "show", name).CombinedOutput()
	if err == nil {
		t.Fatalf("ip link show %s still finds it:\n%s", name, out)
	}
}

// pingCmd is a ping from the host's PATH: iputils if there, else busybox's.
func pingCmd(t testing.TB) []string {
	t.Helper()
	if p, err := exec.LookPath("ping"); err == nil {
		return []string{p}
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		if out, err := exec.Command(p, "ping", "--help").CombinedOutput(); err == nil || bytes.Contains(out, []byte("Usage: ping")) {
			return []string{p, "ping"}
		}
	}
	t.Skip("no ping (iputils or busybox) on this host")
	return nil
}

func ping(t testing.TB, nsName string, to net.IP) {
	t.Helper()
	args := append([]string{"netns", "exec", nsName}, pingCmd(t)...)
	args = append(args, "-c1", "-W1", to.String())
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestEnsure(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNet(t, 1400)
	if err := bridge.Ensure(n.bridge, n.gateway, 1400); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	link, err := netlink.LinkByName(n.bridge)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		t.Fatalf("%s is a %s", n.bridge, link.Type())
	}
	if link.Attrs().MTU != 1400 {
		t.Errorf("MTU = %d, want 1400", link.Attrs().MTU)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		t.Error("bridge is not up")
	}
	if mac := link.Attrs().HardwareAddr; len(mac) != 6 || mac[0]&0x02 == 0 || mac[0]&0x01 != 0 {
		t.Errorf("bridge MAC %s: want a locally administered unicast address", mac)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != n.gateway.String() {
		t.Fatalf("addresses %v, want only %s", addrs, n.gateway)
	}
	if !bridge.Exists(n.bridge) {
		t.Error("Exists = false")
	}
	// A new MTU is applied to an existing bridge.
	if err := bridge.Ensure(n.bridge, n.gateway, 1300); err != nil {
		t.Fatal(err)
	}
	if link, _ := netlink.LinkByName(n.bridge); link.Attrs().MTU != 1300 {
		t.Errorf("MTU after re-Ensure = %d, want 1300", link.Attrs().MTU)
	}
	if err := bridge.Delete(n.bridge); err != nil {
		t.Fatal(err)
	}
	linkGone(t, n.bridge)
	if err := bridge.Delete(n.bridge); err != nil {
		t.Fatalf("Delete of a missing bridge: %v", err)
	}
}

func TestEnsureRace(t *testing.T) {
	netnstest.RequireRoot(t)
	subnetMu.Lock()
	n := testNet{bridge: netnstest.Name(3), x: freeSubnet(t)}
	subnetMu.Unlock()
	n.gateway = n.addr(1)
	t.Cleanup(func() { bridge.Delete(n.bridge) })
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- bridge.Ensure(n.bridge, n.gateway, 1500)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Ensure: %v", err)
		}
	}
	link, err := netlink.LinkByName(n.bridge)
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
	if len(addrs) != 1 {
		t.Fatalf("addresses after a race: %v", addrs)
	}
}

// vethPair makes a veth pair with test names (the host has no dummy
// module), to check that bridge functions refuse to touch what is not
// theirs.
func vethPair(t testing.TB) string {
	t.Helper()
	name := netnstest.Name(4)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, TxQLen: -1}, PeerName: name + "p", PeerTxQLen: -1}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	t.Cleanup(func() { netlink.LinkDel(v) })
	return name
}

func TestRefusesOtherKinds(t *testing.T) {
	netnstest.RequireRoot(t)
	v := vethPair(t)
	if err := bridge.Ensure(v, nil, 0); err == nil {
		t.Error("Ensure on a veth succeeded")
	}
	if err := bridge.Delete(v); err == nil {
		t.Error("Delete of a veth succeeded")
	}
	if !bridge.Exists(v) {
		t.Fatal("the veth was removed")
	}
	n := newNet(t, 0)
	if err := bridge.Detach(n.bridge); err == nil {
		t.Error("Detach of a bridge succeeded")
	}
	if !bridge.Exists(n.bridge) {
		t.Fatal("the bridge was removed")
	}
}

func TestAttachPing(t *testing.T) {
	netnstest.RequireRoot(t)
	const mtu = 1400
	n := newNet(t, mtu)
	nameA, pathA := newNS(t)
	nameB, pathB := newNS(t)
	epA := bridge.Endpoint{HostIf: netnstest.Name(4), IfName: "eth0", Addr: n.addr(2), Gateway: n.ip(1), MTU: mtu}
	epB := bridge.Endpoint{HostIf: netnstest.Name(4), IfName: "eth0", Addr: n.addr(3), Gateway: n.ip(1), MTU: mtu}
	attach(t, n, pathA, epA)
	attach(t, n, pathB, epB)

	ping(t, nameA, n.ip(3))
	ping(t, nameB, n.ip(2))
	ping(t, nameA, n.ip(1))

	br, err := netlink.LinkByName(n.bridge)
	if err != nil {
		t.Fatal(err)
	}
	host, err := netlink.LinkByName(epA.HostIf)
	if err != nil {
		t.Fatal(err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		t.Errorf("host side master %d, want the bridge %d", host.Attrs().MasterIndex, br.Attrs().Index)
	}
	if host.Attrs().MTU != mtu || host.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("host side MTU %d up %v, want %d and up", host.Attrs().MTU, host.Attrs().Flags&net.FlagUp != 0, mtu)
	}

	h := nsHandle(t, pathA)
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("eth0 in the namespace: %v", err)
	}
	wantMAC := fmt.Sprintf("02:42:0a:c7:%02x:02", n.x)
	if got := eth0.Attrs().HardwareAddr.String(); got != wantMAC {
		t.Errorf("MAC %s, want %s", got, wantMAC)
	}
	if eth0.Attrs().MTU != mtu {
		t.Errorf("eth0 MTU %d, want %d", eth0.Attrs().MTU, mtu)
	}
	addrs, err := h.AddrList(eth0, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != n.addr(2).String() {
		t.Errorf("eth0 addresses %v (err %v), want %s", addrs, err, n.addr(2))
	}
	routes, err := h.RouteList(eth0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var gw net.IP
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			gw = r.Gw
		}
	}
	if !gw.Equal(n.ip(1)) {
		t.Errorf("default route via %v, want %s (routes %v)", gw, n.ip(1), routes)
	}
	if lo, err := h.LinkByName("lo"); err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo not up in the namespace (err %v)", err)
	}

	if err := bridge.Detach(epA.HostIf); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	linkGone(t, epA.HostIf)
	if _, err := h.LinkByName("eth0"); err == nil {
		t.Error("eth0 still in the namespace after Detach")
	}
	if err := bridge.Detach(epA.HostIf); err != nil {
		t.Errorf("second Detach: %v", err)
	}
	// B still talks to the gateway with A gone.
	ping(t, nameB, n.ip(1))

	if err := bridge.Detach(epB.HostIf); err != nil {
		t.Fatal(err)
	}
	if err := bridge.Delete(n.bridge); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	linkGone(t, n.bridge)
}

// Detach acts in the calling thread's namespace even though the delete
// runs on another goroutine: a pair made inside a test namespace is
// removed there, and the host is not searched.
func TestDetachInsideNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	_, path := newNS(t)
	h := nsHandle(t, path)
	name := netnstest.Name(4)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, TxQLen: -1}, PeerName: name + "p", PeerTxQLen: -1}); err != nil {
		t.Fatal(err)
	}
	if bridge.Exists(name) {
		t.Fatal("the pair is visible on the host")
	}
	if err := netns.Do(path, func() error { return bridge.Detach(name) }); err != nil {
		t.Fatalf("Detach in the namespace: %v", err)
	}
	for _, n := range []string{name, name + "p"} {
		if _, err := h.LinkByName(n); err == nil {
			t.Errorf("%s still in the namespace", n)
		}
	}
}

// Without a gateway (an --internal network) there is no default route.
func TestAttachNoGatewayExplicitMAC(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNet(t, 0)
	_, path := newNS(t)
	mac := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	attach(t, n, path, bridge.Endpoint{HostIf: netnstest.Name(4), IfName: "eth1", Addr: n.addr(9), MAC: mac})
	h := nsHandle(t, path)
	link, err := h.LinkByName("eth1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(link.Attrs().HardwareAddr, mac) {
		t.Errorf("MAC %s, want %s", link.Attrs().HardwareAddr, mac)
	}
	routes, _ := h.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range routes {
		if r.Gw != nil {
			t.Errorf("route with a gateway %v without Endpoint.Gateway", r)
		}
	}
}

func TestAttachFailuresLeaveNothing(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNet(t, 0)
	_, path := newNS(t)
	h := nsHandle(t, path)
	good := func() bridge.Endpoint {
		return bridge.Endpoint{HostIf: netnstest.Name(4), IfName: "eth0", Addr: n.addr(2), Gateway: n.ip(1)}
	}
	check := func(t *testing.T, ep bridge.Endpoint) {
		t.Helper()
		linkGone(t, ep.HostIf)
		if ep.IfName != "lo" {
			if _, err := h.LinkByName(ep.IfName); err == nil {
				t.Fatalf("%s left in the namespace", ep.IfName)
			}
		}
	}
	t.Run("no such bridge", func(t *testing.T) {
		ep := good()
		if err := bridge.Attach(netnstest.Name(3), path, ep); err == nil {
			bridge.Detach(ep.HostIf)
			t.Fatal("Attach to a missing bridge succeeded")
		}
		check(t, ep)
	})
	t.Run("no such namespace", func(t *testing.T) {
		ep := good()
		if err := bridge.Attach(n.bridge, netns.Path(netnstest.Name(4)), ep); err == nil {
			bridge.Detach(ep.HostIf)
			t.Fatal("Attach to a missing namespace succeeded")
		}
		check(t, ep)
	})
	t.Run("gateway off the subnet", func(t *testing.T) {
		// Fails at the last step, the route: everything made before
		// must go.
		ep := good()
		ep.Gateway = net.IPv4(10, 199, n.x+1, 1)
		if err := bridge.Attach(n.bridge, path, ep); err == nil {
			bridge.Detach(ep.HostIf)
			t.Fatal("Attach with an unreachable gateway succeeded")
		}
		check(t, ep)
	})
	t.Run("name taken in the namespace", func(t *testing.T) {
		ep := good()
		ep.IfName = "lo"
		if err := bridge.Attach(n.bridge, path, ep); err == nil {
			bridge.Detach(ep.HostIf)
			t.Fatal("Attach as lo succeeded")
		}
		check(t, ep)
		if _, err := h.LinkByName("lo"); err != nil {
			t.Fatalf("lo gone: %v", err)
		}
	})
	t.Run("host name taken", func(t *testing.T) {
		// The existing link is someone else's: it must survive.
		ep := good()
		ep.HostIf = vethPair(t)
		if err := bridge.Attach(n.bridge, path, ep); err == nil {
			t.Fatal("Attach with a taken host name succeeded")
		}
		if !bridge.Exists(ep.HostIf) {
			t.Fatal("the link that held the name was deleted")
		}
		if _, err := h.LinkByName(ep.IfName); err == nil {
			t.Fatal("eth0 left in the namespace")
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		for _, ep := range []bridge.Endpoint{
			{HostIf: "", IfName: "eth0", Addr: n.addr(2)},
			{HostIf: netnstest.Name(8), IfName: "eth0", Addr: n.addr(2)}, // 18 bytes
			{HostIf: netnstest.Name(4), IfName: "", Addr: n.addr(2)},
			{HostIf: netnstest.Name(4), IfName: "eth0"},
		} {
			if err := bridge.Attach(n.bridge, path, ep); err == nil {
				bridge.Detach(ep.HostIf)
				t.Errorf("Attach(%+v) succeeded", ep)
			}
		}
	})
}

func TestHostMTU(t *testing.T) {
	netnstest.RequireRoot(t)
	want := 1500
	out, err := exec.Command("ip", "-4", "route", "show", "default").Output()
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(out)); len(f) > 0 {
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "dev" {
				raw, err := os.ReadFile("/sys/class/net/" + f[i+1] + "/mtu")
				if err != nil {
					t.Fatal(err)
				}
				fmt.Sscan(string(raw), &want)
				break
			}
		}
	}
	if got := bridge.HostMTU(); got != want {
		t.Fatalf("HostMTU = %d, want %d", got, want)
	}
}

func readSysctl(t testing.TB, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(raw))
}

// The sysctls are per network namespace, so they are tested in one of the
// test's own: the host's forwarding setting is not the test's to change.
func TestSysctls(t *testing.T) {
	netnstest.RequireRoot(t)
	_, path := newNS(t)
	hostFwd := readSysctl(t, "/proc/sys/net/ipv4/ip_forward")
	err := netns.Do(path, func() error {
		before := readSysctl(t, "/proc/sys/net/ipv4/ip_forward")
		prev, err := bridge.EnableForwarding()
		if err != nil {
			return err
		}
		if prev != before {
			return fmt.Errorf("EnableForwarding returned %q, value was %q", prev, before)
		}
		if v := readSysctl(t, "/proc/sys/net/ipv4/ip_forward"); v != "1" {
			return fmt.Errorf("ip_forward = %s after EnableForwarding", v)
		}
		if prev, err := bridge.EnableForwarding(); err != nil || prev != "1" {
			return fmt.Errorf("second EnableForwarding: %q, %v", prev, err)
		}
		for _, on := range []bool{true, false} {
			if err := bridge.SetRouteLocalnet("lo", on); err != nil {
				return err
			}
			want := "0"
			if on {
				want = "1"
			}
			if v := readSysctl(t, "/proc/sys/net/ipv4/conf/lo/route_localnet"); v != want {
				return fmt.Errorf("route_localnet = %s, want %s", v, want)
			}
		}
		if err := bridge.SetRouteLocalnet("../all", true); err == nil {
			return errors.New("SetRouteLocalnet accepted a path")
		}
		if err := bridge.SetRouteLocalnet(netnstest.Name(4), true); err == nil {
			return errors.New("SetRouteLocalnet on a missing interface succeeded")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if v := readSysctl(t, "/proc/sys/net/ipv4/ip_forward"); v != hostFwd {
		t.Fatalf("the host's ip_forward changed from %s to %s", hostFwd, v)
	}
}

// TestLeak runs the whole life of a container's network many times and
// then looks for anything left with the run's prefix.
func TestLeak(t *testing.T) {
	netnstest.RequireRoot(t)
	if testing.Short() {
		t.Skip("short")
	}
	n := newNet(t, 0)
	prefix := netnstest.Name(2)
	for i := range 200 {
		name := fmt.Sprintf("%s%04x", prefix, i)
		path, err := netns.Create(name)
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		ep := bridge.Endpoint{HostIf: name, IfName: "eth0", Addr: n.addr(2), Gateway: n.ip(1)}
		err = bridge.Attach(n.bridge, path, ep)
		if err == nil {
			err = bridge.Detach(name)
		}
		if derr := netns.Delete(name); err == nil {
			err = derr
		}
		if err != nil {
			bridge.Detach(name)
			t.Fatalf("#%d: %v", i, err)
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			t.Errorf("link %s left", l.Attrs().Name)
		}
	}
	if left, err := netnstest.EntriesUnder(netns.Dir, prefix); err != nil || len(left) > 0 {
		t.Errorf("entries left in %s: %v (err %v)", netns.Dir, left, err)
	}
	if left, err := netnstest.MountsUnder(netns.Dir, prefix); err != nil || len(left) > 0 {
		t.Errorf("mounts left: %v (err %v)", left, err)
	}
	if br, err := netlink.LinkByName(n.bridge); err == nil {
		all, _ := netlink.LinkList()
		for _, l := range all {
			if l.Attrs().MasterIndex == br.Attrs().Index {
				t.Errorf("port %s left on the bridge", l.Attrs().Name)
			}
		}
	}
}

// BenchmarkAttach is what a container start and stop pay for networking:
// namespace, veth pair on the bridge, and their removal. The setup half
// (what delays a start) is reported on its own too.
func BenchmarkAttach(b *testing.B) {
	netnstest.RequireRoot(b)
	n := newNet(b, 0)
	prefix := netnstest.Name(2)
	i := 0
	var setup, teardown time.Duration
	for b.Loop() {
		name := fmt.Sprintf("%s%04x", prefix, i%0x10000)
		i++
		t0 := time.Now()
		path, err := netns.Create(name)
		if err != nil {
			b.Fatal(err)
		}
		ep := bridge.Endpoint{HostIf: name, IfName: "eth0", Addr: n.addr(2), Gateway: n.ip(1), MTU: 1500}
		if err := bridge.Attach(n.bridge, path, ep); err != nil {
			netns.Delete(name)
			b.Fatal(err)
		}
		t1 := time.Now()
		err = bridge.Detach(name)
		if derr := netns.Delete(name); err == nil {
			err = derr
		}
		if err != nil {
			b.Fatal(err)
		}
		setup += t1.Sub(t0)
		teardown += time.Since(t1)
	}
	b.ReportMetric(float64(setup.Microseconds())/1000/float64(i), "setup-ms/op")
	b.ReportMetric(float64(teardown.Microseconds())/1000/float64(i), "teardown-ms/op")
}
