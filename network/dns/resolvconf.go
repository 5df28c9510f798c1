package dns

import (
	"net"
	"net/netip"
	"os"
	"strings"
)

// Upstreams reads the nameservers of a resolv.conf file as "ip:53", in file
// order and without duplicates. Loopback ones (127.0.0.0/8, ::1) are skipped
// unless keepLoopback: a host's local stub resolver such as systemd-resolved
// on 127.0.0.53 is unreachable from a container's network namespace. An
// unreadable file yields nil, which makes the server answer only its own
// names.
func Upstreams(resolvConf string, keepLoopback bool) []string {
	data, err := os.ReadFile(resolvConf)
	if err != nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		addr, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		// An IPv4-mapped ::ffff:127.0.0.1 is loopback too.
		if !keepLoopback && addr.Unmap().IsLoopback() {
			continue
		}
		hp := net.JoinHostPort(addr.String(), "53")
		if !seen[hp] {
			seen[hp] = true
			out = append(out, hp)
		}
	}
	return out
}
