package e2echaos

import (
	"slices"
	"testing"
	"time"
)

func TestCheckInvariants(t *testing.T) {
	now := time.Unix(1000, 0)
	past := now.Add(-time.Minute)
	ok := Observed{
		Now:       now,
		Grace:     time.Second,
		Ops:       map[string]OpView{"op-1": {Found: true, Done: true, Made: map[string]int{"create": 1}}},
		Instances: map[string]InstanceView{"i-1": {Status: "STATUS_RUNNING", HostID: "h-1", Expect: "running"}},
		Domains:   map[string]map[string]string{"h-1": {"i-1": "running"}},
		Digests:   map[string]string{"a": "x", "b": "x"},
	}
	for _, tc := range []struct {
		name   string
		mutate func(o *Observed)
		want   []string
	}{
		{"all well", func(*Observed) {}, nil},
		{"op lost", func(o *Observed) { o.Ops["op-2"] = OpView{} }, []string{"op-lost"}},
		{"op twice", func(o *Observed) { o.Ops["op-1"] = OpView{Found: true, Done: true, Made: map[string]int{"create": 2}} }, []string{"op-twice"}},
		{"a move's import and adoption once each", func(o *Observed) {
			o.Ops["op-1"] = OpView{Found: true, Done: true, Made: map[string]int{"import": 1, "adopt": 1}}
		}, nil},
		{"imported twice", func(o *Observed) {
			o.Ops["op-1"] = OpView{Found: true, Done: true, Made: map[string]int{"import": 2, "create": 1}}
		}, []string{"op-twice"}},
		{"op past deadline", func(o *Observed) { o.Ops["op-1"] = OpView{Found: true, Deadline: past} }, []string{"op-past-deadline"}},
		{"op not done, deadline ahead", func(o *Observed) { o.Ops["op-1"] = OpView{Found: true, Deadline: now} }, nil},
		{"guest on two hosts", func(o *Observed) { o.Domains["h-2"] = map[string]string{"i-1": "running"} }, []string{"guest-on-two-hosts", "orphan"}},
		{"orphan domain", func(o *Observed) { o.Domains["h-1"]["i-9"] = "shut-off" }, []string{"orphan"}},
		{"domain of a deleted record", func(o *Observed) {
			o.Instances["i-1"] = InstanceView{Status: "STATUS_DELETED", Deleted: true, HostID: "h-1", Expect: "no-domain"}
		}, []string{"orphan", "status-vs-hypervisor"}},
		{"transitional past deadline", func(o *Observed) {
			o.Instances["i-1"] = InstanceView{Status: "STATUS_STOPPING", Transitional: true, Deadline: past, HostID: "h-1"}
		}, []string{"transitional-past-deadline"}},
		{"status not libvirt's", func(o *Observed) { o.Domains["h-1"]["i-1"] = "shut-off" }, []string{"status-vs-hypervisor"}},
		{"domain missing", func(o *Observed) { delete(o.Domains["h-1"], "i-1") }, []string{"status-vs-hypervisor"}},
		{"digests differ", func(o *Observed) { o.Digests["c"] = "y" }, []string{"digest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			o.Ops = clone(ok.Ops)
			o.Instances = clone(ok.Instances)
			o.Digests = clone(ok.Digests)
			o.Domains = map[string]map[string]string{"h-1": clone(ok.Domains["h-1"])}
			tc.mutate(&o)
			var got []string
			for _, v := range Check(o) {
				got = append(got, v.Invariant)
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("violations %v, want %v (%v)", got, want, Check(o))
			}
		})
	}
}

func clone[V any](m map[string]V) map[string]V {
	out := map[string]V{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestInjectorIsReplayedBySeed(t *testing.T) {
	a, b := NewInjector(42, AllFaults, false), NewInjector(42, AllFaults, false)
	for range 100 {
		fa, da := a.Next(time.Second)
		fb, db := b.Next(time.Second)
		if fa != fb || da != db {
			t.Fatalf("same seed, different faults: %s %s / %s %s", fa, da, fb, db)
		}
		if fa == FaultLibvirtdRestart {
			t.Fatal("libvirtd restarted without being allowed")
		}
		if da < 0 || da > time.Second {
			t.Fatalf("delay %s outside 0..1s", da)
		}
	}
	if k := NewInjector(1, AllFaults, true).Kinds(); !slices.Contains(k, FaultLibvirtdRestart) {
		t.Errorf("allowed, but not among %v", k)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n ...int) (out []time.Duration) {
		for _, v := range n {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	for _, tc := range []struct {
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(5), 99, 5 * time.Millisecond},
		{ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 100), 99, 100 * time.Millisecond},
	} {
		if got := Percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("p%v of %v: %s, want %s", tc.p, tc.in, got, tc.want)
		}
	}
}
