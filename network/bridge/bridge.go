// Package bridge makes Linux bridges and plugs containers into them with
// veth pairs, all over netlink: a container start pays for this, and
// spawning `ip` would cost milliseconds per call.
package bridge

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// maxIfName is the longest interface name the kernel takes (IFNAMSIZ-1).
const maxIfName = 15

// Ensure creates the bridge name if it is missing, puts gateway on it if
// that address is not there yet, sets its MTU (mtu <= 0 leaves it as it
// is) and brings it up. It is idempotent, and safe when two processes
// race to make the same bridge. A link of that name that is not a bridge
// is an error, not something to reconfigure.
func Ensure(name string, gateway *net.IPNet, mtu int) error {
	if err := validIfName(name); err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	h, err := hostHandle()
	if err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if isNotFound(err) {
		link, err = create(h, name)
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return fmt.Errorf("bridge %s: a link of that name exists and is a %s, not a bridge", name, link.Type())
	}
	if mtu > 0 && link.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("bridge %s: set MTU %d: %w", name, mtu, err)
		}
	}
	if gateway != nil {
		if err := ensureAddr(h, link, gateway); err != nil {
			return fmt.Errorf("bridge %s: %w", name, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("bridge %s: bring up: %w", name, err)
		}
	}
	return nil
}

// create adds the bridge, or finds the one a racing process just added.
func create(h *netlink.Handle, name string) (netlink.Link, error) {
	mac, err := randomMAC()
	if err != nil {
		return nil, err
	}
	// A bridge whose address the kernel picks takes the lowest MAC of its
	// ports and changes it as containers come and go, which leaves every
	// container's ARP entry for the gateway stale. An address set at
	// creation is kept for good.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac, TxQLen: -1}}
	if err := h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create: %w", err)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up after create: %w", err)
	}
	return link, nil
}

// ensureAddr adds addr to link unless an address with the same IP and
// prefix is already there. Other addresses are left alone: they may be
// another subnet someone put there on purpose.
func ensureAddr(h *netlink.Handle, link netlink.Link, addr *net.IPNet) error {
	family := netlink.FAMILY_V4
	if addr.IP.To4() == nil {
		family = netlink.FAMILY_V6
	}
	have, err := h.AddrList(link, family)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range have {
		if a.IPNet != nil && a.IP.Equal(addr.IP) && sameMask(a.Mask, addr.Mask) {
			return nil
		}
	}
	// EEXIST: a racing process added it between our list and add.
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: addr}); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s: %w", addr, err)
	}
	return nil
}

func sameMask(a, b net.IPMask) bool {
	ao, abits := a.Size()
	bo, bbits := b.Size()
	return ao == bo && abits == bbits
}

// Delete removes the bridge; a missing one is fine. A link of that name
// that is not a bridge is refused, so a wrong name can never take down one
// of the host's interfaces.
func Delete(name string) error {
	h, err := hostHandle()
	if err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	link, err := h.LinkByName(name)
	if isNotFound(err) {
		h.Close()
		return nil
	}
	if err != nil {
		h.Close()
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		h.Close()
		return fmt.Errorf("bridge %s: refusing to delete a %s", name, link.Type())
	}
	if err := deleteLink(h, link); err != nil {
		return fmt.Errorf("bridge %s: delete: %w", name, err)
	}
	return nil
}

// Exists reports whether a link of that name exists (of any kind).
func Exists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// Endpoint is a container's interface on a bridge.
type Endpoint struct {
	HostIf  string           // host side veth name (at most 15 bytes), chosen by the caller
	IfName  string           // name inside the namespace, e.g. "eth0"
	Addr    *net.IPNet       // the container's address and prefix
	Gateway net.IP           // default route via this; nil: no default route
	MAC     net.HardwareAddr // nil: 02:42 and the IPv4 address, as Docker does (random for IPv6)
	MTU     int              // <= 0: the kernel's default
}

// MACFor is the address Docker gives an interface with IPv4 address ip:
// 02:42 (locally administered, unicast) and the four bytes of ip.
func MACFor(ip net.IP) net.HardwareAddr {
	v4 := ip.To4()
	if v4 == nil {
		return nil
	}
	return net.HardwareAddr{0x02, 0x42, v4[0], v4[1], v4[2], v4[3]}
}

