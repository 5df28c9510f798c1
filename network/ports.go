package network

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/hullproject/hull/internal/lockfile"
	"github.com/hullproject/hull/network/nft"
)

// PortBinding is one published port, with Docker's names.
type PortBinding struct {
	HostIP        string `json:"HostIp"`
	HostPort      string `json:"HostPort"`
	ContainerPort int    `json:"ContainerPort,omitempty"`
	Proto         string `json:"Proto,omitempty"`
}

// Key is Docker's "80/tcp".
func (p PortBinding) Key() string { return fmt.Sprintf("%d/%s", p.ContainerPort, p.Proto) }

// ParsePublish reads a -p argument: [ip:][hostPort:]containerPort[/proto],
// where ports may be ranges (8000-8002:80-82).
func ParsePublish(spec string) ([]PortBinding, error) {
	bad := func(why string) ([]PortBinding, error) {
		return nil, fmt.Errorf("invalid publish spec %q: %s", spec, why)
	}
	rest, proto, _ := strings.Cut(spec, "/")
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return bad("protocol must be tcp or udp")
	}
	var hostIP, hostPart, ctrPart string
	parts := strings.Split(rest, ":")
	switch len(parts) {
	case 1:
		ctrPart = parts[0]
	case 2:
		hostPart, ctrPart = parts[0], parts[1]
	case 3:
		hostIP, hostPart, ctrPart = parts[0], parts[1], parts[2]
		if ip := net.ParseIP(hostIP); ip == nil || ip.To4() == nil {
			return bad("host IP must be an IPv4 address")
		}
	default:
		return bad("too many colons")
	}
	clo, chi, err := portRange(ctrPart)
	if err != nil {
		return bad(err.Error())
	}
	var out []PortBinding
	if hostPart == "" {
		for p := clo; p <= chi; p++ {
			out = append(out, PortBinding{HostIP: hostIP, ContainerPort: p, Proto: proto})
		}
		return out, nil
	}
	hlo, hhi, err := portRange(hostPart)
	if err != nil {
		return bad(err.Error())
	}
	if hhi-hlo != chi-clo {
		return bad("host and container port ranges differ in size")
	}
	for i := 0; i <= chi-clo; i++ {
		out = append(out, PortBinding{HostIP: hostIP, HostPort: strconv.Itoa(hlo + i), ContainerPort: clo + i, Proto: proto})
	}
	return out, nil
}

func portRange(s string) (int, int, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 1 || a > 65535 {
		return 0, 0, fmt.Errorf("invalid port %q", lo)
	}
	b := a
	if isRange {
		if b, err = strconv.Atoi(hi); err != nil || b < a || b > 65535 {
			return 0, 0, fmt.Errorf("invalid port range %q", s)
		}
	}
	return a, b, nil
}

// Publish gives every binding a host port (a free one where none was
// asked for), refuses ports that are taken, and installs the NAT rules
// for the container's address on the network. It returns the bindings
// with their host ports.
func (m *Manager) Publish(owner string, n *Network, containerIP net.IP, bindings []PortBinding) ([]PortBinding, error) {
	if len(bindings) == 0 {
		return nil, nil
	}
	// Checking that a port is free and taking it must be one step for
	// every hull process of every store: a machine-wide lock serializes
	// them.
	unlock, err := lockfile.Lock(portsLock)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := m.nft.Ensure(); err != nil {
		return nil, err
	}
	var ports []nft.Port
	out := make([]PortBinding, 0, len(bindings))
	used := map[string]bool{}
	for _, b := range bindings {
		var hostIP net.IP
		if b.HostIP != "" && b.HostIP != "0.0.0.0" {
			hostIP = net.ParseIP(b.HostIP).To4()
		}
		if b.HostPort == "" {
			p, err := m.freePort(hostIP, b.Proto, used)
			if err != nil {
				return nil, err
			}
			b.HostPort = strconv.Itoa(p)
		}
		hp, _ := strconv.Atoi(b.HostPort)
		key := b.Proto + "/" + b.HostPort
		if used[key] || m.nft.PortInUse(hostIP, uint16(hp), b.Proto) {
			return nil, fmt.Errorf("driver failed programming external connectivity: bind for %s:%d failed: port is already allocated", orAny(b.HostIP), hp)
		}
		used[key] = true
		ports = append(ports, nft.Port{HostIP: hostIP, HostPort: uint16(hp), Proto: b.Proto, ContainerIP: containerIP, ContainerPort: uint16(b.ContainerPort), Bridge: n.Bridge})
		if b.HostIP == "" {
			b.HostIP = "0.0.0.0"
		}
		out = append(out, b)
	}
	if err := m.nft.AddPorts(owner, ports); err != nil {
		return nil, fmt.Errorf("publish ports: %w", err)
	}
	return out, nil
}

func orAny(ip string) string {
	if ip == "" {
		return "0.0.0.0"
	}
	return ip
}

// freePort picks a host port from the ephemeral range that nothing holds.
func (m *Manager) freePort(ip net.IP, proto string, used map[string]bool) (int, error) {
	for p := 32768; p <= 60999; p++ {
		if used[proto+"/"+strconv.Itoa(p)] {
			continue
		}
		if !m.nft.PortInUse(ip, uint16(p), proto) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free host port left for %s", proto)
}

// Unpublish removes a container's NAT rules.
func (m *Manager) Unpublish(owner string) error { return m.nft.RemovePorts(owner) }

// SortBindings orders bindings as `docker port` prints them.
func SortBindings(b []PortBinding) {
	sort.Slice(b, func(i, j int) bool {
		if b[i].ContainerPort != b[j].ContainerPort {
			return b[i].ContainerPort < b[j].ContainerPort
		}
		return b[i].Proto < b[j].Proto
	})
}

// Host ports, bridges and hull's nftables table belong to the machine, not
// to one store, so the locks that guard them do too.
const (
	portsLock = "/run/lock/hull-ports.lock"     // choosing and taking host ports
	setupLock = "/run/lock/hull-net-setup.lock" // bringing networks up and down
)
