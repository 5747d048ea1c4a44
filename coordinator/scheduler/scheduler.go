// Package scheduler decides which host an instance runs on.
//
// It is pure: every function computes its answer from its arguments alone,
// with no I/O, no clock, no randomness and no shared state, and never modifies
// what it is given. Two things depend on that:
//
//   - Safety under concurrency. An API handler places against a snapshot of
//     the replicated state that may already be stale (another handler, or a
//     former leader, may be placing against the same snapshot). The FSM then
//     re-checks the decision at commit time with the same code, against the
//     state as it is then: Fits(Evict(host, d.Preempt), req, policy). Only
//     decisions that still fit are committed, so racing placements can never
//     overfill a host or break anti-affinity, whatever order they commit in.
//   - Reproducibility. The same hosts, request and policy always give the
//     same decision (ties break by host id, not by input order), so a
//     placement can be replayed in a test or a post-mortem.
package scheduler

import (
	"errors"
	"fmt"
	"math/bits"
)

// ErrNoHost means no host can take the instance now, even after preemption:
// the instance waits (PENDING, or bidding if it is preemptible). Place wraps it
// with Explain's text.
var ErrNoHost = errors.New("no host can take the instance")

// Resources is an amount of vCPU, memory and disk.
type Resources struct {
	VCPUs     uint32
	MemoryMiB uint64
	DiskGiB   uint64
}

// Policy is how the cluster places instances.
type Policy struct {
	// Pack fills the fullest hosts first (least free memory after placement);
	// false spreads (most free memory after placement first).
	Pack bool
	// Overcommit ratios: allocatable = floor(physical capacity * ratio), per
	// resource. 0 (and any negative or NaN value) means 1.0.
	CPUOvercommit, MemoryOvercommit, DiskOvercommit float64
}

// Host is one candidate host as the scheduler sees it.
type Host struct {
	ID        string
	Kind      string // hypervisor kind: "kvm", "qemu", "xen", "fake"
	Ready     bool   // READY; DOWN, DISCONNECTED and DRAINING hosts are not
	Cordoned  bool   // takes no new instances
	Labels    map[string]string
	Capacity  Resources // physical; DiskGiB 0 means unknown: disk is not checked
	Allocated Resources // sum over instances placed there, preemptible ones included
	// Groups counts the instances of each anti-affinity group on the host,
	// preemptible ones included.
	Groups map[string]int
	// Preemptible lists the preemptible instances on the host, which a
	// non-preemptible request may evict.
	Preemptible []Placed
	// ManagedNetworks: the host makes NAT and isolated networks itself;
	// Bridges are the host bridges it has, for bridge networks.
	ManagedNetworks bool
	Bridges         []string
}

// Placed is a preemptible instance running on a host.
type Placed struct {
	ID        string
	Resources Resources
	Group     string // anti-affinity group, "" if none
}

// Request is an instance to place.
type Request struct {
	Resources Resources
	Kind      string            // required hypervisor kind, exact match; "" means any
	Labels    map[string]string // the host must carry every key=value
	// AntiAffinityGroup: no two instances of a group on one host; "" if none.
	AntiAffinityGroup string
	// Preemptible instances may be evicted for normal ones and never evict
	// others themselves.
	Preemptible bool
	// ManagedNetworks: the instance has a NIC on a NAT or isolated network;
	// Bridges: the host bridges its bridge networks attach to.
	ManagedNetworks bool
	Bridges         []string
}

// Decision is where to run a request.
type Decision struct {
	HostID string
	// Preempt lists the preemptible instances on HostID to evict first, in
	// eviction order. It is empty unless nothing fit without eviction.
	Preempt []string
}

// Place chooses a host for r. Among the hosts r Fits, spread picks the one
// whose memory would be least used after placement, as a share of what it
// may allocate (ties: lower vCPU allocation ratio, then lower id), and pack
// the one with the least free memory after placement (ties: lower id).
// Spread compares shares, not free MiB, so hosts of different sizes fill to
// the same level rather than the largest ones first.
// If none fits and r is not preemptible, Place evicts preemptible instances
// on the host where that takes the fewest (see preempt). Otherwise it returns
// ErrNoHost wrapped with Explain's reason.
func Place(r Request, hosts []Host, p Policy) (Decision, error) {
	req := widen(r.Resources)
	best := -1
	var bestScore score
	for i := range hosts {
		h := &hosts[i]
		if v, _ := judge(h, &r, &p); v != accepted {
			continue
		}
		s := scoreOf(h, req, &p)
		if best < 0 || s.better(&bestScore, p.Pack) {
			best, bestScore = i, s
		}
	}
	if best >= 0 {
		return Decision{HostID: hosts[best].ID}, nil
	}
	if !r.Preemptible {
		if d, ok := preempt(&r, hosts, &p); ok {
			return d, nil
		}
	}
	return Decision{}, fmt.Errorf("%w: %s", ErrNoHost, Explain(r, hosts, p))
}

// score is what Place ranks fitting hosts by.
type score struct {
	freeMem        uint64 // allocatable memory left after placement
	memNum, memDen uint64 // memory allocation share after placement
	cpuNum, cpuDen uint64 // vCPU allocation ratio after placement
	id             string
}

func scoreOf(h *Host, req amounts, p *Policy) score {
	lim := allocatable(h.Capacity, p)
	used := widen(h.Allocated).plus(req) // fits, so used <= lim
	s := score{freeMem: lim.mem - used.mem, memNum: used.mem, memDen: lim.mem, cpuNum: used.vcpus, cpuDen: lim.vcpus, id: h.ID}
	if s.cpuDen == 0 { // nothing allocatable (and nothing asked): count as full
		s.cpuNum, s.cpuDen = 1, 1
	}
	if s.memDen == 0 {
		s.memNum, s.memDen = 1, 1
	}
	return s
}

// cmpRatio compares a/b with c/d exactly, in 128 bits: -1, 0 or +1.
func cmpRatio(a, b, c, d uint64) int {
	lh, ll := bits.Mul64(a, d)
	rh, rl := bits.Mul64(c, b)
	switch {
	case lh < rh || (lh == rh && ll < rl):
		return -1
	case lh == rh && ll == rl:
		return 0
	}
	return 1
}

// rank compares s with o on everything but the id: -1 when s ranks
// before o, 0 when they are equal.
func (s *score) rank(o *score, pack bool) int {
	if pack {
		switch {
		case s.freeMem < o.freeMem:
			return -1
		case s.freeMem > o.freeMem:
			return 1
		}
		return 0
	}
	if c := cmpRatio(s.memNum, s.memDen, o.memNum, o.memDen); c != 0 {
		return c
	}
	return cmpRatio(s.cpuNum, s.cpuDen, o.cpuNum, o.cpuDen)
}

// better reports whether s ranks strictly before o.
func (s *score) better(o *score, pack bool) bool {
	if c := s.rank(o, pack); c != 0 {
		return c < 0
	}
	return s.id < o.id
}
