package service

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// local applies commands straight to an FSM, as a single-node log would.
type local struct{ f *fsm.FSM }

func (l *local) Apply(_ context.Context, cmd []byte) (any, error) {
	r := l.f.ApplyBytes(cmd)
	return r.Value, r.Err
}

// newService has hosts h1 and h2, which serve disk copies, and one idle
// instance i-1 of 2 vCPUs, 2 GiB (3% of h1: spread then prefers h2 beyond
// its randomised choice among near-equal hosts) and 10 GiB on h1.
func newService(t *testing.T) *Service {
	t.Helper()
	st := state.New(0)
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	s := New(Config{Store: st, Applier: &local{f: fsm.New(st, nil)}, Now: func() time.Time { return now }})
	for _, h := range []string{"h1", "h2"} {
		if _, err := s.apply(context.Background(), fsm.TypeRegisterHost, fsm.RegisterHost{Host: state.Host{ID: h, Kind: "fake", PeerAddr: h + ":7000",
			Capacity: state.Resources{VCPUs: 8, MemoryMiB: 1 << 16, DiskGiB: 1 << 10}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Update(now, func(tx *state.Tx) error {
		tx.PutInstance(&state.Instance{ID: "i-1", Name: "web", HostID: "h1", Spec: state.Spec{VCPUs: 2, MemoryMiB: 2048, DiskGiB: 10, Image: "img"},
			Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Result: lifecycle.ResultSucceeded})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

// What the current state refuses is named by field, for the API to report.
func TestFieldRefusals(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		call  func() (state.Operation, error)
		field string
	}{
		{"resize shrinks the disk", func() (state.Operation, error) { return s.Resize(ctx, Resize{InstanceID: "i-1", DiskGiB: 5}) }, "disk_gib"},
		{"resize to the same shape", func() (state.Operation, error) { return s.Resize(ctx, Resize{InstanceID: "i-1", VCPUs: 2}) }, "vcpus"},
		{"extend to the same size", func() (state.Operation, error) { return s.Extend(ctx, "i-1", "", 10) }, "disk_gib"},
		{"extend smaller", func() (state.Operation, error) { return s.Extend(ctx, "i-1", "", 5) }, "disk_gib"},
		{"move where it is", func() (state.Operation, error) { return s.Move(ctx, "i-1", "", "h1", 0) }, "target_host_id"},
	} {
		_, err := c.call()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want a refusal of %s", c.name, err, c.field)
		}
	}
}

// An action commits an operation dated from its kind's deadline; the same
// request id again returns that operation.
func TestActIsIdempotent(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	a := Action{InstanceID: "i-1", RequestID: "r-1", Action: lifecycle.ActionStop, Graceful: time.Minute}
	op, err := s.Act(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if op.Kind != lifecycle.OpStop || !op.Deadline.Equal(s.now().Add(lifecycle.DefaultDeadlines[lifecycle.OpStop]+time.Minute)) {
		t.Errorf("stop %+v", op)
	}
	again, err := s.Act(ctx, a)
	if err != nil || again.ID != op.ID {
		t.Errorf("again: %s, %v; want %s", again.ID, err, op.ID)
	}
	if _, err := s.Act(ctx, Action{InstanceID: "i-1", Action: lifecycle.ActionStart}); !errors.Is(err, lifecycle.ErrNotAllowed) {
		t.Errorf("start while stopping: %v", err)
	}
}

// RESTART without a limit gets the default, on create and on update alike.
func TestRecoveryDefaults(t *testing.T) {
	for _, c := range []struct{ in, want state.Recovery }{
		{state.Recovery{}, state.Recovery{}},
		{state.Recovery{Policy: state.RecoverRestart}, state.Recovery{Policy: state.RecoverRestart, MaxRestarts: defaultMaxRestarts}},
		{state.Recovery{Policy: state.RecoverRestart, MaxRestarts: 7}, state.Recovery{Policy: state.RecoverRestart, MaxRestarts: 7}},
		{state.Recovery{Policy: state.RecoverMarkFailed}, state.Recovery{Policy: state.RecoverMarkFailed}},
	} {
		if got := withDefaults(c.in); got != c.want {
			t.Errorf("%+v: got %+v, want %+v", c.in, got, c.want)
		}
	}
	s := newService(t)
	asked := &state.ModelUpdate{Recovery: &state.Recovery{Policy: state.RecoverRestart}}
	op, err := s.Act(context.Background(), Action{InstanceID: "i-1", Action: lifecycle.ActionUpdate, Update: asked})
	if err != nil {
		t.Fatal(err)
	}
	if rc := op.Update.Recovery; rc == nil || rc.MaxRestarts != defaultMaxRestarts || asked.Recovery.MaxRestarts != 0 {
		t.Errorf("update's recovery %+v (asked %+v)", rc, asked.Recovery)
	}
}

// racing applies, before each create, what a concurrent request committed
// between the create's placement and its commit.
type racing struct {
	local
	before func(n int) // n: the create's try, from 1
	n      int
}

func (r *racing) Apply(ctx context.Context, cmd []byte) (any, error) {
	if typ, _ := fsm.TypeOf(cmd); typ == fsm.TypeCreateInstance {
		r.n++
		r.before(r.n)
	}
	return r.local.Apply(ctx, cmd)
}

// A create whose host is taken from under it between its placement and
// its commit is placed again, and, if it loses every time, waits for
// capacity (PENDING, no host) rather than failing for losing a race.
func TestCreateLosingItsHostIsPlacedAgain(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cordon   func(try int) []string // hosts cordoned just before the try commits
		wantHost string
		wantTry  int
	}{
		// Spread places on h2, the emptier (h1 holds i-1).
		{"its host is cordoned once", func(try int) []string {
			if try == 1 {
				return []string{"h2"}
			}
			return nil
		}, "h1", 2},
		{"every host it picks is cordoned", func(try int) []string {
			if try == 1 {
				return []string{"h2"}
			}
			if try == 2 {
				return []string{"h1"}
			}
			return nil
		}, "", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newService(t)
			l := s.raft.(*local)
			r := &racing{local: *l}
			r.before = func(try int) {
				for _, h := range tc.cordon(try) {
					if _, err := l.Apply(context.Background(), must(fsm.Encode(fsm.TypeCordonHost, s.now(), fsm.CordonHost{HostID: h, Cordon: true}))); err != nil {
						t.Fatal(err)
					}
				}
			}
			s.raft = r
			op, err := s.Create(context.Background(), Create{Name: "db", RequestID: "r-1", Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}})
			if err != nil {
				t.Fatalf("a create that lost a race failed: %v", err)
			}
			inst, err := s.store.Instance(op.InstanceID)
			if err != nil || inst.HostID != tc.wantHost || r.n != tc.wantTry {
				t.Fatalf("placed on %q at try %d (%v), want %q at %d", inst.HostID, r.n, err, tc.wantHost, tc.wantTry)
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
