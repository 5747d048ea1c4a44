package libvirt

import (
	"strconv"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// powerState maps libvirt's (state, reason) to Flotilla's PowerState. It is
// the only place that does, so Status, List and Events always agree.
// managedSave tells whether the domain has a managed save image, which turns a
// shut-off domain into saved-to-disk.
func powerState(state, reason int32, managedSave bool) (hypervisor.PowerState, string) {
	r := reasonWord(state, reason)
	switch golibvirt.DomainState(state) {
	case golibvirt.DomainRunning, golibvirt.DomainBlocked:
		return hypervisor.PowerRunning, r
	case golibvirt.DomainPaused, golibvirt.DomainPmsuspended:
		// A domain paused because a save is in progress is still paused: it
		// becomes saved-to-disk only once libvirt reports it shut off.
		return hypervisor.PowerPaused, r
	case golibvirt.DomainShutdown:
		return hypervisor.PowerShuttingDown, r
	case golibvirt.DomainShutoff:
		if managedSave {
			return hypervisor.PowerSavedToDisk, r
		}
		// With on_crash=destroy a crash ends as shut off; the reason keeps the truth.
		if golibvirt.DomainShutoffReason(reason) == golibvirt.DomainShutoffCrashed {
			return hypervisor.PowerCrashed, r
		}
		return hypervisor.PowerShutOff, r
	case golibvirt.DomainCrashed:
		return hypervisor.PowerCrashed, r
	default:
		return hypervisor.PowerUnknown, r
	}
}

var (
	runningReasons = map[golibvirt.DomainRunningReason]string{
		golibvirt.DomainRunningUnknown:           "unknown",
		golibvirt.DomainRunningBooted:            "booted",
		golibvirt.DomainRunningMigrated:          "migrated",
		golibvirt.DomainRunningRestored:          "restored",
		golibvirt.DomainRunningFromSnapshot:      "from-snapshot",
		golibvirt.DomainRunningUnpaused:          "unpaused",
		golibvirt.DomainRunningMigrationCanceled: "migration-canceled",
		golibvirt.DomainRunningSaveCanceled:      "save-canceled",
		golibvirt.DomainRunningWakeup:            "wakeup",
		golibvirt.DomainRunningCrashed:           "crashed",
		golibvirt.DomainRunningPostcopy:          "postcopy",
		golibvirt.DomainRunningPostcopyFailed:    "postcopy-failed",
	}
	pausedReasons = map[golibvirt.DomainPausedReason]string{
		golibvirt.DomainPausedUnknown:        "unknown",
		golibvirt.DomainPausedUser:           "user",
		golibvirt.DomainPausedMigration:      "migration",
		golibvirt.DomainPausedSave:           "save",
		golibvirt.DomainPausedDump:           "dump",
		golibvirt.DomainPausedIoerror:        "ioerror",
		golibvirt.DomainPausedWatchdog:       "watchdog",
		golibvirt.DomainPausedFromSnapshot:   "from-snapshot",
		golibvirt.DomainPausedShuttingDown:   "shutting-down",
		golibvirt.DomainPausedSnapshot:       "snapshot",
		golibvirt.DomainPausedCrashed:        "crashed",
		golibvirt.DomainPausedStartingUp:     "starting-up",
		golibvirt.DomainPausedPostcopy:       "postcopy",
		golibvirt.DomainPausedPostcopyFailed: "postcopy-failed",
		golibvirt.DomainPausedAPIError:       "api-error",
	}
	shutdownReasons = map[golibvirt.DomainShutdownReason]string{
		golibvirt.DomainShutdownUnknown: "unknown",
		golibvirt.DomainShutdownUser:    "user",
	}
	shutoffReasons = map[golibvirt.DomainShutoffReason]string{
		golibvirt.DomainShutoffUnknown:      "unknown",
		golibvirt.DomainShutoffShutdown:     "shutdown",
		golibvirt.DomainShutoffDestroyed:    "destroyed",
		golibvirt.DomainShutoffCrashed:      "crashed",
		golibvirt.DomainShutoffMigrated:     "migrated",
		golibvirt.DomainShutoffSaved:        "saved",
		golibvirt.DomainShutoffFailed:       "failed",
		golibvirt.DomainShutoffFromSnapshot: "from-snapshot",
		golibvirt.DomainShutoffDaemon:       "daemon",
	}
	crashedReasons = map[golibvirt.DomainCrashedReason]string{
		golibvirt.DomainCrashedUnknown:  "unknown",
		golibvirt.DomainCrashedPanicked: "panicked",
	}
)

// reasonWord turns libvirt's per-state reason code into a short word.
func reasonWord(state, reason int32) string {
	var (
		w  string
		ok bool
	)
	switch golibvirt.DomainState(state) {
	case golibvirt.DomainRunning:
		w, ok = runningReasons[golibvirt.DomainRunningReason(reason)]
	case golibvirt.DomainPaused:
		w, ok = pausedReasons[golibvirt.DomainPausedReason(reason)]
	case golibvirt.DomainShutdown:
		w, ok = shutdownReasons[golibvirt.DomainShutdownReason(reason)]
	case golibvirt.DomainShutoff:
		w, ok = shutoffReasons[golibvirt.DomainShutoffReason(reason)]
	case golibvirt.DomainCrashed:
		w, ok = crashedReasons[golibvirt.DomainCrashedReason(reason)]
	default:
		return "unknown"
	}
	if !ok {
		return "reason-" + strconv.Itoa(int(reason))
	}
	return w
}
