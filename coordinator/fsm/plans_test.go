package fsm

import (
	"bytes"
	"testing"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Committed operations that have not begun share their plan's steps, on a
// replica that applied them and on one restored from a snapshot alike;
// what a read hands out is the reader's own.
func TestCommittedPlansAreShared(t *testing.T) {
	h := newHarness(t)
	h.register("h1", 4, 4096)
	h.create("a", "h1", 1, 512, "")
	h.create("b", "h1", 1, 512, "")
	shared := func(s *state.Store) bool {
		ops := s.View().Snapshot().Ops // the store's own records
		return len(ops) == 2 && &ops[0].Steps[0] == &ops[1].Steps[0]
	}
	if !shared(h.store) {
		t.Fatal("two untouched creates hold separate steps")
	}
	var buf bytes.Buffer
	if err := h.store.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	restored := state.New(0)
	New(restored, nil)
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if !shared(restored) {
		t.Fatal("after a restore, two untouched creates hold separate steps")
	}
	read := h.op("op-a")
	read.Steps[0].State, read.Steps[1].Undo.Name = state.StepFailed, "changed"
	if b := h.op("op-b"); b.Steps[0].State != state.StepPending || b.Steps[1].Undo.Name != "delete-domain" {
		t.Fatalf("a change to what a read returned reached another operation: %+v", b.Steps)
	}
	h.running("op-a") // a begun operation has its own steps; the other keeps the plan
	if b := h.op("op-b"); b.Steps[0].State != state.StepPending {
		t.Fatalf("op-a's dispatch reached op-b: %+v", b.Steps)
	}
}

// A create is committed with its kind's plan as planning it afresh gives,
// though the store takes the shared plan without a copy made first.
func TestCreateHoldsItsPlan(t *testing.T) {
	h := newHarness(t)
	h.create("a", "", 1, 512, "") // waits for capacity
	h.register("h1", 4, 4096)
	h.create("b", "h1", 1, 512, "")
	want := newSteps(lifecycle.StepsForShape(lifecycle.OpCreate, lifecycle.Shape{}))
	for _, id := range []string{"op-a", "op-b"} {
		if got := h.op(id).Steps; !state.EqualSteps(got, want) {
			t.Errorf("%s steps %+v, want the plan %+v", id, got, want)
		}
	}
}
