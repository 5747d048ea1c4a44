package scheduler

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// The property tests simulate a cluster: instances are placed with Place and
// committed the way the FSM does, re-checking Fits(Evict(h, d.Preempt), r, p)
// against the hosts as they are at commit time.

var kinds = []string{"kvm", "qemu", "xen", "fake"}

func randomPolicy(rng *rand.Rand) Policy {
	// Ratios exactly representable in binary, so the invariant check below
	// can compute floor(capacity*ratio) independently of scale.
	ratios := []float64{0, 1, 1.5, 2, 4, 0.75}
	return Policy{
		Pack:             rng.IntN(2) == 0,
		CPUOvercommit:    ratios[rng.IntN(len(ratios))],
		MemoryOvercommit: ratios[rng.IntN(3)],
		DiskOvercommit:   ratios[rng.IntN(4)],
	}
}

func randomHosts(rng *rand.Rand, n int) []Host {
	hosts := make([]Host, n)
	for i := range hosts {
		h := Host{
			ID:       fmt.Sprintf("h%02d", i),
			Kind:     kinds[rng.IntN(len(kinds))],
			Ready:    rng.IntN(10) != 0,
			Cordoned: rng.IntN(10) == 0,
			Labels:   map[string]string{"zone": string(rune('a' + rng.IntN(2)))},
			Capacity: Resources{VCPUs: uint32(4 + rng.IntN(29)), MemoryMiB: uint64(4+rng.IntN(61)) * 1024},
			Groups:   map[string]int{},
		}
		if rng.IntN(2) == 0 {
			h.Labels["ssd"] = "true"
		}
		if rng.IntN(5) != 0 {
			h.Capacity.DiskGiB = uint64(100 + rng.IntN(900))
		}
		hosts[i] = h
	}
	return hosts
}

func randomRequest(rng *rand.Rand) Request {
	r := Request{Resources: Resources{
		VCPUs:     uint32(1 + rng.IntN(8)),
		MemoryMiB: uint64(512 * (1 + rng.IntN(32))),
		DiskGiB:   uint64(rng.IntN(200)),
	}}
	if rng.IntN(3) == 0 {
		r.Kind = kinds[rng.IntN(len(kinds))]
	}
	if rng.IntN(5) == 0 {
		r.Labels = map[string]string{"zone": string(rune('a' + rng.IntN(2)))}
	}
	if rng.IntN(3) == 0 {
		r.AntiAffinityGroup = fmt.Sprintf("g%d", rng.IntN(4))
	}
	r.Preemptible = rng.IntN(3) == 0
	return r
}

func cloneGroups(g map[string]int) map[string]int {
	out := make(map[string]int, len(g))
	for k, v := range g {
		out[k] = v
	}
	return out
}

func cloneHosts(hosts []Host) []Host {
	out := slices.Clone(hosts)
	for i := range out {
		if hosts[i].Groups != nil {
			out[i].Groups = cloneGroups(hosts[i].Groups)
		}
		out[i].Preemptible = slices.Clone(hosts[i].Preemptible)
	}
	return out
}

type instance struct {
	id, host string
	r        Request
}

// cluster is the simulated replicated state.
type cluster struct {
	t     *testing.T
	p     Policy
	hosts []Host
	insts []instance // in creation order, for deterministic picks
	next  int

	placed, preempted, evicted, rejected int
}

func (c *cluster) host(id string) *Host {
	for i := range c.hosts {
		if c.hosts[i].ID == id {
			return &c.hosts[i]
		}
	}
	c.t.Fatalf("no host %s", id)
	return nil
}

// commit is the FSM: it applies d only if it still fits now.
func (c *cluster) commit(r Request, d Decision) bool {
	h := c.host(d.HostID)
	after := Evict(*h, d.Preempt)
	if !Fits(after, r, c.p) {
		c.rejected++
		return false
	}
	for _, id := range d.Preempt {
		if slices.ContainsFunc(h.Preemptible, func(p Placed) bool { return p.ID == id }) {
			c.insts = slices.DeleteFunc(c.insts, func(i instance) bool { return i.id == id })
			c.evicted++
		}
	}
	if len(d.Preempt) > 0 {
		c.preempted++
	}
	*h = after
	c.next++
	id := fmt.Sprintf("i%d", c.next)
	c.insts = append(c.insts, instance{id, h.ID, r})
	*h = Assign(*h, id, r)
	c.placed++
	return true
}

