package service

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// rivals applies commands to an FSM one at a time, and before some of
// them commits a competitor's create first: a create on the host the
// command's create was placed on, taking room between the decision and its
// commit, as a concurrent create on another coordinator or handler would.
type rivals struct {
	mu   sync.Mutex
	f    *fsm.FSM
	st   *state.Store
	rng  *rand.Rand
	now  time.Time
	lost int // creates whose host the competitor took first
}

func (r *rivals) Apply(_ context.Context, cmd []byte) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if typ, _ := fsm.TypeOf(cmd); typ == fsm.TypeCreateInstance && r.rng.IntN(2) == 0 {
		r.compete()
	}
	res := r.f.ApplyBytes(cmd)
	return res.Value, res.Err
}

// compete commits a create of a random shape on a random host, if it fits.
func (r *rivals) compete() {
	hosts, _ := r.st.Hosts()
	h := hosts[r.rng.IntN(len(hosts))]
	c := fsm.CreateInstance{Instance: state.Instance{ID: fmt.Sprintf("i-rival-%d", r.rng.Uint64()), HostID: h.ID,
		Spec: state.Spec{VCPUs: uint32(1 + r.rng.IntN(4)), MemoryMiB: uint64(256 << r.rng.IntN(4)), Image: "img"}},
		Operation: state.Operation{ID: fmt.Sprintf("op-rival-%d", r.rng.Uint64())}}
	c.Operation.InstanceID = c.Instance.ID
	b, err := fsm.Encode(fsm.TypeCreateInstance, r.now, &c)
	if err != nil {
		panic(err)
	}
	if res := r.f.ApplyBytes(b); res.Err == nil {
		r.lost++
	}
}

// Property: whatever the interleaving of concurrent creates and rivals
// taking room between a create's placement and its commit, a create is
// either placed on a host with room or waits PENDING; only a request that
// no host could hold even empty is refused, and no host is ever overfilled.
func TestConcurrentCreatesNeverFailForLosingARace(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { raceOnce(t, seed) })
	}
}

func raceOnce(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 21))
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	st := state.New(0)
	ap := &rivals{f: fsm.New(st, nil), st: st, rng: rand.New(rand.NewPCG(seed, 12)), now: now}
	policy := scheduler.Policy{CPUOvercommit: 4, MemoryOvercommit: 1, DiskOvercommit: 1}
	s := New(Config{Store: st, Applier: ap, Policy: policy, Now: func() time.Time { return now }})
	nHosts := 1 + rng.IntN(5)
	var biggest state.Resources
	for i := range nHosts {
		c := state.Resources{VCPUs: uint32(2 << rng.IntN(3)), MemoryMiB: uint64(2048 << rng.IntN(3))}
		biggest.VCPUs, biggest.MemoryMiB = max(biggest.VCPUs, c.VCPUs), max(biggest.MemoryMiB, c.MemoryMiB)
		if _, err := s.apply(context.Background(), fsm.TypeRegisterHost, fsm.RegisterHost{Host: state.Host{ID: fmt.Sprintf("h%d", i), Kind: "fake",
			Capacity: c}}); err != nil {
			t.Fatal(err)
		}
	}
	type want struct {
		spec  state.Spec
		never bool // no host, emptied, could hold it
	}
	reqs := make([]want, 8+rng.IntN(40))
	for i := range reqs {
		sp := state.Spec{VCPUs: uint32(1 + rng.IntN(8)), MemoryMiB: uint64(256 << rng.IntN(6)), Image: "img"}
		reqs[i] = want{spec: sp, never: !fitsAnyEmpty(st, sp, policy)}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(reqs))
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Create(context.Background(), Create{Name: fmt.Sprint("c", i), Spec: reqs[i].spec})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case reqs[i].never && !errors.Is(err, fsm.ErrNoCapacity):
			t.Errorf("create %d (%+v, larger than any host): %v, want a refusal for capacity", i, reqs[i].spec, err)
		case !reqs[i].never && err != nil:
			t.Errorf("create %d (%+v): %v, want it placed or waiting (rivals won %d races)", i, reqs[i].spec, err, ap.lost)
		}
	}
	for _, h := range placement.FromStore(st) {
		if !scheduler.Fits(h, scheduler.Request{}, policy) && h.Ready && !h.Cordoned {
			t.Errorf("host %s overfilled: %+v of %+v", h.ID, h.Allocated, h.Capacity)
		}
	}
}

// fitsAnyEmpty reports whether some host, empty, would take spec.
func fitsAnyEmpty(st *state.Store, sp state.Spec, p scheduler.Policy) bool {
	for _, h := range placement.FromStore(st) {
		h.Allocated, h.Groups = scheduler.Resources{}, nil
		if scheduler.Fits(h, scheduler.Request{Resources: scheduler.Resources{VCPUs: sp.VCPUs, MemoryMiB: sp.MemoryMiB}}, p) {
			return true
		}
	}
	return false
}
