// Package placement turns state records into the scheduler's view: hosts
// with what is allocated on them, their anti-affinity groups and their
// preemptible instances. The API uses it to choose a host; the FSM uses it
// again, at commit time, to check the choice against the state as it is.
package placement

import (
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
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
	}
}

// Host is the scheduler's view of h, given the instances placed on it.
func Host(h state.Host, placed []state.Instance) scheduler.Host {
	out := scheduler.Host{
		ID: h.ID, Kind: h.Kind, Ready: h.Status == state.HostReady, Cordoned: h.Cordoned, Labels: h.Labels,
		Capacity: scheduler.Resources{VCPUs: h.Capacity.VCPUs, MemoryMiB: h.Capacity.MemoryMiB, DiskGiB: h.Capacity.DiskGiB},
		Groups:   map[string]int{},
	}
	for _, i := range placed {
		if i.HostID != h.ID || i.Status() == lifecycle.StatusDeleted {
			continue
		}
		out.Allocated.VCPUs += i.Spec.VCPUs
		out.Allocated.MemoryMiB += i.Spec.MemoryMiB
		out.Allocated.DiskGiB += i.Spec.DiskGiB
		if i.Placement.Group != "" {
			out.Groups[i.Placement.Group]++
		}
		if i.Placement.Preemptible {
			out.Preemptible = append(out.Preemptible, scheduler.Placed{ID: i.ID, Group: i.Placement.Group,
				Resources: scheduler.Resources{VCPUs: i.Spec.VCPUs, MemoryMiB: i.Spec.MemoryMiB, DiskGiB: i.Spec.DiskGiB}})
		}
	}
	return out
}

// Hosts is the scheduler's view of every host.
func Hosts(hosts []state.Host, instances []state.Instance) []scheduler.Host {
	byHost := map[string][]state.Instance{}
	for _, i := range instances {
		if i.HostID != "" {
			byHost[i.HostID] = append(byHost[i.HostID], i)
		}
	}
	out := make([]scheduler.Host, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, Host(h, byHost[h.ID]))
	}
	return out
}
