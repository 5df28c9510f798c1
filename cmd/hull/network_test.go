package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// netRoot is engineRoot plus checks that nothing of hull's networking is
// left when the test ends: no veth, no namespace, no published-port rule.
func netRoot(t *testing.T) (string, func(args ...string) result) {
	t.Helper()
	root, h := engineRoot(t)
	t.Cleanup(func() {
		ids := strings.Fields(h("ps", "-a", "-q", "--no-trunc").stdout)
		names := strings.Fields(h("ps", "-a", "--format", "{{.Names}}").stdout)
		if len(ids) > 0 {
			h(append([]string{"rm", "-f", "-v"}, ids...)...)
		}
		h("network", "prune", "-f")
		// Veth pairs go with their namespace, in the kernel's background.
		time.Sleep(300 * time.Millisecond)
		links, _ := exec.Command("ip", "-br", "link").Output()
		nsList, _ := exec.Command("ip", "netns", "list").Output()
		rules, _ := exec.Command("nft", "list", "table", "ip", "hull").Output()
		for _, id := range ids {
			if strings.Contains(string(links), "hv"+id[:7]) {
				t.Errorf("veth of %s left behind", id[:12])
			}
			if strings.Contains(string(rules), "port:"+id) {
				t.Errorf("published-port rule of %s left behind", id[:12])
			}
		}
		for _, n := range names {
			for _, line := range strings.Split(string(nsList), "\n") {
				if f := strings.Fields(line); len(f) > 0 && f[0] == "hull-"+n {
					t.Errorf("network namespace hull-%s left behind", n)
				}
			}
		}
	})
	return root, h
}

// outsideHost makes a network namespace playing another machine: joined
// to the host by a veth pair on a /30 of its own, with a route to every
// hull subnet through the host. It returns the namespace and the host's
// address as the outside host sees it.
func outsideHost(t *testing.T) (ns, hostAddr, peer string) {
	t.Helper()
	var b [3]byte
	rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	ns = "ho" + tag
	hostIf, nsIf := "hoh"+tag, "hon"+tag
	third := int(b[0]) % 200
	hostAddr = fmt.Sprintf("10.197.%d.1", third)
	peer = fmt.Sprintf("10.197.%d.2", third)
	cmds := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns},
		{"ip", "addr", "add", hostAddr + "/30", "dev", hostIf},
		{"ip", "link", "set", hostIf, "up"},
		{"ip", "-n", ns, "addr", "add", peer + "/30", "dev", nsIf},
		{"ip", "-n", ns, "link", "set", nsIf, "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "route", "add", "default", "via", hostAddr},
	}
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", hostIf).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	})
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	return ns, hostAddr, peer
}

