package convert

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// wire is a generated protobuf enum.
type wire interface {
	~int32
	protoreflect.Enum
}

// roundTrips checks one table both ways: every wire value but UNSPECIFIED
// maps to a domain value and back, and every domain value maps to a wire
// value and back. Only the values in none may be UNSPECIFIED on the wire
// (the domain's "nothing yet"), and the table holds nothing else.
func roundTrips[D comparable, W wire](e enum[D, W], domain []D, none ...D) func(*testing.T) {
	return func(t *testing.T) {
		var zero W
		values := zero.Descriptor().Values()
		for i := range values.Len() {
			w := W(values.Get(i).Number())
			if w == zero {
				continue
			}
			if d, ok := e.domain(w); !ok || e.pb(d) != w {
				t.Errorf("wire %v maps to %v (known %v), which maps back to %v", w, d, ok, e.pb(d))
			}
		}
		for _, d := range domain {
			w, ok := e.toPB[d]
			if back, _ := e.domain(w); !ok || back != d {
				t.Errorf("domain %v maps to %v (known %v), which maps back to %v", d, w, ok, back)
			}
			if ok && w == zero && !slices.Contains(none, d) {
				t.Errorf("domain %v is UNSPECIFIED on the wire", d)
			}
		}
		if len(e.toPB) != len(domain) {
			t.Errorf("the table has %d values, the domain %d", len(e.toPB), len(domain))
		}
	}
}

var (
	allOpStates   = []state.OpState{state.OpPending, state.OpRunning, state.OpSucceeded, state.OpFailed, state.OpCanceled, state.OpRollingBack}
	allStepStates = []state.StepState{state.StepPending, state.StepRunning, state.StepRetryWait, state.StepSucceeded,
		state.StepFailed, state.StepSkipped, state.StepCompensated}
	allRecoveries = []state.RecoveryPolicy{state.RecoverLeave, state.RecoverRestart, state.RecoverMarkFailed}
)

// onHost is every step action an agent runs: the others have no wire value.
func onHost() []lifecycle.StepAction {
	var out []lifecycle.StepAction
	for _, a := range lifecycle.AllStepActions {
		if a.OnHost() {
			out = append(out, a)
		}
	}
	return out
}

func TestEnumsRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name  string
		check func(*testing.T)
	}{
		{"status", roundTrips(statuses, lifecycle.AllStatuses)},
		{"desired state", roundTrips(desired, lifecycle.AllDesired)},
		{"power state", roundTrips(powers, lifecycle.AllPowers, lifecycle.PowerNone)},
		{"provisioning result", roundTrips(results, lifecycle.AllResults, lifecycle.ResultNone)},
		{"action", roundTrips(actions, lifecycle.AllActions)},
		{"operation kind", roundTrips(opKinds, lifecycle.AllOpKinds[1:])}, // OpNone: no operation
		{"operation state", roundTrips(opStates, allOpStates)},
		{"step state", roundTrips(stepStates, allStepStates)},
		{"recovery policy", roundTrips(recoveries, allRecoveries)},
		{"vocabulary", roundTrips(vocabularies, vocabulary.All)},
		{"step action", roundTrips(stepActions, onHost())},
		{"disk layer", roundTrips(layers, lifecycle.AllLayers, lifecycle.LayerWhole)},
		{"readiness", roundTrips(readiness, lifecycle.AllReadiness, lifecycle.ReadinessNone)},
		{"network mode", roundTrips(networkModes, []state.NetworkMode{state.NetworkNAT, state.NetworkIsolated, state.NetworkBridge})},
	} {
		t.Run(c.name, c.check)
	}
}

// What the exported functions do with values the tables do not know.
func TestUnknownValues(t *testing.T) {
	if p := PowerFromPB(pb.PowerState(99)); p != lifecycle.PowerUnknown {
		t.Errorf("a power state from a newer agent is %v, want unknown", p)
	}
	if p := PowerFromPB(pb.PowerState_POWER_STATE_UNSPECIFIED); p != lifecycle.PowerNone {
		t.Errorf("no power state is %v, want none", p)
	}
	if s, ok := StatusFromPB(pb.Status_STATUS_UNSPECIFIED); ok {
		t.Errorf("UNSPECIFIED status filter is %v", s)
	}
	if v, ok := VocabularyFromPB(pb.Vocabulary(42)); ok {
		t.Errorf("vocabulary 42 is %v", v)
	}
	if k := OpKindToPB(lifecycle.OpNone); k != pb.OperationKind_OPERATION_KIND_UNSPECIFIED {
		t.Errorf("no operation is %v", k)
	}
	if a := StepActionToPB(lifecycle.ActSwitchHost); a != agentv1.StepAction_STEP_ACTION_UNSPECIFIED {
		t.Errorf("the coordinator's own step goes to an agent as %v", a)
	}
}

// A recovery request: UNSPECIFIED leaves the instance be; the limit is
// taken as given.
func TestRecoveryFromPB(t *testing.T) {
	for _, c := range []struct {
		in   *pb.Recovery
		want state.Recovery
	}{
		{nil, state.Recovery{}},
		{&pb.Recovery{}, state.Recovery{}},
		{&pb.Recovery{Policy: pb.RecoveryPolicy_RECOVERY_POLICY_LEAVE}, state.Recovery{Policy: state.RecoverLeave}},
		{&pb.Recovery{Policy: pb.RecoveryPolicy_RECOVERY_POLICY_RESTART}, state.Recovery{Policy: state.RecoverRestart}},
		{&pb.Recovery{Policy: pb.RecoveryPolicy_RECOVERY_POLICY_RESTART, MaxRestarts: 7}, state.Recovery{Policy: state.RecoverRestart, MaxRestarts: 7}},
		{&pb.Recovery{Policy: pb.RecoveryPolicy_RECOVERY_POLICY_MARK_FAILED}, state.Recovery{Policy: state.RecoverMarkFailed}},
	} {
		if got := RecoveryFromPB(c.in); got != c.want {
			t.Errorf("%v: got %+v, want %+v", c.in, got, c.want)
		}
	}
}
