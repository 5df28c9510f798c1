// Package network gives containers their networks, as Docker's bridge
// driver does: a Linux bridge per network, a veth pair per container into
// a network namespace that `ip netns` sees, addresses leased from the
// metadata database, NAT and published ports in hull's own nftables table,
// and for user networks a DNS responder so containers find each other by
// name.
package network

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hullproject/hull/internal/lockfile"
	"github.com/hullproject/hull/network/bridge"
	"github.com/hullproject/hull/network/nft"
	"github.com/hullproject/hull/storage/meta"
	"github.com/vishvananda/netlink"
)

// The default network, as Docker's "bridge".
const (
	DefaultName   = "bridge"
	DefaultBridge = "hull0"
	DefaultSubnet = "10.88.0.0/16"
	// TableName is hull's nftables table.
	TableName = "hull"
)

// ErrNotFound means no network of that name or ID.
var ErrNotFound = errors.New("network not found")

// Network is a network's record, with its address leases.
type Network struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Driver   string            `json:"driver"`
	Bridge   string            `json:"bridge"`
	Subnet   string            `json:"subnet"`
	Gateway  string            `json:"gateway"`
	Internal bool              `json:"internal"`
	Labels   map[string]string `json:"labels"`
	Created  time.Time         `json:"created"`
	// Leases maps an address to the container ID holding it.
	Leases map[string]string `json:"leases"`
	LastIP string            `json:"lastIp"`
}

// Default reports whether this is the default bridge network, which (as
// Docker's) has no DNS for container names.
func (n *Network) Default() bool { return n.Name == DefaultName }

// Manager keeps the networks of one store.
type Manager struct {
	// known caches Get within one hull process: a network's identity,
	// subnet and bridge do not change while it exists.
	known map[string]*Network

	db *meta.DB
	// runDir holds run-time markers (bridge and rules made since boot)
	// and the DNS responders' pid files.
	runDir string
	nft    *nft.Tables
}

// NewManager manages the networks recorded in db.
func NewManager(db *meta.DB, runDir string) *Manager {
	return &Manager{db: db, runDir: filepath.Join(runDir, "networks"), nft: nft.New(TableName)}
}

var validNetName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// CreateOptions are `network create`'s flags.
type CreateOptions struct {
	Name     string
	Subnet   string
	Gateway  string
	Internal bool
	Labels   map[string]string
}

// reservedNets are never handed out: the host's own test network, and
// loopback, link-local and multicast.
var reservedNets = []string{"192.0.2.0/24", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "0.0.0.0/8"}

// Create records a network (the bridge and rules are made when the first
// container joins). Without a subnet, the next free 10.89.N.0/24 is taken.
func (m *Manager) Create(o CreateOptions) (*Network, error) {
	if !validNetName.MatchString(o.Name) {
		return nil, fmt.Errorf("invalid network name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", o.Name)
	}
	if o.Name == "none" || o.Name == "host" {
		return nil, fmt.Errorf("network name %s is reserved", o.Name)
	}
	var out *Network
	err := m.db.Update(func(tx *meta.Tx) error {
		if tx.RecordExists(meta.Networks, o.Name) {
			return fmt.Errorf("network with name %s already exists", o.Name)
		}
		existing, err := list(tx)
		if err != nil {
			return err
		}
		n, err := newNetwork(o, existing)
		if err != nil {
			return err
		}
		out = n
		return tx.PutRecord(meta.Networks, n.Name, n)
	})
	return out, err
}

