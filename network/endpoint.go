package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hullproject/hull/internal/proc"
	"github.com/hullproject/hull/network/bridge"
	"github.com/hullproject/hull/network/dns"
	"github.com/hullproject/hull/storage/meta"
)

// Endpoint is a container's place on a network, with Docker's names in
// inspect.
type Endpoint struct {
	NetworkID   string   `json:"NetworkID"`
	EndpointID  string   `json:"EndpointID"`
	Gateway     string   `json:"Gateway"`
	IPAddress   string   `json:"IPAddress"`
	IPPrefixLen int      `json:"IPPrefixLen"`
	MacAddress  string   `json:"MacAddress"`
	Aliases     []string `json:"Aliases"`
	// HostIf is the host side of the veth pair, IfName the container's.
	HostIf string `json:"HostIf,omitempty"`
	IfName string `json:"IfName,omitempty"`
}

// member is what a network remembers of a container on it: for the DNS
// responder (names) and for clean-up (the veth).
type member struct {
	IP     string   `json:"ip"`
	Names  []string `json:"names"`
	HostIf string   `json:"hostIf"`
}

// membersOf reads the members of a network from its record's sidecar
// bucket key ("<network>/members" would need a bucket per network, so the
// members ride in the same record).
type record struct {
	Network
	Members map[string]member `json:"members"`
}

func load(tx *meta.Tx, name string) (*record, error) {
	var r record
	if err := tx.Record(meta.Networks, name, &r); err != nil {
		if errors.Is(err, meta.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return nil, err
	}
	if r.Leases == nil {
		r.Leases = map[string]string{}
	}
	if r.Members == nil {
		r.Members = map[string]member{}
	}
	return &r, nil
}

// ConnectOptions describe a container joining a network.
type ConnectOptions struct {
	ContainerID string
	// Names the container answers to on the network: its name and
	// --network-alias values.
	Names []string
	// NetNS is the path of the container's network namespace.
	NetNS string
	// IfName is the interface name inside (eth0, eth1 …).
	IfName string
	// Preferred is the address to take again when it is free.
	Preferred net.IP
	// DefaultRoute routes everything through this network's gateway;
	// only the first network a container joins does.
	DefaultRoute bool
}

// Connect leases an address for the container, plugs a veth pair between
// the network's bridge and the container's namespace and, on a user
// network, makes sure the DNS responder runs. On failure nothing is left.
func (m *Manager) Connect(ref string, o ConnectOptions) (*Endpoint, error) {
	n, err := m.Get(ref)
	if err != nil {
		return nil, err
	}
	hostIf := "hv" + o.ContainerID[:7] + n.ID[:4]
	var ip net.IP
	err = m.db.Update(func(tx *meta.Tx) error {
		r, err := load(tx, n.Name)
		if err != nil {
			return err
		}
		if _, ok := r.Members[o.ContainerID]; ok {
			return fmt.Errorf("container %s is already connected to network %s", o.ContainerID[:12], n.Name)
		}
		// The address must also be free machine-wide (claim.go).
		skip := map[string]bool{}
		preferred := o.Preferred
		for {
			if ip, err = allocate(&r.Network, preferred, skip); err != nil {
				return err
			}
			ok, err := claimAddress(r.Bridge, ip, claim{Store: m.runDir, Container: o.ContainerID, NetNS: o.NetNS})
			if err != nil {
				return err
			}
			if ok {
				break
			}
			skip[ip.String()], preferred = true, nil
		}
		r.Leases[ip.String()] = o.ContainerID
		r.LastIP = ip.String()
		r.Members[o.ContainerID] = member{IP: ip.String(), Names: o.Names, HostIf: hostIf}
		*n = r.Network
		return tx.PutRecord(meta.Networks, n.Name, r)
	})
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			m.release(n.Name, o.ContainerID)
		}
	}()
	if err := m.ensureUp(n); err != nil {
		return nil, err
	}
	_, subnet, _ := net.ParseCIDR(n.Subnet)
	ones, _ := subnet.Mask.Size()
	ep := bridge.Endpoint{
		HostIf: hostIf, IfName: o.IfName, Addr: &net.IPNet{IP: ip, Mask: net.CIDRMask(ones, 32)},
		MTU: bridgeMTU(n.Bridge),
	}
	if !n.Internal && o.DefaultRoute {
		ep.Gateway = net.ParseIP(n.Gateway)
	}
	if err := bridge.Attach(n.Bridge, o.NetNS, ep); err != nil {
		// A veth of the same name may still be on its way out: the
		// previous run of this container left it to the kernel's
		// namespace clean-up. Remove it and try once more.
		if !bridge.Exists(hostIf) {
			return nil, fmt.Errorf("network %s: %w", n.Name, err)
		}
		bridge.Detach(hostIf)
		if err := bridge.Attach(n.Bridge, o.NetNS, ep); err != nil {
			return nil, fmt.Errorf("network %s: %w", n.Name, err)
		}
	}
	if !n.Default() {
		if err := m.ensureDNS(n); err != nil {
			bridge.Detach(hostIf)
			return nil, err
		}
	}
	ok = true
	mac := fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", ip[0], ip[1], ip[2], ip[3])
	aliases := []string{}
	if len(o.Names) > 1 {
		aliases = append(aliases, o.Names[1:]...)
	}
	return &Endpoint{
		NetworkID: n.ID, EndpointID: newID(), Gateway: n.Gateway, IPAddress: ip.String(),
		IPPrefixLen: ones, MacAddress: mac, Aliases: aliases, HostIf: hostIf, IfName: o.IfName,
	}, nil
}

