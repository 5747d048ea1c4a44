// Package scheduler decides where an instance runs. It is pure: it sees
// candidate hosts with their capacity and allocation, and returns a choice.
// The choice is re-checked against capacity when the placement commits
// through Raft, so a stale view can never overfill a host.
package scheduler

import (
	"errors"
	"fmt"
	"sort"
)

// ErrNoHost means no candidate can take the instance now.
var ErrNoHost = errors.New("no host can take the instance")

// Resources is an amount of vCPU, memory and disk.
type Resources struct {
	VCPUs     uint32
	MemoryMiB uint64
	DiskGiB   uint64
}

// Host is one candidate.
type Host struct {
	ID        string
	Ready     bool
	Capacity  Resources
	Allocated Resources
}

func (h Host) fits(r Resources) bool {
	return h.Allocated.VCPUs+r.VCPUs <= h.Capacity.VCPUs &&
		h.Allocated.MemoryMiB+r.MemoryMiB <= h.Capacity.MemoryMiB &&
		(h.Capacity.DiskGiB == 0 || h.Allocated.DiskGiB+r.DiskGiB <= h.Capacity.DiskGiB)
}

// Place picks the ready host that fits r with the most free memory left
// (spread), ties broken by id so the choice is deterministic.
func Place(r Resources, hosts []Host) (string, error) {
	var fit []Host
	for _, h := range hosts {
		if h.Ready && h.fits(r) {
			fit = append(fit, h)
		}
	}
	if len(fit) == 0 {
		return "", fmt.Errorf("%d hosts considered: %w", len(hosts), ErrNoHost)
	}
	sort.Slice(fit, func(a, b int) bool {
		fa := fit[a].Capacity.MemoryMiB - fit[a].Allocated.MemoryMiB
		fb := fit[b].Capacity.MemoryMiB - fit[b].Allocated.MemoryMiB
		if fa != fb {
			return fa > fb
		}
		return fit[a].ID < fit[b].ID
	})
	return fit[0].ID, nil
}
