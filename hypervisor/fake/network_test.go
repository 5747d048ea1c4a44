package fake

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

func natNIC(network, mac, ip string) hypervisor.NIC {
	return hypervisor.NIC{
		Network: network, Mode: hypervisor.ModeNAT,
		Prefix:  netip.MustParsePrefix("198.19.7.0/24"),
		Gateway: netip.MustParseAddr("198.19.7.1"), IP: netip.MustParseAddr(ip),
		MAC: mac, Hostname: "h" + mac[len(mac)-2:],
	}
}

func netSpec(id string, nics ...hypervisor.NIC) hypervisor.DomainSpec {
	s := spec(id)
	s.NICs = nics
	return s
}

func reservedIDs(t *testing.T, d *Driver, network string) []string {
	t.Helper()
	n, ok := d.Network(network)
	if !ok {
		return nil
	}
	var ids []string
	for _, r := range n.Reservations {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestNetworksLifeCycle(t *testing.T) {
	ctx := context.Background()
	d := New(Options{Images: []string{"img"}})
	a := netSpec("a", natNIC("web", "52:54:00:00:00:0a", "198.19.7.10"))
	b := netSpec("b", natNIC("web", "52:54:00:00:00:0b", "198.19.7.11"))
	for _, s := range []hypervisor.DomainSpec{a, b} {
		if err := d.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	n, ok := d.Network("web")
	if !ok || n.Mode != hypervisor.ModeNAT || n.Gateway != netip.MustParseAddr("198.19.7.1") {
		t.Fatalf("network web = %+v, %v", n, ok)
	}
	if got := reservedIDs(t, d, "web"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("reservations %v, want a and b", got)
	}
	if nics, _ := d.NICs("a"); !slices.Equal(nics, a.NICs) {
		t.Fatalf("NICs(a) = %v", nics)
	}

	// Gone behind the driver's back: Resync puts it back as it was.
	d.RemoveNetwork("web")
	if err := d.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := reservedIDs(t, d, "web"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after resync: reservations %v, want a and b", got)
	}

	if err := d.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got := reservedIDs(t, d, "web"); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after deleting a: reservations %v, want b", got)
	}
	if err := d.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if names := d.NetworkNames(); len(names) != 0 {
		t.Fatalf("networks left after the last user went: %v", names)
	}
}

func TestNetworksRefusals(t *testing.T) {
	ctx := context.Background()
	bridge := natNIC("lan", "52:54:00:00:00:0c", "198.19.7.12")
	bridge.Mode, bridge.Bridge = hypervisor.ModeBridge, "br0"
	cases := []struct {
		name    string
		bridges []string
		spec    hypervisor.DomainSpec
		want    error
	}{
		{"bridge present", []string{"br0"}, netSpec("c", bridge), nil},
		{"bridge missing", []string{"br1"}, netSpec("c", bridge), hypervisor.ErrNetworkUnavailable},
		{"address taken", nil, netSpec("c", natNIC("web", "52:54:00:00:00:0c", "198.19.7.10")), hypervisor.ErrInvalidSpec},
		{"invalid nic", nil, netSpec("c", natNIC("web", "52:54:00:00:00:0C", "198.19.7.12")), hypervisor.ErrInvalidSpec},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := New(Options{Images: []string{"img"}, Bridges: c.bridges})
			if err := d.Create(ctx, netSpec("a", natNIC("web", "52:54:00:00:00:0a", "198.19.7.10"))); err != nil {
				t.Fatal(err)
			}
			if err := d.Preflight(ctx, c.spec, false, 0); c.want != hypervisor.ErrInvalidSpec && !errors.Is(err, c.want) {
				t.Fatalf("Preflight: %v, want %v", err, c.want)
			}
			err := d.Create(ctx, c.spec)
			if !errors.Is(err, c.want) {
				t.Fatalf("Create: %v, want %v", err, c.want)
			}
			if _, defined := d.NICs("c"); defined != (c.want == nil) {
				t.Fatalf("domain defined = %v after %v", defined, err)
			}
		})
	}
}

func TestNetworksFollowMovesAndResizes(t *testing.T) {
	ctx := context.Background()
	src := New(Options{Images: []string{"img"}})
	dst := New(Options{Images: []string{"img"}})
	s := netSpec("m", natNIC("web", "52:54:00:00:00:0d", "198.19.7.13"))
	if err := src.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := src.Destroy(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	disk, _ := src.Disk("m")
	if err := dst.ImportDomain(ctx, s, bytes.NewReader(disk)); err != nil {
		t.Fatal(err)
	}
	if err := dst.ImportDomain(ctx, s, bytes.NewReader(disk)); err != nil {
		t.Fatalf("retried import: %v", err)
	}
	if got := reservedIDs(t, dst, "web"); !slices.Equal(got, []string{"m"}) {
		t.Fatalf("target reservations %v", got)
	}
	if err := src.Delete(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if names := src.NetworkNames(); len(names) != 0 {
		t.Fatalf("source kept networks %v", names)
	}

	// A resize in place that moves the NIC to another network (the
	// coordinator does not do this today; the reservations must follow).
	big := s
	big.MemoryMiB = 256
	big.NICs = []hypervisor.NIC{natNIC("db", "52:54:00:00:00:0d", "198.19.7.13")}
	if err := dst.Reshape(ctx, big); err != nil {
		t.Fatal(err)
	}
	if got := dst.NetworkNames(); !slices.Equal(got, []string{"db"}) {
		t.Fatalf("after reshape networks %v, want db", got)
	}
	if err := dst.Unshape(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got := dst.NetworkNames(); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("after unshape networks %v, want web", got)
	}
}

func TestNetworksReport(t *testing.T) {
	t.Setenv(BridgesEnv, "br0, br1")
	bridges, err := BridgesFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	d := New(Options{Bridges: bridges})
	got, err := d.Networks(context.Background())
	if err != nil || !got.ManagedNetworks || !slices.Equal(got.Bridges, []string{"br0", "br1"}) {
		t.Fatalf("Networks = %+v, %v", got, err)
	}
	t.Setenv(BridgesEnv, "br0,bad/name")
	if _, err := BridgesFromEnv(); err == nil {
		t.Fatal("a bad bridge name was accepted")
	}
}
