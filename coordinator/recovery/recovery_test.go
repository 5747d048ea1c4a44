package recovery

import (
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

func TestDelay(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := Delay(int32(i)); got != w {
			t.Errorf("Delay(%d) = %s, want %s", i, got, w)
		}
	}
	if got := Delay(60); got != MaxDelay {
		t.Errorf("Delay(60) = %s, want the cap %s", got, MaxDelay)
	}
}

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	off := func(policy state.RecoveryPolicy, max, done int32) state.Instance {
		return state.Instance{
			Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerShutOff, PowerTime: t0, Result: lifecycle.ResultSucceeded,
			Recovery: state.Recovery{Policy: policy, MaxRestarts: max}, Restarts: done,
		}
	}
	crashed := off(state.RecoverRestart, 3, 0)
	crashed.Power = lifecycle.PowerCrashed
	busy := off(state.RecoverRestart, 3, 0)
	busy.CurrentOp, busy.CurrentOpK = "op-1", lifecycle.OpStart
	stopped := off(state.RecoverRestart, 3, 0)
	stopped.Desired = lifecycle.DesiredStopped
	running := off(state.RecoverRestart, 3, 0)
	running.Power = lifecycle.PowerRunning

	cases := []struct {
		name string
		inst state.Instance
		at   time.Duration
		want Action
		wait time.Duration
	}{
		{"leave does nothing", off(state.RecoverLeave, 0, 0), time.Hour, None, 0},
		{"restart waits for its back-off", off(state.RecoverRestart, 3, 0), 500 * time.Millisecond, None, 500 * time.Millisecond},
		{"restart when due", off(state.RecoverRestart, 3, 0), time.Second, Restart, 0},
		{"second restart waits longer", off(state.RecoverRestart, 3, 1), time.Second, None, time.Second},
		{"out of restarts", off(state.RecoverRestart, 3, 3), time.Hour, None, 0},
		{"crash restarts too", crashed, time.Second, Restart, 0},
		{"mark failed", off(state.RecoverMarkFailed, 0, 0), 0, MarkFailed, 0},
		{"an operation in flight owns it", busy, time.Hour, None, 0},
		{"stopped on request is not unexpected", stopped, time.Hour, None, 0},
		{"running needs nothing", running, time.Hour, None, 0},
	}
	for _, c := range cases {
		got, wait := Decide(c.inst, t0.Add(c.at))
		if got != c.want || wait != c.wait {
			t.Errorf("%s: got %v (wait %s), want %v (wait %s)", c.name, got, wait, c.want, c.wait)
		}
	}
}
