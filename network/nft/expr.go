package nft

import (
	"net"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// This file builds the raw nftables expressions that the rules are made of.
// The kernel has no notion of "ip saddr 10.0.0.0/24": every match is a load
// into a register followed by a comparison, so these helpers keep the rule
// definitions in nft.go readable.

const (
	// ifNameSize is IFNAMSIZ: meta iifname/oifname load the full
	// zero-padded name, so the comparison must use all 16 bytes to be an
	// exact match (and not a prefix match).
	ifNameSize = 16

	// ctStatusDNAT is IPS_DST_NAT, the conntrack status bit set once a
	// connection has been destination-NATed.
	ctStatusDNAT = 1 << 5

	// Offsets in the IPv4 and TCP/UDP headers.
	ipv4SaddrOffset = 12
	ipv4DaddrOffset = 16
	l4DportOffset   = 2
)

func ifName(name string) []byte {
	b := make([]byte, ifNameSize)
	copy(b, name)
	return b
}

func iifname(op expr.CmpOp, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifName(name)},
	}
}

func oifname(op expr.CmpOp, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifName(name)},
	}
}

// ipNet matches the IPv4 source (offset 12) or destination (offset 16)
// address against a prefix.
func ipNet(offset uint32, n *net.IPNet) []expr.Any {
	ones, _ := n.Mask.Size()
	ip := n.IP.To4().Mask(n.Mask)
	e := []expr.Any{&expr.Payload{
		DestRegister: 1,
		Base:         expr.PayloadBaseNetworkHeader,
		Offset:       offset,
		Len:          4,
	}}
	if ones < 32 {
		e = append(e, &expr.Bitwise{
			SourceRegister: 1,
			DestRegister:   1,
			Len:            4,
			Mask:           []byte(net.CIDRMask(ones, 32)),
			Xor:            []byte{0, 0, 0, 0},
		})
	}
	return append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(ip)})
}

func saddrNet(n *net.IPNet) []expr.Any { return ipNet(ipv4SaddrOffset, n) }

func daddr(ip net.IP) []expr.Any {
	return ipNet(ipv4DaddrOffset, &net.IPNet{IP: ip.To4(), Mask: net.CIDRMask(32, 32)})
}

func saddr(ip net.IP) []expr.Any {
	return ipNet(ipv4SaddrOffset, &net.IPNet{IP: ip.To4(), Mask: net.CIDRMask(32, 32)})
}

// l4Dport matches the transport protocol and its destination port. The
// protocol is checked through meta l4proto first so the port load reads a
// TCP/UDP header and not some other protocol's bytes.
func l4Dport(proto byte, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{
			DestRegister: 1,
			Base:         expr.PayloadBaseTransportHeader,
			Offset:       l4DportOffset,
			Len:          2,
		},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// localDst is "fib daddr type local": the destination is one of this
// host's addresses, whichever interface it is configured on, so a
// published port answers on every host address without listing them.
func localDst() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// ctBits matches when any of the given bits of a conntrack bitfield
// (state or status, both in host byte order) is set.
func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{
			SourceRegister: 1,
			DestRegister:   1,
			Len:            4,
			Mask:           binaryutil.NativeEndian.PutUint32(bits),
			Xor:            []byte{0, 0, 0, 0},
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

func ctDNAT() []expr.Any { return ctBits(expr.CtKeySTATUS, ctStatusDNAT) }

func ctEstablishedRelated() []expr.Any {
	return ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
}

func dnat(ip net.IP, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: []byte(ip.To4())},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{
			Type:        expr.NATTypeDestNAT,
			Family:      unix.NFPROTO_IPV4,
			RegAddrMin:  1,
			RegProtoMin: 2,
			Specified:   true,
		},
	}
}

func masquerade() expr.Any { return &expr.Masq{} }

func verdict(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }

func jump(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

// join concatenates expression lists; a rule is a conjunction of them.
func join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
