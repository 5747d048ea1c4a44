package state

import (
	"bytes"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"

	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func put(t *testing.T, s *Store, id string) {
	t.Helper()
	if err := s.Update(time.Now(), func(tx *Tx) error {
		tx.PutInstance(&Instance{ID: id})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestHistoryAndCompaction(t *testing.T) {
	s := New(3)
	for i := 0; i < 5; i++ {
		put(t, s, fmt.Sprint("i", i))
	}
	if s.Revision() != 5 {
		t.Fatalf("revision %d", s.Revision())
	}
	ev, _, _, err := s.Since(2)
	if err != nil || len(ev) != 3 || ev[0].Revision != 3 || ev[2].Revision != 5 {
		t.Fatalf("since 2: %+v %v", ev, err)
	}
	if _, _, _, err := s.Since(1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("since 1 after compaction: %v", err)
	}
	ev, ch, _, err := s.Since(5)
	if err != nil || len(ev) != 0 {
		t.Fatalf("since head: %v %v", ev, err)
	}
	put(t, s, "late")
	select {
	case <-ch:
	default:
		t.Fatal("watch channel not closed by a change")
	}
}

func TestFailedUpdateChangesNothing(t *testing.T) {
	s := New(0)
	put(t, s, "a")
	boom := errors.New("boom")
	err := s.Update(time.Now(), func(tx *Tx) error {
		tx.PutInstance(&Instance{ID: "b"})
		return boom
	})
	if !errors.Is(err, boom) || s.Revision() != 1 {
		t.Fatalf("err %v rev %d", err, s.Revision())
	}
	if _, err := s.Instance("b"); !errors.Is(err, ErrNotFound) {
		t.Fatal("a failed update leaked a record")
	}
}

func TestWaitRevision(t *testing.T) {
	s := New(0)
	done := make(chan error, 1)
	go func() { done <- s.WaitRevision(context.Background(), 2) }()
	put(t, s, "a")
	put(t, s, "b")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.WaitRevision(ctx, 99); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for a future revision: %v", err)
	}
}

func TestCommitOrderIsDeterministic(t *testing.T) {
	now := time.Unix(1700000000, 0)
	apply := func(order []string) string {
		s := New(0)
		if err := s.Update(now, func(tx *Tx) error {
			for _, id := range order {
				tx.PutInstance(&Instance{ID: id})
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		d, _ := s.Digest()
		return d
	}
	if a, b := apply([]string{"a", "b", "c"}), apply([]string{"c", "a", "b"}); a != b {
		t.Fatalf("same changes put in another order give another state: %s vs %s", a, b)
	}
}

func TestHostLoadFollowsEveryChange(t *testing.T) {
	s := New(0)
	spec := Spec{VCPUs: 2, MemoryMiB: 512, DiskGiB: 10}
	put := func(i Instance) {
		if err := s.Update(time.Now(), func(tx *Tx) error { tx.PutInstance(&i); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	put(Instance{ID: "a", HostID: "h1", Spec: spec, Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Placement: Placement{Group: "db"}})
	put(Instance{ID: "b", HostID: "h1", Spec: spec, Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Placement: Placement{Preemptible: true}})
	put(Instance{ID: "c", Spec: spec, Desired: lifecycle.DesiredRunning}) // waiting: no host
	if got := s.Allocated()["h1"]; got != (Resources{4, 1024, 20}) {
		t.Fatalf("h1 after two: %+v", got)
	}
	// b moves to h2, a is deleted, c is placed on h2.
	put(Instance{ID: "b", HostID: "h2", Spec: spec, Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Placement: Placement{Preemptible: true}})
	put(Instance{ID: "a", HostID: "h1", Spec: spec, Desired: lifecycle.DesiredDeleted, Power: lifecycle.PowerNoDomain, Placement: Placement{Group: "db"}})
	put(Instance{ID: "c", HostID: "h2", Spec: spec, Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning})
	alloc := s.Allocated()
	if alloc["h1"] != (Resources{}) || alloc["h2"] != (Resources{4, 1024, 20}) {
		t.Fatalf("after moves: %+v", alloc)
	}
	s.mu.RLock()
	h1, h2 := s.load["h1"], s.load["h2"]
	s.mu.RUnlock()
	if len(h1.Groups) != 0 || len(h1.Preemptible) != 0 || len(h2.Preemptible) != 1 {
		t.Fatalf("groups/preemptibles: h1 %+v h2 %+v", h1, h2)
	}
	// A restored replica rebuilds the same loads.
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r := New(0)
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got := r.Allocated(); got["h2"] != alloc["h2"] || got["h1"] != alloc["h1"] {
		t.Fatalf("restored loads %+v, want %+v", got, alloc)
	}
}
