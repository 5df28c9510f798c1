// Package nft programs hull's NAT and filtering rules into one nftables
// table of hull's own, over netlink (no nft binary). Keeping everything in
// a private table means hull never edits another engine's (Docker,
// Podman, a distribution firewall) rules, and removing hull's networking is
// a single table deletion.
//
// Layout of the table (family ip):
//
//	prerouting  nat    hook prerouting  prio dstnat  DNAT of published ports (traffic from outside / containers)
//	output      nat    hook output      prio -100    DNAT of published ports (traffic from the host itself)
//	postrouting nat    hook postrouting prio srcnat  masquerade: outbound, 127.0.0.1 → container, hairpin
//	forward     filter hook forward     prio filter  policy accept; only four jumps, in this order:
//	  forward-internal   internal networks: drop what leaves the bridge
//	  forward-accept     published ports, same-bridge traffic, replies to containers
//	  forward-isolate    drop whatever else enters a bridge
//	  forward-egress     accept what leaves a (non-internal) bridge
//
// The forward rules live in four regular chains rather than in the base
// chain because their relative order is what makes the policy correct
// across networks: every bridge's "drop what enters me" must be evaluated
// before any bridge's "accept what leaves me", or a container on network A
// could reach network B through A's egress accept. With one chain per stage
// the order is structural, and adding or removing one network never has to
// reposition the rules of the others.
//
// Every rule carries a comment (nftables rule user data) naming what it
// belongs to: "net:<network>" or "port:<owner>:<proto>:<hostip>:<hostport>".
// Removal, listing of owners and port conflict checks read those tags back
// from the kernel, so no state is kept outside the kernel and concurrent
// hull processes see each other's rules.
package nft

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/internal/lockfile"
)

// Chain names.
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainForward     = "forward"

	chainFwdInternal = "forward-internal"
	chainFwdAccept   = "forward-accept"
	chainFwdIsolate  = "forward-isolate"
	chainFwdEgress   = "forward-egress"
)

// forwardStages are the regular chains the forward base chain jumps to, in
// evaluation order (see the package comment for why the order matters).
var forwardStages = []string{chainFwdInternal, chainFwdAccept, chainFwdIsolate, chainFwdEgress}

// lockDir holds one lock file per table. Tables live in the kernel, shared
// by every process and every hull store on the machine, so the lock is
// machine-wide too.
var lockDir = "/run/lock"

// lock serializes the writers of the table across processes (and
// goroutines: each call opens its own file description). Without it,
// concurrent list-then-delete-by-handle batches invalidate each other: 24
// writers replacing one network's rules starve some of them through any
// number of retries.
func (t *Tables) lock() (func(), error) {
	if t.Name == "" || strings.ContainsAny(t.Name, "/\x00") {
		return nil, fmt.Errorf("nft: invalid table name %q", t.Name)
	}
	return lockfile.Lock(filepath.Join(lockDir, "hull-nft-"+t.Name+".lock"))
}

// ErrNoTable is returned by operations that need Ensure to have run.
var ErrNoTable = errors.New("nft: table does not exist (Ensure not called?)")

// ErrPortInUse is wrapped by CheckPort when the host port is taken.
var ErrPortInUse = errors.New("port is already in use")

// maxNameLen bounds names that end up in rule comments: nft itself refuses
// comments longer than 128 bytes, and keeping below that lets `nft list`
// show them.
const maxNameLen = 64

// Tables manages one nftables table of family ip.
type Tables struct {
	Name string // table name, "hull" in production
}

// New returns a handle for the table called name. Nothing is changed in
// the kernel until Ensure (or another method) is called.
func New(name string) *Tables { return &Tables{Name: name} }

func (t *Tables) table() *nftables.Table {
	return &nftables.Table{Name: t.Name, Family: nftables.TableFamilyIPv4}
}

func (t *Tables) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: t.table()}
}

// chainDefs returns the full definitions of every chain of the table.
func (t *Tables) chainDefs() []*nftables.Chain {
	tb := t.table()
	accept := nftables.ChainPolicyAccept
	defs := []*nftables.Chain{
		{Name: chainPrerouting, Table: tb, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest},
		{Name: chainOutput, Table: tb, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(-100)},
		{Name: chainPostrouting, Table: tb, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource},
		{Name: chainForward, Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept},
	}
	for _, s := range forwardStages {
		defs = append(defs, &nftables.Chain{Name: s, Table: tb})
	}
	return defs
}

