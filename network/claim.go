package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// Bridges belong to the machine, not to one store: two hull stores (two
// --root) both put containers on hull0 and keep their leases apart, each in
// its own database. So every address handed out on a bridge is also claimed
// machine-wide, one file per address under claimDir/<bridge>/, made with
// O_EXCL; an address another store's live container holds is skipped. A
// claim is live while the network namespace it names exists: a crash that
// left a claim behind frees it with the namespace. /run does not survive a
// reboot, and neither do the namespaces.
var claimDir = "/run/hull-ipam"

// claim is what a claim file records.
type claim struct {
	Store     string `json:"store"` // the claiming store's run directory
	Container string `json:"container"`
	NetNS     string `json:"netns"`
}

func claimPath(bridgeName string, ip net.IP) string {
	return filepath.Join(claimDir, bridgeName, ip.String())
}

// claimAddress takes ip on bridgeName for c. It reports false when a live
// container of another store (or another live container of this one)
// holds the address.
func claimAddress(bridgeName string, ip net.IP, c claim) (bool, error) {
	p := claimPath(bridgeName, ip)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return false, fmt.Errorf("claim %s: %w", ip, err)
	}
	data, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	for attempt := 0; attempt < 3; attempt++ {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, werr := f.Write(data)
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				os.Remove(p)
				return false, fmt.Errorf("claim %s: %w", ip, werr)
			}
			return true, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return false, fmt.Errorf("claim %s: %w", ip, err)
		}
		held, err := readClaim(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // released in between
		}
		if err == nil && held.Store == c.Store && held.Container == c.Container {
			return true, nil // ours already (a start after a crash)
		}
		if err == nil && held.NetNS != "" {
			if _, serr := os.Stat(held.NetNS); serr == nil {
				return false, nil
			}
		}
		// Unreadable, or its namespace is gone: stale.
		os.Remove(p)
	}
	return false, nil
}

func readClaim(p string) (claim, error) {
	var c claim
	raw, err := os.ReadFile(p)
	if err != nil {
		return c, err
	}
	err = json.Unmarshal(raw, &c)
	return c, err
}

// releaseClaim gives up the claim of ip on bridgeName if store's
// container holds it.
func releaseClaim(bridgeName string, ip net.IP, store, container string) {
	p := claimPath(bridgeName, ip)
	if held, err := readClaim(p); err == nil && held.Store == store && held.Container == container {
		os.Remove(p)
	}
}