// Attach creates a veth pair with ep.HostIf on the bridge, up, and the
// peer made directly in the namespace at nsPath as ep.IfName (no move or
// rename needed), with its MAC, MTU, address, the namespace's lo up and
// the default route. On any failure the pair is deleted, so nothing is
// left behind.
func Attach(bridge, nsPath string, ep Endpoint) error {
	if err := validIfName(ep.HostIf); err != nil {
		return fmt.Errorf("attach to %s: host interface: %w", bridge, err)
	}
	if err := validIfName(ep.IfName); err != nil {
		return fmt.Errorf("attach %s to %s: interface: %w", ep.HostIf, bridge, err)
	}
	if ep.Addr == nil {
		return fmt.Errorf("attach %s to %s: no address", ep.HostIf, bridge)
	}
	host, err := hostHandle()
	if err != nil {
		return fmt.Errorf("attach %s to %s: %w", ep.HostIf, bridge, err)
	}
	defer host.Close()
	br, err := host.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("attach %s to %s: %w", ep.HostIf, bridge, err)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return fmt.Errorf("attach %s to %s: not a bridge but a %s", ep.HostIf, bridge, br.Type())
	}
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("attach %s to %s: open namespace %s: %w", ep.HostIf, bridge, nsPath, err)
	}
	defer ns.Close()
	// Only the route family: the default handle opens xfrm and netfilter
	// sockets too, each costing two setns calls.
	inside, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("attach %s to %s: netlink in %s: %w", ep.HostIf, bridge, nsPath, err)
	}
	defer inside.Close()

	mac := ep.MAC
	if mac == nil {
		mac = MACFor(ep.Addr.IP)
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: ep.HostIf, MTU: ep.MTU, TxQLen: -1,
			// Up at birth saves a request; it passes traffic only once
			// the peer is up too.
			Flags: net.FlagUp,
		},
		PeerName:         ep.IfName,
		PeerHardwareAddr: mac,
		PeerNamespace:    netlink.NsFd(ns),
		PeerTxQLen:       -1,
	}
	// Master is set separately below rather than through LinkAttrs:
	// the library would do it in a second request anyway, and on its
	// failure leave the pair behind with only an error to show.
	if err := host.LinkAdd(veth); err != nil {
		// The kernel creates both ends or neither: nothing to undo, and
		// on EEXIST the name belongs to someone else, not to delete.
		return fmt.Errorf("attach %s to %s: create veth (peer %s in %s): %w", ep.HostIf, bridge, ep.IfName, nsPath, err)
	}
	if err := configure(host, inside, br, veth, ep); err != nil {
		// Deleting one end deletes the other, wherever it is.
		if derr := host.LinkDel(veth); derr != nil && !isGone(derr) {
			err = fmt.Errorf("%w (and removing the veth pair failed: %v)", err, derr)
		}
		return fmt.Errorf("attach %s to %s: %w", ep.HostIf, bridge, err)
	}
	return nil
}

// configure finishes a new pair: host end onto the bridge, then the
// container end's address, link, lo and route in its namespace.
func configure(host, h *netlink.Handle, br netlink.Link, veth *netlink.Veth, ep Endpoint) error {
	if err := host.LinkSetMasterByIndex(veth, br.Attrs().Index); err != nil {
		return fmt.Errorf("enslave to bridge: %w", err)
	}
	// Hairpin: a container reaching its own published port sends to the
	// host, which DNATs the packet back out of the port it came in by;
	// with br_netfilter on, the bridge drops that unless the port allows it.
	if err := host.LinkSetHairpin(veth, true); err != nil {
		return fmt.Errorf("hairpin on %s: %w", ep.HostIf, err)
	}
	peer, err := h.LinkByName(ep.IfName)
	if err != nil {
		return fmt.Errorf("find %s in the namespace: %w", ep.IfName, err)
	}
	if err := h.AddrAdd(peer, &netlink.Addr{IPNet: ep.Addr}); err != nil {
		return fmt.Errorf("add address %s to %s: %w", ep.Addr, ep.IfName, err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		return fmt.Errorf("bring %s up: %w", ep.IfName, err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in the namespace: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("bring lo up: %w", err)
		}
	}
	if ep.Gateway != nil {
		// Dst nil: the default route of the gateway's family.
		route := &netlink.Route{LinkIndex: peer.Attrs().Index, Gw: ep.Gateway}
		if err := h.RouteAdd(route); err != nil {
			return fmt.Errorf("add default route via %s: %w", ep.Gateway, err)
		}
	}
	return nil
}

// Detach deletes the host end of an endpoint; the kernel removes the peer
// with it. A missing one is fine. Only veth links are deleted, so a wrong
// name cannot take down one of the host's interfaces.
func Detach(hostIf string) error {
	h, err := hostHandle()
	if err != nil {
		return fmt.Errorf("detach %s: %w", hostIf, err)
	}
	link, err := h.LinkByName(hostIf)
	if isNotFound(err) {
		h.Close()
		return nil
	}
	if err != nil {
		h.Close()
		return fmt.Errorf("detach %s: %w", hostIf, err)
	}
	if _, ok := link.(*netlink.Veth); !ok {
		h.Close()
		return fmt.Errorf("detach %s: refusing to delete a %s", hostIf, link.Type())
	}
	if err := deleteLink(h, link); err != nil {
		return fmt.Errorf("detach %s: %w", hostIf, err)
	}
	return nil
}

// deleteLink deletes link through h, which it closes, and returns once
// the kernel has announced the link deleted, not once the delete request
// returns.
//
// The request blocks its thread for a whole RCU grace period after the
// link (and a veth's peer, unregistered in the same batch) is already
// unlisted, its name free and its bridge port gone: the kernel waits for
// RCU callbacks before freeing it. That is about 30 ms here, ten times the
// rest of a container's network setup, and nothing anyone can observe
// depends on it. So the request runs on its own goroutine, and the
// kernel's RTM_DELLINK notification, sent before that wait, ends ours.
// Both sockets are made on the calling thread, so they act in its
// namespace whatever thread the goroutines get.
func deleteLink(h *netlink.Handle, link netlink.Link) error {
	index := int32(link.Attrs().Index)
	// Subscribed before the request goes out, so the notification cannot
	// come before anyone listens.
	sub, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_LINK)
	if err != nil {
		// Still correct, only slower: wait for the request itself.
		defer h.Close()
		if err := h.LinkDel(link); err != nil && !isGone(err) {
			return err
		}
		return nil
	}
	defer sub.Close() // also ends the reader below if it is still waiting
	done := make(chan error, 1)
	go func() {
		defer h.Close()
		done <- h.LinkDel(link)
	}()
	gone := make(chan struct{})
	go func() {
		for {
			msgs, _, err := sub.Receive()
			if err != nil {
				// Closed, or overrun (ENOBUFS) by other links' news:
				// the request's own answer will do.
				return
			}
			for _, m := range msgs {
				// AF_UNSPEC: the link itself, not its bridge port (the
				// bridge announces that with AF_BRIDGE).
				if m.Header.Type != unix.RTM_DELLINK || len(m.Data) < unix.SizeofIfInfomsg {
					continue
				}
				if ifi := nl.DeserializeIfInfomsg(m.Data); ifi.Index == index && ifi.Family == unix.AF_UNSPEC {
					close(gone)
					return
				}
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil && !isGone(err) {
			return err
		}
	case <-gone:
	}
	return nil
}

// HostMTU is the MTU of the interface the host's IPv4 default route goes
// out of, or 1500 if there is none. Containers behind a tunnel or a cloud
// network with a smaller MTU would otherwise send packets too big to pass.
func HostMTU() int {
	const fallback = 1500
	h, err := hostHandle()
	if err != nil {
		return fallback
	}
	defer h.Close()
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fallback
	}
	for _, r := range routes {
		if !isDefault(r.Dst) {
			continue
		}
		index := r.LinkIndex
		if index == 0 && len(r.MultiPath) > 0 {
			index = r.MultiPath[0].LinkIndex
		}
		if index == 0 {
			continue
		}
		if link, err := h.LinkByIndex(index); err == nil && link.Attrs().MTU > 0 {
			return link.Attrs().MTU
		}
	}
	return fallback
}

// isDefault is true for a default route's destination, which the library
// reports as nil or as 0.0.0.0/0 depending on version.
func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0 && dst.IP.IsUnspecified()
}