// Release frees a container's address on a network without touching its
// interface: when the container's namespace goes away the kernel removes
// the veth pair by itself, in the background, where deleting it here would
// make the caller wait tens of milliseconds for the kernel's clean-up.
func (m *Manager) Release(ref, containerID string) error { return m.release(ref, containerID) }

// bridgeMTU is the MTU the bridge was given (the host's), read from sysfs:
// cheaper than asking netlink for the host's default route again.
func bridgeMTU(name string) int {
	raw, err := os.ReadFile("/sys/class/net/" + name + "/mtu")
	if err != nil {
		return bridge.HostMTU()
	}
	mtu, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || mtu <= 0 {
		return bridge.HostMTU()
	}
	return mtu
}

// Disconnect unplugs a container from a network and frees its address.
// Doing it twice, or for a network that is gone, is not an error.
func (m *Manager) Disconnect(ref, containerID string) error {
	var hostIf string
	err := m.db.View(func(tx *meta.Tx) error {
		r, err := load(tx, ref)
		if err != nil {
			return err
		}
		hostIf = r.Members[containerID].HostIf
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if hostIf != "" {
		if err := bridge.Detach(hostIf); err != nil {
			return err
		}
	}
	return m.release(ref, containerID)
}

func (m *Manager) release(ref, containerID string) error {
	// Usually there is nothing to free (a second clean-up): a read first.
	member := false
	m.db.View(func(tx *meta.Tx) error {
		if r, err := load(tx, ref); err == nil {
			_, member = r.Members[containerID]
		}
		return nil
	})
	if !member {
		return nil
	}
	err := m.db.Update(func(tx *meta.Tx) error {
		r, err := load(tx, ref)
		if err != nil {
			return err
		}
		mem, ok := r.Members[containerID]
		if !ok {
			return nil
		}
		delete(r.Members, containerID)
		if r.Leases[mem.IP] == containerID {
			delete(r.Leases, mem.IP)
		}
		releaseClaim(r.Bridge, net.ParseIP(mem.IP), m.runDir, containerID)
		return tx.PutRecord(meta.Networks, r.Name, r)
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Members lists the container IDs on a network.
func (m *Manager) Members(ref string) (map[string]string, error) {
	out := map[string]string{}
	err := m.db.View(func(tx *meta.Tx) error {
		r, err := load(tx, ref)
		if err != nil {
			return err
		}
		for id, mem := range r.Members {
			out[id] = mem.IP
		}
		return nil
	})
	return out, err
}

// lookup answers the DNS responder: the addresses of a container name or
// alias on the network.
func (m *Manager) lookup(netName, name string) []net.IP {
	var out []net.IP
	m.db.View(func(tx *meta.Tx) error {
		r, err := load(tx, netName)
		if err != nil {
			return err
		}
		for _, mem := range r.Members {
			for _, n := range mem.Names {
				if strings.EqualFold(n, name) {
					out = append(out, net.ParseIP(mem.IP).To4())
					break
				}
			}
		}
		return nil
	})
	return out
}

// reverse answers PTR queries: the names of the container with an address.
func (m *Manager) reverse(netName string, ip net.IP) []string {
	var out []string
	m.db.View(func(tx *meta.Tx) error {
		r, err := load(tx, netName)
		if err != nil {
			return err
		}
		for _, mem := range r.Members {
			if net.ParseIP(mem.IP).Equal(ip) && len(mem.Names) > 0 {
				out = append(out, mem.Names[0])
			}
		}
		return nil
	})
	return out
}

func (m *Manager) dnsPidPath(n *Network) string { return filepath.Join(m.runDir, n.Name+".dns.pid") }

// ensureDNS starts the network's DNS responder (`hull network dns-serve`,
// one process per user network, on the gateway's port 53) unless it runs.
func (m *Manager) ensureDNS(n *Network) error {
	if pidAlive(m.dnsPidPath(n)) {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "--root", filepath.Dir(m.db.Path()), "--runroot", filepath.Dir(m.runDir), "network", "dns-serve", n.Name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	ready, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer ready.Close()
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start DNS responder of %s: %w", n.Name, err)
	}
	w.Close()
	go cmd.Wait()
	// It writes one byte once it listens (or closes the pipe when another
	// responder already does).
	buf := make([]byte, 1)
	ready.SetReadDeadline(time.Now().Add(5 * time.Second))
	ready.Read(buf)
	return nil
}

func (m *Manager) stopDNS(n *Network) {
	raw, err := os.ReadFile(m.dnsPidPath(n))
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	os.Remove(m.dnsPidPath(n))
}

func pidAlive(pidFile string) bool { return proc.AliveFromFile(pidFile, "") }

// ServeDNS runs the DNS responder of a user network until the network is
// gone or has had no containers for a minute. ready gets one byte once it
// listens.
func (m *Manager) ServeDNS(ctx context.Context, name string, ready *os.File) error {
	n, err := m.Get(name)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(n.Gateway, "53")
	udp, err := net.ListenPacket("udp4", addr)
	if err != nil {
		// Another responder won the race: fine.
		if ready != nil {
			ready.Close()
		}
		return nil
	}
	tcp, err := net.Listen("tcp4", addr)
	if err != nil {
		udp.Close()
		return err
	}
	os.MkdirAll(m.runDir, 0o700)
	os.WriteFile(m.dnsPidPath(n), []byte(strconv.Itoa(os.Getpid())), 0o600)
	defer func() {
		if raw, err := os.ReadFile(m.dnsPidPath(n)); err == nil && strings.TrimSpace(string(raw)) == strconv.Itoa(os.Getpid()) {
			os.Remove(m.dnsPidPath(n))
		}
	}()
	if ready != nil {
		ready.Write([]byte{1})
		ready.Close()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		idleSince := time.Time{}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			members, err := m.Members(name)
			if err != nil {
				cancel()
				return
			}
			if len(members) > 0 {
				idleSince = time.Time{}
				continue
			}
			if idleSince.IsZero() {
				idleSince = time.Now()
			} else if time.Since(idleSince) > time.Minute {
				cancel()
				return
			}
		}
	}()
	srv := &dns.Server{
		Lookup:  func(q string) []net.IP { return m.lookup(name, q) },
		Reverse: func(ip net.IP) []string { return m.reverse(name, ip) },
		// The responder runs in the host's namespace: the host's loopback
		// resolvers (systemd-resolved's 127.0.0.53) work from here.
		Upstream: dns.Upstreams("/etc/resolv.conf", true),
		TTL:      600,
	}
	return srv.Serve(ctx, udp, tcp)
}
