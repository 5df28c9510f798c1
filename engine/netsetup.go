package engine

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hullproject/hull/network"
	"github.com/hullproject/hull/network/netns"
	"github.com/hullproject/hull/runtime/container"
)

// NetworkSettings is a container's networking, with Docker's names.
type NetworkSettings struct {
	Networks   map[string]*network.Endpoint     `json:"Networks"`
	Ports      map[string][]network.PortBinding `json:"Ports"`
	SandboxKey string                           `json:"SandboxKey"`
	// NetNS is the name under /run/netns (`ip netns exec NAME …`), kept
	// so a renamed container's namespace is still found.
	NetNS string `json:"NetNS,omitempty"`
}

// Networks is the engine's network manager.
func (e *Engine) Networks() *network.Manager {
	if e.nets == nil {
		e.nets = network.NewManager(e.DB(), e.RunRoot)
	}
	return e.nets
}

// usesBridge reports whether a network mode means a network of bridges
// (the default one or a user network) rather than none, host or another
// container's.
func usesBridge(mode string) bool {
	return mode != "none" && mode != "host" && !strings.HasPrefix(mode, "container:")
}

// netnsName is the name the container's network namespace has under
// /run/netns, so `ip netns exec hull-web …` works as in Docker's examples.
func netnsName(c *Container) string { return "hull-" + c.Name }

// setupNetwork gives a starting container its network: for bridge modes a
// named network namespace, an interface on each of its networks, its
// published ports; it returns the path of the namespace to join ("" for a
// new empty one, as --network none has). What it made is recorded, so
// teardownNetwork undoes it even after a crash.
func (e *Engine) setupNetwork(c *Container) (string, error) {
	mode := c.Host.NetworkMode
	switch {
	case mode == "none":
		return "", nil
	case mode == "host":
		return "", nil
	case strings.HasPrefix(mode, "container:"):
		other, err := e.Resolve(strings.TrimPrefix(mode, "container:"))
		if err != nil {
			return "", err
		}
		if !e.State(other).Running {
			return "", fmt.Errorf("%w: cannot join the network of container %s: it is not running", ErrConflict, other.Name)
		}
		if other.Net.SandboxKey != "" {
			return other.Net.SandboxKey, nil
		}
		ctr, err := e.RuntimeContainer(other)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("/proc/%d/ns/net", ctr.State.Pid), nil
	}
	// Leftovers of an earlier run that nobody cleaned (a crash).
	if len(c.Net.Networks) > 0 || netns.Exists(netnsName(c)) {
		e.teardownNetwork(c)
	}
	container.Tracef("engine: network leftovers checked")
	name := netnsName(c)
	path, err := netns.Create(name)
	if err != nil {
		return "", fmt.Errorf("network namespace %s: %w", name, err)
	}
	settings := &NetworkSettings{Networks: map[string]*network.Endpoint{}, Ports: map[string][]network.PortBinding{}, SandboxKey: path, NetNS: name}
	ok := false
	defer func() {
		if !ok {
			e.undoNetwork(c, settings)
		}
	}()
	nets := append([]string{mode}, c.ExtraNetworks...)
	for i, ref := range nets {
		n, err := e.Networks().Get(ref)
		if err != nil {
			return "", err
		}
		var preferred net.IP
		if ip := c.LastIPs[n.Name]; ip != "" {
			preferred = net.ParseIP(ip)
		}
		// The default network has no DNS; elsewhere the container answers
		// to its name and the aliases it was given on that network.
		dnsNames := []string{c.Name}
		if !n.Default() {
			if i == 0 {
				dnsNames = append(dnsNames, c.Aliases...)
			}
			dnsNames = append(dnsNames, c.NetworkAliases[n.Name]...)
		}
		container.Tracef("engine: netns created, network %s found", n.Name)
		ep, err := e.Networks().Connect(n.Name, network.ConnectOptions{
			ContainerID: c.ID, Names: dnsNames, NetNS: path, IfName: fmt.Sprintf("eth%d", i), Preferred: preferred,
			DefaultRoute: i == 0,
		})
		if err != nil {
			return "", err
		}
		settings.Networks[n.Name] = ep
		if i == 0 && len(c.Host.PortBindings) > 0 {
			bound, err := e.Networks().Publish(c.ID, n, net.ParseIP(ep.IPAddress), c.Host.PortBindings)
			if err != nil {
				return "", err
			}
			for _, b := range bound {
				settings.Ports[b.Key()] = append(settings.Ports[b.Key()], b)
			}
		}
	}
	ok = true
	// Recorded with the container's running state, in the caller's next
	// update (one database write, not two); a crash before it leaves the
	// namespace, which the next start finds and cleans.
	c.Net = *settings
	if c.LastIPs == nil {
		c.LastIPs = map[string]string{}
	}
	for name, ep := range settings.Networks {
		c.LastIPs[name] = ep.IPAddress
	}
	return path, nil
}