// inNS runs a command in a named network namespace.
func inNS(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

func fetch(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestPublishedPorts(t *testing.T) {
	_, h := netRoot(t)
	port := freeTCPPort(t)
	mustH(t, h("run", "-d", "--name", "web", "-p", fmt.Sprintf("%d:80", port), "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"), "run -d")
	hostname := strings.TrimSpace(mustH(t, h("exec", "web", "hostname"), "exec"))
	// Through 127.0.0.1, through the bridge's address, and directly.
	gw := strings.TrimSpace(mustH(t, h("inspect", "-f", "{{.NetworkSettings.Gateway}}", "web"), "inspect"))
	ip := strings.TrimSpace(mustH(t, h("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"), "inspect"))
	for _, url := range []string{
		fmt.Sprintf("http://127.0.0.1:%d/hostname", port),
		fmt.Sprintf("http://%s:%d/hostname", gw, port),
		fmt.Sprintf("http://%s:80/hostname", ip),
	} {
		var body string
		var err error
		for i := 0; i < 20; i++ {
			if body, err = fetch(url); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil || strings.TrimSpace(body) != hostname {
			t.Errorf("%s: %q %v", url, body, err)
		}
	}
	// From another machine: a namespace routed through the host.
	ns, hostAddr, _ := outsideHost(t)
	out, err := inNS(ns, "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://%s:%d/hostname", hostAddr, port))
	if err != nil || strings.TrimSpace(out) != hostname {
		t.Errorf("from the outside host: %q %v", out, err)
	}
	if out := mustH(t, h("port", "web", "80"), "port"); out != fmt.Sprintf("0.0.0.0:%d\n", port) {
		t.Errorf("port: %q", out)
	}
	if out := mustH(t, h("ps", "--format", "{{.Ports}}"), "ps"); out != fmt.Sprintf("0.0.0.0:%d->80/tcp\n", port) {
		t.Errorf("ps ports: %q", out)
	}
	// The port is taken now: a clear error, and nothing half-made.
	r := h("run", "-d", "--name", "clash", "-p", fmt.Sprintf("%d:80", port), "busybox", "sleep", "30")
	if r.code != 125 || !strings.Contains(r.stderr, "already allocated") {
		t.Errorf("taken port: %d %s", r.code, r.stderr)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "hull-clash") {
		t.Errorf("a failed start left its namespace")
	}
	mustH(t, h("rm", "clash"), "rm clash")
	// UDP through a published port, to an echo server (Debian's busybox
	// has no UDP server: its nc lacks -u).
	uport := freeTCPPort(t)
	echo := filepath.Join(filepath.Dir(hullBin), "udpecho")
	mustH(t, h("run", "-d", "--name", "udp", "-v", echo+":/udpecho:ro", "-p", fmt.Sprintf("%d:9999/udp", uport), "busybox", "/udpecho", "9999"), "run -d")
	var echoed string
	for i := 0; i < 30 && echoed == ""; i++ {
		conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", uport))
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("over udp\n"))
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 64)
		if n, err := conn.Read(buf); err == nil {
			echoed = string(buf[:n])
		}
		conn.Close()
	}
	if echoed != "over udp\n" {
		t.Errorf("udp echo through the published port: %q", echoed)
	}
	// -P publishes every exposed port on a random host port.
	mustH(t, h("run", "-d", "--name", "all", "--expose", "80", "-P", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"), "run -P")
	mapped := strings.TrimSpace(mustH(t, h("port", "all", "80/tcp"), "port"))
	if _, p, _ := strings.Cut(mapped, ":"); p == "" || p == "0" {
		t.Errorf("-P: %q", mapped)
	}
	mustH(t, h("rm", "-f", "web", "udp", "all"), "rm")
}

func TestUserNetworksDNSAndIsolation(t *testing.T) {
	_, h := netRoot(t)
	mustH(t, h("network", "create", "front"), "network create")
	mustH(t, h("network", "create", "--subnet", "10.96.7.0/24", "--gateway", "10.96.7.254", "back"), "network create")
	mustH(t, h("network", "create", "--internal", "sealed"), "network create")
	if out := mustH(t, h("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}", "back"), "inspect"); out != "10.96.7.0/24 10.96.7.254\n" {
		t.Errorf("network inspect: %q", out)
	}
	mustH(t, h("run", "-d", "--name", "api", "--network", "front", "--network-alias", "service", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"), "run api")
	mustH(t, h("run", "-d", "--name", "db", "--network", "front", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"), "run db")
	mustH(t, h("run", "-d", "--name", "other", "--network", "back", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"), "run other")
	time.Sleep(300 * time.Millisecond)
	// By name and by alias, from each other.
	for _, target := range []string{"api", "service"} {
		out := mustH(t, h("exec", "db", "timeout", "3", "wget", "-q", "-O", "-", "http://"+target+"/hostname"), "exec wget "+target)
		if strings.TrimSpace(out) != strings.TrimSpace(mustH(t, h("exec", "api", "hostname"), "hostname")) {
			t.Errorf("db → %s: %q", target, out)
		}
	}
	if out := mustH(t, h("exec", "api", "timeout", "3", "wget", "-q", "-O", "-", "http://db/hostname"), "exec"); out == "" {
		t.Error("api → db: nothing")
	}
	// Another network: neither its name resolves nor its address answers.
	otherIP := strings.TrimSpace(mustH(t, h("inspect", "-f", "{{.NetworkSettings.Networks.back.IPAddress}}", "other"), "inspect"))
	if !strings.HasPrefix(otherIP, "10.96.7.") {
		t.Fatalf("other's address %q", otherIP)
	}
	if r := h("exec", "db", "timeout", "2", "wget", "-q", "-O", "-", "http://other/hostname"); r.code == 0 {
		t.Error("a container resolved and reached a container of another network by name")
	}
	if r := h("exec", "db", "timeout", "2", "wget", "-q", "-O", "-", "http://"+otherIP+"/hostname"); r.code == 0 {
		t.Error("a container reached a container of another network by address")
	}
	// connect puts it on the other network too: now it can.
	mustH(t, h("network", "connect", "--alias", "store", "back", "db"), "network connect")
	if r := h("network", "connect", "back", "db"); r.code != 125 {
		t.Errorf("connecting twice: %d", r.code)
	}
	if out := mustH(t, h("exec", "db", "timeout", "3", "wget", "-q", "-O", "-", "http://"+otherIP+"/hostname"), "exec"); out == "" {
		t.Error("after connect: nothing")
	}
	// The alias given to connect answers on that network, also after a
	// restart (Docker keeps it with the endpoint); --network-alias names
	// stay on the network they were given for.
	dbHost := strings.TrimSpace(mustH(t, h("exec", "db", "hostname"), "hostname"))
	for round := 0; round < 2; round++ {
		out := mustH(t, h("exec", "other", "timeout", "3", "wget", "-q", "-O", "-", "http://store/hostname"), "other → store")
		if strings.TrimSpace(out) != dbHost {
			t.Errorf("round %d: other → store: %q, want %q", round, out, dbHost)
		}
		if round == 0 {
			mustH(t, h("restart", "-t", "1", "db"), "restart db")
			time.Sleep(300 * time.Millisecond)
		}
	}
	mustH(t, h("network", "connect", "back", "api"), "network connect api")
	if r := h("exec", "other", "timeout", "2", "wget", "-q", "-O", "-", "http://service/hostname"); r.code == 0 {
		t.Error("api's --network-alias for front answered on back")
	}
	mustH(t, h("network", "disconnect", "back", "api"), "network disconnect api")
	mustH(t, h("network", "disconnect", "back", "db"), "network disconnect")
	// An internal network has no way out; a normal one does.
	ns, _, peer := outsideHost(t)
	srv := exec.Command("ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", "8099", "-h", "/etc")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	time.Sleep(200 * time.Millisecond)
	if r := h("run", "--rm", "--network", "front", "busybox", "timeout", "3", "wget", "-q", "-O", "/dev/null", "http://"+peer+":8099/hostname"); r.code != 0 {
		t.Errorf("a user network cannot reach the outside host: %s", r.stderr)
	}
	if r := h("run", "--rm", "--network", "sealed", "busybox", "timeout", "2", "wget", "-q", "-O", "/dev/null", "http://"+peer+":8099/hostname"); r.code == 0 {
		t.Error("an --internal network reached the outside host")
	}
	// Bad input, nothing half-made.
	before := mustH(t, h("network", "ls", "-q"), "ls")
	for _, args := range [][]string{
		{"network", "create", "--subnet", "10.96.7.0/25", "overlap"},
		{"network", "create", "--subnet", "192.0.2.0/24", "hostnet"},
		{"network", "create", "--subnet", "10.96.300.0/24", "bad"},
		{"network", "create", "--subnet", "10.96.8.0/24", "--gateway", "10.96.9.1", "badgw"},
		{"network", "create", "front"},
		{"network", "rm", "front"},
		{"network", "rm", "nosuchnet"},
		{"run", "--rm", "--network", "nosuchnet", "busybox", "true"},
		{"network", "connect", "nosuchnet", "db"},
	} {
		if r := h(args...); r.code != 125 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%v: exit %d %q", args, r.code, r.stderr)
		}
	}
	if after := mustH(t, h("network", "ls", "-q"), "ls"); after != before {
		t.Errorf("networks changed:\n%s\n%s", before, after)
	}
	mustH(t, h("rm", "-f", "api", "db", "other"), "rm")
	mustH(t, h("network", "rm", "front", "back", "sealed"), "network rm")
}

func TestNetworkLifecycleNoLeaks(t *testing.T) {
	_, h := netRoot(t)
	// A restarted container keeps its address.
	mustH(t, h("run", "-d", "--name", "keep", "busybox", "sleep", "300"), "run -d")
	ip1 := strings.TrimSpace(mustH(t, h("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "keep"), "inspect"))
	if out, err := exec.Command("ip", "netns", "exec", "hull-keep", "ip", "-br", "addr", "show", "eth0").CombinedOutput(); err != nil || !strings.Contains(string(out), ip1) {
		t.Errorf("ip netns exec hull-keep: %q %v", out, err)
	}
	mustH(t, h("stop", "-t", "0", "keep"), "stop")
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "hull-keep") {
		t.Errorf("a stopped container kept its namespace")
	}
	mustH(t, h("start", "keep"), "start")
	if ip2 := strings.TrimSpace(mustH(t, h("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "keep"), "inspect")); ip2 != ip1 {
		t.Errorf("address after restart %s, before %s", ip2, ip1)
	}
	// A killed monitor and then a dead container: ps reaps its network.
	id := strings.TrimSpace(mustH(t, h("inspect", "-f", "{{.Id}}", "keep"), "inspect"))
	out, _ := exec.Command("pgrep", "-f", "hull-monitor --id "+id).Output()
	exec.Command("kill", "-9", strings.TrimSpace(string(out))).Run()
	pid := strings.TrimSpace(mustH(t, h("inspect", "-f", "{{.State.Pid}}", "keep"), "inspect"))
	exec.Command("kill", "-9", pid).Run()
	waitFor(t, "exited", func() bool { return strings.TrimSpace(h("ps", "-a", "--format", "{{.State}}").stdout) == "exited" })
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), "hull-keep") {
		t.Errorf("a container whose monitor was killed kept its namespace")
	}
	mustH(t, h("rm", "keep"), "rm")
	// Many containers come and go; nothing stays. (Links are compared
	// with those before: other things on the machine may have their own.)
	hvLinks := func() map[string]bool {
		out, _ := exec.Command("ip", "-br", "link").Output()
		set := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "hv") {
				set[f[0]] = true
			}
		}
		return set
	}
	before := hvLinks()
	prior, _ := os.ReadDir("/run/hull-ipam/hull0")
	claimsBefore := len(prior)
	n := 500
	if testing.Short() {
		n = 50
	}
	for i := 0; i < n; i++ {
		if r := h("run", "--rm", "busybox", "true"); r.code != 0 {
			t.Fatalf("run %d: %s", i, r.stderr)
		}
	}
	leases := mustH(t, h("network", "inspect", "-f", "{{len .Containers}}", "bridge"), "inspect")
	if leases != "0\n" {
		t.Errorf("containers still on the network: %q", leases)
	}
	// Nor are any of its addresses still claimed machine-wide.
	if claims, _ := os.ReadDir("/run/hull-ipam/hull0"); len(claims) > claimsBefore {
		t.Errorf("%d machine-wide address claims left after %d runs (%d before)", len(claims), n, claimsBefore)
	}
	// The kernel removes a namespace's veth pairs in the background once
	// the namespace is gone: give it a moment.
	var left []string
	for i := 0; i < 50; i++ {
		left = left[:0]
		for l := range hvLinks() {
			if !before[l] {
				left = append(left, l)
			}
		}
		if len(left) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, l := range left {
		t.Errorf("veth %s left after %d runs", l, n)
	}
	// The pool is whole: a new container gets an address again.
	if out := mustH(t, h("run", "--rm", "busybox", "ip", "addr", "show", "eth0"), "run"); !strings.Contains(out, "10.88.") {
		t.Errorf("no address after %d runs: %q", n, out)
	}
}

func TestHostsResolvAndDNSFlags(t *testing.T) {
	_, h := netRoot(t)
	out := mustH(t, h("run", "--rm", "--name", "files", "--add-host", "db.example:10.1.2.3", "--dns", "10.9.9.9", "busybox",
		"sh", "-c", "cat /etc/hosts; echo --; cat /etc/resolv.conf; echo --; hostname"), "run")
	hostsPart, rest, _ := strings.Cut(out, "--\n")
	resolv, hostname, _ := strings.Cut(rest, "--\n")
	if !strings.Contains(hostsPart, "10.1.2.3\tdb.example") || !strings.Contains(hostsPart, "10.88.") || !strings.Contains(hostsPart, "files") {
		t.Errorf("/etc/hosts:\n%s", hostsPart)
	}
	if strings.TrimSpace(resolv) != "nameserver 10.9.9.9" {
		t.Errorf("/etc/resolv.conf with --dns: %q", resolv)
	}
	if !strings.Contains(hostsPart, strings.TrimSpace(hostname)) {
		t.Errorf("hostname %q not in /etc/hosts", hostname)
	}
	// Without --dns on the default network: the host's servers, never a
	// loopback one.
	out = mustH(t, h("run", "--rm", "busybox", "cat", "/etc/resolv.conf"), "run")
	if strings.Contains(out, "nameserver 127.") {
		t.Errorf("loopback name server in a container: %q", out)
	}
	if r := h("run", "--rm", "--add-host", "nocolon", "busybox", "true"); r.code != 125 {
		t.Errorf("bad --add-host: %d", r.code)
	}
	// MTU of the host's default route.
	if out := mustH(t, h("run", "--rm", "busybox", "cat", "/sys/class/net/eth0/mtu"), "run"); strings.TrimSpace(out) == "" {
		t.Errorf("no mtu: %q", out)
	}
}

func TestNetworkContainerMode(t *testing.T) {
	_, h := netRoot(t)
	mustH(t, h("run", "-d", "--name", "owner", "busybox", "httpd", "-f", "-p", "8080", "-h", "/etc"), "run -d")
	ip := strings.TrimSpace(mustH(t, h("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "owner"), "inspect"))
	// A second container in the first one's network namespace sees its
	// address and reaches its server on localhost.
	out := mustH(t, h("run", "--rm", "--network", "container:owner", "busybox", "sh", "-c",
		"ip addr show eth0 | grep -o 'inet [0-9.]*'; timeout 3 wget -q -O - http://127.0.0.1:8080/hostname"), "run container:")
	if !strings.Contains(out, "inet "+ip) || !strings.Contains(out, strings.TrimSpace(mustH(t, h("exec", "owner", "hostname"), "exec"))) {
		t.Errorf("--network container:owner: %q (owner at %s)", out, ip)
	}
	if r := h("run", "--rm", "--network", "container:nosuch", "busybox", "true"); r.code != 125 {
		t.Errorf("container: of an unknown container: %d", r.code)
	}
	mustH(t, h("rm", "-f", "owner"), "rm")
}

// TestTwoStoresShareTheDefaultBridge: two stores (two --root) put
// containers on the same hull0; each keeps its own leases, and the
// machine-wide claims keep their addresses apart. The claims go with the
// containers.
func TestTwoStoresShareTheDefaultBridge(t *testing.T) {
	_, h1 := netRoot(t)
	_, h2 := netRoot(t)
	ips := map[string]string{}
	for i, h := range []func(...string) result{h1, h2, h1, h2} {
		name := fmt.Sprintf("share%d", i)
		mustH(t, h("run", "-d", "--name", name, "busybox", "sleep", "300"), "run "+name)
		ip := strings.TrimSpace(mustH(t, h("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name), "inspect"))
		if other, dup := ips[ip]; dup {
			t.Errorf("%s and %s, of two stores, both got %s", other, name, ip)
		}
		ips[ip] = name
		if _, err := os.Stat(filepath.Join("/run/hull-ipam/hull0", ip)); err != nil {
			t.Errorf("no machine-wide claim of %s: %v", ip, err)
		}
	}
	// They reach each other across the stores, as containers of one
	// network do.
	var first string
	for ip, name := range ips {
		if name == "share1" {
			first = ip
		}
	}
	if r := h1("exec", "share0", "ping", "-c", "1", "-W", "2", first); r.code != 0 {
		t.Errorf("share0 → share1 (%s) of the other store: %s%s", first, r.stdout, r.stderr)
	}
	mustH(t, h1("rm", "-f", "share0", "share2"), "rm")
	mustH(t, h2("rm", "-f", "share1", "share3"), "rm")
	for ip := range ips {
		if _, err := os.Stat(filepath.Join("/run/hull-ipam/hull0", ip)); err == nil {
			t.Errorf("the claim of %s outlived its container", ip)
		}
	}
}
