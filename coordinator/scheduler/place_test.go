package scheduler

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func req(v uint32, m, d uint64) Request { return Request{Resources: Resources{v, m, d}} }

func alloc(h Host, v uint32, m, d uint64) Host { h.Allocated = Resources{v, m, d}; return h }

func TestPlace(t *testing.T) {
	a, b, c := host("a", 16, 32768, 500), host("b", 16, 32768, 500), host("c", 16, 32768, 500)
	pack := Policy{Pack: true}
	cases := []struct {
		name  string
		r     Request
		hosts []Host
		p     Policy
		want  string // "" means ErrNoHost
	}{
		{"spread: most free memory", req(1, 1024, 1), []Host{alloc(a, 1, 8192, 0), alloc(b, 1, 4096, 0), alloc(c, 1, 16384, 0)}, Policy{}, "b"},
		{"pack: least free memory", req(1, 1024, 1), []Host{alloc(a, 1, 8192, 0), alloc(b, 1, 4096, 0), alloc(c, 1, 16384, 0)}, pack, "c"},
		{"pack skips hosts that do not fit", req(1, 20000, 1), []Host{alloc(a, 1, 8192, 0), alloc(b, 1, 4096, 0), alloc(c, 1, 16384, 0)}, pack, "a"},
		// Shares after: big 17408/65536 = 27%, small 2048/16384 = 12.5%; free MiB would pick big.
		{"spread compares memory shares, not free MiB", req(1, 1024, 1), []Host{alloc(host("big", 16, 65536, 0), 0, 16384, 0), alloc(host("small", 16, 16384, 0), 0, 1024, 0)},
			Policy{}, "small"},
		{"spread: the same shares under memory overcommit", req(1, 1024, 1), []Host{alloc(host("big", 16, 65536, 0), 0, 16384, 0), alloc(host("small", 16, 16384, 0), 0, 1024, 0)},
			Policy{MemoryOvercommit: 2}, "small"},
		{"spread without overcommit", req(1, 1024, 1), []Host{alloc(host("big", 16, 32768, 0), 0, 16384, 0), alloc(host("small", 16, 24576, 0), 0, 4096, 0)},
			Policy{}, "small"},
		{"spread tie: lower vcpu ratio", req(2, 1024, 1), []Host{alloc(a, 8, 4096, 0), alloc(b, 4, 4096, 0)}, Policy{}, "b"},
		{"spread tie: vcpu ratio, not count", req(1, 1024, 1), []Host{
			alloc(host("a", 4, 32768, 0), 1, 0, 0),  // 2/4 after
			alloc(host("b", 16, 32768, 0), 6, 0, 0), // 7/16 after
		}, Policy{}, "b"},
		{"spread tie: id", req(1, 1024, 1), []Host{b, c, a}, Policy{}, "a"},
		{"pack tie: id, not vcpu ratio", req(1, 1024, 1), []Host{alloc(b, 1, 0, 0), alloc(a, 8, 0, 0)}, pack, "a"},
		{"skips not ready", req(1, 1, 1), []Host{with(a, func(h *Host) { h.Ready = false }), alloc(b, 8, 30000, 0)}, Policy{}, "b"},
		{"skips cordoned", req(1, 1, 1), []Host{with(a, func(h *Host) { h.Cordoned = true }), alloc(b, 8, 30000, 0)}, Policy{}, "b"},
		{"kind", Request{Kind: "xen"}, []Host{a, with(b, func(h *Host) { h.Kind = "xen" })}, Policy{}, "b"},
		{"labels", Request{Labels: map[string]string{"zone": "b"}}, []Host{with(a, func(h *Host) { h.Labels = map[string]string{"zone": "a"} }),
			with(c, func(h *Host) { h.Labels = map[string]string{"zone": "b"} })}, Policy{}, "c"},
		{"anti-affinity: second of group goes elsewhere", Request{AntiAffinityGroup: "web"},
			[]Host{with(a, func(h *Host) { h.Groups = map[string]int{"web": 1} }), alloc(b, 8, 30000, 0)}, Policy{}, "b"},
		{"anti-affinity: only one host", Request{AntiAffinityGroup: "web"},
			[]Host{with(a, func(h *Host) { h.Groups = map[string]int{"web": 1} })}, Policy{}, ""},
		{"all full", req(1, 1, 1), []Host{alloc(a, 16, 0, 0), alloc(b, 0, 32768, 0)}, Policy{}, ""},
		{"no hosts", req(1, 1, 1), nil, Policy{}, ""},
	}
	for _, c := range cases {
		d, err := Place(c.r, c.hosts, c.p)
		if c.want == "" {
			if !errors.Is(err, ErrNoHost) {
				t.Errorf("%s: got %+v, %v; want ErrNoHost", c.name, d, err)
			}
			continue
		}
		if err != nil || d.HostID != c.want || len(d.Preempt) != 0 {
			t.Errorf("%s: got %+v, %v; want %q", c.name, d, err, c.want)
		}
	}
}

func TestPlaceAntiAffinitySequence(t *testing.T) {
	hosts := []Host{host("a", 8, 8192, 0), host("b", 8, 8192, 0)}
	r := Request{Resources: Resources{1, 1024, 0}, AntiAffinityGroup: "web"}
	for i, want := range []string{"a", "b", ""} {
		d, err := Place(r, hosts, Policy{})
		if want == "" {
			if !errors.Is(err, ErrNoHost) || !strings.Contains(err.Error(), "2 already run group web") {
				t.Fatalf("third: got %+v, %v", d, err)
			}
			break
		}
		if err != nil || d.HostID != want {
			t.Fatalf("instance %d: got %+v, %v; want %s", i, d, err, want)
		}
		h := &hosts[i]
		h.Allocated.MemoryMiB += 1024
		h.Groups = map[string]int{"web": 1}
	}
}

func TestPlaceErrorExplains(t *testing.T) {
	_, err := Place(req(1, 4096, 0), []Host{alloc(host("a", 4, 4096, 0), 0, 1024, 0), with(host("b", 4, 8192, 0), func(h *Host) { h.Cordoned = true })}, Policy{})
	want := "no host can take the instance: 2 hosts: 1 cordoned, 1 full (memory)"
	if !errors.Is(err, ErrNoHost) || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// The decision depends on the hosts, not on their order, and Place does not
// modify its input.
func TestPlaceDeterministicAndPure(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		hosts := randomHosts(rng, 2+rng.IntN(10))
		p := randomPolicy(rng)
		r := randomRequest(rng)
		before := cloneHosts(hosts)
		d1, err1 := Place(r, hosts, p)
		if !reflect.DeepEqual(before, hosts) {
			t.Fatal("Place modified its input")
		}
		rng.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
		d2, err2 := Place(r, hosts, p)
		if !reflect.DeepEqual(d1, d2) || (err1 == nil) != (err2 == nil) {
			t.Fatalf("order changed the decision: %+v %v vs %+v %v", d1, err1, d2, err2)
		}
	}
}
