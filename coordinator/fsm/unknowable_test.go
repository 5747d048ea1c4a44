package fsm

import (
	"fmt"
	"testing"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// A create whose step ended AGENT_RESTARTED (its outcome unknowable) leaves
// the instance showing what its host observes, from log version 10 on;
// before, ERROR (replicas of both versions agree on every entry).
func TestUnknowableOutcomeShowsObservedTruth(t *testing.T) {
	for _, tc := range []struct {
		version  uint32
		power    lifecycle.Power
		want     lifecycle.Status
		opResult state.OpState
	}{
		{LogVersion10, lifecycle.PowerRunning, lifecycle.StatusRunning, state.OpFailed},
		{LogVersion10, lifecycle.PowerPaused, lifecycle.StatusPaused, state.OpFailed},
		{LogVersion10, lifecycle.PowerNoDomain, lifecycle.StatusError, state.OpFailed},
		{LogVersion10, lifecycle.PowerUnknown, lifecycle.StatusError, state.OpFailed},
		{LogVersion6, lifecycle.PowerRunning, lifecycle.StatusError, state.OpFailed},
	} {
		t.Run(fmt.Sprintf("%s at v%d", tc.power, tc.version), func(t *testing.T) {
			h := newHarness(t)
			h.mustApply(TypeSetLogVersion, SetLogVersion{Version: tc.version})
			h.register("h1", 4, 4096)
			if r := h.create("i1", "h1", 1, 512, ""); r.Err != nil {
				t.Fatal(r.Err)
			}
			h.preflighted("op-i1")
			h.mustReport(Finish{OperationID: "op-i1", HostID: "h1", Fault: fault("AGENT_RESTARTED"),
				Observed: &Observation{InstanceID: "i1", Power: tc.power, Time: h.now}})
			op, _ := h.store.Operation("op-i1")
			if op.State != tc.opResult || op.Fault == nil || op.Fault.Code != "AGENT_RESTARTED" {
				t.Fatalf("operation %s, fault %+v: the fault stays on the operation", op.State, op.Fault)
			}
			if got := h.status("i1"); got != tc.want {
				t.Errorf("status %s, want %s", got, tc.want)
			}
		})
	}
}
