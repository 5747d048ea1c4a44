package lifecycle

import (
	"errors"
	"slices"
	"testing"
)

// TestDeriveIsTotal walks every combination of the four facts, including
// values the table does not know, and requires a defined status for each.
func TestDeriveIsTotal(t *testing.T) {
	desired := append(slices.Clone(AllDesired), Desired("bogus"))
	ops := append(slices.Clone(AllOpKinds), OpKind("bogus"))
	powers := append(slices.Clone(AllPowers), Power("bogus"))
	results := append(slices.Clone(AllResults), Result("bogus"))
	n := 0
	for _, d := range desired {
		for _, o := range ops {
			for _, p := range powers {
				for _, r := range results {
					s := Derive(Facts{Desired: d, Op: o, Power: p, Result: r})
					if !slices.Contains(AllStatuses, s) {
						t.Fatalf("Derive(%v,%v,%v,%v) = %q, not a defined status", d, o, p, r, s)
					}
					if o != OpNone && !Transitional(s) && s != StatusError {
						t.Errorf("op %q in flight gave non-transitional %s", o, s)
					}
					// The guest shutting itself down is the one transition no operation owns.
					if o == OpNone && Transitional(s) && !(s == StatusStopping && p == PowerShuttingDown) {
						t.Errorf("no op in flight but transitional %s for %v/%v/%v", s, d, p, r)
					}
					n++
				}
			}
		}
	}
	if n != 6*12*10*5 {
		t.Fatalf("walked %d combinations", n)
	}
}

func TestDerive(t *testing.T) {
	cases := []struct {
		f    Facts
		want Status
	}{
		{Facts{DesiredRunning, OpCreate, PowerNone, ResultNone}, StatusCreating},
		{Facts{DesiredRunning, OpNone, PowerRunning, ResultSucceeded}, StatusRunning},
		{Facts{DesiredRunning, OpNone, PowerShutOff, ResultSucceeded}, StatusUnexpectedShutoff},
		{Facts{DesiredRunning, OpNone, PowerCrashed, ResultSucceeded}, StatusCrashed},
		{Facts{DesiredRunning, OpNone, PowerShuttingDown, ResultSucceeded}, StatusStopping},
		{Facts{DesiredRunning, OpNone, PowerUnknown, ResultSucceeded}, StatusUnknown},
		{Facts{DesiredRunning, OpNone, PowerNoDomain, ResultSucceeded}, StatusError},
		{Facts{DesiredRunning, OpNone, PowerRunning, ResultFailed}, StatusError},
		{Facts{DesiredRunning, OpNone, PowerNone, ResultCanceled}, StatusError},
		{Facts{DesiredStopped, OpNone, PowerShutOff, ResultSucceeded}, StatusStopped},
		{Facts{DesiredStopped, OpStart, PowerShutOff, ResultSucceeded}, StatusStarting},
		{Facts{DesiredStopped, OpNone, PowerRunning, ResultSucceeded}, StatusRunning},
		{Facts{DesiredPaused, OpNone, PowerPaused, ResultSucceeded}, StatusPaused},
		{Facts{DesiredPaused, OpPause, PowerRunning, ResultSucceeded}, StatusPausing},
		{Facts{DesiredSuspended, OpNone, PowerSavedToDisk, ResultSucceeded}, StatusSuspended},
		{Facts{DesiredSuspended, OpNone, PowerShutOff, ResultSucceeded}, StatusUnexpectedShutoff},
		{Facts{DesiredDeleted, OpDelete, PowerRunning, ResultSucceeded}, StatusDeleting},
		{Facts{DesiredDeleted, OpNone, PowerNoDomain, ResultSucceeded}, StatusDeleted},
		{Facts{DesiredDeleted, OpNone, PowerRunning, ResultFailed}, StatusError},
		{Facts{DesiredDeleted, OpNone, PowerNoDomain, ResultFailed}, StatusError},
		{Facts{DesiredRunning, OpRestart, PowerRunning, ResultSucceeded}, StatusRebooting},
		{Facts{DesiredRunning, OpHardRestart, PowerRunning, ResultSucceeded}, StatusHardRebooting},
		{Facts{DesiredRunning, OpUnpause, PowerPaused, ResultSucceeded}, StatusUnpausing},
		{Facts{DesiredRunning, OpResume, PowerSavedToDisk, ResultSucceeded}, StatusResuming},
		{Facts{DesiredSuspended, OpSuspend, PowerRunning, ResultSucceeded}, StatusSuspending},
		{Facts{DesiredStopped, OpStop, PowerRunning, ResultSucceeded}, StatusStopping},
	}
	for _, c := range cases {
		if got := Derive(c.f); got != c.want {
			t.Errorf("Derive(%+v) = %s, want %s", c.f, got, c.want)
		}
	}
}

