package api

import (
	"slices"
	"testing"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Every domain value has a distinct wire value, so nothing shows as UNSPECIFIED.
func TestEveryValueHasAWireName(t *testing.T) {
	seen := map[pb.Status]bool{}
	for _, s := range lifecycle.AllStatuses {
		v, ok := statusToPB[s]
		if !ok || v == pb.Status_STATUS_UNSPECIFIED || seen[v] {
			t.Errorf("status %s maps to %v", s, v)
		}
		seen[v] = true
	}
	for _, k := range lifecycle.AllOpKinds[1:] {
		if v, ok := opKindToPB[k]; !ok || v == pb.OperationKind_OPERATION_KIND_UNSPECIFIED {
			t.Errorf("operation kind %s maps to %v", k, v)
		}
	}
	for _, a := range lifecycle.AllActions {
		if v, ok := actionToPB[a]; !ok || v == pb.Action_ACTION_UNSPECIFIED {
			t.Errorf("action %s maps to %v", a, v)
		}
	}
	for _, r := range lifecycle.AllResults[1:] {
		if v, ok := resultToPB[r]; !ok || v == pb.ProvisioningResult_PROVISIONING_RESULT_UNSPECIFIED {
			t.Errorf("result %s maps to %v", r, v)
		}
	}
	for _, st := range []state.StepState{state.StepPending, state.StepRunning, state.StepRetryWait, state.StepSucceeded,
		state.StepFailed, state.StepSkipped, state.StepCompensated} {
		if v, ok := stepStateToPB[st]; !ok || v == pb.StepState_STEP_STATE_UNSPECIFIED {
			t.Errorf("step state %s maps to %v", st, v)
		}
	}
	for _, o := range []state.OpState{state.OpPending, state.OpRunning, state.OpSucceeded, state.OpFailed, state.OpCanceled, state.OpRollingBack} {
		if v, ok := opStateToPB[o]; !ok || v == pb.OperationState_OPERATION_STATE_UNSPECIFIED {
			t.Errorf("operation state %s maps to %v", o, v)
		}
	}
	for _, p := range lifecycle.AllPowers[1:] {
		if PowerFromPB(powerToPB[p]) != p {
			t.Errorf("power %s does not round-trip", p)
		}
	}
}

// Views come back in the order asked, once each, in the seeds' words.
func TestInstanceViews(t *testing.T) {
	for _, w := range vocabulary.All {
		if v, ok := vocabularyToPB[w]; !ok || v == pb.Vocabulary_VOCABULARY_UNSPECIFIED {
			t.Errorf("vocabulary %s maps to %v", w, v)
		}
	}
	var v violations
	asked := vocabulariesFromPB(&v, []pb.Vocabulary{pb.Vocabulary_VOCABULARY_AZURE, pb.Vocabulary_VOCABULARY_NOVA, pb.Vocabulary_VOCABULARY_AZURE})
	if len(v) > 0 || !slices.Equal(asked, []vocabulary.Vocabulary{vocabulary.Azure, vocabulary.Nova}) {
		t.Fatalf("asked %v, violations %v", asked, v)
	}
	inst := &state.Instance{ID: "i-1", Desired: lifecycle.DesiredStopped, Power: lifecycle.PowerShutOff,
		Result: lifecycle.ResultSucceeded, HostID: "h", LastOpK: lifecycle.OpStop}
	got := instanceToPB(inst, asked...).Views
	if len(got) != 2 {
		t.Fatalf("views %v", got)
	}
	az, nv := got[0], got[1]
	if az.Vocabulary != pb.Vocabulary_VOCABULARY_AZURE || az.Status != "stopped" || !az.Mapped ||
		az.Fields["provisioning"] != "ProvisioningState/succeeded" || az.Fields["power_state"] != "PowerState/stopped" ||
		az.BillingClass != "hardware-only" || az.CanonicalStatus != pb.Status_STATUS_STOPPED {
		t.Errorf("azure view %v", az)
	}
	if nv.Status != "STOPPED" || nv.Fields["vm_state"] != "stopped" || nv.Fields["power_state"] != "4" {
		t.Errorf("nova view %v", nv)
	}
	if len(instanceToPB(inst).Views) != 0 {
		t.Error("views without asking")
	}
	v = nil
	if vocabulariesFromPB(&v, []pb.Vocabulary{pb.Vocabulary_VOCABULARY_UNSPECIFIED, 42}); len(v) != 2 {
		t.Errorf("unknown vocabularies accepted: %v", v)
	}
	v = nil
	if vocabulariesFromPB(&v, make([]pb.Vocabulary, 100000)); len(v) != 1 {
		t.Errorf("a long list gave %d violations, want one", len(v))
	}
}
