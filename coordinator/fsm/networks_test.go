package fsm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/ipam"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

func (h *harness) network(name, cidr string, mode state.NetworkMode, bridge string) Result {
	h.t.Helper()
	return h.apply(TypeCreateNetwork, CreateNetwork{Network: state.Network{Name: name, CIDR: cidr, Mode: mode, Bridge: bridge}})
}

// createOn creates an unplaced instance with NICs on the given networks
// (each "network" or "network=address").
func (h *harness) createOn(id string, nics ...state.NIC) Result {
	h.t.Helper()
	return h.apply(TypeCreateInstance, CreateInstance{
		Instance:  state.Instance{ID: id, Name: "vm", Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}, NICs: nics},
		Operation: state.Operation{ID: "op-" + id, InstanceID: id, Deadline: h.now.Add(time.Minute)},
	})
}

func (h *harness) withdraw(id string) {
	h.t.Helper()
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionDelete,
		Operation: state.Operation{ID: "del-" + id, InstanceID: id, Deadline: h.now.Add(time.Minute)}})
}

func TestNetworkRules(t *testing.T) {
	h := newHarness(t)
	if r := h.network("lan", "10.1.0.0/24", state.NetworkNAT, ""); r.Err != nil {
		t.Fatal(r.Err)
	}
	n, err := h.store.Network("lan")
	if err != nil || n.Gateway != "10.1.0.1" || n.CreateRev == 0 || n.CreateTime.IsZero() {
		t.Fatalf("network %+v, %v", n, err)
	}
	for _, c := range []struct {
		name, cidr string
		mode       state.NetworkMode
		bridge     string
		want       error
	}{
		{"lan", "10.2.0.0/24", state.NetworkNAT, "", ErrAlreadyExists},
		{"wan", "10.1.0.128/25", state.NetworkNAT, "", ErrConflict},
		{"wan", "10.0.0.0/8", state.NetworkIsolated, "", ErrConflict},
		{"wan", "10.1.0.5/24", state.NetworkNAT, "", ErrInvalid},
		{"wan", "10.2.0.0/24", "vxlan", "", ErrInvalid},
		{"wan", "10.2.0.0/24", state.NetworkNAT, "br0", ErrInvalid},
		{"wan", "10.2.0.0/24", state.NetworkBridge, "", ErrInvalid},
		{"wan", "10.2.0.0/24", state.NetworkBridge, "br0;rm", ErrInvalid},
		{"Wan", "10.2.0.0/24", state.NetworkNAT, "", ErrInvalid},
	} {
		rev := h.store.Revision()
		if r := h.network(c.name, c.cidr, c.mode, c.bridge); !errors.Is(r.Err, c.want) {
			t.Errorf("%s %s %s %q: %v, want %v", c.name, c.cidr, c.mode, c.bridge, r.Err, c.want)
		}
		if h.store.Revision() != rev {
			t.Errorf("a refused network changed the state")
		}
	}
	h.mustApply(TypeCreateNetwork, CreateNetwork{Network: state.Network{Name: "tb", CIDR: "192.168.50.0/24", Mode: state.NetworkBridge, Bridge: "br0"}})
	if r := h.network("tb2", "192.168.51.0/24", state.NetworkBridge, "br0"); !errors.Is(r.Err, ErrConflict) {
		t.Errorf("a second network on bridge br0: %v", r.Err)
	}

	// In use: refused until the instance holding the address is deleted.
	h.mustApply(TypeCreateInstance, CreateInstance{
		Instance:  state.Instance{ID: "i1", Name: "web", Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}, NICs: []state.NIC{{Network: "lan"}, {Network: "tb"}}},
		Operation: state.Operation{ID: "op-i1", InstanceID: "i1", Deadline: h.now.Add(time.Minute)},
	})
	i, _ := h.store.Instance("i1")
	if len(i.NICs) != 2 || i.NICs[0].IPv4 != "10.1.0.2" || i.NICs[0].Hostname != "web" || i.NICs[1].IPv4 != "192.168.50.2" ||
		i.NICs[0].MAC == "" || i.NICs[0].MAC == i.NICs[1].MAC || !i.Placement.ManagedNetworks || len(i.Placement.Bridges) != 1 || i.Placement.Bridges[0] != "br0" {
		t.Fatalf("allocated %+v placement %+v", i.NICs, i.Placement)
	}
	if r := h.apply(TypeDeleteNetwork, DeleteNetwork{Name: "lan"}); !errors.Is(r.Err, ErrInUse) {
		t.Fatalf("deleting a network in use: %v", r.Err)
	}
	if r := h.apply(TypeDeleteNetwork, DeleteNetwork{Name: "nope"}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("deleting an unknown network: %v", r.Err)
	}
	// A second instance named web gets its id as host name on lan.
	if r := h.createOn("i2", state.NIC{Network: "lan"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	i2, _ := h.store.Instance("i2")
	if i2.NICs[0].Hostname != "vm" {
		t.Fatalf("host name %q", i2.NICs[0].Hostname)
	}
	h.withdraw("i1")
	h.withdraw("i2")
	h.mustApply(TypeDeleteNetwork, DeleteNetwork{Name: "lan"})
	if _, err := h.store.Network("lan"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("network after delete: %v", err)
	}
	// Unknown network in a create.
	if r := h.createOn("i3", state.NIC{Network: "lan"}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("create on a deleted network: %v", r.Err)
	}
	// At commit time, a host must serve the instance's networks.
	h.register("plain", 4, 4096)
	h.mustApply(TypeRegisterHost, RegisterHost{Host: state.Host{ID: "bridged", Kind: "fake", Capacity: state.Resources{VCPUs: 4, MemoryMiB: 4096}, Bridges: []string{"br0"}}})
	on := func(id, host string) Result {
		return h.apply(TypeCreateInstance, CreateInstance{
			Instance:  state.Instance{ID: id, Name: id, HostID: host, Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}, NICs: []state.NIC{{Network: "tb"}}},
			Operation: state.Operation{ID: "op-" + id, InstanceID: id, Deadline: h.now.Add(time.Minute)},
		})
	}
	if r := on("i4", "plain"); !errors.Is(r.Err, ErrNoCapacity) {
		t.Fatalf("a bridge network's instance on a host without the bridge: %v", r.Err)
	}
	if r := on("i5", "bridged"); r.Err != nil {
		t.Fatalf("on the host with the bridge: %v", r.Err)
	}
}