func newNetwork(o CreateOptions, existing []*Network) (*Network, error) {
	var subnet *net.IPNet
	if o.Subnet != "" {
		ip, sn, err := net.ParseCIDR(o.Subnet)
		if err != nil || ip.To4() == nil {
			return nil, fmt.Errorf("invalid subnet %q: an IPv4 CIDR such as 10.90.0.0/24", o.Subnet)
		}
		if !ip.Equal(sn.IP) {
			return nil, fmt.Errorf("invalid subnet %s: it should be %s", o.Subnet, sn)
		}
		if ones, _ := sn.Mask.Size(); ones > 30 {
			return nil, fmt.Errorf("invalid subnet %s: too small (at most /30)", o.Subnet)
		}
		subnet = sn
	} else {
		for i := 0; i < 256 && subnet == nil; i++ {
			_, sn, _ := net.ParseCIDR(fmt.Sprintf("10.89.%d.0/24", i))
			if freeSubnet(sn, existing) == nil {
				subnet = sn
			}
		}
		if subnet == nil {
			return nil, errors.New("no free subnet left in 10.89.0.0/16: give one with --subnet")
		}
	}
	if err := freeSubnet(subnet, existing); err != nil {
		return nil, err
	}
	first, _ := hostRange(subnet)
	gw := intToIP(first)
	if o.Gateway != "" {
		gw = net.ParseIP(o.Gateway).To4()
		if gw == nil || !subnet.Contains(gw) {
			return nil, fmt.Errorf("invalid gateway %q: it must be an address in %s", o.Gateway, subnet)
		}
	}
	id := newID()
	n := &Network{
		ID: id, Name: o.Name, Driver: "bridge", Subnet: subnet.String(), Gateway: gw.String(),
		Internal: o.Internal, Labels: o.Labels, Created: time.Now().UTC(), Leases: map[string]string{},
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Bridge = "hull-" + id[:10]
	if o.Name == DefaultName {
		n.Bridge = DefaultBridge
	}
	return n, nil
}

// freeSubnet checks that a subnet overlaps neither another hull network,
// nor a reserved range, nor anything the host routes already.
func freeSubnet(sn *net.IPNet, existing []*Network) error {
	for _, r := range reservedNets {
		_, rn, _ := net.ParseCIDR(r)
		if overlaps(sn, rn) {
			return fmt.Errorf("subnet %s overlaps the reserved range %s", sn, rn)
		}
	}
	for _, n := range existing {
		_, other, err := net.ParseCIDR(n.Subnet)
		if err == nil && overlaps(sn, other) {
			return fmt.Errorf("subnet %s overlaps network %s (%s)", sn, n.Name, other)
		}
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // the default route covers everything
		}
		if ones, _ := r.Dst.Mask.Size(); ones == 0 {
			continue
		}
		if overlaps(sn, r.Dst) {
			link, err := netlink.LinkByIndex(r.LinkIndex)
			if err == nil && ownBridge(link.Attrs().Name, existing) {
				continue // one of this store's networks, checked above
			}
			if err == nil && staleBridge(link) {
				// A bridge of a network whose store is gone (a crash, a
				// deleted store): nothing is plugged into it any more.
				bridge.Delete(link.Attrs().Name)
				continue
			}
			return fmt.Errorf("subnet %s overlaps %s, which the host already routes", sn, r.Dst)
		}
	}
	return nil
}

func ownBridge(name string, existing []*Network) bool {
	// The default bridge is shared by every store on the machine.
	if name == DefaultBridge {
		return true
	}
	for _, n := range existing {
		if n.Bridge == name {
			return true
		}
	}
	return false
}

// staleBridge reports whether a link is a hull user-network bridge with no
// port on it. The default bridge (hull0) is shared and never stale.
func staleBridge(link netlink.Link) bool {
	if _, ok := link.(*netlink.Bridge); !ok || !strings.HasPrefix(link.Attrs().Name, "hull-") {
		return false
	}
	links, err := netlink.LinkList()
	if err != nil {
		return false
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == link.Attrs().Index {
			return false
		}
	}
	return true
}

