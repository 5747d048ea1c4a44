package placer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// fleet is a store with an FSM committing one command at a time, as the log does.
type fleet struct {
	mu  sync.Mutex
	st  *state.Store
	f   *fsm.FSM
	now time.Time
}

func newFleet(t *testing.T, rng *rand.Rand, hosts int, uniform bool) *fleet {
	t.Helper()
	fl := &fleet{st: state.New(0), now: time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)}
	fl.f = fsm.New(fl.st, nil)
	for i := range hosts {
		// Shaped like flotilla-sim's fleet: 128..512 GiB, 4 GiB per CPU.
		gib := []uint64{128, 256, 384, 512}[rng.IntN(4)]
		if uniform {
			gib = 256
		}
		c := state.Resources{VCPUs: uint32(gib / 4), MemoryMiB: gib << 10}
		if _, err := fl.apply(fsm.TypeRegisterHost, fsm.RegisterHost{Host: state.Host{ID: fmt.Sprintf("h%03d", i), Kind: "fake", Capacity: c}}); err != nil {
			t.Fatal(err)
		}
	}
	return fl
}

func (fl *fleet) apply(typ string, body any) (any, error) {
	b, err := fsm.Encode(typ, fl.now, body)
	if err != nil {
		return nil, err
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	r := fl.f.ApplyBytes(b)
	return r.Value, r.Err
}

// create places and commits one instance as the service does: placed
// again when it loses its host at commit time.
func (fl *fleet) create(p *Placer, id string, spec state.Spec, policy scheduler.Policy) error {
	for {
		d, err := p.Place(placement.Request(spec, state.Placement{}))
		if err != nil {
			return err
		}
		c := fsm.CreateInstance{Policy: policy, Instance: state.Instance{ID: id, HostID: d.HostID, Spec: spec},
			Operation: state.Operation{ID: "op-" + id, InstanceID: id}}
		_, err = fl.apply(fsm.TypeCreateInstance, c)
		d.Release()
		if !errors.Is(err, fsm.ErrNoCapacity) {
			return err
		}
	}
}

// shares is each host's memory share, and the number of hosts used.
func (fl *fleet) shares() (max, mean float64, used int) {
	var sum float64
	hosts := placement.FromStore(fl.st)
	for _, h := range hosts {
		s := float64(h.Allocated.MemoryMiB) / float64(h.Capacity.MemoryMiB)
		sum += s
		max = math.Max(max, s)
		if h.Allocated.MemoryMiB > 0 {
			used++
		}
	}
	return max, sum / float64(len(hosts)), used
}

// run creates n instances of random shapes from clients goroutines at once.
func (fl *fleet) run(t *testing.T, p *Placer, policy scheduler.Policy, rng *rand.Rand, clients, n int) {
	t.Helper()
	specs := make([]state.Spec, n)
	for i := range specs {
		// flotilla-sim's shapes: 1..4 vCPUs, 512 MiB..16 GiB (mean 3.75 GiB).
		k := rng.IntN(6)
		specs[i] = state.Spec{VCPUs: uint32(1 << (k / 2)), MemoryMiB: uint64(512 << k), Image: "img"}
	}
	next := make(chan int)
	go func() {
		for i := range specs {
			next <- i
		}
		close(next)
	}()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fl.create(p, fmt.Sprintf("i-%05d", i), specs[i], policy); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Property: with 64 clients creating at once, spread keeps the fullest
// host's memory share within 10 points of the mean while capacity remains,
// on fleets of mixed host sizes.
func TestSpreadSpreadsUnderConcurrency(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	policy := scheduler.Policy{CPUOvercommit: 4}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 2))
			fl := newFleet(t, rng, 50+rng.IntN(150), false)
			p := New(fl.st, policy)
			hosts := placement.FromStore(fl.st)
			// Fill to about half the fleet's memory (mean instance: 5.25 GiB).
			var mem uint64
			for _, h := range hosts {
				mem += h.Capacity.MemoryMiB
			}
			n := int(mem / 2 / 5376)
			fl.run(t, p, policy, rng, 64, n)
			max, mean, _ := fl.shares()
			if max-mean > 0.10 {
				t.Errorf("%d hosts, %d instances: fullest host at %.1f%%, mean %.1f%%: %.1f points apart, want <= 10",
					len(hosts), n, 100*max, 100*mean, 100*(max-mean))
			}
		})
	}
}

// Property: pack still packs under concurrency: the instances land on
// about as few hosts as their memory needs.
func TestPackPacksUnderConcurrency(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	policy := scheduler.Policy{Pack: true, CPUOvercommit: 4}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			fl := newFleet(t, rng, 100, true)
			p := New(fl.st, policy)
			n := 500 + rng.IntN(1500) // at most about 40% of the fleet's memory
			fl.run(t, p, policy, rng, 64, n)
			var mem uint64
			for _, h := range placement.FromStore(fl.st) {
				mem += h.Allocated.MemoryMiB
			}
			need := int((mem + 256<<10 - 1) / (256 << 10))
			if _, _, used := fl.shares(); used > need+need/4+1 {
				t.Errorf("%d instances (%d MiB) on %d hosts, want about %d", n, mem, used, need)
			}
		})
	}
}
