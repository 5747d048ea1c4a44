package stepcheck

import (
	"testing"

	"github.com/flotilla-vm/flotilla/hypervisor"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// want is, for every action, the verdict in each power state, in the
// order of AllPowers (running, paused, shutting-down, shut-off, crashed,
// saved-to-disk, no-domain with leftovers unknown, unknown): D done,
// N not done, P partly done, U unknowable. Every action the protocol
// names must have a row, so a new action forces a decision here.
var want = map[agentv1.StepAction]string{
	agentv1.StepAction_STEP_ACTION_UNSPECIFIED:   "UUUUUUUU",
	agentv1.StepAction_STEP_ACTION_CREATE:        "DPDPPUPU",
	agentv1.StepAction_STEP_ACTION_START:         "DPDNNNUU",
	agentv1.StepAction_STEP_ACTION_STOP:          "NNNDUUUU",
	agentv1.StepAction_STEP_ACTION_RESTART:       "UUUUUUUU", // a rebooted guest looks like one that was not
	agentv1.StepAction_STEP_ACTION_HARD_RESTART:  "UUUUUUUU",
	agentv1.StepAction_STEP_ACTION_PAUSE:         "NDUUUUUU",
	agentv1.StepAction_STEP_ACTION_UNPAUSE:       "DNUUUUUU",
	agentv1.StepAction_STEP_ACTION_SUSPEND:       "NNUUUDUU",
	agentv1.StepAction_STEP_ACTION_RESUME:        "DPDNNNUU",
	agentv1.StepAction_STEP_ACTION_DELETE:        "NNNNNNNU",
	agentv1.StepAction_STEP_ACTION_OFFER_DISK:    "NNNNNNUU",
	agentv1.StepAction_STEP_ACTION_IMPORT_DISK:   "UUUDUUPU",
	agentv1.StepAction_STEP_ACTION_PREFLIGHT:     "NNNNNNNU",
	agentv1.StepAction_STEP_ACTION_UPDATE:        "NNNNNNUU",
	agentv1.StepAction_STEP_ACTION_FREEZE_DISK:   "NUNNUUUU",
	agentv1.StepAction_STEP_ACTION_THAW_DISK:     "NUNNUUUU",
	agentv1.StepAction_STEP_ACTION_RECEIVE_DISK:  "DUUDUUNU",
	agentv1.StepAction_STEP_ACTION_ADOPT_DISK:    "UUUDUUNU",
	agentv1.StepAction_STEP_ACTION_RESHAPE:       "UUUNUUUU",
	agentv1.StepAction_STEP_ACTION_UNSHAPE:       "UUUNUUUU",
	agentv1.StepAction_STEP_ACTION_DROP_ORIGINAL: "NNNNNNDU",
	agentv1.StepAction_STEP_ACTION_GROW_DISK:     "NNUNUUUU",
	agentv1.StepAction_STEP_ACTION_REFREEZE_DISK: "NUNNUUUU",
	// Guest commands: the guest may or may not have acted; nothing on the
	// host shows which.
	agentv1.StepAction_STEP_ACTION_SET_PASSWORD: "UUUUUUUU",
	agentv1.StepAction_STEP_ACTION_DECOMMISSION: "UUUUUUUU",
	// Disk swaps and images: which disk the domain has, or whether the image
	// is whole, is not in its power state (a bundle's half-written image is
	// removed when the agent starts); they stay AGENT_RESTARTED.
	agentv1.StepAction_STEP_ACTION_REBUILD_DISK:    "UUUUUUUU",
	agentv1.StepAction_STEP_ACTION_RESCUE_DOMAIN:   "UUUUUUUU",
	agentv1.StepAction_STEP_ACTION_UNRESCUE_DOMAIN: "UUUUUUUU",
	agentv1.StepAction_STEP_ACTION_BUNDLE_DISK:     "UUUUUUUU",
	// Deallocate, restore and upgrade.
	agentv1.StepAction_STEP_ACTION_RELEASE_DOMAIN: "UUUNUUDU",
	agentv1.StepAction_STEP_ACTION_DEFINE_DOMAIN:  "UUUDUUNU",
	agentv1.StepAction_STEP_ACTION_UPGRADE_DISK:   "UUUNUUUU",
	agentv1.StepAction_STEP_ACTION_ROLLBACK_DISK:  "UUUNUUUU",
	agentv1.StepAction_STEP_ACTION_AWAIT_HEALTHY:  "NNNNNNNU",
	agentv1.StepAction_STEP_ACTION_DROP_SNAPSHOT:  "NNNNNNDU",
	// A fetch is whole or absent, and skipped when held already.
	agentv1.StepAction_STEP_ACTION_FETCH_IMAGE: "NNNNNNNU",
}

// wantNoDomain is the no-domain column for the actions that look at
// leftovers, by LeftoversNone and LeftoversPresent.
var wantNoDomain = map[agentv1.StepAction][2]Verdict{
	agentv1.StepAction_STEP_ACTION_CREATE:      {NotDone, Partly},
	agentv1.StepAction_STEP_ACTION_IMPORT_DISK: {NotDone, Partly},
	agentv1.StepAction_STEP_ACTION_DELETE:      {Done, NotDone},
}

var letters = map[byte]Verdict{'D': Done, 'N': NotDone, 'P': Partly, 'U': Unknowable}

func TestDecideEveryActionEveryFact(t *testing.T) {
	for n := range agentv1.StepAction_name {
		action := agentv1.StepAction(n)
		row, ok := want[action]
		if !ok {
			t.Errorf("%s: no expected row; decide what an interrupted one means", action)
			continue
		}
		if len(row) != len(AllPowers) {
			t.Fatalf("%s: row %q has %d columns, want %d", action, row, len(row), len(AllPowers))
		}
		for i, p := range AllPowers {
			for _, l := range AllLeftovers {
				exp := letters[row[i]]
				if nd, ok := wantNoDomain[action]; ok && p == hypervisor.PowerNoDomain && l != LeftoversUnknown {
					exp = nd[l-LeftoversNone]
				}
				got := Decide(action, Facts{Power: p, Leftovers: l})
				if got.Verdict != exp {
					t.Errorf("%s, domain %s, leftovers %d: %s (%s), want %s", action, p, l, got.Verdict, got.Why, exp)
				}
				if (got.Verdict == Partly) != (got.Undo != UndoNone) {
					t.Errorf("%s, domain %s: verdict %s with undo %d: a partial effect needs an undo and only it", action, p, got.Verdict, got.Undo)
				}
				if got.Why == "" {
					t.Errorf("%s, domain %s: no reason given", action, p)
				}
			}
		}
	}
	for a := range want {
		if _, ok := agentv1.StepAction_name[int32(a)]; !ok {
			t.Errorf("row for %d, which the protocol does not name", a)
		}
	}
}

func TestDecideUnreadableStateIsUnknowable(t *testing.T) {
	for n := range agentv1.StepAction_name {
		if got := Decide(agentv1.StepAction(n), Facts{}); got.Verdict != Unknowable {
			t.Errorf("%s with no facts: %s, want unknowable", agentv1.StepAction(n), got.Verdict)
		}
	}
	if got := Decide(agentv1.StepAction(9999), Facts{Power: hypervisor.PowerRunning}); got.Verdict != Unknowable {
		t.Errorf("an action newer than the table: %s, want unknowable", got.Verdict)
	}
}