// undoNetwork removes what setupNetwork made before it failed.
func (e *Engine) undoNetwork(c *Container, s *NetworkSettings) {
	e.Networks().Unpublish(c.ID)
	for name := range s.Networks {
		e.Networks().Disconnect(name, c.ID)
	}
	netns.Delete(s.NetNS)
}

// teardownNetwork releases a stopped container's network: published
// ports, interfaces and leases, and its namespace. It is safe to call
// again and after a crash.
func (e *Engine) teardownNetwork(c *Container) {
	if !usesBridge(c.Host.NetworkMode) {
		return
	}
	if len(c.Host.PortBindings) > 0 || len(c.Net.Ports) > 0 {
		e.Networks().Unpublish(c.ID)
	}
	nets := append([]string{c.Host.NetworkMode}, c.ExtraNetworks...)
	for name := range c.Net.Networks {
		nets = append(nets, name)
	}
	// The namespace goes first: with it the kernel removes the veth pairs
	// (in the background); then the leases are freed. Its recorded name
	// counts (the container may have been renamed since it started).
	if c.Net.NetNS != "" {
		netns.Delete(c.Net.NetNS)
	} else {
		netns.Delete(netnsName(c))
	}
	for _, ref := range nets {
		if n, err := e.Networks().Get(ref); err == nil {
			e.Networks().Release(n.Name, c.ID)
		}
	}
	if len(c.Net.Networks) > 0 || c.Net.SandboxKey != "" {
		if !c.Host.AutoRemove {
			e.update(c.ID, func(cur *Container) error {
				cur.Net = NetworkSettings{}
				return nil
			})
		}
		c.Net = NetworkSettings{}
	}
}