func (c *cluster) remove(k int) {
	in := c.insts[k]
	c.insts = slices.Delete(c.insts, k, k+1)
	h := c.host(in.host)
	h.Allocated.VCPUs -= in.r.Resources.VCPUs
	h.Allocated.MemoryMiB -= in.r.Resources.MemoryMiB
	h.Allocated.DiskGiB -= in.r.Resources.DiskGiB
	if g := in.r.AntiAffinityGroup; g != "" {
		if h.Groups[g]--; h.Groups[g] == 0 {
			delete(h.Groups, g)
		}
	}
	h.Preemptible = slices.DeleteFunc(h.Preemptible, func(p Placed) bool { return p.ID == in.id })
}

// churn removes some instances and flips some host states.
func (c *cluster) churn(rng *rand.Rand) {
	for range rng.IntN(3) {
		if len(c.insts) > 0 {
			c.remove(rng.IntN(len(c.insts)))
		}
	}
	if rng.IntN(4) == 0 {
		h := &c.hosts[rng.IntN(len(c.hosts))]
		h.Ready = !h.Ready
	}
	if rng.IntN(8) == 0 {
		h := &c.hosts[rng.IntN(len(c.hosts))]
		h.Cordoned = !h.Cordoned
	}
}

func limit(c uint64, ratio float64) uint64 {
	if ratio == 0 {
		ratio = 1
	}
	return uint64(math.Floor(float64(c) * ratio))
}

// check asserts the invariants: the hosts' bookkeeping matches the
// instances, no host is over its allocatable amount in any resource, and no
// host runs two instances of one anti-affinity group.
func (c *cluster) check() {
	t := c.t
	t.Helper()
	for _, h := range c.hosts {
		var sum Resources
		groups := map[string]int{}
		var pre []string
		for _, in := range c.insts {
			if in.host != h.ID {
				continue
			}
			sum.VCPUs += in.r.Resources.VCPUs
			sum.MemoryMiB += in.r.Resources.MemoryMiB
			sum.DiskGiB += in.r.Resources.DiskGiB
			if g := in.r.AntiAffinityGroup; g != "" {
				groups[g]++
				if groups[g] > 1 {
					t.Fatalf("host %s runs two instances of group %s", h.ID, g)
				}
			}
			if in.r.Preemptible {
				pre = append(pre, in.id)
			}
		}
		if sum != h.Allocated {
			t.Fatalf("host %s: allocated %+v, instances sum to %+v", h.ID, h.Allocated, sum)
		}
		for g, n := range h.Groups {
			if n != groups[g] {
				t.Fatalf("host %s: group %s count %d, instances %d", h.ID, g, n, groups[g])
			}
		}
		var got []string
		for _, p := range h.Preemptible {
			got = append(got, p.ID)
		}
		slices.Sort(got)
		slices.Sort(pre)
		if !slices.Equal(got, pre) {
			t.Fatalf("host %s: preemptible %v, instances %v", h.ID, got, pre)
		}
		if uint64(sum.VCPUs) > limit(uint64(h.Capacity.VCPUs), c.p.CPUOvercommit) ||
			sum.MemoryMiB > limit(h.Capacity.MemoryMiB, c.p.MemoryOvercommit) ||
			h.Capacity.DiskGiB != 0 && sum.DiskGiB > limit(h.Capacity.DiskGiB, c.p.DiskOvercommit) {
			t.Fatalf("host %s over allocatable: %+v of %+v under %+v", h.ID, sum, h.Capacity, c.p)
		}
	}
}

