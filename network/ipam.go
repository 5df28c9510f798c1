package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
)

// ErrPoolFull means a network has no free address left.
var ErrPoolFull = errors.New("no free address in the network")

// ipToInt and intToIP convert IPv4 addresses for arithmetic.
func ipToInt(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func intToIP(n uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, n)
	return ip
}

// hostRange is the first and last usable host address of a subnet (the
// network and broadcast addresses excluded).
func hostRange(subnet *net.IPNet) (uint32, uint32) {
	ones, bits := subnet.Mask.Size()
	base := ipToInt(subnet.IP)
	size := uint32(1) << uint(bits-ones)
	return base + 1, base + size - 2
}

// allocate picks an address for a container: preferred when it is free and
// in the subnet (a restarted container keeps its address), else the next
// free one after the last handed out, so addresses are not reused at once.
// Addresses in skip are taken elsewhere (by another store, see claim.go).
func allocate(n *Network, preferred net.IP, skip map[string]bool) (net.IP, error) {
	_, subnet, err := net.ParseCIDR(n.Subnet)
	if err != nil {
		return nil, err
	}
	gw := net.ParseIP(n.Gateway)
	first, last := hostRange(subnet)
	if last < first {
		return nil, fmt.Errorf("network %s: subnet %s is too small", n.Name, n.Subnet)
	}
	taken := func(ip net.IP) bool {
		_, used := n.Leases[ip.String()]
		return used || skip[ip.String()] || ip.Equal(gw)
	}
	if p := preferred.To4(); p != nil && subnet.Contains(p) {
		v := ipToInt(p)
		if v >= first && v <= last && !taken(p) {
			return p, nil
		}
	}
	start := first
	if l := net.ParseIP(n.LastIP).To4(); l != nil && subnet.Contains(l) {
		start = ipToInt(l) + 1
	}
	total := last - first + 1
	for i := uint32(0); i < total; i++ {
		v := start + i
		if v > last {
			v = first + (v - last - 1)
		}
		ip := intToIP(v)
		if !taken(ip) {
			return ip, nil
		}
	}
	return nil, fmt.Errorf("network %s: %w", n.Name, ErrPoolFull)
}

// overlaps reports whether two subnets share any address.
func overlaps(a, b *net.IPNet) bool { return a.Contains(b.IP) || b.Contains(a.IP) }
