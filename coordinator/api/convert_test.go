package api

import (
	"testing"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
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
	for _, p := range lifecycle.AllPowers[1:] {
		if PowerFromPB(powerToPB[p]) != p {
			t.Errorf("power %s does not round-trip", p)
		}
	}
}