// writeNetFiles makes /etc/hosts and /etc/resolv.conf for a container on
// bridge networks: its own address and names, --add-host entries, and as
// name server the network's DNS responder (user networks) or the host's
// (the default network), or --dns.
func (e *Engine) writeNetFiles(c *Container, dir string) error {
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	var userDNS string
	names := []string{}
	for name := range c.Net.Networks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ep := c.Net.Networks[name]
		fmt.Fprintf(&hosts, "%s\t%s %s\n", ep.IPAddress, c.Config.Hostname, c.Name)
		if name != network.DefaultName && userDNS == "" && name == c.Host.NetworkMode {
			userDNS = ep.Gateway
		}
	}
	for _, h := range c.Host.ExtraHosts {
		host, ip, _ := strings.Cut(h, ":")
		fmt.Fprintf(&hosts, "%s\t%s\n", ip, host)
	}
	var resolv strings.Builder
	switch {
	case len(c.Host.DNS) > 0:
		for _, s := range c.Host.DNS {
			fmt.Fprintf(&resolv, "nameserver %s\n", s)
		}
	case userDNS != "":
		fmt.Fprintf(&resolv, "nameserver %s\n", userDNS)
	default:
		resolv.WriteString(hostResolvConf())
	}
	for name, data := range map[string]string{"hosts": hosts.String(), "resolv.conf": resolv.String()} {
		if err := writeFileAtomic(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ConnectNetwork attaches a container to one more network: at once when it
// runs, else when it starts.
func (e *Engine) ConnectNetwork(netRef, ref string, aliases []string) error {
	n, err := e.Networks().Get(netRef)
	if err != nil {
		return err
	}
	c, err := e.Resolve(ref)
	if err != nil {
		return err
	}
	if !usesBridge(c.Host.NetworkMode) {
		return fmt.Errorf("%w: container %s uses network mode %s and cannot join networks", ErrConflict, c.Name, c.Host.NetworkMode)
	}
	if c.Host.NetworkMode == n.Name || contains(c.ExtraNetworks, n.Name) {
		return fmt.Errorf("%w: container %s is already connected to network %s", ErrConflict, c.Name, n.Name)
	}
	if e.State(c).Running {
		used := map[string]bool{}
		for _, ep := range c.Net.Networks {
			used[ep.IfName] = true
		}
		ifName := "eth0"
		for i := 1; used[ifName]; i++ {
			ifName = fmt.Sprintf("eth%d", i)
		}
		ep, err := e.Networks().Connect(n.Name, network.ConnectOptions{
			ContainerID: c.ID, Names: append([]string{c.Name}, aliases...), NetNS: c.Net.SandboxKey, IfName: ifName,
		})
		if err != nil {
			return err
		}
		_, err = e.update(c.ID, func(cur *Container) error {
			joinNetwork(cur, n.Name, aliases)
			if cur.Net.Networks == nil {
				cur.Net.Networks = map[string]*network.Endpoint{}
			}
			cur.Net.Networks[n.Name] = ep
			return nil
		})
		return err
	}
	_, err = e.update(c.ID, func(cur *Container) error {
		joinNetwork(cur, n.Name, aliases)
		return nil
	})
	return err
}

// joinNetwork records a `network connect` in the container's record.
func joinNetwork(c *Container, name string, aliases []string) {
	c.ExtraNetworks = append(c.ExtraNetworks, name)
	if len(aliases) > 0 {
		if c.NetworkAliases == nil {
			c.NetworkAliases = map[string][]string{}
		}
		c.NetworkAliases[name] = append([]string(nil), aliases...)
	}
}

// DisconnectNetwork detaches a container from a network.
func (e *Engine) DisconnectNetwork(netRef, ref string) error {
	n, err := e.Networks().Get(netRef)
	if err != nil {
		return err
	}
	c, err := e.Resolve(ref)
	if err != nil {
		return err
	}
	if c.Host.NetworkMode == n.Name {
		if e.State(c).Running {
			// Its namespace, ports and other networks hang on this one.
			return fmt.Errorf("%w: container %s runs on network %s: stop it first to disconnect it from its own network", ErrConflict, c.Name, n.Name)
		}
		_, err = e.update(c.ID, func(cur *Container) error {
			cur.Host.NetworkMode = "none"
			delete(cur.Net.Networks, n.Name)
			return nil
		})
		return err
	}
	if !contains(c.ExtraNetworks, n.Name) {
		return fmt.Errorf("container %s is not connected to network %s", c.Name, n.Name)
	}
	if e.State(c).Running {
		if err := e.Networks().Disconnect(n.Name, c.ID); err != nil {
			return err
		}
	}
	_, err = e.update(c.ID, func(cur *Container) error {
		var keep []string
		for _, x := range cur.ExtraNetworks {
			if x != n.Name {
				keep = append(keep, x)
			}
		}
		cur.ExtraNetworks = keep
		delete(cur.Net.Networks, n.Name)
		delete(cur.NetworkAliases, n.Name)
		return nil
	})
	return err
}

// RemoveNetwork removes a network no container uses (stopped containers
// that name it count as users, as in Docker).
func (e *Engine) RemoveNetwork(ref string) error {
	n, err := e.Networks().Get(ref)
	if err != nil {
		return err
	}
	list, err := e.List()
	if err != nil {
		return err
	}
	for _, c := range list {
		if c.Host.NetworkMode == n.Name || contains(c.ExtraNetworks, n.Name) {
			return fmt.Errorf("%w: error while removing network: network %s has active endpoints (%s)", ErrConflict, n.Name, c.Name)
		}
	}
	return e.Networks().Remove(n.Name)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// hostResolvConf is the host's resolv.conf for a container: without
// loopback name servers (they would be the container's own loopback). When
// only loopback ones are listed (systemd-resolved's 127.0.0.53), the
// servers behind them are taken, and failing those Docker's fallback.
func hostResolvConf() string {
	for _, path := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var b strings.Builder
		servers := 0
		for _, line := range strings.Split(string(raw), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "nameserver" {
				if strings.HasPrefix(f[1], "127.") || f[1] == "::1" {
					continue
				}
				servers++
			}
			if strings.TrimSpace(line) != "" {
				b.WriteString(line + "\n")
			}
		}
		if servers > 0 {
			return b.String()
		}
	}
	return "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
}
