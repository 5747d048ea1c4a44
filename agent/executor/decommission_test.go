package executor_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/agent/guestchan"
	"github.com/flotilla-vm/flotilla/agent/stepstore"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// hanging is a guest that never answers: its command ends with the step.
type hanging struct{}

func (hanging) Command(ctx context.Context, _, _ string, _ ...string) ([]string, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// DECOMMISSION asks the guest to run its decommission work in the seconds
// the step has left (less a second for the answer); a guest without a
// guest side skips it (success, with a note); a FAIL, a closed channel or
// no answer by the deadline fail it.
func TestDecommission(t *testing.T) {
	for _, c := range []struct {
		name  string
		g     executor.Guests
		fault string
		note  string
		in    string // what the fault message holds
	}{
		{"done", &guests{}, "", "", ""},
		{"no guest side", &guests{err: guestchan.ErrNoGuestSide}, "", "decommissioning skipped: the guest has no guest side", ""},
		{"no guest channels", nil, "", "decommissioning skipped: the guest has no guest side (this agent runs no guest channels)", ""},
		{"guest failed", &guests{err: &guestchan.CommandError{Verb: "decommission", Reason: "decommission-script"}}, executor.FaultGuestFailed, "", "decommission-script"},
		{"channel closed", &guests{err: guestchan.ErrChannelClosed}, executor.FaultGuestUnavailable, "", "closed"},
		{"hangs", hanging{}, executor.FaultDeadlineExceeded, "", "did not finish its decommission work in 2s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newDecommissioner(t, c.g)
			s := actionStep("op-1", "op-1/0/1", "vm-1", agentv1.StepAction_STEP_ACTION_DECOMMISSION)
			s.Deadline = timestamppb.New(time.Now().Add(3500 * time.Millisecond))
			r := e.Execute(s, epoch)
			if c.fault == "" {
				mustSucceed(t, r)
			} else {
				wantFault(t, r, c.fault)
				if !strings.Contains(r.GetFault().GetMessage(), c.in) {
					t.Errorf("fault %v, want it to say %q", r.GetFault(), c.in)
				}
			}
			if r.GetNote() != c.note {
				t.Errorf("note %q, want %q", r.GetNote(), c.note)
			}
			if g, ok := c.g.(*guests); ok {
				if len(g.calls) != 1 || g.calls[0][0] != "vm-1" || g.calls[0][1] != "decommission" || len(g.calls[0]) != 3 {
					t.Fatalf("commands %q", g.calls)
				}
				if n, err := strconv.Atoi(g.calls[0][2]); err != nil || n != 2 {
					t.Errorf("decommission for %q seconds of a step with 3.5 s left, want 2", g.calls[0][2])
				}
			}
		})
	}
	// No time left: the guest is not asked.
	g := &guests{}
	e := newDecommissioner(t, g)
	s := actionStep("op-2", "op-2/0/1", "vm-1", agentv1.StepAction_STEP_ACTION_DECOMMISSION)
	s.Deadline = timestamppb.New(time.Now().Add(500 * time.Millisecond))
	wantFault(t, e.Execute(s, epoch), executor.FaultDeadlineExceeded)
	if len(g.calls) != 0 {
		t.Errorf("asked with no time left: %q", g.calls)
	}
}

func newDecommissioner(t *testing.T, g executor.Guests) *executor.Executor {
	t.Helper()
	store, err := stepstore.Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := executor.Config{HostID: "host-a", Driver: newFake(), Store: store, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if g != nil {
		cfg.Guests = g
	}
	e, err := executor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(); store.Close() })
	return e
}
