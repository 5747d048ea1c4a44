// Package placer chooses hosts for new instances on the leader, at a cost
// that does not grow with the fleet, and without concurrent decisions all
// choosing the same host.
//
// A decision ranks a random sample of the hosts (scheduler.Choose), not
// every host, plus the few hosts it chose last (so pack keeps filling the
// hosts it opened). Each decision is reserved until its create commits or
// fails: later decisions see the room it took, although the state does not
// show it yet, so concurrent creates spread over hosts instead of herding
// onto the one that was emptiest in the snapshot they all read. Only when no
// sampled host fits does it fall back to ranking every host (scheduler.Place,
// which also preempts and explains).
//
// The commit-time check in the FSM stays the rule: a reservation is only a
// hint that makes conflicts rare, never what keeps a host from overfilling.
package placer

import (
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Store is the part of the state the placer reads.
type Store interface {
	SampleHostLoads(k int, pick func(n int) int, also []string, fn func(*state.Host, *state.HostLoad))
	EachHostLoad(fn func(*state.Host, *state.HostLoad))
}

// Sample is how many hosts a decision ranks: enough that the best of them
// is close to the best of all (the chance that none of 32 draws falls in
// the emptiest tenth of the fleet is 0.9^32, 3%), few enough that a
// decision costs microseconds at any fleet size.
const Sample = 32

// recent is how many of its last choices a decision ranks besides the sample.
const recent = 4

// Placer makes placement decisions against a store.
type Placer struct {
	store  Store
	policy scheduler.Policy

	mu       sync.Mutex               // guards what follows; never held while reading the store
	reserved map[string][]reservation // host id -> decisions not yet committed
	next     uint64
	last     []string // the hosts chosen last, newest first
}

type reservation struct {
	key uint64
	req scheduler.Request
}

// ErrNoHosts means the cluster has no host at all.
var ErrNoHosts = fmt.Errorf("no hosts: %w", scheduler.ErrNoHost)

// New returns a placer over store with policy.
func New(store Store, policy scheduler.Policy) *Placer {
	return &Placer{store: store, policy: policy, reserved: map[string][]reservation{}}
}

// Decision is a host chosen for a request, reserved until Release.
type Decision struct {
	scheduler.Decision
	p   *Placer
	key uint64 // 0: nothing reserved
}

// Release drops the decision's reservation: call it once its commit has
// been applied (the state then shows the room it took) or has failed.
func (d Decision) Release() {
	if d.key == 0 {
		return
	}
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	rs := d.p.reserved[d.HostID]
	for i := range rs {
		if rs[i].key == d.key {
			rs = append(rs[:i], rs[i+1:]...)
			break
		}
	}
	if len(rs) == 0 {
		delete(d.p.reserved, d.HostID)
	} else {
		d.p.reserved[d.HostID] = rs
	}
}

// Place chooses a host for r and reserves it. With no sampled host fitting
// it ranks every host with scheduler.Place: its decision may preempt (then
// nothing is reserved), and its error wraps scheduler.ErrNoHost when no host
// can take r now.
//
// The sample is read under the placer's lock: read before it, it could
// miss a create that committed (and dropped its reservation) meanwhile.
func (p *Placer) Place(r scheduler.Request) (Decision, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sample := p.sample()
	if len(sample) == 0 {
		return Decision{}, ErrNoHosts
	}
	if id, ok := scheduler.Choose(r, p.withReservations(sample), p.policy, rand.IntN); ok {
		return p.reserve(id, r), nil
	}
	d, err := scheduler.Place(r, p.withReservations(placement.FromStore(p.store)), p.policy)
	if err != nil {
		return Decision{}, err
	}
	if len(d.Preempt) > 0 {
		return Decision{Decision: d}, nil
	}
	return p.reserve(d.HostID, r), nil
}

// All is every host with the reservations counted, for what needs the
// whole view (such as telling whether a request could ever fit).
func (p *Placer) All() []scheduler.Host {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.withReservations(placement.FromStore(p.store))
}

func (p *Placer) reserve(id string, r scheduler.Request) Decision {
	p.next++
	p.reserved[id] = append(p.reserved[id], reservation{key: p.next, req: r})
	if len(p.last) == 0 || p.last[0] != id {
		p.last = append([]string{id}, p.last[:min(len(p.last), recent-1)]...)
	}
	return Decision{Decision: scheduler.Decision{HostID: id}, p: p, key: p.next}
}

// sample is Sample random hosts and the last chosen, as the store has
// them; p.mu is held.
func (p *Placer) sample() []scheduler.Host {
	out := make([]scheduler.Host, 0, Sample+recent)
	p.store.SampleHostLoads(Sample, rand.IntN, p.last, func(h *state.Host, l *state.HostLoad) {
		out = append(out, placement.WithLoad(*h, l))
	})
	return out
}

// withReservations adds the room reserved on each host to its view; p.mu
// is held.
func (p *Placer) withReservations(hosts []scheduler.Host) []scheduler.Host {
	if len(p.reserved) == 0 {
		return hosts
	}
	for i := range hosts {
		for _, r := range p.reserved[hosts[i].ID] {
			req := r.req
			req.Preemptible = false // not placed yet: nothing to evict
			hosts[i] = scheduler.Assign(hosts[i], "", req)
		}
	}
	return hosts
}
