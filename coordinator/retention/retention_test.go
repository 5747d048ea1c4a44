package retention

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// applier commits straight into an FSM, as a one-server log would.
type applier struct{ f *fsm.FSM }

func (a applier) Apply(_ context.Context, cmd []byte) (any, error) {
	r := a.f.ApplyBytes(cmd)
	return r.Value, r.Err
}

func TestPruneOnceRemovesOnlyExpired(t *testing.T) {
	store := state.New(0)
	a := applier{fsm.New(store, slog.Default())}
	now := time.Now()
	put := func(at time.Time, id string, desired lifecycle.Desired, power lifecycle.Power) {
		t.Helper()
		if err := store.Update(at, func(tx *state.Tx) error {
			tx.PutInstance(&state.Instance{ID: id, HostID: "h1", Desired: desired, Power: power})
			tx.PutOperation(&state.Operation{ID: "op-" + id, InstanceID: id, State: state.OpSucceeded})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	put(now.Add(-3*time.Hour), "old", lifecycle.DesiredDeleted, lifecycle.PowerNoDomain)
	put(now.Add(-30*time.Minute), "recent", lifecycle.DesiredDeleted, lifecycle.PowerNoDomain)
	put(now.Add(-3*time.Hour), "running", lifecycle.DesiredRunning, lifecycle.PowerRunning)
	if n := pruneOnce(context.Background(), store, a, time.Hour, slog.Default()); n != 1 {
		t.Fatalf("removed %d, want 1", n)
	}
	if _, err := store.Instance("old"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("expired instance kept: %v", err)
	}
	if ops, _ := store.Operations("old"); len(ops) != 0 {
		t.Fatalf("its operations kept: %v", ops)
	}
	for _, id := range []string{"recent", "running"} {
		if _, err := store.Instance(id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	if n := pruneOnce(context.Background(), store, a, time.Hour, slog.Default()); n != 0 {
		t.Fatalf("a second pass removed %d", n)
	}
}

func TestInterval(t *testing.T) {
	for r, want := range map[time.Duration]time.Duration{
		720 * time.Hour: time.Minute, 5 * time.Minute: 30 * time.Second, 3 * time.Second: time.Second,
	} {
		if got := Interval(r); got != want {
			t.Errorf("Interval(%s) = %s, want %s", r, got, want)
		}
	}
}

// TestReclaimOnceAfterTheWindow: the loop proposes the reclaim of a
// soft-deleted instance only once its window has passed (a fake clock),
// and the reclaim deletes it.
func TestReclaimOnceAfterTheWindow(t *testing.T) {
	store := state.New(0)
	a := applier{fsm.New(store, slog.Default())}
	softAt := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	if err := store.Update(softAt, func(tx *state.Tx) error {
		tx.PutInstance(&state.Instance{ID: "sd", HostID: "h1", Desired: lifecycle.DesiredSoftDeleted, Power: lifecycle.PowerShutOff,
			Result: lifecycle.ResultSucceeded, LastOp: "op-sd", LastOpK: lifecycle.OpSoftDelete})
		tx.PutOperation(&state.Operation{ID: "op-sd", InstanceID: "sd", Kind: lifecycle.OpSoftDelete, State: state.OpSucceeded, EndTime: softAt})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, window := context.Background(), time.Hour
	if got := ReclaimOnce(ctx, store, a, window, softAt.Add(window/2), slog.Default()); len(got) != 0 {
		t.Fatalf("reclaimed within the window: %v", got)
	}
	got := ReclaimOnce(ctx, store, a, window, softAt.Add(window+time.Second), slog.Default())
	if len(got) != 1 {
		t.Fatalf("after the window: %v", got)
	}
	op, err := store.Operation(got[0])
	if err != nil || op.Kind != lifecycle.OpDelete {
		t.Fatalf("reclaim operation %+v: %v", op, err)
	}
	if inst, _ := store.Instance("sd"); inst.Status() != lifecycle.StatusDeleting {
		t.Fatalf("reclaiming: %s", inst.Status())
	}
	// Already deleting: a second pass proposes nothing.
	if again := ReclaimOnce(ctx, store, a, window, softAt.Add(2*window), slog.Default()); len(again) != 0 {
		t.Fatalf("second pass: %v", again)
	}
}
