package ipam

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" for refused
	}{
		{"10.20.0.0/24", "10.20.0.0/24"},
		{"192.168.4.0/22", "192.168.4.0/22"},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.0.0.8/29", "10.0.0.8/29"},
		{"10.0.0.1/24", ""},  // host bits set
		{"10.0.0.0/30", ""},  // too small
		{"10.0.0.0/7", ""},   // too large
		{"fd00::/64", ""},    // IPv6
		{"10.0.0.0", ""},     // no length
		{"10.0.0.0/33", ""},  // malformed
		{"", ""},             //
		{"10.0.0.0/24 ", ""}, // trailing space
		{"010.0.0.0/24", ""}, // leading zero
		{"10.0.0.0/024", ""}, // leading zero in length
		{"::ffff:10.0.0.0/104", ""},
	} {
		p, err := ParsePrefix(tc.in)
		if tc.want == "" {
			if err == nil || !errors.Is(err, ErrInvalid) {
				t.Errorf("ParsePrefix(%q) = %v, %v; want ErrInvalid", tc.in, p, err)
			}
			continue
		}
		if err != nil || p.String() != tc.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
		}
	}
}

func TestGatewayAndUsable(t *testing.T) {
	p := netip.MustParsePrefix("10.1.2.0/24")
	if gw, err := ParseGateway(p, ""); err != nil || gw.String() != "10.1.2.1" {
		t.Fatalf("default gateway = %v, %v", gw, err)
	}
	for _, bad := range []string{"10.1.2.0", "10.1.2.255", "10.1.3.1", "x", "fd00::1"} {
		if _, err := ParseGateway(p, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("gateway %s accepted: %v", bad, err)
		}
	}
	gw := netip.MustParseAddr("10.1.2.254")
	for ip, ok := range map[string]bool{"10.1.2.1": true, "10.1.2.253": true, "10.1.2.254": false,
		"10.1.2.0": false, "10.1.2.255": false, "10.1.3.5": false, "10.1.2.300": false} {
		_, err := ParseAddr(p, gw, ip)
		if (err == nil) != ok {
			t.Errorf("address %s: err %v, want usable %v", ip, err, ok)
		}
	}
	if Total(p) != 253 || Total(netip.MustParsePrefix("10.0.0.0/22")) != 1021 {
		t.Errorf("Total: %d", Total(p))
	}
}

func TestNextSkipsTakenAndGateway(t *testing.T) {
	p := netip.MustParsePrefix("10.0.0.0/29") // .1-.6 usable but for the gateway
	gw := netip.MustParseAddr("10.0.0.1")
	taken := map[netip.Addr]bool{}
	var got []string
	for {
		ip, ok := Next(p, gw, func(a netip.Addr) bool { return taken[a] })
		if !ok {
			break
		}
		taken[ip] = true
		got = append(got, ip.String())
	}
	want := []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}
	if len(got) != len(want) || len(got) != Total(p) {
		t.Fatalf("allocated %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("allocated %v, want %v", got, want)
		}
	}
	delete(taken, netip.MustParseAddr("10.0.0.4"))
	if ip, ok := Next(p, gw, func(a netip.Addr) bool { return taken[a] }); !ok || ip.String() != "10.0.0.4" {
		t.Fatalf("after a release: %v %v", ip, ok)
	}
}

func TestNamesAndMAC(t *testing.T) {
	for name, ok := range map[string]bool{"lan": true, "a": true, "net-1": true, "1net": false, "Net": false,
		"": false, "a_b": false, "abcdefghijklmnopqrstuvwxyz0123456": false, "lan\n": false} {
		if (ValidateName(name) == nil) != ok {
			t.Errorf("ValidateName(%q) ok=%v", name, !ok)
		}
	}
	for name, ok := range map[string]bool{"br0": true, "virbr-x.1_2": true, "": false, "..": false,
		"abcdefghijklmnop": false, "br 0": false, "br/0": false} {
		if (ValidateBridge(name) == nil) != ok {
			t.Errorf("ValidateBridge(%q) ok=%v", name, !ok)
		}
	}
	a, b := MAC("i-1", 0, 0), MAC("i-1", 0, 1)
	if a == b || MAC("i-1", 0, 0) != a || MAC("i-1", 1, 0) == a || len(a) != 17 || a[:9] != "52:54:00:" {
		t.Errorf("MACs %s %s", a, b)
	}
}
