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
					for _, q := range []int{0, 1, 2, 3} {
						for _, dc := range append(slices.Clone(AllDecommissions), Decommission("bogus")) {
							s := Derive(Facts{Desired: d, Op: o, Power: p, Result: r, Unplaced: q&1 != 0, Preemptible: q&2 != 0, Decommission: dc})
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
							// Decommissioning is a stop's or a delete's, and only while it decommissions.
							decom := s == StatusDecommissioning || s == StatusStrandedDecommissioning
							if decom != ((o == OpStop || o == OpDelete || o == OpSoftDelete) && (dc == DecomRunning || dc == DecomFailed)) {
								t.Errorf("%v/%v/%v/%v decommission %q: %s", d, o, p, r, dc, s)
							}
							n++
						}
					}
				}
			}
		}
	}
	if n != (len(AllDesired)+1)*(len(AllOpKinds)+1)*10*6*4*4 {
		t.Fatalf("walked %d combinations", n)
	}
}

func facts(d Desired, o OpKind, p Power, r Result) Facts {
	return Facts{Desired: d, Op: o, Power: p, Result: r}
}

func TestDerive(t *testing.T) {
	cases := []struct {
		f    Facts
		want Status
	}{
		{facts(DesiredRunning, OpCreate, PowerNone, ResultNone), StatusCreating},
		{facts(DesiredRunning, OpNone, PowerRunning, ResultSucceeded), StatusRunning},
		{facts(DesiredRunning, OpNone, PowerShutOff, ResultSucceeded), StatusUnexpectedShutoff},
		{facts(DesiredRunning, OpNone, PowerCrashed, ResultSucceeded), StatusCrashed},
		{facts(DesiredRunning, OpNone, PowerShuttingDown, ResultSucceeded), StatusStopping},
		{facts(DesiredRunning, OpNone, PowerUnknown, ResultSucceeded), StatusUnknown},
		{facts(DesiredRunning, OpNone, PowerNoDomain, ResultSucceeded), StatusError},
		{facts(DesiredRunning, OpNone, PowerRunning, ResultFailed), StatusError},
		{facts(DesiredRunning, OpNone, PowerNone, ResultCanceled), StatusError},
		{facts(DesiredStopped, OpNone, PowerShutOff, ResultSucceeded), StatusStopped},
		{facts(DesiredStopped, OpStart, PowerShutOff, ResultSucceeded), StatusStarting},
		{facts(DesiredStopped, OpNone, PowerRunning, ResultSucceeded), StatusRunning},
		{facts(DesiredPaused, OpNone, PowerPaused, ResultSucceeded), StatusPaused},
		{facts(DesiredPaused, OpPause, PowerRunning, ResultSucceeded), StatusPausing},
		{facts(DesiredSuspended, OpNone, PowerSavedToDisk, ResultSucceeded), StatusSuspended},
		{facts(DesiredSuspended, OpNone, PowerShutOff, ResultSucceeded), StatusUnexpectedShutoff},
		{facts(DesiredDeleted, OpDelete, PowerRunning, ResultSucceeded), StatusDeleting},
		{facts(DesiredDeleted, OpNone, PowerNoDomain, ResultSucceeded), StatusDeleted},
		{facts(DesiredDeleted, OpNone, PowerRunning, ResultFailed), StatusError},
		{facts(DesiredDeleted, OpNone, PowerNoDomain, ResultFailed), StatusError},
		{facts(DesiredRunning, OpRestart, PowerRunning, ResultSucceeded), StatusRebooting},
		{facts(DesiredRunning, OpHardRestart, PowerRunning, ResultSucceeded), StatusHardRebooting},
		{facts(DesiredRunning, OpUnpause, PowerPaused, ResultSucceeded), StatusUnpausing},
		{facts(DesiredRunning, OpResume, PowerSavedToDisk, ResultSucceeded), StatusResuming},
		{facts(DesiredSuspended, OpSuspend, PowerRunning, ResultSucceeded), StatusSuspending},
		{facts(DesiredStopped, OpStop, PowerRunning, ResultSucceeded), StatusStopping},
		{Facts{Desired: DesiredRunning, Op: OpCreate, Unplaced: true}, StatusPending},
		{Facts{Desired: DesiredRunning, Op: OpCreate, Unplaced: true, Preemptible: true}, StatusBidding},
		{Facts{Desired: DesiredRunning, Op: OpPreempt, Power: PowerRunning, Preemptible: true}, StatusBidding},
		{Facts{Desired: DesiredRunning, Op: OpStart, Unplaced: true}, StatusStarting},
		{facts(DesiredRunning, OpMove, PowerShutOff, ResultSucceeded), StatusMoving},
		// A stop or delete whose guest runs its decommission work, or failed it.
		{Facts{Desired: DesiredStopped, Op: OpStop, Power: PowerRunning, Decommission: DecomRunning}, StatusDecommissioning},
		{Facts{Desired: DesiredDeleted, Op: OpDelete, Power: PowerRunning, Decommission: DecomRunning}, StatusDecommissioning},
		{Facts{Desired: DesiredStopped, Op: OpStop, Power: PowerRunning, Decommission: DecomFailed}, StatusStrandedDecommissioning},
		{Facts{Desired: DesiredDeleted, Op: OpDelete, Power: PowerRunning, Decommission: DecomFailed}, StatusStrandedDecommissioning},
		// Decommissioned: the stop or delete proper.
		{Facts{Desired: DesiredStopped, Op: OpStop, Power: PowerRunning}, StatusStopping},
		{Facts{Desired: DesiredDeleted, Op: OpDelete, Power: PowerRunning}, StatusDeleting},
		// Over: as usual.
		{Facts{Desired: DesiredStopped, Power: PowerShutOff, Result: ResultSucceeded}, StatusStopped},
		{Facts{Desired: DesiredDeleted, Power: PowerNoDomain, Result: ResultSucceeded}, StatusDeleted},
		// A failed operation that was rolled back leaves the instance as it was.
		{facts(DesiredRunning, OpNone, PowerRunning, ResultRolledBack), StatusRunning},
		{facts(DesiredStopped, OpNone, PowerShutOff, ResultRolledBack), StatusStopped},
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
		StatusRunning: {ActionStop, ActionRestart, ActionPause, ActionSuspend, ActionDelete, ActionUpdate, ActionResize, ActionExtend, ActionMove, ActionSetPassword,
			ActionRebuild, ActionRescue, ActionUpgrade},
		StatusStopped: {ActionStart, ActionRestart, ActionDelete, ActionUpdate, ActionResize, ActionExtend, ActionMove,
			ActionRebuild, ActionRescue, ActionBundle, ActionDeallocate, ActionUpgrade},
		// Rescue of anything but a running or stopped instance, or a rescue
		// of a rescued one, makes no sense.
		StatusRescued:           {ActionUnrescue, ActionDelete},
		StatusDeallocated:       {ActionStart, ActionDelete},
		StatusSoftDeleted:       {ActionRestore, ActionDelete},
		StatusVerifyResize:      {ActionConfirmResize, ActionRevertResize, ActionDelete, ActionUpdate},
		StatusPaused:            {ActionUnpause, ActionStop, ActionSuspend, ActionDelete, ActionUpdate},
		StatusSuspended:         {ActionResume, ActionDelete, ActionUpdate},
		StatusUnexpectedShutoff: {ActionStart, ActionStop, ActionRestart, ActionDelete, ActionUpdate},
		StatusCrashed:           {ActionStart, ActionStop, ActionRestart, ActionDelete, ActionUpdate},
		StatusError:             {ActionStart, ActionStop, ActionRestart, ActionDelete, ActionUpdate, ActionRebuild},
		StatusUnknown:           {ActionDelete},
		StatusPending:           {ActionDelete},
		StatusBidding:           {ActionDelete},
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
				if p.Op == OpNone || (p.Desired == "") != keepsDesired[a] {
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
		// Waiting for capacity is the one transitional state that can be withdrawn.
		if Transitional(s) && len(Allowed(s)) != 0 && s != StatusPending && s != StatusBidding {
			t.Errorf("transitional %s allows %v; one operation at a time", s, Allowed(s))
		}
	}
}

// keepsDesired lists the actions that change the shape, place, model or
// guest of an instance, never what the user wants of its power.
var keepsDesired = map[Action]bool{ActionUpdate: true, ActionResize: true, ActionConfirmResize: true,
	ActionRevertResize: true, ActionExtend: true, ActionMove: true, ActionSetPassword: true, ActionBundle: true, ActionUpgrade: true,
	ActionRestore: true} // a restore's desired state is the record's (RestoredDesired)

// TestResizeStatuses: a resize shows RESIZING while it runs, then
// VERIFY_RESIZE while the original is kept, if the guest is as the user
// wants it; a confirm or revert shows its own word, then the plain status.
func TestResizeStatuses(t *testing.T) {
	cases := []struct {
		f    Facts
		want Status
	}{
		{Facts{Desired: DesiredRunning, Op: OpResize, Power: PowerRunning}, StatusResizing},
		{Facts{Desired: DesiredRunning, Op: OpResize, Power: PowerShutOff, RollingBack: true}, StatusResizing},
		{Facts{Desired: DesiredRunning, Power: PowerRunning, Result: ResultSucceeded, Unconfirmed: true}, StatusVerifyResize},
		{Facts{Desired: DesiredStopped, Power: PowerShutOff, Result: ResultSucceeded, Unconfirmed: true}, StatusVerifyResize},
		{Facts{Desired: DesiredRunning, Power: PowerShutOff, Result: ResultSucceeded, Unconfirmed: true}, StatusUnexpectedShutoff},
		{Facts{Desired: DesiredRunning, Power: PowerCrashed, Unconfirmed: true}, StatusCrashed},
		{Facts{Desired: DesiredRunning, Power: PowerRunning, Result: ResultFailed, Unconfirmed: true}, StatusError},
		{Facts{Desired: DesiredRunning, Op: OpConfirmResize, Power: PowerRunning, Unconfirmed: true}, StatusConfirmingResize},
		{Facts{Desired: DesiredRunning, Op: OpRevertResize, Power: PowerRunning, Unconfirmed: true}, StatusRevertingResize},
		{Facts{Desired: DesiredRunning, Op: OpExtend, Power: PowerRunning}, StatusExtending},
		{Facts{Desired: DesiredRunning, Power: PowerRunning, Result: ResultRolledBack}, StatusRunning},
		{Facts{Desired: DesiredRunning, Op: OpRebuild, Power: PowerShutOff}, StatusRebuilding},
		{Facts{Desired: DesiredRunning, Op: OpRescue, Power: PowerShutOff}, StatusRescuing},
		{Facts{Desired: DesiredRunning, Op: OpUnrescue, Power: PowerRunning, Rescued: true}, StatusUnrescuing},
		{Facts{Op: OpBundle, Desired: DesiredStopped, Power: PowerShutOff}, StatusBundling},
		{Facts{Desired: DesiredRunning, Power: PowerRunning, Result: ResultSucceeded, Rescued: true}, StatusRescued},
		// Shut down from inside the rescue system: still rescued (unrescue boots its own disk).
		{Facts{Desired: DesiredRunning, Power: PowerShutOff, Rescued: true}, StatusRescued},
		{Facts{Desired: DesiredRunning, Power: PowerCrashed, Rescued: true}, StatusCrashed},
		{Facts{Desired: DesiredDeleted, Power: PowerNoDomain, Rescued: true}, StatusDeleted},
		{Facts{Desired: DesiredRunning, Power: PowerRunning, Result: ResultFailed, Rescued: true}, StatusError},
	}
	for _, c := range cases {
		if got := Derive(c.f); got != c.want {
			t.Errorf("%+v: %s, want %s", c.f, got, c.want)
		}
	}
	for _, a := range []Action{ActionConfirmResize, ActionRevertResize} {
		for _, s := range AllStatuses {
			if (Check(s, a) == nil) != (s == StatusVerifyResize) {
				t.Errorf("%s allowed in %s: %v", a, s, Check(s, a) == nil)
			}
		}
	}
}

func TestPlanExpectedRoundTrip(t *testing.T) {
	// Every accepted action, once its operation succeeds, derives a status
	// that matches what the user asked for.
	want := map[Action]Status{
		ActionStart: StatusRunning, ActionStop: StatusStopped, ActionRestart: StatusRunning,
		ActionPause: StatusPaused, ActionUnpause: StatusRunning, ActionSuspend: StatusSuspended,
		ActionResume: StatusRunning, ActionDelete: StatusDeleted, ActionDeallocate: StatusDeallocated,
		ActionRebuild: StatusRunning, ActionRescue: StatusRescued, ActionUnrescue: StatusRunning,
	}
	for _, s := range AllStatuses {
		for _, a := range Allowed(s) {
			if keepsDesired[a] {
				// These keep the desired state: what they leave depends on
				// what it was (see TestResizeStatuses).
				if p := PlanFor(s, a, false); p.Desired != "" || Expected(p.Op) != PowerNone {
					t.Errorf("%s from %s: %+v", a, s, p)
				}
				continue
			}
			for _, hard := range []bool{false, true} {
				p := PlanFor(s, a, hard)
				got := Derive(Facts{Desired: p.Desired, Power: Expected(p.Op), Result: ResultSucceeded, Rescued: a == ActionRescue})
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

// TestRestartPlans: a restart resets what may be running and boots what is
// off; a guest that is off has nobody to answer a soft reboot.
func TestRestartPlans(t *testing.T) {
	cases := []struct {
		from       Status
		hard       bool
		op         OpKind
		wasRunning bool
		steps      []string
	}{
		{StatusRunning, false, OpRestart, true, []string{"reboot-guest"}},
		{StatusRunning, true, OpHardRestart, true, []string{"reset-domain"}},
		// ERROR may or may not run: the reset's plan; the agent's step boots a domain it finds off.
		{StatusError, false, OpHardRestart, true, []string{"reset-domain"}},
		{StatusStopped, false, OpHardRestart, false, []string{"preflight", "boot-domain"}},
		{StatusStopped, true, OpHardRestart, false, []string{"preflight", "boot-domain"}},
		{StatusUnexpectedShutoff, false, OpHardRestart, false, []string{"preflight", "boot-domain"}},
		{StatusCrashed, false, OpHardRestart, false, []string{"preflight", "boot-domain"}},
	}
	for _, c := range cases {
		p := PlanFor(c.from, ActionRestart, c.hard)
		if p.Op != c.op || p.WasRunning != c.wasRunning || p.Desired != DesiredRunning {
			t.Errorf("restart from %s (hard=%v): %+v, want %s, wasRunning %v, desired running", c.from, c.hard, p, c.op, c.wasRunning)
		}
		var names []string
		for _, s := range StepsFor(p.Op, p.WasRunning) {
			names = append(names, s.Name)
		}
		if !slices.Equal(names, c.steps) {
			t.Errorf("restart from %s (hard=%v): steps %v, want %v", c.from, c.hard, names, c.steps)
		}
		// While it runs the instance shows what it does, whatever it came from.
		if got := Derive(Facts{Desired: p.Desired, Op: p.Op, Power: PowerShutOff}); c.op == OpHardRestart && got != StatusHardRebooting {
			t.Errorf("restart from %s in flight shows %s, want HARD_REBOOTING", c.from, got)
		}
	}
}

func TestNotAllowedMessageListsActions(t *testing.T) {
	err := Check(StatusStopped, ActionPause)
	if err == nil || err.Error() != "pause is not allowed while the instance is STOPPED (allowed: start, restart, delete, update, resize, extend, move, rebuild, rescue, bundle, deallocate, upgrade)" {
		t.Fatalf("got %v", err)
	}
	if err := Check(StatusDeleting, ActionStop); err == nil || err.Error() != "stop is not allowed while the instance is DELETING (allowed: none)" {
		t.Fatalf("got %v", err)
	}
}

// TestLifecycle2Statuses: deallocate, soft delete, restore and upgrade
// show their own words while they run and once they are done, and refuse
// what makes no sense with the actions that would.
func TestLifecycle2Statuses(t *testing.T) {
	cases := []struct {
		f    Facts
		want Status
	}{
		{Facts{Desired: DesiredDeallocated, Op: OpDeallocate, Power: PowerShutOff}, StatusDeallocating},
		{Facts{Desired: DesiredDeallocated, Power: PowerNoDomain, Result: ResultSucceeded}, StatusDeallocated},
		{Facts{Desired: DesiredDeallocated, Power: PowerUnknown, Result: ResultSucceeded}, StatusDeallocated},
		{Facts{Desired: DesiredDeallocated, Power: PowerRunning, Result: ResultSucceeded}, StatusError},
		{Facts{Desired: DesiredDeallocated, Power: PowerNoDomain, Result: ResultFailed}, StatusError},
		{Facts{Desired: DesiredRunning, Op: OpStart, Power: PowerNoDomain}, StatusStarting},
		{Facts{Desired: DesiredSoftDeleted, Op: OpSoftDelete, Power: PowerRunning}, StatusDeleting},
		{Facts{Desired: DesiredSoftDeleted, Op: OpSoftDelete, Power: PowerRunning, Decommission: DecomRunning}, StatusDecommissioning},
		{Facts{Desired: DesiredSoftDeleted, Power: PowerShutOff, Result: ResultSucceeded}, StatusSoftDeleted},
		{Facts{Desired: DesiredSoftDeleted, Power: PowerUnknown, Result: ResultSucceeded}, StatusUnknown},
		{Facts{Desired: DesiredSoftDeleted, Power: PowerRunning, Result: ResultSucceeded}, StatusError},
		{Facts{Desired: DesiredRunning, Op: OpRestore, Power: PowerShutOff}, StatusRestoring},
		{Facts{Desired: DesiredRunning, Op: OpUpgrade, Power: PowerRunning}, StatusUpgrading},
		{Facts{Desired: DesiredRunning, Op: OpUpgrade, Power: PowerRunning, RollingBack: true}, StatusRollback},
		// A rolled-back upgrade shows the earlier status, its fault recorded.
		{Facts{Desired: DesiredRunning, Power: PowerRunning, Result: ResultRolledBack}, StatusRunning},
		{Facts{Desired: DesiredStopped, Power: PowerShutOff, Result: ResultRolledBack}, StatusStopped},
		// A reclaim is a delete: the tombstone follows.
		{Facts{Desired: DesiredDeleted, Op: OpDelete, Power: PowerShutOff}, StatusDeleting},
		{Facts{Desired: DesiredDeleted, Power: PowerNoDomain, Result: ResultSucceeded}, StatusDeleted},
	}
	for _, c := range cases {
		if got := Derive(c.f); got != c.want {
			t.Errorf("%+v: %s, want %s", c.f, got, c.want)
		}
	}
	refusals := []struct {
		s       Status
		a       Action
		allowed []Action
	}{
		// Deallocate of a running instance without stop: stop is offered.
		{StatusRunning, ActionDeallocate, Allowed(StatusRunning)},
		// Restore after reclaim: a tombstone accepts nothing.
		{StatusDeleted, ActionRestore, nil},
		{StatusRunning, ActionRestore, Allowed(StatusRunning)},
		{StatusDeallocated, ActionUpgrade, []Action{ActionStart, ActionDelete}},
		{StatusSoftDeleted, ActionStart, []Action{ActionRestore, ActionDelete}},
		{StatusUpgrading, ActionStop, nil},
		{StatusRollback, ActionDelete, nil},
	}
	for _, c := range refusals {
		var nae *NotAllowedError
		if err := Check(c.s, c.a); !errors.As(err, &nae) || !slices.Equal(nae.Allowed, c.allowed) {
			t.Errorf("%s in %s: %v, want refused with %v", c.a, c.s, err, c.allowed)
		}
	}
	if !slices.Contains(Allowed(StatusRunning), ActionStop) {
		t.Error("a running instance must be told it can stop")
	}
	deletes := []struct {
		s             Status
		retain, force bool
		op            OpKind
		desired       Desired
	}{
		{StatusRunning, false, false, OpDelete, DesiredDeleted},
		{StatusRunning, true, false, OpSoftDelete, DesiredSoftDeleted},
		{StatusStopped, true, false, OpSoftDelete, DesiredSoftDeleted},
		{StatusRunning, true, true, OpDelete, DesiredDeleted},
		{StatusSoftDeleted, true, false, OpDelete, DesiredDeleted}, // reclaim now
		{StatusPending, true, false, OpDelete, DesiredDeleted},     // nothing on a host to keep
	}
	for _, c := range deletes {
		if p := PlanDelete(c.s, c.retain, c.force); p.Op != c.op || p.Desired != c.desired {
			t.Errorf("delete of %s (retain %v, force %v): %+v, want %s/%s", c.s, c.retain, c.force, p, c.op, c.desired)
		}
	}
	for before, want := range map[Desired]Desired{DesiredRunning: DesiredRunning, DesiredStopped: DesiredStopped,
		DesiredPaused: DesiredRunning, DesiredSuspended: DesiredRunning, "": DesiredRunning} {
		if got := RestoredDesired(before); got != want {
			t.Errorf("restore of one %q before: %q, want %q", before, got, want)
		}
	}
}
