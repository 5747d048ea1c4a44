package lifecycle

import (
	"errors"
	"strings"
	"testing"
)

// A frozen project's instance is FROZEN between operations, whatever its
// power state, until it is deleted; its freeze's pause and its thaw's
// unpause show as themselves; FROZEN accepts no user action.
func TestFrozen(t *testing.T) {
	frozen := func(d Desired, o OpKind, p Power) Facts { return Facts{Desired: d, Op: o, Power: p, Frozen: true} }
	for _, c := range []struct {
		f    Facts
		want Status
	}{
		{frozen(DesiredPaused, OpNone, PowerPaused), StatusFrozen},
		{frozen(DesiredRunning, OpNone, PowerRunning), StatusFrozen}, // busy at the freeze; paused by a later sync
		{frozen(DesiredStopped, OpNone, PowerShutOff), StatusFrozen},
		{frozen(DesiredRunning, OpNone, PowerUnknown), StatusFrozen},
		{frozen(DesiredRunning, OpPause, PowerRunning), StatusPausing},
		{frozen(DesiredRunning, OpUnpause, PowerPaused), StatusUnpausing},
		{frozen(DesiredDeleted, OpNone, PowerNoDomain), StatusDeleted},
		{Facts{Desired: DesiredPaused, Power: PowerPaused}, StatusPaused},
	} {
		if got := Derive(c.f); got != c.want {
			t.Errorf("%+v: %s, want %s", c.f, got, c.want)
		}
	}
	if Transitional(StatusFrozen) {
		t.Error("FROZEN is not transitional: it lasts until the project is unfrozen")
	}
	for _, a := range AllActions {
		err := Check(StatusFrozen, a)
		if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "FROZEN") {
			t.Errorf("%s while FROZEN: %v", a, err)
		}
	}
}