func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func list(tx *meta.Tx) ([]*Network, error) {
	var out []*Network
	err := tx.EachRecord(meta.Networks, func(key string, _ []byte) error {
		var n Network
		if err := tx.Record(meta.Networks, key, &n); err != nil {
			return err
		}
		out = append(out, &n)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// EnsureDefault records the default network if it is missing.
func (m *Manager) EnsureDefault() error {
	// Most calls find it: a read, not a write transaction (which would
	// sync the database file).
	found := false
	m.db.View(func(tx *meta.Tx) error {
		found = tx.RecordExists(meta.Networks, DefaultName)
		return nil
	})
	if found {
		return nil
	}
	return m.db.Update(func(tx *meta.Tx) error {
		if tx.RecordExists(meta.Networks, DefaultName) {
			return nil
		}
		existing, err := list(tx)
		if err != nil {
			return err
		}
		n, err := newNetwork(CreateOptions{Name: DefaultName, Subnet: DefaultSubnet}, existing)
		if err != nil {
			return err
		}
		return tx.PutRecord(meta.Networks, n.Name, n)
	})
}

// List returns every network, by name.
func (m *Manager) List() ([]*Network, error) {
	if err := m.EnsureDefault(); err != nil {
		return nil, err
	}
	var out []*Network
	err := m.db.View(func(tx *meta.Tx) error {
		var err error
		out, err = list(tx)
		return err
	})
	return out, err
}

// Get finds a network by name, ID or ID prefix.
func (m *Manager) Get(ref string) (*Network, error) {
	if n, ok := m.known[ref]; ok {
		return n, nil
	}
	n, err := m.get(ref)
	if err == nil {
		if m.known == nil {
			m.known = map[string]*Network{}
		}
		m.known[ref] = n
	}
	return n, err
}

func (m *Manager) get(ref string) (*Network, error) {
	if ref == DefaultName || ref == "default" {
		if err := m.EnsureDefault(); err != nil {
			return nil, err
		}
		ref = DefaultName
	}
	var out *Network
	err := m.db.View(func(tx *meta.Tx) error {
		var n Network
		if err := tx.Record(meta.Networks, ref, &n); err == nil {
			out = &n
			return nil
		}
		all, err := list(tx)
		if err != nil {
			return err
		}
		for _, n := range all {
			if len(ref) >= 3 && strings.HasPrefix(n.ID, ref) {
				if out != nil {
					return fmt.Errorf("network %s is ambiguous", ref)
				}
				out = n
			}
		}
		if out == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, ref)
		}
		return nil
	})
	return out, err
}

// Remove deletes a network with no container attached.
func (m *Manager) Remove(ref string) error {
	n, err := m.get(ref)
	if err != nil {
		return err
	}
	if n.Default() {
		return errors.New("bridge is a pre-defined network and cannot be removed")
	}
	err = m.db.Update(func(tx *meta.Tx) error {
		var cur Network
		if err := tx.Record(meta.Networks, n.Name, &cur); err != nil {
			return err
		}
		if len(cur.Leases) > 0 {
			var ids []string
			for _, id := range cur.Leases {
				ids = append(ids, id[:12])
			}
			sort.Strings(ids)
			return fmt.Errorf("error while removing network: network %s has active endpoints (%s)", n.Name, strings.Join(ids, ", "))
		}
		return tx.DeleteRecord(meta.Networks, n.Name)
	})
	if err != nil {
		return err
	}
	for k, v := range m.known {
		if v.Name == n.Name {
			delete(m.known, k)
		}
	}
	m.teardownNetwork(n)
	return nil
}

// teardownNetwork removes a network's bridge, rules and DNS responder.
func (m *Manager) teardownNetwork(n *Network) {
	m.stopDNS(n)
	if unlock, err := lockfile.Lock(setupLock); err == nil {
		m.nft.RemoveNetwork(n.Name)
		bridge.Delete(n.Bridge)
		os.Remove(m.markerPath(n))
		// Its address claims' directory, empty once no container is on it.
		os.Remove(filepath.Join(claimDir, n.Bridge))
		unlock()
	}
}

// Prune removes every user network without containers.
func (m *Manager) Prune() ([]string, error) {
	all, err := m.List()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, n := range all {
		if n.Default() || len(n.Leases) > 0 {
			continue
		}
		if err := m.Remove(n.Name); err == nil {
			removed = append(removed, n.Name)
		}
	}
	return removed, nil
}

// isUp reports whether the network was set up since boot and its bridge is
// still there; sysfs answers without a netlink socket.
func (m *Manager) isUp(n *Network) bool {
	if _, err := os.Stat(m.markerPath(n)); err != nil {
		return false
	}
	_, err := os.Stat("/sys/class/net/" + n.Bridge + "/bridge")
	return err == nil
}

func (m *Manager) markerPath(n *Network) string {
	return filepath.Join(m.runDir, n.Name+".up")
}

// ensureUp makes the network's bridge and rules exist: once per boot
// (a marker under the run directory says it was done), since /run and the
// kernel's state go away together.
func (m *Manager) ensureUp(n *Network) error {
	if m.isUp(n) {
		return nil
	}
	// Parallel first runs all find the network down; one sets it up and
	// the others find it done.
	unlock, err := lockfile.Lock(setupLock)
	if err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	defer unlock()
	if m.isUp(n) {
		return nil
	}
	marker := m.markerPath(n)
	_, subnet, err := net.ParseCIDR(n.Subnet)
	if err != nil {
		return err
	}
	ones, _ := subnet.Mask.Size()
	gw := &net.IPNet{IP: net.ParseIP(n.Gateway).To4(), Mask: net.CIDRMask(ones, 32)}
	if err := bridge.Ensure(n.Bridge, gw, bridge.HostMTU()); err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	if _, err := bridge.EnableForwarding(); err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	// Published ports answer on 127.0.0.1 too: the kernel must route
	// loopback-sourced packets out of the bridge after DNAT.
	if err := bridge.SetRouteLocalnet(n.Bridge, true); err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	if err := m.nft.Ensure(); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	m.nft.RemoveNetwork(n.Name)
	if err := m.nft.AddNetwork(nft.Network{Name: n.Name, Bridge: n.Bridge, Subnet: subnet, Internal: n.Internal}); err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := os.MkdirAll(m.runDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(marker, nil, 0o600)
}
