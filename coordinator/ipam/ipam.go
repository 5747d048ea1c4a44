// Package ipam holds the rules of networks and addresses: what a network's
// name, prefix and gateway may be, which addresses an instance may have,
// the next free one, and MAC addresses. Pure functions: the API checks a
// request with them, and the FSM allocates with them at commit time, where
// every replica computes the same answer from the same state.
package ipam

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// ErrInvalid wraps every refusal of a malformed name, prefix or address.
var ErrInvalid = errors.New("invalid network or address")

// Bounds of a network's prefix: a /8 is the largest anyone routes inside
// one L2 segment, and a /29 leaves five addresses for instances.
const (
	MinPrefixBits = 8
	MaxPrefixBits = 29
)

// The patterns of names are the hosts' (package hypervisor), so that the
// coordinator accepts exactly the names an agent can realise.
var (
	namePattern   = hypervisor.NetworkNamePattern
	bridgePattern = hypervisor.BridgePattern
)

// ValidateName checks a network's name (it becomes part of a libvirt
// network's name and the DNS domain of its instances).
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("network name %q must match %s: %w", name, namePattern, ErrInvalid)
	}
	return nil
}

// ValidateBridge checks a host bridge's interface name.
func ValidateBridge(name string) error {
	if !bridgePattern.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("bridge name %q must match %s: %w", name, bridgePattern, ErrInvalid)
	}
	return nil
}

// ParsePrefix parses an IPv4 prefix in CIDR notation; host bits must be zero.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("cidr %q: %v: %w", s, err, ErrInvalid)
	}
	switch {
	case !p.Addr().Is4():
		return netip.Prefix{}, fmt.Errorf("cidr %q: only IPv4 networks are supported: %w", s, ErrInvalid)
	case p.Bits() < MinPrefixBits || p.Bits() > MaxPrefixBits:
		return netip.Prefix{}, fmt.Errorf("cidr %q: prefix length must be /%d../%d: %w", s, MinPrefixBits, MaxPrefixBits, ErrInvalid)
	case p.Masked() != p:
		return netip.Prefix{}, fmt.Errorf("cidr %q has host bits set (the network is %s): %w", s, p.Masked(), ErrInvalid)
	}
	return p, nil
}

// Broadcast is the last address of p.
func Broadcast(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// DefaultGateway is the first address after the network's own.
func DefaultGateway(p netip.Prefix) netip.Addr { return p.Addr().Next() }

// ParseGateway parses a network's gateway, "" meaning DefaultGateway; it
// must be a usable address of p.
func ParseGateway(p netip.Prefix, s string) (netip.Addr, error) {
	if s == "" {
		return DefaultGateway(p), nil
	}
	gw, err := netip.ParseAddr(s)
	if err != nil || !gw.Is4() {
		return netip.Addr{}, fmt.Errorf("gateway %q is not an IPv4 address: %w", s, ErrInvalid)
	}
	if !p.Contains(gw) || gw == p.Addr() || gw == Broadcast(p) {
		return netip.Addr{}, fmt.Errorf("gateway %s is not a host address of %s: %w", gw, p, ErrInvalid)
	}
	return gw, nil
}

// Total is how many addresses instances can have on p: all but the
// network, broadcast and gateway addresses.
func Total(p netip.Prefix) int { return 1<<(32-p.Bits()) - 3 }

// Usable checks that ip may be an instance's address on (p, gw).
func Usable(p netip.Prefix, gw, ip netip.Addr) error {
	switch {
	case !ip.Is4():
		return fmt.Errorf("address %s is not IPv4: %w", ip, ErrInvalid)
	case !p.Contains(ip):
		return fmt.Errorf("address %s is outside the network's %s: %w", ip, p, ErrInvalid)
	case ip == p.Addr():
		return fmt.Errorf("address %s is the network address of %s: %w", ip, p, ErrInvalid)
	case ip == Broadcast(p):
		return fmt.Errorf("address %s is the broadcast address of %s: %w", ip, p, ErrInvalid)
	case ip == gw:
		return fmt.Errorf("address %s is the network's gateway: %w", ip, ErrInvalid)
	}
	return nil
}

// ParseAddr parses a requested instance address and checks it is usable.
func ParseAddr(p netip.Prefix, gw netip.Addr, s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address %q: %v: %w", s, err, ErrInvalid)
	}
	return ip, Usable(p, gw, ip)
}

// Next is the lowest usable address of (p, gw) that taken does not
// report, or false when every one is taken. Its cost grows with the
// addresses taken below the answer, not with the network's size.
func Next(p netip.Prefix, gw netip.Addr, taken func(netip.Addr) bool) (netip.Addr, bool) {
	last := Broadcast(p)
	for ip := p.Addr().Next(); ip.IsValid() && ip.Less(last); ip = ip.Next() {
		if ip != gw && !taken(ip) {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// Overlap reports whether two prefixes share an address.
func Overlap(a, b netip.Prefix) bool { return a.Overlaps(b) }

// MAC is the attempt-th candidate MAC address of an instance's nic-th NIC:
// QEMU's locally administered 52:54:00 prefix and three bytes of a hash, so
// replicas derive the same one and a retry (attempt+1) another.
func MAC(instanceID string, nic, attempt int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "flotilla-mac:%s:%d:%d", instanceID, nic, attempt))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}
