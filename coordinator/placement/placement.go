// Package placement turns state records into the scheduler's view: hosts
// with what is allocated on them, their anti-affinity groups and their
// preemptible instances. The API uses it to choose a host; the FSM uses it
// again, at commit time, to check the choice against the state as it is.
package placement

import (
	"sort"

	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Request is what an instance asks of a host.
func Request(spec state.Spec, p state.Placement) scheduler.Request {
	return scheduler.Request{
		Resources:         scheduler.Resources{VCPUs: spec.VCPUs, MemoryMiB: spec.MemoryMiB, DiskGiB: spec.DiskGiB},
		Kind:              p.Kind,
		Labels:            p.Labels,
		AntiAffinityGroup: p.Group,
		Preemptible:       p.Preemptible,
		ManagedNetworks:   p.ManagedNetworks,
		Bridges:           p.Bridges,
	}
}

// host is the scheduler's view of h with nothing placed on it yet.
func host(h state.Host) scheduler.Host {
	return scheduler.Host{
		ID: h.ID, Kind: h.Kind, Ready: h.Status == state.HostReady, Cordoned: h.Cordoned, Labels: h.Labels,
		Capacity:        scheduler.Resources{VCPUs: h.Capacity.VCPUs, MemoryMiB: h.Capacity.MemoryMiB, DiskGiB: h.Capacity.DiskGiB},
		ManagedNetworks: h.ManagedNetworks, Bridges: h.Bridges,
	}
}

// FromStore is the scheduler's view of every host, from the loads the
// store keeps per host: it costs O(hosts), whatever the number of instances
// (the placement path runs on every create).
func FromStore(s Loads) []scheduler.Host {
	var out []scheduler.Host
	s.EachHostLoad(func(h *state.Host, l *state.HostLoad) {
		out = append(out, WithLoad(*h, l))
	})
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// Loads is what FromStore reads: a *state.Store.
type Loads interface {
	EachHostLoad(fn func(*state.Host, *state.HostLoad))
}

// WithLoad is the scheduler's view of h carrying load l.
func WithLoad(h state.Host, l *state.HostLoad) scheduler.Host {
	v := host(h)
	v.Allocated = scheduler.Resources{VCPUs: l.Allocated.VCPUs, MemoryMiB: l.Allocated.MemoryMiB, DiskGiB: l.Allocated.DiskGiB}
	if len(l.Groups) > 0 { // most hosts run no group: no map (a decision reads dozens of hosts)
		v.Groups = make(map[string]int, len(l.Groups))
		for g, n := range l.Groups {
			v.Groups[g] = n
		}
	}
	for _, i := range l.Preemptible {
		v.Preemptible = append(v.Preemptible, scheduler.Placed{ID: i.ID, Group: i.Placement.Group,
			Resources: scheduler.Resources{VCPUs: i.Spec.VCPUs, MemoryMiB: i.Spec.MemoryMiB, DiskGiB: i.Spec.DiskGiB}})
	}
	sort.Slice(v.Preemptible, func(a, b int) bool { return v.Preemptible[a].ID < v.Preemptible[b].ID })
	return v
}
