package hypervisor

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func goodNIC() NIC {
	return NIC{
		Network: "web", Mode: ModeNAT,
		Prefix:  netip.MustParsePrefix("198.19.4.0/24"),
		Gateway: netip.MustParseAddr("198.19.4.1"), IP: netip.MustParseAddr("198.19.4.10"),
		MAC: "52:54:00:ab:cd:ef", Hostname: "vm-1",
	}
}

func goodSpec() DomainSpec {
	return DomainSpec{ID: "i-1", Name: "one", VCPUs: 1, MemoryMiB: 128, Image: "img"}
}

func TestValidateNICs(t *testing.T) {
	cases := []struct {
		name string
		edit func(s *DomainSpec)
		want string // "" for valid
	}{
		{"no nics", func(s *DomainSpec) { s.NICs = nil }, ""},
		{"one nat nic", func(s *DomainSpec) {}, ""},
		{"isolated", func(s *DomainSpec) { s.NICs[0].Mode = ModeIsolated }, ""},
		{"bridge", func(s *DomainSpec) { s.NICs[0].Mode, s.NICs[0].Bridge = ModeBridge, "br0" }, ""},
		{"bridge with dots", func(s *DomainSpec) { s.NICs[0].Mode, s.NICs[0].Bridge = ModeBridge, "eth0.100" }, ""},
		{"no hostname", func(s *DomainSpec) { s.NICs[0].Hostname = "" }, ""},
		{"/30", func(s *DomainSpec) {
			s.NICs[0].Prefix, s.NICs[0].Gateway, s.NICs[0].IP = netip.MustParsePrefix("198.19.0.0/30"), netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("198.19.0.2")
		}, ""},
		{"eight nics", func(s *DomainSpec) { s.NICs = nics(8) }, ""},
		{"nine nics", func(s *DomainSpec) { s.NICs = nics(9) }, "9 NICs, at most 8"},
		{"network upper case", func(s *DomainSpec) { s.NICs[0].Network = "Web" }, "network name"},
		{"network too long", func(s *DomainSpec) { s.NICs[0].Network = "a" + strings.Repeat("b", 32) }, "network name"},
		{"network with quote", func(s *DomainSpec) { s.NICs[0].Network = "a'b" }, "network name"},
		{"network starting with digit", func(s *DomainSpec) { s.NICs[0].Network = "1a" }, "network name"},
		{"unknown mode", func(s *DomainSpec) { s.NICs[0].Mode = "route" }, "mode"},
		{"nat with bridge", func(s *DomainSpec) { s.NICs[0].Bridge = "br0" }, "names no bridge"},
		{"bridge without name", func(s *DomainSpec) { s.NICs[0].Mode = ModeBridge }, "bridge"},
		{"bridge too long", func(s *DomainSpec) { s.NICs[0].Mode, s.NICs[0].Bridge = ModeBridge, strings.Repeat("b", 16) }, "bridge"},
		{"bridge with slash", func(s *DomainSpec) { s.NICs[0].Mode, s.NICs[0].Bridge = ModeBridge, "br/0" }, "bridge"},
		{"bridge dotdot", func(s *DomainSpec) { s.NICs[0].Mode, s.NICs[0].Bridge = ModeBridge, ".." }, "bridge"},
		{"mac upper case", func(s *DomainSpec) { s.NICs[0].MAC = "52:54:00:AB:CD:EF" }, "MAC"},
		{"mac short", func(s *DomainSpec) { s.NICs[0].MAC = "52:54:00:ab:cd" }, "MAC"},
		{"mac dashes", func(s *DomainSpec) { s.NICs[0].MAC = "52-54-00-ab-cd-ef" }, "MAC"},
		{"mac multicast", func(s *DomainSpec) { s.NICs[0].MAC = "53:54:00:ab:cd:ef" }, "multicast"},
		{"mac broadcast", func(s *DomainSpec) { s.NICs[0].MAC = "ff:ff:ff:ff:ff:ff" }, "multicast"},
		{"no prefix", func(s *DomainSpec) { s.NICs[0].Prefix = netip.Prefix{} }, "CIDR"},
		{"prefix not masked", func(s *DomainSpec) { s.NICs[0].Prefix = netip.MustParsePrefix("198.19.4.7/24") }, "CIDR"},
		{"ipv6 prefix", func(s *DomainSpec) { s.NICs[0].Prefix = netip.MustParsePrefix("fd00::/64") }, "CIDR"},
		{"/31", func(s *DomainSpec) { s.NICs[0].Prefix = netip.MustParsePrefix("198.19.4.0/31") }, "CIDR"},
		{"ip outside", func(s *DomainSpec) { s.NICs[0].IP = netip.MustParseAddr("198.19.5.10") }, "address 198.19.5.10 is not inside"},
		{"ip missing", func(s *DomainSpec) { s.NICs[0].IP = netip.Addr{} }, "not inside"},
		{"ip network", func(s *DomainSpec) { s.NICs[0].IP = netip.MustParseAddr("198.19.4.0") }, "network or broadcast"},
		{"ip broadcast", func(s *DomainSpec) { s.NICs[0].IP = netip.MustParseAddr("198.19.4.255") }, "network or broadcast"},
		{"ip is gateway", func(s *DomainSpec) { s.NICs[0].IP = s.NICs[0].Gateway }, "is the gateway"},
		{"ipv6 ip", func(s *DomainSpec) { s.NICs[0].IP = netip.MustParseAddr("::ffff:198.19.4.10") }, "not inside"},
		{"gateway outside", func(s *DomainSpec) { s.NICs[0].Gateway = netip.MustParseAddr("10.0.0.1") }, "gateway"},
		{"gateway broadcast", func(s *DomainSpec) { s.NICs[0].Gateway = netip.MustParseAddr("198.19.4.255") }, "gateway"},
		{"hostname upper", func(s *DomainSpec) { s.NICs[0].Hostname = "VM" }, "hostname"},
		{"hostname dotted", func(s *DomainSpec) { s.NICs[0].Hostname = "a.b" }, "hostname"},
		{"hostname trailing dash", func(s *DomainSpec) { s.NICs[0].Hostname = "a-" }, "hostname"},
		{"hostname too long", func(s *DomainSpec) { s.NICs[0].Hostname = strings.Repeat("a", 64) }, "hostname"},
		{"hostname xml", func(s *DomainSpec) { s.NICs[0].Hostname = "<a>" }, "hostname"},
		{"same mac twice", func(s *DomainSpec) {
			n := goodNIC()
			n.Network = "other"
			s.NICs = append(s.NICs, n)
		}, "used twice"},
		{"same network twice", func(s *DomainSpec) {
			n := goodNIC()
			n.MAC = "52:54:00:00:00:01"
			s.NICs = append(s.NICs, n)
		}, "used twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := goodSpec()
			s.NICs = []NIC{goodNIC()}
			c.edit(&s)
			checkValid(t, ValidateSpec(s), c.want)
		})
	}
}

