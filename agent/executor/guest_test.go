package executor_test

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/agent/guestchan"
	"github.com/flotilla-vm/flotilla/agent/stepstore"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// guests is a Guests that records commands and answers with err.
type guests struct {
	calls [][]string
	err   error
}

func (g *guests) Command(_ context.Context, id, verb string, args ...string) ([]string, error) {
	g.calls = append(g.calls, append([]string{id, verb}, args...))
	return nil, g.err
}

// SET_PASSWORD sends "password <user> <hex>" to the instance's guest; a
// refusal becomes its fault; the password reaches neither the journal nor
// a fault message.
func TestSetPassword(t *testing.T) {
	const secret = "s3cr3t pässwörd!"
	for _, c := range []struct {
		name  string
		err   error
		fault string
	}{
		{"done", nil, ""},
		{"no guest side", guestchan.ErrNoGuestSide, executor.FaultGuestUnsupported},
		{"guest failed", &guestchan.CommandError{Verb: "password", Reason: "no-such-user"}, executor.FaultGuestFailed},
		{"channel closed", guestchan.ErrChannelClosed, executor.FaultGuestUnavailable},
		{"timeout", context.DeadlineExceeded, executor.FaultDeadlineExceeded},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := &guests{err: c.err}
			db := filepath.Join(t.TempDir(), "agent.db")
			e, store := newExecutorWithGuests(t, g, db)
			s := actionStep("op-1", "op-1/set-password/1", "vm-1", agentv1.StepAction_STEP_ACTION_SET_PASSWORD)
			s.Password = &agentv1.GuestPassword{User: "root", Password: secret}
			r := e.Execute(s, epoch)
			if c.fault == "" {
				mustSucceed(t, r)
			} else {
				wantFault(t, r, c.fault)
			}
			want := []string{"vm-1", "password", "root", hex.EncodeToString([]byte(secret))}
			if len(g.calls) != 1 || strings.Join(g.calls[0], " ") != strings.Join(want, " ") {
				t.Errorf("commands %q, want %q", g.calls, want)
			}
			if strings.Contains(r.GetFault().GetMessage(), "s3cr3t") {
				t.Errorf("fault quotes the password: %v", r.GetFault())
			}
			e.Close()
			store.Close()
			raw, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), "s3cr3t") || strings.Contains(string(raw), want[3]) {
				t.Error("the step journal holds the password")
			}
		})
	}
	// Malformed requests never reach the guest.
	g := &guests{}
	e, _ := newExecutorWithGuests(t, g, filepath.Join(t.TempDir(), "agent.db"))
	for i, p := range []*agentv1.GuestPassword{{User: "Root", Password: "x"}, {User: "root"}, {User: "root", Password: "a\nb"}, nil} {
		s := actionStep("op-b", "op-b/set-password/"+string(rune('1'+i)), "vm-1", agentv1.StepAction_STEP_ACTION_SET_PASSWORD)
		s.Password = p
		wantFault(t, e.Execute(s, epoch), executor.FaultInvalidStep)
	}
	if len(g.calls) != 0 {
		t.Errorf("malformed requests reached the guest: %q", g.calls)
	}
}

func newExecutorWithGuests(t *testing.T, g executor.Guests, db string) (*executor.Executor, *stepstore.Store) {
	t.Helper()
	store, err := stepstore.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	e, err := executor.New(executor.Config{HostID: "host-a", Driver: newFake(), Store: store, Guests: g,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(); store.Close() }) // a second Close is harmless
	return e, store
}
