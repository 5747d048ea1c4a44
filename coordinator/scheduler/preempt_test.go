package scheduler

import (
	"errors"
	"reflect"
	"testing"
)

// withPreemptible adds preemptible instances to h, updating Allocated and
// Groups.
func withPreemptible(h Host, ps ...Placed) Host {
	h.Groups = cloneGroups(h.Groups)
	for _, p := range ps {
		h.Preemptible = append(h.Preemptible, p)
		h.Allocated.VCPUs += p.Resources.VCPUs
		h.Allocated.MemoryMiB += p.Resources.MemoryMiB
		h.Allocated.DiskGiB += p.Resources.DiskGiB
		if p.Group != "" {
			h.Groups[p.Group]++
		}
	}
	return h
}

func pre(id string, v uint32, m uint64) Placed { return Placed{ID: id, Resources: Resources{v, m, 0}} }

func TestPreempt(t *testing.T) {
	full := func(id string) Host { return alloc(host(id, 8, 8192, 0), 8, 8192, 0) }
	// A host full with non-preemptible work except what is listed.
	part := func(id string, ps ...Placed) Host {
		h := host(id, 8, 8192, 0)
		var v uint32
		var m uint64
		for _, p := range ps {
			v += p.Resources.VCPUs
			m += p.Resources.MemoryMiB
		}
		return withPreemptible(alloc(h, 8-v, 8192-m, 0), ps...)
	}
	normal := req(2, 2048, 0)
	cases := []struct {
		name  string
		r     Request
		hosts []Host
		want  Decision // zero means ErrNoHost
	}{
		{"fewest evictions wins", normal, []Host{
			part("a", pre("a1", 1, 1024), pre("a2", 1, 1024), pre("a3", 1, 1024)),
			part("b", pre("b1", 2, 2048), pre("b2", 1, 512)),
		}, Decision{"b", []string{"b1"}}},
		{"largest memory first", normal, []Host{
			part("a", pre("small", 1, 512), pre("big", 4, 4096), pre("mid", 2, 2048)),
		}, Decision{"a", []string{"big"}}},
		{"evicts only as many as needed", normal, []Host{
			part("a", pre("p1", 1, 1024), pre("p2", 1, 1024), pre("p3", 1, 1024), pre("p4", 1, 1024)),
		}, Decision{"a", []string{"p1", "p2"}}},
		{"redundant large eviction taken back", req(2, 3072, 0), []Host{
			// Largest first takes "a" (memory, no vCPU), then "b" for vCPU;
			// "b" alone has room for both, so "a" stays.
			part("h", pre("a", 0, 4096), pre("b", 2, 3072)),
		}, Decision{"h", []string{"b"}}},
		{"tie on count: least evicted memory", normal, []Host{
			part("a", pre("a1", 2, 4096)),
			part("b", pre("b1", 2, 2048)),
		}, Decision{"b", []string{"b1"}}},
		{"tie on count and memory: id", normal, []Host{
			part("b", pre("b1", 2, 2048)),
			part("a", pre("a1", 2, 2048)),
		}, Decision{"a", []string{"a1"}}},
		{"fitting host beats preemption", normal, []Host{
			part("a", pre("a1", 2, 2048)),
			alloc(host("z", 8, 8192, 0), 6, 6144, 0),
		}, Decision{"z", nil}},
		{"preemptible request never evicts", Request{Resources: normal.Resources, Preemptible: true}, []Host{
			part("a", pre("a1", 4, 4096)),
		}, Decision{}},
		{"host without preemptibles is not chosen", normal, []Host{
			full("a"),
			part("b", pre("b1", 2, 2048)),
		}, Decision{"b", []string{"b1"}}},
		{"only hosts without preemptibles", normal, []Host{full("a"), full("b")}, Decision{}},
		{"not enough preemptible to free", req(4, 4096, 0), []Host{part("a", pre("a1", 1, 1024))}, Decision{}},
		{"too small even empty", req(16, 1024, 0), []Host{part("a", pre("a1", 8, 8192))}, Decision{}},
		{"cordoned host not used", normal, []Host{with(part("a", pre("a1", 2, 2048)), func(h *Host) { h.Cordoned = true })}, Decision{}},
		{"not-ready host not used", normal, []Host{with(part("a", pre("a1", 2, 2048)), func(h *Host) { h.Ready = false })}, Decision{}},
		{"wrong kind not used", Request{Resources: normal.Resources, Kind: "xen"}, []Host{part("a", pre("a1", 2, 2048))}, Decision{}},
		{"labels still required", Request{Resources: normal.Resources, Labels: map[string]string{"zone": "a"}}, []Host{part("a", pre("a1", 2, 2048))}, Decision{}},
		{"same-group preemptible evicted frees the slot", Request{AntiAffinityGroup: "web"}, []Host{
			withPreemptible(host("a", 8, 8192, 0), Placed{ID: "w", Resources: Resources{1, 512, 0}, Group: "web"}, pre("x", 4, 4096)),
		}, Decision{"a", []string{"w"}}},
		{"same-group eviction first, then capacity", Request{Resources: Resources{4, 4096, 0}, AntiAffinityGroup: "web"}, []Host{
			part("a", Placed{ID: "w", Resources: Resources{1, 512, 0}, Group: "web"}, pre("x", 4, 4096)),
		}, Decision{"a", []string{"w", "x"}}},
		{"same-group non-preemptible blocks", Request{AntiAffinityGroup: "web"}, []Host{
			withPreemptible(with(host("a", 8, 8192, 0), func(h *Host) { h.Groups = map[string]int{"web": 1} }),
				Placed{ID: "w", Resources: Resources{1, 512, 0}, Group: "web"}),
		}, Decision{}},
		{"anti-affinity host skipped for one that needs evictions", Request{Resources: normal.Resources, AntiAffinityGroup: "web"}, []Host{
			with(alloc(host("a", 8, 8192, 0), 0, 0, 0), func(h *Host) { h.Groups = map[string]int{"web": 1} }),
			part("b", pre("b1", 2, 2048)),
		}, Decision{"b", []string{"b1"}}},
	}
	for _, c := range cases {
		before := cloneHosts(c.hosts)
		d, err := Place(c.r, c.hosts, Policy{})
		if !reflect.DeepEqual(before, c.hosts) {
			t.Errorf("%s: Place modified its input", c.name)
		}
		if c.want.HostID == "" {
			if !errors.Is(err, ErrNoHost) {
				t.Errorf("%s: got %+v, %v; want ErrNoHost", c.name, d, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(d, c.want) {
			t.Errorf("%s: got %+v, %v; want %+v", c.name, d, err, c.want)
			continue
		}
		// The commit-time check agrees.
		for _, h := range c.hosts {
			if h.ID == d.HostID && !Fits(Evict(h, d.Preempt), c.r, Policy{}) {
				t.Errorf("%s: decision does not fit at commit", c.name)
			}
		}
	}
}

func TestEvict(t *testing.T) {
	h := withPreemptible(alloc(host("a", 8, 8192, 0), 2, 1024, 0),
		Placed{ID: "w", Resources: Resources{1, 512, 0}, Group: "web"}, pre("x", 2, 2048), pre("y", 1, 1024))
	before := cloneHosts([]Host{h})[0]
	got := Evict(h, []string{"w", "y", "gone"})
	if !reflect.DeepEqual(before, h) {
		t.Fatal("Evict modified its input")
	}
	want := Resources{4, 3072, 0}
	if got.Allocated != want || got.Groups["web"] != 0 || len(got.Preemptible) != 1 || got.Preemptible[0].ID != "x" {
		t.Fatalf("got %+v", got)
	}
	if g := Evict(h, nil); !reflect.DeepEqual(g, h) {
		t.Fatal("Evict(nil) changed the host")
	}
}

func TestAssignThenEvictRoundTrips(t *testing.T) {
	h := Host{ID: "h", Allocated: Resources{1, 100, 1}, Groups: map[string]int{"db": 1}}
	r := Request{Resources: Resources{2, 200, 3}, AntiAffinityGroup: "web", Preemptible: true}
	a := Assign(h, "i1", r)
	if a.Allocated != (Resources{3, 300, 4}) || a.Groups["web"] != 1 || len(a.Preemptible) != 1 {
		t.Fatalf("after Assign: %+v", a)
	}
	if h.Groups["web"] != 0 || len(h.Preemptible) != 0 {
		t.Fatalf("Assign modified its input: %+v", h)
	}
	if b := Evict(a, []string{"i1"}); b.Allocated != h.Allocated || b.Groups["web"] != 0 || len(b.Preemptible) != 0 {
		t.Fatalf("Evict after Assign: %+v", b)
	}
}
