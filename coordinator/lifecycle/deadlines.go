package lifecycle

import "time"

// DefaultDeadlines is how long each kind of operation may take before it is
// ended as failed; a stop gets its graceful timeout on top.
var DefaultDeadlines = map[OpKind]time.Duration{
	OpCreate:      5 * time.Minute,
	OpStart:       3 * time.Minute,
	OpStop:        2 * time.Minute,
	OpRestart:     3 * time.Minute,
	OpHardRestart: 2 * time.Minute,
	OpPause:       time.Minute,
	OpUnpause:     time.Minute,
	OpSuspend:     5 * time.Minute,
	OpResume:      5 * time.Minute,
	OpDelete:      3 * time.Minute,
	// A move copies a disk between hosts; its steps are bounded by the
	// whole (a stop also gets its graceful timeout on top).
	OpMove: 30 * time.Minute,
	// An update writes the domain's title: quick, but the host may be busy.
	OpUpdate: time.Minute,
	// A resize may copy a disk between hosts, as a move does.
	OpResize:        30 * time.Minute,
	OpConfirmResize: 3 * time.Minute,
	OpRevertResize:  10 * time.Minute,
	OpExtend:        3 * time.Minute,
	// A command on the guest channel (its step has its own, shorter bound).
	OpSetPassword: 2 * time.Minute,
	// A rebuild and a rescue stop, redefine and boot on one host.
	OpRebuild:  10 * time.Minute,
	OpRescue:   5 * time.Minute,
	OpUnrescue: 5 * time.Minute,
	// A bundle reads the whole disk and writes it compressed.
	OpBundle:     30 * time.Minute,
	OpDeallocate: 3 * time.Minute,
	// A soft delete is a stop (its graceful timeout on top).
	OpSoftDelete: 2 * time.Minute,
	OpRestore:    3 * time.Minute,
	// Stop, apply, boot, the health wait (its own timeout on top), drop.
	OpUpgrade: 10 * time.Minute,
}

// DefaultGraceful is how long a guest gets to power off before it is
// destroyed, when the request does not say: the manage-instance
// convention, 10 minutes, then destroy.
const DefaultGraceful = 10 * time.Minute
