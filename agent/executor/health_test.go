package executor_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/agent/guestchan"
	"github.com/flotilla-vm/flotilla/agent/stepstore"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// reportingGuests is a guest channel whose guests said what the test sets.
type reportingGuests struct {
	mu      sync.Mutex
	reports map[string]guestchan.Report
}

func (g *reportingGuests) Command(context.Context, string, string, ...string) ([]string, error) {
	return nil, guestchan.ErrNoGuestSide
}

func (g *reportingGuests) Report(id string) (guestchan.Report, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.reports[id]
	return r, ok
}

// TestAwaitHealthy: an upgrade's health wait succeeds on READY, fails on
// FAILED (GUEST_FAILED) and on a domain that is not running, counts a
// guest without a guest side healthy after its settle time, and fails at
// its deadline when a guest side never says READY (DEADLINE_EXCEEDED).
func TestAwaitHealthy(t *testing.T) {
	g := &reportingGuests{reports: map[string]guestchan.Report{
		"vm-ready":   {InstanceID: "vm-ready", State: guestchan.Ready},
		"vm-failed":  {InstanceID: "vm-failed", State: guestchan.Failed, Reason: "boot-script"},
		"vm-booting": {InstanceID: "vm-booting", State: guestchan.Booting},
	}}
	drv := newFake()
	store, err := stepstore.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := executor.New(executor.Config{HostID: "host-a", Driver: drv, Store: store, Guests: g,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(); store.Close() })
	for _, id := range []string{"vm-ready", "vm-failed", "vm-booting", "vm-silent", "vm-off"} {
		mustSucceed(t, e.Execute(create("op-c-"+id, id), epoch))
	}
	mustSucceed(t, e.Execute(withForce(actionStep("op-off", "op-off/0/1", "vm-off", agentv1.StepAction_STEP_ACTION_STOP)), epoch))
	await := func(id string, within time.Duration) *agentv1.StepResult {
		s := actionStep("op-h-"+id, "op-h-"+id+"/0/1", id, agentv1.StepAction_STEP_ACTION_AWAIT_HEALTHY)
		s.Kind = flotillav1.OperationKind_OPERATION_KIND_UPGRADE
		s.Deadline = timestamppb.New(time.Now().Add(within))
		return e.Execute(s, epoch)
	}
	mustSucceed(t, await("vm-ready", time.Minute))
	wantFault(t, await("vm-failed", time.Minute), executor.FaultGuestFailed)
	wantFault(t, await("vm-off", time.Minute), executor.FaultGuestFailed)
	// No guest side: healthy after the settle time (half the step's time here).
	if r := await("vm-silent", 2*time.Second); !r.GetSucceeded() || r.GetNote() == "" {
		t.Fatalf("silent guest: %v", r)
	}
	wantFault(t, await("vm-booting", 2*time.Second), executor.FaultDeadlineExceeded)
}

func withForce(s *agentv1.RunStep) *agentv1.RunStep {
	s.Force = true
	return s
}