// Ensure creates the table and its chains if missing. It is idempotent and
// safe to run concurrently from several processes: the whole layout is
// sent as one netlink batch without NLM_F_EXCL, so objects that already
// exist are simply kept ("exists" is not an error), and the kernel applies
// concurrent batches one after the other. The forward base chain only ever
// holds the four jumps, so it is flushed and refilled in the same batch;
// that keeps exactly one set of jumps however many processes race here.
func (t *Tables) Ensure() error {
	unlock, err := t.lock()
	if err != nil {
		return err
	}
	defer unlock()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	c.AddTable(t.table())
	for _, ch := range t.chainDefs() {
		c.AddChain(ch)
	}
	fwd := t.chain(chainForward)
	c.FlushChain(fwd)
	for _, s := range forwardStages {
		c.AddRule(&nftables.Rule{Table: t.table(), Chain: fwd, Exprs: []expr.Any{jump(s)}})
	}
	if err := c.Flush(); err != nil {
		// Without NLM_F_EXCL the kernel only reports EEXIST when an object
		// of that name exists with a different definition (e.g. a chain
		// with another hook): a real conflict, so it is reported.
		return fmt.Errorf("nft: ensure table %s: %w", t.Name, err)
	}
	return nil
}

// Delete removes the whole table with all its rules. A missing table is
// not an error.
func (t *Tables) Delete() error {
	unlock, err := t.lock()
	if err != nil {
		return err
	}
	defer unlock()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	c.DelTable(t.table())
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nft: delete table %s: %w", t.Name, err)
	}
	return nil
}

// exists reports whether the table is present in the kernel.
func (t *Tables) exists(c *nftables.Conn) (bool, error) {
	_, err := c.ListTableOfFamily(t.Name, nftables.TableFamilyIPv4)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return false, fmt.Errorf("nft: look up table %s: %w", t.Name, err)
}

// taggedRule is a rule read back from the kernel with its comment.
type taggedRule struct {
	rule *nftables.Rule
	tag  string
}

// ruleTag returns the comment of a rule, "" if it has none (the jumps of
// the forward base chain).
func ruleTag(r *nftables.Rule) string {
	tag, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return tag
}

// rules lists the tagged rules of every chain of the table.
func (t *Tables) rules(c *nftables.Conn) ([]taggedRule, error) {
	ok, err := t.exists(c)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNoTable
	}
	var out []taggedRule
	for _, ch := range t.chainDefs() {
		rs, err := c.GetRules(t.table(), t.chain(ch.Name))
		if err != nil {
			return nil, fmt.Errorf("nft: list rules of %s/%s: %w", t.Name, ch.Name, err)
		}
		for _, r := range rs {
			if tag := ruleTag(r); tag != "" {
				out = append(out, taggedRule{rule: r, tag: tag})
			}
		}
	}
	return out, nil
}

// newRule is a rule to add: chain plus expressions; the tag is common to
// one update.
type newRule struct {
	chain string
	exprs []expr.Any
	tag   string
}

// replace deletes every rule whose tag matches and adds the given rules, in
// a single netlink batch so that packets see either the old or the new set
// and never a half-updated one. Rules are found by listing them first; if
// another process deletes one of them in between, the batch fails with
// ENOENT. Every writer through this package holds the table's lock, so
// that only happens when someone else (an admin's nft) edits the table; the
// batch is then retried on a fresh listing after a short random pause.
func (t *Tables) replace(match func(tag string) bool, add []newRule) error {
	unlock, err := t.lock()
	if err != nil {
		return err
	}
	defer unlock()
	const attempts = 8
	for i := 0; ; i++ {
		if i > 0 {
			time.Sleep(time.Duration(1+rand.IntN(5*i)) * time.Millisecond)
		}
		c, err := nftables.New()
		if err != nil {
			return err
		}
		existing, err := t.rules(c)
		if err != nil {
			return err
		}
		deleted := 0
		for _, r := range existing {
			if match(r.tag) {
				if err := c.DelRule(r.rule); err != nil {
					return err
				}
				deleted++
			}
		}
		for _, r := range add {
			c.AddRule(&nftables.Rule{
				Table:    t.table(),
				Chain:    t.chain(r.chain),
				Exprs:    r.exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, r.tag),
			})
		}
		err = c.Flush()
		if err == nil {
			return nil
		}
		if deleted > 0 && errors.Is(err, unix.ENOENT) && i+1 < attempts {
			continue
		}
		return fmt.Errorf("nft: update table %s: %w", t.Name, err)
	}
}

// Network is one bridge network.
type Network struct {
	Name     string
	Bridge   string
	Subnet   *net.IPNet
	Internal bool // no traffic leaves the bridge, none is masqueraded
}

func validName(kind, s string) error {
	if s == "" || len(s) > maxNameLen || strings.ContainsAny(s, ": \t\n\x00") {
		return fmt.Errorf("nft: invalid %s %q (1-%d characters, no ':' or spaces)", kind, s, maxNameLen)
	}
	return nil
}

func validBridge(s string) error {
	if s == "" || len(s) >= ifNameSize || strings.ContainsAny(s, "/ \t\n\x00") {
		return fmt.Errorf("nft: invalid bridge name %q", s)
	}
	return nil
}

