package nft

import (
	"net"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
)

// Tests in this file need no privileges: they check how rules and tags are
// built, not what the kernel does with them (traffic_test.go does that).

func TestPortTagRoundTrip(t *testing.T) {
	for _, ip := range []net.IP{nil, net.ParseIP("127.0.0.1"), net.ParseIP("10.198.3.4")} {
		tag := portTag("abc123", "udp", ip, 8080)
		p, ok := parsePortTag(tag)
		if !ok {
			t.Fatalf("parsePortTag(%q) failed", tag)
		}
		if p.owner != "abc123" || p.proto != "udp" || p.port != 8080 || !p.hostIP.Equal(ip) {
			t.Fatalf("parsePortTag(%q) = %+v", tag, p)
		}
	}
	for _, bad := range []string{"net:x", "port:a:tcp:0.0.0.0", "port:a:tcp:nope:80", "port:a:tcp:1.2.3.4:x", "port:a:tcp:1.2.3.4:70000"} {
		if _, ok := parsePortTag(bad); ok {
			t.Errorf("parsePortTag(%q) accepted", bad)
		}
	}
}

func TestOverlaps(t *testing.T) {
	lo := net.ParseIP("127.0.0.1").To4()
	other := net.ParseIP("10.198.0.1").To4()
	all := portSpec{proto: "tcp", port: 80}
	one := portSpec{proto: "tcp", hostIP: lo, port: 80}
	cases := []struct {
		p     portSpec
		proto string
		ip    net.IP
		port  uint16
		want  bool
	}{
		{all, "tcp", nil, 80, true},
		{all, "tcp", lo, 80, true},
		{one, "tcp", nil, 80, true},
		{one, "tcp", lo, 80, true},
		{one, "tcp", other, 80, false},
		{all, "udp", nil, 80, false},
		{all, "tcp", nil, 81, false},
	}
	for i, c := range cases {
		if got := c.p.overlaps(c.proto, c.ip, c.port); got != c.want {
			t.Errorf("case %d: overlaps = %v, want %v", i, got, c.want)
		}
	}
}

func TestValidation(t *testing.T) {
	for _, n := range []string{"", "a:b", "a b", strings.Repeat("x", maxNameLen+1)} {
		if validName("owner", n) == nil {
			t.Errorf("validName(%q) accepted", n)
		}
	}
	if validBridge("abcdefghijklmnop") == nil {
		t.Error("16-character bridge name accepted")
	}
	tb := New("unused")
	_, v6, _ := net.ParseCIDR("fd00::/64")
	if err := tb.AddNetwork(Network{Name: "n", Bridge: "br", Subnet: v6}); err == nil {
		t.Error("IPv6 subnet accepted")
	}
	good := Port{HostPort: 80, Proto: "tcp", ContainerIP: net.ParseIP("10.198.0.2"), ContainerPort: 80, Bridge: "br"}
	if _, err := portRules("o", good); err != nil {
		t.Fatalf("valid port refused: %v", err)
	}
	bad := []func(p *Port){
		func(p *Port) { p.Proto = "sctp" },
		func(p *Port) { p.HostPort = 0 },
		func(p *Port) { p.ContainerPort = 0 },
		func(p *Port) { p.ContainerIP = net.ParseIP("fd00::2") },
		func(p *Port) { p.HostIP = net.ParseIP("fd00::1") },
		func(p *Port) { p.Bridge = "" },
	}
	for i, mutate := range bad {
		p := good
		mutate(&p)
		if _, err := portRules("o", p); err == nil {
			t.Errorf("bad port %d accepted: %+v", i, p)
		}
	}
}

// chainsOf returns, per chain, the verdicts of the rules (accept, drop,
// masq...), to check the layout without a kernel.
func chainsOf(rs []newRule) map[string][]string {
	out := map[string][]string{}
	for _, r := range rs {
		var last string
		switch e := r.exprs[len(r.exprs)-1].(type) {
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				last = "accept"
			case expr.VerdictDrop:
				last = "drop"
			}
		case *expr.Masq:
			last = "masq"
		case *expr.NAT:
			last = "dnat"
		}
		out[r.chain] = append(out[r.chain], last)
	}
	return out
}

func TestNetworkRuleLayout(t *testing.T) {
	_, sn, _ := net.ParseCIDR("10.198.1.0/24")
	normal := chainsOf(networkRules(Network{Name: "n", Bridge: "br", Subnet: sn}))
	internal := chainsOf(networkRules(Network{Name: "n", Bridge: "br", Subnet: sn, Internal: true}))

	if got := normal[chainFwdEgress]; len(got) != 1 || got[0] != "accept" {
		t.Errorf("normal network egress = %v", got)
	}
	if got := normal[chainFwdInternal]; len(got) != 0 {
		t.Errorf("normal network has internal drops %v", got)
	}
	if got := internal[chainFwdEgress]; len(got) != 0 {
		t.Errorf("internal network has egress %v", got)
	}
	if got := internal[chainFwdInternal]; len(got) != 1 || got[0] != "drop" {
		t.Errorf("internal network drop = %v", got)
	}
	for _, l := range []map[string][]string{normal, internal} {
		if got := l[chainFwdIsolate]; len(got) != 1 || got[0] != "drop" {
			t.Errorf("isolate = %v", got)
		}
	}
	// Only the hairpin masquerade for internal networks: nothing leaves.
	if len(internal[chainPostrouting]) != 1 || len(normal[chainPostrouting]) != 2 {
		t.Errorf("postrouting: internal %v, normal %v", internal[chainPostrouting], normal[chainPostrouting])
	}
	// The stages are evaluated in this order; the policy depends on it.
	want := []string{chainFwdInternal, chainFwdAccept, chainFwdIsolate, chainFwdEgress}
	if strings.Join(forwardStages, ",") != strings.Join(want, ",") {
		t.Errorf("forward stages %v", forwardStages)
	}
}