// TestTransitionTable states, independently of the implementation's map,
// the verdict for every (status, action) pair.
func TestTransitionTable(t *testing.T) {
	want := map[Status][]Action{
		StatusRunning:           {ActionStop, ActionRestart, ActionPause, ActionSuspend, ActionDelete},
		StatusStopped:           {ActionStart, ActionDelete},
		StatusPaused:            {ActionUnpause, ActionStop, ActionSuspend, ActionDelete},
		StatusSuspended:         {ActionResume, ActionDelete},
		StatusUnexpectedShutoff: {ActionStart, ActionStop, ActionDelete},
		StatusCrashed:           {ActionStart, ActionStop, ActionDelete},
		StatusError:             {ActionStart, ActionStop, ActionRestart, ActionDelete},
		StatusUnknown:           {ActionDelete},
	}
	pairs := 0
	for _, s := range AllStatuses {
		for _, a := range AllActions {
			pairs++
			err := Check(s, a)
			if slices.Contains(want[s], a) {
				if err != nil {
					t.Errorf("%s in %s: refused: %v", a, s, err)
				}
				p := PlanFor(s, a, false)
				if p.Op == OpNone || p.Desired == "" {
					t.Errorf("%s in %s: empty plan %+v", a, s, p)
				}
				continue
			}
			var nae *NotAllowedError
			if !errors.As(err, &nae) || !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("%s in %s: want NotAllowedError, got %v", a, s, err)
			}
			if !slices.Equal(nae.Allowed, want[s]) {
				t.Errorf("%s in %s: allowed list %v, want %v", a, s, nae.Allowed, want[s])
			}
		}
	}
	if pairs != len(AllStatuses)*len(AllActions) {
		t.Fatal("not every pair walked")
	}
	for _, s := range AllStatuses {
		if Transitional(s) && len(Allowed(s)) != 0 {
			t.Errorf("transitional %s allows %v; one operation at a time", s, Allowed(s))
		}
	}
}

func TestPlanExpectedRoundTrip(t *testing.T) {
	// Every accepted action, once its operation succeeds, derives a status
	// that matches what the user asked for.
	want := map[Action]Status{
		ActionStart: StatusRunning, ActionStop: StatusStopped, ActionRestart: StatusRunning,
		ActionPause: StatusPaused, ActionUnpause: StatusRunning, ActionSuspend: StatusSuspended,
		ActionResume: StatusRunning, ActionDelete: StatusDeleted,
	}
	for _, s := range AllStatuses {
		for _, a := range Allowed(s) {
			for _, hard := range []bool{false, true} {
				p := PlanFor(s, a, hard)
				got := Derive(Facts{Desired: p.Desired, Power: Expected(p.Op), Result: ResultSucceeded})
				if got != want[a] {
					t.Errorf("%s from %s (hard=%v): ends %s, want %s", a, s, hard, got, want[a])
				}
			}
		}
	}
	if got := PlanFor(StatusRunning, ActionRestart, true).Op; got != OpHardRestart {
		t.Errorf("hard restart planned as %s", got)
	}
	if got := PlanFor(StatusError, ActionRestart, false).Op; got != OpHardRestart {
		t.Errorf("restart from ERROR planned as %s", got)
	}
}

func TestNotAllowedMessageListsActions(t *testing.T) {
	err := Check(StatusStopped, ActionPause)
	if err == nil || err.Error() != "pause is not allowed while the instance is STOPPED (allowed: start, delete)" {
		t.Fatalf("got %v", err)
	}
	if err := Check(StatusDeleting, ActionStop); err == nil || err.Error() != "stop is not allowed while the instance is DELETING (allowed: none)" {
		t.Fatalf("got %v", err)
	}
}