func netTag(name string) string { return "net:" + name }

// networkRules returns the rules of one network, by chain.
func networkRules(n Network) []newRule {
	tag := netTag(n.Name)
	b := n.Bridge
	var rs []newRule
	add := func(chain string, e ...[]expr.Any) {
		rs = append(rs, newRule{chain: chain, exprs: join(e...), tag: tag})
	}
	accept := []expr.Any{verdict(expr.VerdictAccept)}
	drop := []expr.Any{verdict(expr.VerdictDrop)}
	masq := []expr.Any{masquerade()}
	eq, neq := expr.CmpOpEq, expr.CmpOpNeq

	if !n.Internal {
		// Outbound: containers share the host's address on the way out.
		// Traffic that stays on the bridge keeps its source.
		add(chainPostrouting, saddrNet(n.Subnet), oifname(neq, b), masq)
	}
	// Hairpin: a container reaching a published port (its own or a peer's
	// on the same bridge) through a host address is DNATed back onto the
	// bridge. Without masquerading the answer would go container to
	// container directly, bypass the reverse NAT, and be dropped by the
	// client as coming from an unexpected address.
	add(chainPostrouting, saddrNet(n.Subnet), oifname(eq, b), ctDNAT(), masq)

	if n.Internal {
		// First stage, so that no later accept (a published port of
		// another network, a reply) lets anything out of an internal
		// bridge.
		add(chainFwdInternal, iifname(eq, b), oifname(neq, b), drop)
	}
	// Containers on one network talk to each other (this only reaches the
	// IP forward hook when br_netfilter passes bridged frames to it).
	add(chainFwdAccept, iifname(eq, b), oifname(eq, b), accept)
	// Replies to connections the containers opened.
	add(chainFwdAccept, oifname(eq, b), ctEstablishedRelated(), accept)
	// Anything else entering the bridge: other hull networks, other
	// interfaces, the outside. Published ports were accepted in
	// forward-accept already.
	add(chainFwdIsolate, oifname(eq, b), drop)
	if !n.Internal {
		add(chainFwdEgress, iifname(eq, b), accept)
	}
	return rs
}

// AddNetwork adds (or replaces, atomically) the rules of a network.
func (t *Tables) AddNetwork(n Network) error {
	if err := validName("network name", n.Name); err != nil {
		return err
	}
	if err := validBridge(n.Bridge); err != nil {
		return err
	}
	if n.Subnet == nil || n.Subnet.IP.To4() == nil {
		return fmt.Errorf("nft: network %s: IPv4 subnet required", n.Name)
	}
	if ones, bits := n.Subnet.Mask.Size(); bits != 32 || ones == 0 {
		return fmt.Errorf("nft: network %s: invalid subnet %s", n.Name, n.Subnet)
	}
	tag := netTag(n.Name)
	return t.replace(func(s string) bool { return s == tag }, networkRules(n))
}

// RemoveNetwork removes every rule of the network. Removing a network that
// has no rules is not an error.
func (t *Tables) RemoveNetwork(name string) error {
	if err := validName("network name", name); err != nil {
		return err
	}
	tag := netTag(name)
	return t.replace(func(s string) bool { return s == tag }, nil)
}

// Networks lists the networks with rules in the table.
func (t *Tables) Networks() ([]string, error) {
	return t.names(func(tag string) (string, bool) {
		return strings.CutPrefix(tag, "net:")
	})
}

// Port is a published port.
type Port struct {
	HostIP        net.IP // nil or 0.0.0.0: every host address
	HostPort      uint16
	Proto         string // tcp or udp
	ContainerIP   net.IP
	ContainerPort uint16
	Bridge        string // bridge the container is attached to
}

func protoNum(p string) (byte, error) {
	switch p {
	case "tcp":
		return unix.IPPROTO_TCP, nil
	case "udp":
		return unix.IPPROTO_UDP, nil
	}
	return 0, fmt.Errorf("nft: unsupported protocol %q (tcp or udp)", p)
}

// hostIPv4 normalises a host IP: nil for "all addresses".
func hostIPv4(ip net.IP) (net.IP, error) {
	if ip == nil || ip.IsUnspecified() {
		return nil, nil
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4, nil
	}
	return nil, fmt.Errorf("nft: host IP %s is not IPv4", ip)
}

func ipString(ip net.IP) string {
	if ip == nil {
		return "0.0.0.0"
	}
	return ip.String()
}

// portSpec is what a port tag records about the host side.
type portSpec struct {
	owner  string
	proto  string
	hostIP net.IP // nil: all addresses
	port   uint16
}

func portTag(owner, proto string, hostIP net.IP, port uint16) string {
	return fmt.Sprintf("port:%s:%s:%s:%d", owner, proto, ipString(hostIP), port)
}