// sysctlRoot is where the kernel's network settings are; the values read
// and written are those of the calling thread's network namespace.
const sysctlRoot = "/proc/sys/net/ipv4"

// EnableForwarding sets net.ipv4.ip_forward to 1, which routing packets
// out of bridges needs, and returns the value it had.
func EnableForwarding() (prev string, err error) {
	path := filepath.Join(sysctlRoot, "ip_forward")
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read net.ipv4.ip_forward: %w", err)
	}
	prev = strings.TrimSpace(string(raw))
	if prev == "1" {
		return prev, nil
	}
	// Written only when it must change: a host that already forwards
	// is left untouched, and needs no writable /proc/sys.
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return prev, fmt.Errorf("set net.ipv4.ip_forward=1: %w", err)
	}
	return prev, nil
}

// SetRouteLocalnet sets net.ipv4.conf.IFNAME.route_localnet, which lets
// the kernel route packets from 127.0.0.0/8 out of that interface: DNAT
// of a published port reached on 127.0.0.1 to a container needs it.
func SetRouteLocalnet(ifname string, on bool) error {
	if err := validIfName(ifname); err != nil {
		return fmt.Errorf("route_localnet: %w", err)
	}
	v := "0\n"
	if on {
		v = "1\n"
	}
	path := filepath.Join(sysctlRoot, "conf", ifname, "route_localnet")
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		return fmt.Errorf("set net.ipv4.conf.%s.route_localnet=%s: %w", ifname, strings.TrimSpace(v), err)
	}
	return nil
}

// validIfName refuses names the kernel would refuse, before any request
// is made, and any that would escape a /proc/sys path.
func validIfName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("invalid interface name %q", name)
	case len(name) > maxIfName:
		return fmt.Errorf("interface name %q is longer than %d bytes", name, maxIfName)
	case strings.ContainsAny(name, "/: \t\n\x00"):
		return fmt.Errorf("invalid interface name %q", name)
	}
	return nil
}

// randomMAC is a random locally administered unicast address.
func randomMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, fmt.Errorf("random MAC: %w", err)
	}
	mac[0] = mac[0]&^0x01 | 0x02
	return mac, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// isGone is true for errors that mean the link vanished between lookup
// and delete (another process removed it): the outcome wanted anyway.
func isGone(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// hostHandle is a netlink handle with one route socket in the calling
// thread's namespace (the host's): the package-level netlink functions
// open and close a socket per request, which costs more than the request.
func hostHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return h, nil
}