func TestValidateSeed(t *testing.T) {
	cases := []struct {
		name string
		seed GuestSeed
		want string
	}{
		{"empty", GuestSeed{}, ""},
		{"full", GuestSeed{Hostname: "web-1", UserData: "#cloud-config\n", SSHAuthorizedKeys: []string{"ssh-ed25519 AAAA x@y"}}, ""},
		{"user data at limit", GuestSeed{UserData: strings.Repeat("x", MaxUserDataBytes)}, ""},
		{"user data over limit", GuestSeed{UserData: strings.Repeat("x", MaxUserDataBytes+1)}, "user data of 65537 bytes"},
		{"user data not utf-8", GuestSeed{UserData: "\xff"}, "UTF-8"},
		{"hostname bad", GuestSeed{Hostname: "a_b"}, "hostname"},
		{"32 keys", GuestSeed{SSHAuthorizedKeys: keys(32, "ssh-rsa AAAA")}, ""},
		{"33 keys", GuestSeed{SSHAuthorizedKeys: keys(33, "ssh-rsa AAAA")}, "33 SSH keys"},
		{"key at limit", GuestSeed{SSHAuthorizedKeys: []string{strings.Repeat("k", MaxSSHKeyBytes)}}, ""},
		{"key over limit", GuestSeed{SSHAuthorizedKeys: []string{strings.Repeat("k", MaxSSHKeyBytes+1)}}, "SSH key 0 of"},
		{"key with newline", GuestSeed{SSHAuthorizedKeys: []string{"ssh-rsa A\nssh-rsa B"}}, "one printable line"},
		{"key with cr", GuestSeed{SSHAuthorizedKeys: []string{"ssh-rsa A\rB"}}, "one printable line"},
		{"key with nul", GuestSeed{SSHAuthorizedKeys: []string{"ssh-rsa A\x00B"}}, "one printable line"},
		{"empty key", GuestSeed{SSHAuthorizedKeys: []string{""}}, "empty"},
		{"key with trailing space", GuestSeed{SSHAuthorizedKeys: []string{"ssh-rsa A "}}, "surrounding space"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := goodSpec()
			seed := c.seed
			s.Seed = &seed
			checkValid(t, ValidateSpec(s), c.want)
		})
	}
}

func TestCheckNICsServed(t *testing.T) {
	bridge := goodNIC()
	bridge.Mode, bridge.Bridge = ModeBridge, "br0"
	has := func(b string) bool { return b == "br0" }
	cases := []struct {
		name    string
		nics    []NIC
		managed bool
		want    string
	}{
		{"none", nil, false, ""},
		{"nat on managed host", []NIC{goodNIC()}, true, ""},
		{"nat without managed networks", []NIC{goodNIC()}, false, "defines no nat networks"},
		{"bridge present", []NIC{bridge}, false, ""},
		{"bridge missing", []NIC{func() NIC { n := bridge; n.Bridge = "br1"; return n }()}, true, "bridge br1 does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckNICsServed(c.nics, c.managed, has)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrNetworkUnavailable) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrNetworkUnavailable saying %q", err, c.want)
			}
		})
	}
}

func TestNetmask(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.0/8": "255.0.0.0", "198.19.0.0/22": "255.255.252.0", "198.19.4.0/30": "255.255.255.252"} {
		if got := Netmask(netip.MustParsePrefix(in)); got != want {
			t.Errorf("Netmask(%s) = %s, want %s", in, got, want)
		}
	}
}

func checkValid(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("want valid, got %v", err)
		}
		return
	}
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want ErrInvalidSpec saying %q", err, want)
	}
}

func nics(n int) []NIC {
	out := make([]NIC, n)
	for i := range out {
		out[i] = goodNIC()
		out[i].Network = "net" + string(rune('a'+i))
		out[i].MAC = "52:54:00:00:00:0" + string(rune('0'+i))
	}
	return out
}

func keys(n int, k string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = k
	}
	return out
}
