package nft

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// CheckPort reports why hostIP:port/proto cannot be published, or nil if it
// can. A port is taken when another owner already publishes an overlapping
// binding in this table (a DNAT rule holds no socket, so binding alone would
// not notice it), or when a host socket holds it (the DNAT would silently
// steal that service's traffic). Errors of both kinds wrap ErrPortInUse;
// other errors (for instance a host IP that is not on this host) are
// returned as they are.
func (t *Tables) CheckPort(hostIP net.IP, port uint16, proto string) error {
	if _, err := protoNum(proto); err != nil {
		return err
	}
	ip, err := hostIPv4(hostIP)
	if err != nil {
		return err
	}
	if p, err := t.publishedBy(ip, port, proto); err != nil {
		return err
	} else if p != nil {
		return fmt.Errorf("%w: %s:%d/%s is published by %s", ErrPortInUse, ipString(p.hostIP), port, proto, p.owner)
	}
	return bindCheck(ip, port, proto)
}

// PortInUse reports whether hostIP:port/proto is taken by a listening
// socket or by a published port in this table. Use CheckPort for an error
// that says which.
func (t *Tables) PortInUse(hostIP net.IP, port uint16, proto string) bool {
	return errors.Is(t.CheckPort(hostIP, port, proto), ErrPortInUse)
}

// publishedBy returns the existing publication overlapping the binding, if
// any. The DNAT rules in prerouting carry one tag per published port, so
// that chain is enough.
func (t *Tables) publishedBy(hostIP net.IP, port uint16, proto string) (*portSpec, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	ok, err := t.exists(c)
	if err != nil || !ok {
		return nil, err
	}
	rs, err := c.GetRules(t.table(), t.chain(chainPrerouting))
	if err != nil {
		return nil, fmt.Errorf("nft: list rules of %s/%s: %w", t.Name, chainPrerouting, err)
	}
	for _, r := range rs {
		if p, ok := parsePortTag(ruleTag(r)); ok && p.overlaps(proto, hostIP, port) {
			return &p, nil
		}
	}
	return nil, nil
}

// bindCheck binds the address and closes it again: a successful bind proves
// no socket holds it. Only "address in use" means taken; any other failure
// is reported as is, because refusing with "in use" would mislead.
func bindCheck(hostIP net.IP, port uint16, proto string) error {
	addr := net.JoinHostPort(ipString(hostIP), strconv.Itoa(int(port)))
	var err error
	switch proto {
	case "tcp":
		var l net.Listener
		if l, err = net.Listen("tcp4", addr); err == nil {
			return l.Close()
		}
	case "udp":
		var c net.PacketConn
		if c, err = net.ListenPacket("udp4", addr); err == nil {
			return c.Close()
		}
	}
	if errors.Is(err, unix.EADDRINUSE) {
		return fmt.Errorf("%w: %s/%s is held by a host socket", ErrPortInUse, addr, proto)
	}
	if errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("nft: host IP %s is not an address of this host", ipString(hostIP))
	}
	return fmt.Errorf("nft: check %s/%s: %w", addr, proto, err)
}
