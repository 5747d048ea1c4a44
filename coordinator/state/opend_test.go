package state

import (
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
)

// OnOperationEnd hears of each operation once, when it ends at a commit,
// not when a snapshot is loaded.
func TestOnOperationEnd(t *testing.T) {
	type ended struct {
		kind lifecycle.OpKind
		end  OpState
		took time.Duration
	}
	var got []ended
	s := New(0)
	s.OnOperationEnd(func(kind lifecycle.OpKind, end OpState, took time.Duration) {
		got = append(got, ended{kind, end, took})
	})
	t0 := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)
	put := func(o Operation) {
		t.Helper()
		if err := s.Update(t0, func(tx *Tx) error { tx.PutOperation(&o); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	create := Operation{ID: "op-1", InstanceID: "i-1", Kind: lifecycle.OpCreate, State: OpPending, CreateTime: t0}
	put(create)
	create.State = OpRunning
	put(create)
	create.State, create.EndTime = OpSucceeded, t0.Add(3*time.Second)
	put(create)
	create.Step = "done" // changed again once ended: not a second end
	put(create)
	// Recorded ended at once (a delete with nothing to do on a host).
	put(Operation{ID: "op-2", InstanceID: "i-1", Kind: lifecycle.OpDelete, State: OpSucceeded, CreateTime: t0, EndTime: t0})
	want := []ended{{lifecycle.OpCreate, OpSucceeded, 3 * time.Second}, {lifecycle.OpDelete, OpSucceeded, 0}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("told of %v, want %v", got, want)
	}
	s.Load(s.View().Snapshot())
	if len(got) != len(want) {
		t.Fatalf("a snapshot's load told of %v", got[len(want):])
	}
}