// TestAddressesNeverShared applies random creates (free or static
// addresses, in range or not, taken or not) and deletes on a small network,
// checking after each entry that no two live instances share an address or
// a MAC, that every address is usable, that refusals are the right ones and
// change nothing; then that a replica restored from a snapshot allocates
// exactly as the original does, and that deleting everything frees every
// address.
func TestAddressesNeverShared(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { addressesNeverShared(t, seed) })
	}
}

func addressesNeverShared(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	h := newHarness(t)
	if seed%2 == 0 { // half the runs snapshot in format 2, half in format 1
		h.mustApply(TypeSetLogVersion, SetLogVersion{Version: LogVersion3})
	}
	h.mustApply(TypeCreateNetwork, CreateNetwork{Network: state.Network{Name: "n", CIDR: "10.9.0.0/27", Gateway: "10.9.0.30", Mode: state.NetworkNAT}})
	p, gw := netip.MustParsePrefix("10.9.0.0/27"), netip.MustParseAddr("10.9.0.30")
	live := map[string]bool{}
	check := func() {
		t.Helper()
		ips, macs := map[string]string{}, map[string]string{}
		for id := range live {
			i, err := h.store.Instance(id)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range i.NICs {
				if err := ipam.Usable(p, gw, netip.MustParseAddr(n.IPv4)); err != nil {
					t.Fatalf("instance %s has %s: %v", id, n.IPv4, err)
				}
				if other, ok := ips[n.IPv4]; ok {
					t.Fatalf("instances %s and %s share %s", id, other, n.IPv4)
				}
				if other, ok := macs[n.MAC]; ok {
					t.Fatalf("instances %s and %s share MAC %s", id, other, n.MAC)
				}
				ips[n.IPv4], macs[n.MAC] = id, id
			}
		}
		if got := h.store.AddressesInUse("n"); got != len(ips) {
			t.Fatalf("%d addresses in use, %d held by live instances", got, len(ips))
		}
	}
	for k := range 300 {
		id := fmt.Sprintf("i%d", k)
		switch {
		case len(live) > 0 && rng.IntN(3) == 0:
			for victim := range live {
				h.withdraw(victim)
				delete(live, victim)
				break
			}
		default:
			var nics []state.NIC
			for range 1 + rng.IntN(2) {
				nic := state.NIC{Network: "n"}
				if rng.IntN(2) == 0 {
					nic.IPv4 = fmt.Sprintf("10.9.0.%d", rng.IntN(40))
				}
				nics = append(nics, nic)
			}
			rev := h.store.Revision()
			r := h.createOn(id, nics...)
			switch {
			case r.Err == nil:
				live[id] = true
			case errors.Is(r.Err, ErrConflict), errors.Is(r.Err, ErrInvalid), errors.Is(r.Err, ErrNoAddress):
				if h.store.Revision() != rev {
					t.Fatalf("refused create %v changed the state", r.Err)
				}
				if errors.Is(r.Err, ErrNoAddress) && h.store.AddressesInUse("n") < ipam.Total(p)-1 {
					t.Fatalf("no address with %d of %d held: %v", h.store.AddressesInUse("n"), ipam.Total(p), r.Err)
				}
			default:
				t.Fatalf("create %v: %v", nics, r.Err)
			}
		}
		check()
	}
	// A replica restored from a snapshot allocates as this one does.
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t)
	if err := h2.fsm.Restore(nopCloser{&sink.buf}); err != nil {
		t.Fatal(err)
	}
	h2.now = h.now
	a, b := h.createOn("next", state.NIC{Network: "n"}), h2.createOn("next", state.NIC{Network: "n"})
	ia, _ := h.store.Instance("next")
	ib, _ := h2.store.Instance("next")
	if (a.Err == nil) != (b.Err == nil) || fmt.Sprint(ia.NICs) != fmt.Sprint(ib.NICs) {
		t.Fatalf("replicas disagree: %v %+v / %v %+v", a.Err, ia.NICs, b.Err, ib.NICs)
	}
	if a.Err == nil {
		live["next"] = true
	}
	for id := range live {
		h.withdraw(id)
	}
	if n := h.store.AddressesInUse("n"); n != 0 {
		t.Fatalf("%d addresses held after every instance was deleted", n)
	}
	h.mustApply(TypeDeleteNetwork, DeleteNetwork{Name: "n"})
}