func parsePortTag(tag string) (portSpec, bool) {
	rest, ok := strings.CutPrefix(tag, "port:")
	if !ok {
		return portSpec{}, false
	}
	f := strings.Split(rest, ":")
	if len(f) != 4 {
		return portSpec{}, false
	}
	port, err := strconv.ParseUint(f[3], 10, 16)
	if err != nil {
		return portSpec{}, false
	}
	ip := net.ParseIP(f[2])
	if ip == nil {
		return portSpec{}, false
	}
	ip, _ = hostIPv4(ip)
	return portSpec{owner: f[0], proto: f[1], hostIP: ip, port: uint16(port)}, true
}

// overlaps reports whether two host bindings of the same protocol and port
// would catch the same packets.
func (p portSpec) overlaps(proto string, hostIP net.IP, port uint16) bool {
	return p.proto == proto && p.port == port &&
		(p.hostIP == nil || hostIP == nil || p.hostIP.Equal(hostIP))
}

var loopbackNet = &net.IPNet{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}

// portRules returns the rules publishing one port.
func portRules(owner string, p Port) ([]newRule, error) {
	proto, err := protoNum(p.Proto)
	if err != nil {
		return nil, err
	}
	hostIP, err := hostIPv4(p.HostIP)
	if err != nil {
		return nil, err
	}
	cip := p.ContainerIP.To4()
	if cip == nil {
		return nil, fmt.Errorf("nft: container IP %v is not IPv4", p.ContainerIP)
	}
	if p.HostPort == 0 || p.ContainerPort == 0 {
		return nil, fmt.Errorf("nft: port 0 cannot be published")
	}
	if err := validBridge(p.Bridge); err != nil {
		return nil, err
	}
	tag := portTag(owner, p.Proto, hostIP, p.HostPort)
	var rs []newRule
	add := func(chain string, e ...[]expr.Any) {
		rs = append(rs, newRule{chain: chain, exprs: join(e...), tag: tag})
	}
	dst := localDst()
	if hostIP != nil {
		dst = daddr(hostIP)
	}
	toContainer := join(daddr(cip), l4Dport(proto, p.ContainerPort))

	// Packets from elsewhere (outside, other containers, hairpin).
	add(chainPrerouting, dst, l4Dport(proto, p.HostPort), dnat(cip, p.ContainerPort))
	// Packets the host sends itself never pass prerouting.
	add(chainOutput, dst, l4Dport(proto, p.HostPort), dnat(cip, p.ContainerPort))
	// Let the DNATed connection through before forward-isolate drops
	// everything entering the bridge. ct status dnat makes sure only
	// connections that came in through the published port match, not
	// traffic addressed to the container directly.
	add(chainFwdAccept, oifname(expr.CmpOpEq, p.Bridge), toContainer, ctDNAT(), []expr.Any{verdict(expr.VerdictAccept)})
	// 127.0.0.1:HostPort from the host is DNATed with its loopback source
	// kept; the container could not answer it, so give it the bridge
	// address instead. (Routing such a packet out of the bridge at all
	// needs net.ipv4.conf.<bridge>.route_localnet=1, set by the caller.)
	add(chainPostrouting, oifname(expr.CmpOpEq, p.Bridge), saddrNet(loopbackNet), toContainer, []expr.Any{masquerade()})
	return rs, nil
}

// AddPorts publishes ports for an owner (a container ID), replacing any
// rules the owner already had, all in one atomic netlink batch: either all
// ports are published or none is.
func (t *Tables) AddPorts(owner string, ports []Port) error {
	if err := validName("owner", owner); err != nil {
		return err
	}
	var add []newRule
	for _, p := range ports {
		rs, err := portRules(owner, p)
		if err != nil {
			return fmt.Errorf("%w (owner %s, port %d/%s)", err, owner, p.HostPort, p.Proto)
		}
		add = append(add, rs...)
	}
	prefix := "port:" + owner + ":"
	return t.replace(func(s string) bool { return strings.HasPrefix(s, prefix) }, add)
}

// RemovePorts removes every published port of an owner. An owner without
// rules is not an error.
func (t *Tables) RemovePorts(owner string) error {
	if err := validName("owner", owner); err != nil {
		return err
	}
	prefix := "port:" + owner + ":"
	return t.replace(func(s string) bool { return strings.HasPrefix(s, prefix) }, nil)
}

// Owners lists the owners with published ports, sorted.
func (t *Tables) Owners() ([]string, error) {
	return t.names(func(tag string) (string, bool) {
		p, ok := parsePortTag(tag)
		return p.owner, ok
	})
}

// names collects the distinct names extracted from rule tags, sorted.
func (t *Tables) names(extract func(tag string) (string, bool)) ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	rs, err := t.rules(c)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range rs {
		if n, ok := extract(r.tag); ok && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}
