package fsm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// TestQuotaPropertyUnderInterleavings: several clients create (and now and
// then delete) instances in a few projects at once. Each client's requests
// pass an API-side check against the state it last saw, which is stale by
// the time they commit; the log orders them in a random interleaving. At
// every commit, every project's use stays within its quota, a create is
// refused exactly when it would pass a quota (RESOURCE_EXHAUSTED naming
// it), and the committed use equals a recount of the instances.
func TestQuotaPropertyUnderInterleavings(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { quotaRun(t, rand.New(rand.NewPCG(seed, 17))) })
	}
}

func quotaRun(t *testing.T, rng *rand.Rand) {
	h := newHarness(t)
	h.mustApply(TypeSetLogVersion, SetLogVersion{Version: LogVersion7})
	projects := []string{"a", "b", "c"}
	quotas := map[string]state.Quota{}
	for _, p := range projects {
		q := state.Quota{Instances: uint32(rng.IntN(6)), VCPUs: uint32(rng.IntN(12)), MemoryMiB: uint64(rng.IntN(8)) * 512, DiskGiB: uint64(rng.IntN(40))}
		quotas[p] = q
		h.mustApply(TypePutProject, PutProject{Create: true, Project: state.Project{Name: p, Quota: q}})
	}
	// Each client's queue of requests, in its own order.
	type request struct {
		create  *state.Instance
		project string
		del     bool
	}
	clients := make([][]request, 2+rng.IntN(4))
	n := 0
	for c := range clients {
		for range 5 + rng.IntN(15) {
			p := projects[rng.IntN(len(projects))]
			if rng.IntN(5) == 0 {
				clients[c] = append(clients[c], request{project: p, del: true})
				continue
			}
			n++
			i := &state.Instance{ID: fmt.Sprintf("i%03d", n), Name: "n", Project: p,
				Spec: state.Spec{VCPUs: uint32(1 + rng.IntN(4)), MemoryMiB: uint64(1+rng.IntN(4)) * 256, DiskGiB: uint64(1 + rng.IntN(10)), Image: "img"}}
			clients[c] = append(clients[c], request{create: i, project: p})
		}
	}
	accepted := map[string][]string{} // project -> live instance ids
	for {
		var ready []int
		for c := range clients {
			if len(clients[c]) > 0 {
				ready = append(ready, c)
			}
		}
		if len(ready) == 0 {
			break
		}
		c := ready[rng.IntN(len(ready))]
		req := clients[c][0]
		clients[c] = clients[c][1:]
		if req.del {
			ids := accepted[req.project]
			if len(ids) == 0 {
				continue
			}
			k := rng.IntN(len(ids))
			id := ids[k]
			accepted[req.project] = append(ids[:k:k], ids[k+1:]...)
			h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionDelete,
				Operation: state.Operation{ID: "del-" + id, InstanceID: id, Deadline: h.now.Add(time.Minute)}})
			continue
		}
		before := h.store.ProjectUse(req.project)
		over := quotas[req.project].Exceeded(before.Add(req.create.Spec))
		r := h.apply(TypeCreateInstance, CreateInstance{Instance: *req.create,
			Operation: state.Operation{ID: "op-" + req.create.ID, InstanceID: req.create.ID, Deadline: h.now.Add(time.Minute)}})
		switch {
		case over == "" && r.Err != nil:
			t.Fatalf("create %s in %s refused with room (%+v of %+v): %v", req.create.ID, req.project, before, quotas[req.project], r.Err)
		case over != "" && !errors.Is(r.Err, ErrQuotaExceeded):
			t.Fatalf("create %s in %s past quota %s: %v", req.create.ID, req.project, over, r.Err)
		case over == "":
			accepted[req.project] = append(accepted[req.project], req.create.ID)
		}
		for _, p := range projects {
			u := h.store.ProjectUse(p)
			q := quotas[p]
			if what := q.Exceeded(u); what != "" {
				t.Fatalf("project %s over its quota: %s", p, what)
			}
			if recount := recountUse(h.store, p); recount != u {
				t.Fatalf("project %s: index %+v, recount %+v", p, u, recount)
			}
		}
	}
}

func recountUse(s *state.Store, project string) state.Use {
	var u state.Use
	instances, _ := s.Instances()
	for k := range instances {
		i := &instances[k]
		if state.ProjectOf(i) == project && i.Desired != lifecycle.DesiredDeleted {
			u = u.Add(i.Spec)
		}
	}
	return u
}
