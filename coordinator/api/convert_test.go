package api

import (
	"testing"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
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
