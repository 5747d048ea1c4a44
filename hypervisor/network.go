package hypervisor

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrNetworkUnavailable: a NIC names a bridge this host does not have (or
// a network it cannot serve). Permanent on this host: another host may.
var ErrNetworkUnavailable = errors.New("network unavailable on this host")

// NetworkMode is how a NIC reaches its network.
type NetworkMode string

const (
	// ModeNAT is a per-host network the driver defines, NATed to the host.
	ModeNAT NetworkMode = "nat"
	// ModeIsolated is a per-host network the driver defines, with no route out.
	ModeIsolated NetworkMode = "isolated"
	// ModeBridge attaches to a host bridge the operator made.
	ModeBridge NetworkMode = "bridge"
)

// Managed reports whether the driver defines the network itself (nat,
// isolated) rather than attaching to an existing bridge.
func (m NetworkMode) Managed() bool { return m == ModeNAT || m == ModeIsolated }

// NIC is one network interface of a domain, with its address allocated by
// the coordinator.
type NIC struct {
	Network  string       // the network's name: ^[a-z][a-z0-9-]{0,31}$
	Mode     NetworkMode  // nat, isolated or bridge
	Bridge   string       // the host bridge, for ModeBridge only
	Prefix   netip.Prefix // the network's IPv4 CIDR (masked)
	Gateway  netip.Addr   // the network's gateway, inside Prefix
	IP       netip.Addr   // this NIC's address, inside Prefix
	MAC      string       // unicast, lowercase aa:bb:cc:dd:ee:ff
	Hostname string       // DNS label the network's DNS serves for IP; may be empty
}

// GuestSeed is what the guest is told at first boot (a cloud-init NoCloud
// seed); its instance id is the spec's ID.
type GuestSeed struct {
	Hostname          string   // DNS label; empty: the instance id
	UserData          string   // the user's user-data, verbatim
	SSHAuthorizedKeys []string // one key a line
}

// NetworkSupport is what networks a host can serve.
type NetworkSupport struct {
	ManagedNetworks bool     // nat and isolated networks can be defined here
	Bridges         []string // host bridges NICs may attach to
}

// Limits on NICs and seeds.
const (
	MaxNICs          = 8
	MaxUserDataBytes = 64 << 10
	MaxSSHKeys       = 32
	MaxSSHKeyBytes   = 8 << 10
)

var (
	// NetworkNamePattern is what a network name looks like: it becomes part
	// of libvirt network names and bridge device names.
	NetworkNamePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	// BridgePattern is a Linux interface name (IFNAMSIZ-1 bytes).
	BridgePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
	macPattern    = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)
	labelPattern  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// ValidateBridge checks a bridge name.
func ValidateBridge(name string) error {
	if !BridgePattern.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("bridge %q must match %s: %w", name, BridgePattern, ErrInvalidSpec)
	}
	return nil
}

// ValidateHostname checks a hostname: one lowercase DNS label.
func ValidateHostname(name string) error {
	if !labelPattern.MatchString(name) {
		return fmt.Errorf("hostname %q is not a lowercase DNS label: %w", name, ErrInvalidSpec)
	}
	return nil
}

// ValidateNIC checks one NIC; errors wrap ErrInvalidSpec.
func ValidateNIC(n NIC) error {
	if !NetworkNamePattern.MatchString(n.Network) {
		return fmt.Errorf("network name %q must match %s: %w", n.Network, NetworkNamePattern, ErrInvalidSpec)
	}
	switch n.Mode {
	case ModeNAT, ModeIsolated:
		if n.Bridge != "" {
			return fmt.Errorf("network %s: a %s NIC names no bridge: %w", n.Network, n.Mode, ErrInvalidSpec)
		}
	case ModeBridge:
		if err := ValidateBridge(n.Bridge); err != nil {
			return fmt.Errorf("network %s: %w", n.Network, err)
		}
	default:
		return fmt.Errorf("network %s: mode %q: want nat, isolated or bridge: %w", n.Network, n.Mode, ErrInvalidSpec)
	}
	if !macPattern.MatchString(n.MAC) {
		return fmt.Errorf("network %s: MAC %q is not lowercase aa:bb:cc:dd:ee:ff: %w", n.Network, n.MAC, ErrInvalidSpec)
	}
	if first, _ := strconv.ParseUint(n.MAC[0:2], 16, 8); first&1 == 1 {
		return fmt.Errorf("network %s: MAC %s is a multicast address: %w", n.Network, n.MAC, ErrInvalidSpec)
	}
	p := n.Prefix
	if !p.IsValid() || !p.Addr().Is4() || p != p.Masked() || p.Bits() < 8 || p.Bits() > 30 {
		return fmt.Errorf("network %s: CIDR %s is not a masked IPv4 prefix of /8 to /30: %w", n.Network, p, ErrInvalidSpec)
	}
	bcast := broadcast(p)
	hostAddr := func(what string, a netip.Addr) error {
		if !a.IsValid() || !a.Is4() || !p.Contains(a) {
			return fmt.Errorf("network %s: %s %s is not inside %s: %w", n.Network, what, a, p, ErrInvalidSpec)
		}
		if a == p.Addr() || a == bcast {
			return fmt.Errorf("network %s: %s %s is the network or broadcast address of %s: %w", n.Network, what, a, p, ErrInvalidSpec)
		}
		return nil
	}
	if err := hostAddr("gateway", n.Gateway); err != nil {
		return err
	}
	if err := hostAddr("address", n.IP); err != nil {
		return err
	}
	if n.IP == n.Gateway {
		return fmt.Errorf("network %s: address %s is the gateway: %w", n.Network, n.IP, ErrInvalidSpec)
	}
	if n.Hostname != "" {
		if err := ValidateHostname(n.Hostname); err != nil {
			return fmt.Errorf("network %s: %w", n.Network, err)
		}
	}
	return nil
}

