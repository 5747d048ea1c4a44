package readiness

import (
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

func TestDue(t *testing.T) {
	since := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	booting := state.GuestFacts{State: lifecycle.GuestBooting, Since: since}
	for _, c := range []struct {
		name string
		inst state.Instance
		due  time.Time
		ever bool
	}{
		{"booting with a deadline", state.Instance{Power: lifecycle.PowerRunning, Guest: booting, ReadyTimeout: time.Minute}, since.Add(time.Minute), true},
		{"paused while booting: the clock runs on", state.Instance{Power: lifecycle.PowerPaused, Guest: booting, ReadyTimeout: time.Minute}, since.Add(time.Minute), true},
		{"no deadline", state.Instance{Power: lifecycle.PowerRunning, Guest: booting}, time.Time{}, false},
		{"ready", state.Instance{Power: lifecycle.PowerRunning, Guest: state.GuestFacts{State: lifecycle.GuestReady, Since: since}, ReadyTimeout: time.Minute}, time.Time{}, false},
		{"never heard from", state.Instance{Power: lifecycle.PowerRunning, ReadyTimeout: time.Minute}, time.Time{}, false},
		{"already stranded", state.Instance{Power: lifecycle.PowerRunning, Guest: state.GuestFacts{State: lifecycle.GuestStranded, Since: since}, ReadyTimeout: time.Minute}, time.Time{}, false},
		{"down", state.Instance{Power: lifecycle.PowerShutOff, Guest: booting, ReadyTimeout: time.Minute}, time.Time{}, false},
	} {
		due, ever := Due(&c.inst)
		if ever != c.ever || !due.Equal(c.due) {
			t.Errorf("%s: %v %v, want %v %v", c.name, due, ever, c.due, c.ever)
		}
	}
}