// checkDecision asserts what Place promises about one decision on hosts.
func checkDecision(t *testing.T, r Request, hosts []Host, p Policy, d Decision, err error) {
	t.Helper()
	anyFits := slices.ContainsFunc(hosts, func(h Host) bool { return Fits(h, r, p) })
	if err != nil {
		if !errors.Is(err, ErrNoHost) || anyFits {
			t.Fatalf("Place(%+v) = %v, but some host fits", r, err)
		}
		return
	}
	i := slices.IndexFunc(hosts, func(h Host) bool { return h.ID == d.HostID })
	if i < 0 {
		t.Fatalf("Place chose unknown host %q", d.HostID)
	}
	h := hosts[i]
	if !Fits(Evict(h, d.Preempt), r, p) {
		t.Fatalf("decision %+v does not fit after its evictions", d)
	}
	if len(d.Preempt) == 0 {
		return
	}
	if r.Preemptible || anyFits {
		t.Fatalf("needless preemption %+v (preemptible request %v, a host fits %v)", d, r.Preemptible, anyFits)
	}
	for k, id := range d.Preempt {
		if !slices.ContainsFunc(h.Preemptible, func(p Placed) bool { return p.ID == id }) {
			t.Fatalf("evicts %s, not preemptible on %s", id, h.ID)
		}
		// Every eviction is needed.
		if Fits(Evict(h, slices.Delete(slices.Clone(d.Preempt), k, k+1)), r, p) {
			t.Fatalf("decision %+v: evicting %s is not needed", d, id)
		}
	}
}

// TestConcurrentPlacements computes several decisions against one stale
// snapshot, as handlers on concurrent (or successive) leaders would, then
// commits them in random order with the commit-time check.
func TestConcurrentPlacements(t *testing.T) {
	var total cluster
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 0xf107))
		c := &cluster{t: t, p: randomPolicy(rng), hosts: randomHosts(rng, 3+rng.IntN(8))}
		for range 40 {
			c.churn(rng)
			snapshot := cloneHosts(c.hosts)
			reqs := make([]Request, 2+rng.IntN(7))
			for i := range reqs {
				reqs[i] = randomRequest(rng)
			}
			// Place concurrently on the shared snapshot: under -race this
			// also shows that Place only reads its input.
			ds := make([]Decision, len(reqs))
			errs := make([]error, len(reqs))
			var wg sync.WaitGroup
			for i := range reqs {
				wg.Go(func() { ds[i], errs[i] = Place(reqs[i], snapshot, c.p) })
			}
			wg.Wait()
			for i := range reqs {
				checkDecision(t, reqs[i], snapshot, c.p, ds[i], errs[i])
			}
			for _, i := range rng.Perm(len(reqs)) {
				if errs[i] == nil {
					c.commit(reqs[i], ds[i])
					c.check()
				}
			}
		}
		total.placed += c.placed
		total.preempted += c.preempted
		total.evicted += c.evicted
		total.rejected += c.rejected
	}
	t.Logf("placed %d, preempting %d (evicted %d), rejected at commit %d", total.placed, total.preempted, total.evicted, total.rejected)
	if total.rejected == 0 || total.preempted == 0 || total.evicted == 0 {
		t.Fatal("the simulation did not exercise stale decisions and preemption")
	}
}

// TestSequentialPlacements places one request at a time against current
// state: every decision must commit, and the invariants hold throughout.
func TestSequentialPlacements(t *testing.T) {
	var total cluster
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 0x5e9))
		c := &cluster{t: t, p: randomPolicy(rng), hosts: randomHosts(rng, 2+rng.IntN(10))}
		for range 150 {
			if rng.IntN(5) == 0 {
				c.churn(rng)
				c.check()
				continue
			}
			r := randomRequest(rng)
			d, err := Place(r, c.hosts, c.p)
			checkDecision(t, r, c.hosts, c.p, d, err)
			if err == nil && !c.commit(r, d) {
				t.Fatalf("fresh decision %+v rejected at commit", d)
			}
			c.check()
		}
		total.placed += c.placed
		total.preempted += c.preempted
		total.evicted += c.evicted
	}
	t.Logf("placed %d, preempting %d (evicted %d)", total.placed, total.preempted, total.evicted)
	if total.preempted == 0 {
		t.Fatal("the simulation did not exercise preemption")
	}
}