// broadcast is the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Netmask is the dotted netmask of an IPv4 prefix, e.g. 255.255.255.0.
func Netmask(p netip.Prefix) string {
	m := ^uint32(0) << (32 - p.Bits())
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}).String()
}

// validateNICs checks a spec's NICs: each valid, at most MaxNICs, no MAC
// twice, no network twice (one NIC per network keeps reservations one per
// instance and network).
func validateNICs(nics []NIC) error {
	if len(nics) > MaxNICs {
		return fmt.Errorf("%d NICs, at most %d: %w", len(nics), MaxNICs, ErrInvalidSpec)
	}
	macs := map[string]bool{}
	nets := map[string]bool{}
	for i, n := range nics {
		if err := ValidateNIC(n); err != nil {
			return fmt.Errorf("nic %d: %w", i, err)
		}
		if macs[n.MAC] {
			return fmt.Errorf("nic %d: MAC %s used twice: %w", i, n.MAC, ErrInvalidSpec)
		}
		if nets[n.Network] {
			return fmt.Errorf("nic %d: network %s used twice: %w", i, n.Network, ErrInvalidSpec)
		}
		macs[n.MAC], nets[n.Network] = true, true
	}
	return nil
}

// validateSeed checks a guest seed.
func validateSeed(s GuestSeed) error {
	if s.Hostname != "" {
		if err := ValidateHostname(s.Hostname); err != nil {
			return err
		}
	}
	if len(s.UserData) > MaxUserDataBytes {
		return fmt.Errorf("user data of %d bytes, at most %d: %w", len(s.UserData), MaxUserDataBytes, ErrInvalidSpec)
	}
	if !utf8.ValidString(s.UserData) {
		return fmt.Errorf("user data is not UTF-8: %w", ErrInvalidSpec)
	}
	if len(s.SSHAuthorizedKeys) > MaxSSHKeys {
		return fmt.Errorf("%d SSH keys, at most %d: %w", len(s.SSHAuthorizedKeys), MaxSSHKeys, ErrInvalidSpec)
	}
	for i, k := range s.SSHAuthorizedKeys {
		switch {
		case k == "" || strings.TrimSpace(k) != k:
			return fmt.Errorf("SSH key %d is empty or has surrounding space: %w", i, ErrInvalidSpec)
		case len(k) > MaxSSHKeyBytes:
			return fmt.Errorf("SSH key %d of %d bytes, at most %d: %w", i, len(k), MaxSSHKeyBytes, ErrInvalidSpec)
		case strings.ContainsAny(k, "\r\n") || strings.IndexFunc(k, isControl) >= 0 || !utf8.ValidString(k):
			return fmt.Errorf("SSH key %d is not one printable line: %w", i, ErrInvalidSpec)
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

// CheckNICsServed checks that this host can serve every NIC: nat and
// isolated ones need managed networks, bridge ones a bridge that exists
// (bridgeExists). Errors wrap ErrNetworkUnavailable.
func CheckNICsServed(nics []NIC, managed bool, bridgeExists func(string) bool) error {
	for i, n := range nics {
		switch {
		case n.Mode.Managed() && !managed:
			return fmt.Errorf("nic %d: network %s: this host defines no %s networks: %w", i, n.Network, n.Mode, ErrNetworkUnavailable)
		case n.Mode == ModeBridge && !bridgeExists(n.Bridge):
			return fmt.Errorf("nic %d: network %s: bridge %s does not exist on this host: %w", i, n.Network, n.Bridge, ErrNetworkUnavailable)
		}
	}
	return nil
}
