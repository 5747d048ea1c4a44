package scheduler

import (
	"cmp"
	"slices"
)

// preempt places a non-preemptible request that fits nowhere as things are,
// by evicting preemptible instances. Candidates are the hosts r is eligible
// for (ready, not cordoned, kind, labels) that carry preemptible instances;
// on each, evictions picks what to evict. The host needing the fewest
// evictions wins, then the least evicted memory, then the lower id.
func preempt(r *Request, hosts []Host, p *Policy) (Decision, bool) {
	best := -1
	var bestKept, scratch []int
	var bestMem uint64
	for i := range hosts {
		h := &hosts[i]
		if len(h.Preemptible) == 0 || eligible(h, r) != accepted {
			continue
		}
		kept, mem, ok := evictions(h, r, p, scratch)
		scratch = kept[:0]
		if !ok {
			continue
		}
		if best < 0 || len(kept) < len(bestKept) ||
			len(kept) == len(bestKept) && (mem < bestMem || mem == bestMem && h.ID < hosts[best].ID) {
			best, bestKept, bestMem = i, append(bestKept[:0], kept...), mem
		}
	}
	if best < 0 {
		return Decision{}, false
	}
	ids := make([]string, len(bestKept))
	for k, j := range bestKept {
		ids[k] = hosts[best].Preemptible[j].ID
	}
	return Decision{HostID: hosts[best].ID, Preempt: ids}, true
}

// evictions returns which of h.Preemptible (indices, in eviction order) to
// evict so that r fits, and their total memory. Instances of r's
// anti-affinity group must all go (if a non-preemptible one is there, r
// cannot go there at all); then the others go largest memory first until r
// fits. Finally any eviction that turned out unnecessary (an early large one
// made redundant by later ones) is taken back, so every instance listed is
// needed. buf is scratch space for the result.
func evictions(h *Host, r *Request, p *Policy, buf []int) ([]int, uint64, bool) {
	lim := allocatable(h.Capacity, p)
	req := widen(r.Resources)
	alloc := widen(h.Allocated)
	var all amounts
	for k := range h.Preemptible {
		all = all.plus(widen(h.Preemptible[k].Resources))
	}
	if lim.short(alloc.minus(all), req) != 0 {
		return buf, 0, false // even evicting everything would not do
	}
	order := buf[:0]
	for k := range h.Preemptible {
		order = append(order, k)
	}
	slices.SortFunc(order, func(a, b int) int {
		x, y := &h.Preemptible[a].Resources, &h.Preemptible[b].Resources
		return cmp.Or(
			cmp.Compare(y.MemoryMiB, x.MemoryMiB),
			cmp.Compare(y.VCPUs, x.VCPUs),
			cmp.Compare(y.DiskGiB, x.DiskGiB),
			cmp.Compare(h.Preemptible[a].ID, h.Preemptible[b].ID),
		)
	})
	// Same-group instances first: they are mandatory.
	mandatory := 0
	if g := r.AntiAffinityGroup; g != "" && h.Groups[g] > 0 {
		slices.SortStableFunc(order, func(a, b int) int {
			return cmp.Compare(b2i(h.Preemptible[a].Group != g), b2i(h.Preemptible[b].Group != g))
		})
		for mandatory < len(order) && h.Preemptible[order[mandatory]].Group == g {
			mandatory++
		}
		if mandatory < h.Groups[g] {
			return order, 0, false // a non-preemptible instance of the group is there
		}
	}
	var freed amounts
	n := 0
	for ; n < len(order); n++ {
		if n >= mandatory && lim.short(alloc.minus(freed), req) == 0 {
			break
		}
		freed = freed.plus(widen(h.Preemptible[order[n]].Resources))
	}
	kept := order[:mandatory]
	for _, k := range order[mandatory:n] {
		without := freed.minus(widen(h.Preemptible[k].Resources))
		if lim.short(alloc.minus(without), req) == 0 {
			freed = without
			continue
		}
		kept = append(kept, k)
	}
	var mem uint64
	for _, k := range kept {
		mem += h.Preemptible[k].Resources.MemoryMiB
	}
	return kept, mem, true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Evict returns h as it is once the preemptible instances ids are gone:
// their resources and anti-affinity slots freed. Ids that are not among
// h.Preemptible (already gone, or never preemptible there) are ignored. h is
// not modified. At commit time a preempting decision is checked with
// Fits(Evict(h, d.Preempt), r, p).
func Evict(h Host, ids []string) Host {
	if len(ids) == 0 {
		return h
	}
	gone := make(map[string]bool, len(ids))
	for _, id := range ids {
		gone[id] = true
	}
	groups := make(map[string]int, len(h.Groups))
	for g, n := range h.Groups {
		groups[g] = n
	}
	alloc := widen(h.Allocated)
	var kept []Placed
	for _, pl := range h.Preemptible {
		if !gone[pl.ID] {
			kept = append(kept, pl)
			continue
		}
		alloc = alloc.minus(widen(pl.Resources))
		if pl.Group != "" && groups[pl.Group] > 0 {
			if groups[pl.Group]--; groups[pl.Group] == 0 {
				delete(groups, pl.Group)
			}
		}
	}
	h.Allocated = Resources{VCPUs: uint32(alloc.vcpus), MemoryMiB: alloc.mem, DiskGiB: alloc.disk}
	h.Groups = groups
	h.Preemptible = kept
	return h
}

// Assign returns h as it is once instance id, asked for by r, is placed
// there: the counterpart of Evict, for callers keeping a view current
// between placements. h is not modified.
func Assign(h Host, id string, r Request) Host {
	h.Allocated.VCPUs += r.Resources.VCPUs
	h.Allocated.MemoryMiB += r.Resources.MemoryMiB
	h.Allocated.DiskGiB += r.Resources.DiskGiB
	if g := r.AntiAffinityGroup; g != "" {
		groups := make(map[string]int, len(h.Groups)+1)
		for k, n := range h.Groups {
			groups[k] = n
		}
		groups[g]++
		h.Groups = groups
	}
	if r.Preemptible {
		h.Preemptible = append(append([]Placed(nil), h.Preemptible...), Placed{ID: id, Resources: r.Resources, Group: r.AntiAffinityGroup})
	}
	return h
}
