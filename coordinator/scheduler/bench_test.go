package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchCluster builds n hosts of a few common shapes, 0-90% allocated, with
// labels, anti-affinity groups and some preemptible instances, and a mix of
// requests. full fills every host so that no request fits without
// preemption.
func benchCluster(n int, full bool) ([]Host, []Request) {
	rng := rand.New(rand.NewPCG(42, 42))
	shapes := []Resources{{32, 128 << 10, 1000}, {64, 256 << 10, 2000}, {96, 512 << 10, 4000}, {128, 1024 << 10, 0}}
	sizes := []Resources{{1, 1024, 10}, {2, 4096, 20}, {4, 8192, 40}, {8, 32768, 100}, {16, 65536, 200}}
	zones := []string{"a", "b", "c"}
	hosts := make([]Host, n)
	for i := range hosts {
		c := shapes[rng.IntN(len(shapes))]
		h := Host{
			ID: fmt.Sprintf("host-%04d", i), Kind: kinds[rng.IntN(2)], Ready: rng.IntN(50) != 0, Cordoned: rng.IntN(100) == 0,
			Labels:   map[string]string{"zone": zones[rng.IntN(3)], "rack": fmt.Sprint(rng.IntN(40))},
			Capacity: c, Groups: map[string]int{},
		}
		fill := rng.Float64() * 0.9
		if full {
			fill = 1
		}
		room := func(s Resources) bool {
			return float64(h.Allocated.MemoryMiB+s.MemoryMiB) <= fill*float64(c.MemoryMiB) &&
				h.Allocated.VCPUs+s.VCPUs <= 4*c.VCPUs
		}
		for k := 0; ; k++ {
			s := sizes[rng.IntN(len(sizes))]
			if !room(s) && full {
				s = sizes[0] // top up until not even the smallest size fits
			}
			if !room(s) {
				break
			}
			h.Allocated.VCPUs += s.VCPUs
			h.Allocated.MemoryMiB += s.MemoryMiB
			h.Allocated.DiskGiB += s.DiskGiB
			g := ""
			if rng.IntN(4) == 0 {
				g = fmt.Sprintf("svc-%d", rng.IntN(200))
				h.Groups[g]++
			}
			if rng.IntN(5) == 0 {
				h.Preemptible = append(h.Preemptible, Placed{ID: fmt.Sprintf("%s-i%d", h.ID, k), Resources: s, Group: g})
			}
		}
		hosts[i] = h
	}
	reqs := make([]Request, 64)
	for i := range reqs {
		r := Request{Resources: sizes[rng.IntN(len(sizes))]}
		if rng.IntN(2) == 0 {
			r.Kind = "kvm"
		}
		if rng.IntN(4) == 0 {
			r.Labels = map[string]string{"zone": zones[rng.IntN(3)]}
		}
		if rng.IntN(3) == 0 {
			r.AntiAffinityGroup = fmt.Sprintf("svc-%d", rng.IntN(200))
		}
		reqs[i] = r
	}
	return hosts, reqs
}

func benchPlace(b *testing.B, full bool, p Policy) {
	hosts, reqs := benchCluster(1000, full)
	n, preempted := 0, 0
	for b.Loop() {
		d, err := Place(reqs[n%len(reqs)], hosts, p)
		if err == nil && len(d.Preempt) > 0 {
			preempted++
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "placements/s")
	if full && preempted == 0 {
		b.Fatal("no preemption happened")
	}
}

// BenchmarkPlace1000Hosts is the common path: some hosts fit.
func BenchmarkPlace1000Hosts(b *testing.B) {
	b.Run("spread", func(b *testing.B) { benchPlace(b, false, Policy{CPUOvercommit: 4, MemoryOvercommit: 1}) })
	b.Run("pack", func(b *testing.B) { benchPlace(b, false, Policy{Pack: true, CPUOvercommit: 4}) })
	// Nothing fits as is: every call falls through to preemption.
	b.Run("preempt", func(b *testing.B) { benchPlace(b, true, Policy{CPUOvercommit: 4}) })
}
