package scheduler

import (
	"math"
	"testing"
)

// host returns a ready kvm host with the given physical capacity.
func host(id string, vcpus uint32, mem, disk uint64) Host {
	return Host{ID: id, Kind: "kvm", Ready: true, Capacity: Resources{vcpus, mem, disk}}
}

func with(h Host, f func(*Host)) Host { f(&h); return h }

func TestFits(t *testing.T) {
	h := host("a", 4, 8192, 100)
	used := with(h, func(h *Host) { h.Allocated = Resources{3, 6144, 60} })
	res := func(v uint32, m, d uint64) Request { return Request{Resources: Resources{v, m, d}} }
	cpu2 := Policy{CPUOvercommit: 2}
	cases := []struct {
		name string
		h    Host
		r    Request
		p    Policy
		want bool
	}{
		// Capacity, per resource.
		{"exact fit on empty host", h, res(4, 8192, 100), Policy{}, true},
		{"vcpu fits exactly", used, res(1, 0, 0), Policy{}, true},
		{"vcpu short", used, res(2, 0, 0), Policy{}, false},
		{"memory fits exactly", used, res(0, 2048, 0), Policy{}, true},
		{"memory short", used, res(0, 2049, 0), Policy{}, false},
		{"disk fits exactly", used, res(0, 0, 40), Policy{}, true},
		{"disk short", used, res(0, 0, 41), Policy{}, false},
		{"disk unknown is not checked", with(used, func(h *Host) { h.Capacity.DiskGiB = 0 }), res(0, 0, 1<<40), Policy{}, true},
		{"already overfull host takes nothing", with(h, func(h *Host) { h.Allocated.MemoryMiB = 9000 }), res(0, 0, 0), Policy{}, false},
		{"huge request does not wrap", used, res(0, math.MaxUint64, 0), Policy{}, false},
		// Overcommit.
		{"cpu 2.0 admits 8 vcpus on 4 cores", h, res(8, 1, 1), cpu2, true},
		{"cpu 2.0 refuses 9", h, res(9, 1, 1), cpu2, false},
		{"cpu 2.0 counts what is allocated", used, res(5, 1, 1), cpu2, true},
		{"cpu 2.0 counts what is allocated, refuses 6", used, res(6, 1, 1), cpu2, false},
		{"memory 1.5", h, res(1, 12288, 1), Policy{MemoryOvercommit: 1.5}, true},
		{"memory 1.5 refuses one more", h, res(1, 12289, 1), Policy{MemoryOvercommit: 1.5}, false},
		{"disk 1.15 of 100 is 115", h, res(1, 1, 115), Policy{DiskOvercommit: 1.15}, true},
		{"disk 1.15 of 100 is not 116", h, res(1, 1, 116), Policy{DiskOvercommit: 1.15}, false},
		{"ratio below 1 reserves headroom", h, res(1, 4097, 1), Policy{MemoryOvercommit: 0.5}, false},
		{"floor: 1.3 of 4 cores is 5", h, res(5, 1, 1), Policy{CPUOvercommit: 1.3}, true},
		{"floor: 1.3 of 4 cores is not 6", h, res(6, 1, 1), Policy{CPUOvercommit: 1.3}, false},
		{"overcommit does not enable unknown disk check", with(h, func(h *Host) { h.Capacity.DiskGiB = 0 }), res(0, 0, 500), Policy{DiskOvercommit: 2}, true},
		// Hypervisor kind.
		{"kind matches", h, Request{Kind: "kvm"}, Policy{}, true},
		{"kind is exact: kvm request on qemu host", with(h, func(h *Host) { h.Kind = "qemu" }), Request{Kind: "kvm"}, Policy{}, false},
		{"kind is exact: qemu request on kvm host", h, Request{Kind: "qemu"}, Policy{}, false},
		{"empty kind is any", with(h, func(h *Host) { h.Kind = "xen" }), Request{}, Policy{}, true},
		// Networks.
		{"managed networks on a host that makes them", with(h, func(h *Host) { h.ManagedNetworks = true }), Request{ManagedNetworks: true}, Policy{}, true},
		{"managed networks on a host that does not", h, Request{ManagedNetworks: true}, Policy{}, false},
		{"bridges all present", with(h, func(h *Host) { h.Bridges = []string{"br0", "br1"} }), Request{Bridges: []string{"br1", "br0"}}, Policy{}, true},
		{"a bridge missing", with(h, func(h *Host) { h.Bridges = []string{"br0"} }), Request{Bridges: []string{"br0", "br1"}}, Policy{}, false},
		{"bridges do not make networks", with(h, func(h *Host) { h.Bridges = []string{"br0"} }), Request{ManagedNetworks: true}, Policy{}, false},
		{"no networks asked: any host", with(h, func(h *Host) { h.ManagedNetworks = false }), res(1, 1, 1), Policy{}, true},
		// Status.
		{"not ready", with(h, func(h *Host) { h.Ready = false }), res(1, 1, 1), Policy{}, false},
		{"cordoned", with(h, func(h *Host) { h.Cordoned = true }), res(1, 1, 1), Policy{}, false},
		// Labels.
		{"labels all present", with(h, func(h *Host) { h.Labels = map[string]string{"zone": "a", "ssd": "true"} }),
			Request{Labels: map[string]string{"zone": "a", "ssd": "true"}}, Policy{}, true},
		{"label value differs", with(h, func(h *Host) { h.Labels = map[string]string{"zone": "b"} }),
			Request{Labels: map[string]string{"zone": "a"}}, Policy{}, false},
		{"label missing", with(h, func(h *Host) { h.Labels = map[string]string{"zone": "a"} }),
			Request{Labels: map[string]string{"zone": "a", "ssd": "true"}}, Policy{}, false},
		{"empty label value must still be present", h, Request{Labels: map[string]string{"gpu": ""}}, Policy{}, false},
		{"extra host labels are fine", with(h, func(h *Host) { h.Labels = map[string]string{"zone": "a"} }), Request{}, Policy{}, true},
		// Anti-affinity.
		{"group absent", with(h, func(h *Host) { h.Groups = map[string]int{"db": 1} }), Request{AntiAffinityGroup: "web"}, Policy{}, true},
		{"group present", with(h, func(h *Host) { h.Groups = map[string]int{"web": 1} }), Request{AntiAffinityGroup: "web"}, Policy{}, false},
		{"group count zero", with(h, func(h *Host) { h.Groups = map[string]int{"web": 0} }), Request{AntiAffinityGroup: "web"}, Policy{}, true},
		{"no group ignores groups", with(h, func(h *Host) { h.Groups = map[string]int{"": 3, "web": 1} }), Request{}, Policy{}, true},
	}
	for _, c := range cases {
		if got := Fits(c.h, c.r, c.p); got != c.want {
			t.Errorf("%s: Fits = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestScale(t *testing.T) {
	cases := []struct {
		c     uint64
		ratio float64
		want  uint64
	}{
		{4, 0, 4},
		{4, 1, 4},
		{4, 2, 8},
		{4, 1.3, 5},
		{100, 1.15, 115},
		{3, 1.1, 3},
		{10, 0.5, 5},
		{0, 4, 0},
		{4, -1, 4},
		{4, math.NaN(), 4},
		{4, math.Inf(1), math.MaxUint64},
		{math.MaxUint64, 1, math.MaxUint64},
		{math.MaxUint64, 2, math.MaxUint64},
		{1<<53 + 1, 1, 1<<53 + 1}, // ratio 1 is exact even beyond float64 precision
	}
	for _, c := range cases {
		if got := scale(c.c, c.ratio); got != c.want {
			t.Errorf("scale(%d, %v) = %d, want %d", c.c, c.ratio, got, c.want)
		}
	}
}
