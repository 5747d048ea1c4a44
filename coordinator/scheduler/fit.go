package scheduler

import (
	"math"
	"slices"
)

// Fits reports whether h can take r now, without preemption: h is ready and
// not cordoned, has r's hypervisor kind and labels, serves r's networks, runs no instance of r's
// anti-affinity group, and has room for r in every resource under p's
// overcommit. The FSM calls it again at commit time against current state.
func Fits(h Host, r Request, p Policy) bool {
	v, _ := judge(&h, &r, &p)
	return v == accepted
}

// verdict is why a host cannot take a request, checked in this order.
type verdict uint8

const (
	accepted verdict = iota
	notReady
	cordoned
	wrongKind
	missingLabels
	missingNetworks // cannot serve one of the request's networks
	antiAffinity
	tooSmall // even an empty host would not have room
	full
	numVerdicts
)

// judge is Fits with the reason, and which resources are short for tooSmall
// and full.
func judge(h *Host, r *Request, p *Policy) (verdict, shortage) {
	if v := eligible(h, r); v != accepted {
		return v, 0
	}
	if g := r.AntiAffinityGroup; g != "" && h.Groups[g] > 0 {
		return antiAffinity, 0
	}
	lim := allocatable(h.Capacity, p)
	req := widen(r.Resources)
	if s := lim.short(amounts{}, req); s != 0 {
		return tooSmall, s
	}
	if s := lim.short(widen(h.Allocated), req); s != 0 {
		return full, s
	}
	return accepted, 0
}

// eligible checks what eviction cannot change: status, kind and labels.
func eligible(h *Host, r *Request) verdict {
	switch {
	case !h.Ready:
		return notReady
	case h.Cordoned:
		return cordoned
	case r.Kind != "" && r.Kind != h.Kind:
		return wrongKind
	}
	for k, want := range r.Labels {
		if got, ok := h.Labels[k]; !ok || got != want {
			return missingLabels
		}
	}
	if r.ManagedNetworks && !h.ManagedNetworks {
		return missingNetworks
	}
	for _, b := range r.Bridges {
		if !slices.Contains(h.Bridges, b) {
			return missingNetworks
		}
	}
	return accepted
}

// amounts is Resources widened to uint64 so that sums cannot wrap.
type amounts struct{ vcpus, mem, disk uint64 }

func widen(r Resources) amounts { return amounts{uint64(r.VCPUs), r.MemoryMiB, r.DiskGiB} }

func (a amounts) plus(b amounts) amounts {
	return amounts{a.vcpus + b.vcpus, a.mem + b.mem, a.disk + b.disk}
}

// minus saturates at zero, so inconsistent input cannot wrap around.
func (a amounts) minus(b amounts) amounts {
	sub := func(x, y uint64) uint64 {
		if y > x {
			return 0
		}
		return x - y
	}
	return amounts{sub(a.vcpus, b.vcpus), sub(a.mem, b.mem), sub(a.disk, b.disk)}
}

// limits is what a host may allocate in total.
type limits struct {
	amounts
	checkDisk bool // false when the disk capacity is unknown (0)
}

func allocatable(c Resources, p *Policy) limits {
	return limits{
		amounts: amounts{
			vcpus: scale(uint64(c.VCPUs), p.CPUOvercommit),
			mem:   scale(c.MemoryMiB, p.MemoryOvercommit),
			disk:  scale(c.DiskGiB, p.DiskOvercommit),
		},
		checkDisk: c.DiskGiB != 0,
	}
}

// scale returns floor(c * ratio); 0, negative and NaN ratios mean 1.0.
// A product within a few ulps below an integer counts as that integer: it is
// the binary representation error of a decimal ratio (100 * 1.15 is
// 114.99999999999999 in float64, and the operator meant 115).
func scale(c uint64, ratio float64) uint64 {
	if ratio == 1 || !(ratio > 0) {
		return c
	}
	v := float64(c) * ratio
	if v >= 0x1p64 {
		return math.MaxUint64
	}
	f := math.Floor(v)
	if n := f + 1; n-v <= v*1e-15 {
		f = n
	}
	return uint64(f)
}

// shortage is the set of resources a request lacks room for.
type shortage uint8

const (
	shortVCPUs shortage = 1 << iota
	shortMemory
	shortDisk
)

// short reports which resources cannot take req on top of used.
func (l *limits) short(used, req amounts) shortage {
	var s shortage
	if !within(used.vcpus, req.vcpus, l.vcpus) {
		s |= shortVCPUs
	}
	if !within(used.mem, req.mem, l.mem) {
		s |= shortMemory
	}
	if l.checkDisk && !within(used.disk, req.disk, l.disk) {
		s |= shortDisk
	}
	return s
}

// within reports used+req <= limit without overflow.
func within(used, req, limit uint64) bool { return used <= limit && req <= limit-used }
