package state

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
)

// The indexes a store keeps commit by commit are those a restore of its
// state builds at once: every path (put, change, removal, load) goes
// through the one table of indexes.
func TestIndexesAgreeWithARestore(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			s := New(0)
			pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
			for n := range 200 {
				if err := s.Update(time.Unix(int64(n), 0).UTC(), func(tx *Tx) error {
					id := fmt.Sprint("i", r.IntN(20))
					if r.IntN(10) == 0 {
						tx.RemoveInstance(id)
						return nil
					}
					i, ok := tx.Instance(id)
					if !ok {
						i = &Instance{ID: id, Spec: Spec{VCPUs: 1, MemoryMiB: 64}}
					}
					i.HostID, i.MoveTarget = pick("", "h1", "h2"), pick("", "", "h2")
					i.Desired = lifecycle.Desired(pick(string(lifecycle.DesiredRunning), string(lifecycle.DesiredStopped), string(lifecycle.DesiredDeleted)))
					i.Power = lifecycle.Power(pick(string(lifecycle.PowerRunning), string(lifecycle.PowerShutOff), string(lifecycle.PowerNoDomain)))
					i.Placement.Preemptible, i.Placement.Group = r.IntN(3) == 0, pick("", "g")
					switch r.IntN(4) {
					case 0:
						i.Resize = &Resize{ConfirmBy: time.Unix(int64(n+60), 0).UTC()}
					case 1:
						i.Resize = nil
					}
					i.CurrentOp, i.CurrentOpK = "", lifecycle.OpNone
					if r.IntN(2) == 0 {
						op := &Operation{ID: fmt.Sprint("op", n), InstanceID: id, Kind: lifecycle.OpCreate, HostID: i.HostID,
							State: OpState(pick(string(OpPending), string(OpRunning), string(OpSucceeded)))}
						tx.PutOperation(op)
						i.CurrentOp, i.CurrentOpK = op.ID, op.Kind
					}
					tx.PutInstance(i)
					if r.IntN(5) == 0 {
						tx.PutHost(&Host{ID: pick("h1", "h2"), Status: HostReady})
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			var buf bytes.Buffer
			if err := s.WriteSnapshot(&buf); err != nil {
				t.Fatal(err)
			}
			restored := New(0)
			if err := restored.Restore(&buf); err != nil {
				t.Fatal(err)
			}
			if got, want := indexesOf(s), indexesOf(restored); !reflect.DeepEqual(got, want) {
				t.Fatalf("indexes kept commit by commit:\n%+v\nbuilt by a restore:\n%+v", got, want)
			}
		})
	}
}

// indexesOf is what the store's indexes say, without what only depends on
// when it was learnt (revisions) or what is left empty.
func indexesOf(s *Store) map[string]any {
	onHost := map[string][]string{}
	for h, ids := range s.placed.onHost {
		if len(ids) > 0 {
			onHost[h] = slices.Sorted(maps.Keys(ids))
		}
	}
	load := map[string]HostLoad{}
	for h, l := range s.placed.load {
		if l.Allocated != (Resources{}) || len(l.Groups) > 0 || len(l.Preemptible) > 0 {
			load[h] = *l
		}
	}
	return map[string]any{
		"byInst": s.byInst.ids, "hosted": s.hosted.ids, "waiting": slices.Sorted(maps.Keys(s.waiting.ops)),
		"stopped": s.stopped.ids, "deleted": s.deleted.ids, "confirmable": s.confirmable.ids, "onHost": onHost, "load": load,
	}
}

// EachConfirmable yields exactly the instances with a confirm window, as
// they change: the leader's confirm check reads it instead of every
// instance.
func TestEachConfirmable(t *testing.T) {
	s := New(0)
	put := func(i *Instance) {
		t.Helper()
		if err := s.Update(time.Unix(1, 0), func(tx *Tx) error { tx.PutInstance(i); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	got := func() []string {
		var ids []string
		s.EachConfirmable(func(i *Instance) { ids = append(ids, i.ID) })
		slices.Sort(ids)
		return ids
	}
	put(&Instance{ID: "a"})
	put(&Instance{ID: "b", Resize: &Resize{}})
	put(&Instance{ID: "c", Resize: &Resize{ConfirmBy: time.Unix(100, 0)}})
	put(&Instance{ID: "d", Resize: &Resize{ConfirmBy: time.Unix(100, 0)}})
	if want := []string{"c", "d"}; !slices.Equal(got(), want) {
		t.Fatalf("confirmable: %v, want %v", got(), want)
	}
	put(&Instance{ID: "c"}) // confirmed or reverted: the resize is gone
	if want := []string{"d"}; !slices.Equal(got(), want) {
		t.Fatalf("after c's resize ended: %v, want %v", got(), want)
	}
}
