package lifecycle

// Guest is what an instance's guest last said about its boot on its guest
// channel, since it last booted (a fact beside the power state, reported by
// the agent); GuestStranded is the coordinator's own verdict on a boot that
// did not finish by its deadline.
type Guest string

const (
	GuestSilent   Guest = ""         // not heard from since it last booted
	GuestBooting  Guest = "booting"  // running its boot scripts
	GuestReady    Guest = "ready"    // its boot scripts finished
	GuestFailed   Guest = "failed"   // its boot scripts failed
	GuestStranded Guest = "stranded" // still booting at its readiness deadline
)

// AllGuests lists every guest fact.
var AllGuests = []Guest{GuestSilent, GuestBooting, GuestReady, GuestFailed, GuestStranded}

// Readiness is whether a running instance is ready for work: RightScale's
// booting, operational and stranded, Azure's OS provisioning states.
type Readiness string

const (
	ReadinessNone        Readiness = ""            // not running: nothing to be ready
	ReadinessUnknown     Readiness = "unknown"     // running, the guest never spoke (no guest side)
	ReadinessBooting     Readiness = "booting"     // running its boot scripts
	ReadinessOperational Readiness = "operational" // ready for work
	ReadinessStranded    Readiness = "stranded"    // its boot failed or never finished in time
)

// AllReadiness lists every readiness.
var AllReadiness = []Readiness{ReadinessNone, ReadinessUnknown, ReadinessBooting, ReadinessOperational, ReadinessStranded}

// Up reports whether a domain in power state p has a running guest (its
// vCPUs may be paused): the states in which a guest's boot report holds.
// Any other state ends the boot, and the next boot reports afresh.
func (p Power) Up() bool {
	return p == PowerRunning || p == PowerPaused || p == PowerShuttingDown
}

// DeriveReadiness is the readiness of an instance whose domain is in power
// state p and whose guest said g.
func DeriveReadiness(p Power, g Guest) Readiness {
	if !p.Up() {
		return ReadinessNone
	}
	switch g {
	case GuestBooting:
		return ReadinessBooting
	case GuestReady:
		return ReadinessOperational
	case GuestFailed, GuestStranded:
		return ReadinessStranded
	}
	return ReadinessUnknown
}
