package lifecycle

import "testing"

// Every combination: a guest's word counts only while its domain is up.
func TestDeriveReadiness(t *testing.T) {
	want := map[Guest]Readiness{GuestSilent: ReadinessUnknown, GuestBooting: ReadinessBooting, GuestReady: ReadinessOperational,
		GuestFailed: ReadinessStranded, GuestStranded: ReadinessStranded}
	for _, p := range AllPowers {
		for _, g := range AllGuests {
			got := DeriveReadiness(p, g)
			switch {
			case !p.Up() && got != ReadinessNone:
				t.Errorf("%s/%q: %q, want none: no guest runs", p, g, got)
			case p.Up() && got != want[g]:
				t.Errorf("%s/%q: %q, want %q", p, g, got, want[g])
			}
		}
	}
	for _, p := range []Power{PowerRunning, PowerPaused, PowerShuttingDown} {
		if !p.Up() {
			t.Errorf("%s is not up", p)
		}
	}
}
