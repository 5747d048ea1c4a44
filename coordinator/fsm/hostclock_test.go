package fsm

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/fieldfill"
)

func init() {
	bodies[TypeHostClock] = func(t testing.TB) any { return fieldfill.New[HostClock](t) }
}

// A host's clock skew is kept for its current session only and survives
// a snapshot. (Proposing it below log version 13 is refused by Propose;
// agentlink does not propose it then.)
func TestHostClock(t *testing.T) {
	h := newHarness(t)
	epoch := h.register("h1", 4, 4096)
	h.mustApply(TypeSetLogVersion, SetLogVersion{Version: LogVersion13})
	h.mustApply(TypeHostClock, HostClock{HostID: "h1", Epoch: epoch, Skew: -7 * time.Second})
	for _, c := range []struct {
		body HostClock
		want error
	}{
		{HostClock{HostID: "h1", Epoch: epoch - 1, Skew: time.Hour}, ErrStaleEpoch},
		{HostClock{HostID: "nope", Epoch: 1}, ErrNotFound},
	} {
		if r := h.apply(TypeHostClock, c.body); !errors.Is(r.Err, c.want) {
			t.Fatalf("%+v: %v, want %v", c.body, r.Err, c.want)
		}
	}
	got, _ := h.store.Host("h1")
	if got.ClockSkew != -7*time.Second || got.ClockMeasured.IsZero() {
		t.Fatalf("host %+v", got)
	}
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	back := newHarness(t)
	if err := back.fsm.Restore(io.NopCloser(&sink.buf)); err != nil {
		t.Fatal(err)
	}
	if b, _ := back.store.Host("h1"); b.ClockSkew != got.ClockSkew || !b.ClockMeasured.Equal(got.ClockMeasured) {
		t.Fatalf("after a snapshot: %v at %v, want %v at %v", b.ClockSkew, b.ClockMeasured, got.ClockSkew, got.ClockMeasured)
	}
}
