package lifecycle

import "time"

// StepAction is what one step of an operation does.
type StepAction string

// Step actions. All but ActSwitchHost run on a host's agent; the
// coordinator does ActSwitchHost itself, in the log entry that ends the
// step before it.
const (
	ActCreate      StepAction = "create"
	ActStart       StepAction = "start"
	ActStop        StepAction = "stop"
	ActRestart     StepAction = "restart"
	ActHardRestart StepAction = "hard-restart"
	ActPause       StepAction = "pause"
	ActUnpause     StepAction = "unpause"
	ActSuspend     StepAction = "suspend"
	ActResume      StepAction = "resume"
	ActDelete      StepAction = "delete"
	ActPreflight   StepAction = "preflight"     // check the host can create or boot the instance; changes nothing
	ActOfferDisk   StepAction = "offer-disk"    // source: let the target pull the disk
	ActImportDisk  StepAction = "import-disk"   // target: pull it, define the domain shut off
	ActSwitchHost  StepAction = "switch-host"   // coordinator: the instance now lives on the target
	ActUpdate      StepAction = "update"        // write the model's name into the domain (its title)
	ActFreezeDisk  StepAction = "freeze-disk"   // source: writes go to a new top layer; the base stops changing
	ActRefreeze    StepAction = "refreeze-disk" // source: the top becomes an immutable mid layer, writes go to a new top
	ActThawDisk    StepAction = "thaw-disk"     // merge the top (and mid) layers back into the base
	ActReceiveDisk StepAction = "receive-disk"  // target: pull a layer and stage it
	ActAdoptDisk   StepAction = "adopt-disk"    // target: the staged layers become the disk, grown; define at the new shape
	ActReshape     StepAction = "reshape"       // in place: keep the original disk, redefine at the new shape
	ActUnshape     StepAction = "unshape"       // in place: the original disk and shape again
	ActDropOrig    StepAction = "drop-original"
	ActGrowDisk    StepAction = "grow-disk" // grow the disk in place
	// ActSetPassword sets a password inside the guest over its guest
	// channel; the password itself is in no record (see coordinator/secrets).
	ActSetPassword StepAction = "set-password"
	// ActDecommission asks the guest to run its decommission work (its
	// shutdown scripts) within the step's timeout. Best effort: see BestEffort.
	ActDecommission StepAction = "decommission"
	// ActRebuildDisk keeps the shut-off domain's disk aside as its original
	// and defines it over a fresh disk from the image; undone by ActUnshape,
	// ended by ActDropOrig.
	ActRebuildDisk StepAction = "rebuild-disk"
	// ActRescueDomain defines the shut-off domain to boot the rescue image,
	// its own disk attached second; ActUnrescueDomain defines it over its
	// own disk again and removes the rescue system's disk.
	ActRescueDomain   StepAction = "rescue-domain"
	ActUnrescueDomain StepAction = "unrescue-domain"
	// ActBundleDisk writes the shut-off domain's disk, flattened and
	// compressed, as a new image in the host's image directory.
	ActBundleDisk StepAction = "bundle-disk"
	// ActRelease undefines a shut-off domain and keeps its disk (a deallocate).
	ActRelease StepAction = "release-domain"
	// ActDefine defines a shut-off domain over the disk a release kept.
	ActDefine StepAction = "define-domain"
	// ActUpgradeDisk keeps the shut-off domain's disk and model apart (the
	// snapshot a rollback returns to) and redefines it at the upgrade's
	// image version and model.
	ActUpgradeDisk StepAction = "upgrade-disk"
	// ActRollbackDisk puts the kept disk and model back and removes the
	// upgraded disk.
	ActRollbackDisk StepAction = "rollback-disk"
	// ActAwaitHealthy waits, within the step's timeout, for the guest to say
	// it is ready on its guest channel or, for a guest that has no channel,
	// for the domain to keep running for a settle time.
	ActAwaitHealthy StepAction = "await-healthy"
	// ActDropSnapshot removes the kept disk: the upgrade is final.
	ActDropSnapshot StepAction = "drop-snapshot"
	// ActFetchImage pulls the instance's image from a host that holds it
	// (the operation's image source) into this host's image directory: a
	// create placed on a host without its image.
	ActFetchImage StepAction = "fetch-image"
)

// AllStepActions lists every step action, ActSwitchHost included.
var AllStepActions = []StepAction{ActCreate, ActStart, ActStop, ActRestart, ActHardRestart, ActPause, ActUnpause, ActSuspend,
	ActResume, ActDelete, ActPreflight, ActOfferDisk, ActImportDisk, ActSwitchHost, ActUpdate, ActFreezeDisk, ActRefreeze,
	ActThawDisk, ActReceiveDisk, ActAdoptDisk, ActReshape, ActUnshape, ActDropOrig, ActGrowDisk, ActSetPassword, ActDecommission,
	ActRebuildDisk, ActRescueDomain, ActUnrescueDomain, ActBundleDisk, ActRelease, ActDefine, ActUpgradeDisk, ActRollbackDisk, ActAwaitHealthy, ActDropSnapshot, ActFetchImage}

// Layer is the part of a disk an offer or a receive step copies.
type Layer string

const (
	LayerWhole Layer = ""     // a shut-off domain's whole disk (a cold move)
	LayerBase  Layer = "base" // the frozen base, copied while the guest runs
	LayerMid   Layer = "mid"  // what the guest wrote during the base's copy, copied while it runs
	LayerTop   Layer = "top"  // what the guest wrote since, copied once it is down
)

// AllLayers lists every layer, LayerWhole included.
var AllLayers = []Layer{LayerWhole, LayerBase, LayerMid, LayerTop}

// OnHost reports whether an agent runs the action (else the coordinator does).
func (a StepAction) OnHost() bool { return a != ActSwitchHost }

// BestEffort reports whether a failure of the action leaves the operation
// going on rather than failing it: a decommission that fails (or runs out
// of time) strands the instance, and the stop or delete it came before
// forces the domain off (RightScale's stranded in decommissioning, "still
// terminated"). Such a step has one attempt: its time is the guest's.
func (a StepAction) BestEffort() bool { return a == ActDecommission }

// StrandedWithin bounds the stop or delete that follows a failed
// decommission: forced, it ends within this (the seed's "typically ... still
// terminated in 2-3 minutes").
const StrandedWithin = time.Minute

// MaxDecommission bounds the time a stop or delete may give its guest's
// decommission work.
const MaxDecommission = time.Hour

// Where names the host a step runs on.
type Where int

const (
	OnSource Where = iota // the instance's host (for a move: the one it leaves)
	OnTarget              // a move's destination
	OnCoordinator
)

// StepDef is one step of an operation's plan.
type StepDef struct {
	Name   string
	Action StepAction
	Where  Where
	// Undo is the step that reverses this one in a rollback; nil with
	// NothingToUndo false means the step cannot be undone (a point of no
	// return: once it ran, the operation can only go forward).
	Undo          *StepDef
	NothingToUndo bool
	// Force: for a stop, destroy the domain once the grace has passed.
	Force bool
	// Timeout bounds each attempt (a stop also gets its graceful timeout);
	// zero: only the operation's deadline does.
	Timeout time.Duration
	// Layer: for an offer or a receive, the part of the disk it copies.
	Layer Layer
}

// Reversible reports whether the step can be rolled back.
func (d StepDef) Reversible() bool { return d.Undo != nil || d.NothingToUndo }

func undo(name string, a StepAction, w Where) *StepDef {
	return &StepDef{Name: name, Action: a, Where: w}
}

// preflight is the first step of every operation that makes or boots a
// domain: the host checks the image and its free disk before anything is
// defined or started, so a host that cannot do it fails fast and leaves
// nothing behind. It changes nothing, so there is nothing to undo.
var preflight = StepDef{Name: "preflight", Action: ActPreflight, NothingToUndo: true, Timeout: preflightTimeout}

// passwordTimeout bounds setting a password inside the guest: a command
// on its guest channel, which a live guest side answers in a second.
const passwordTimeout = time.Minute

// fetchImageTimeout bounds one attempt at pulling an image from another
// host (a few GiB over the hosts' network; a cut pull resumes).
const fetchImageTimeout = 10 * time.Minute

// FetchImageBudget is what a create that fetches its image gets on top of
// its deadline: the copy's time.
const FetchImageBudget = fetchImageTimeout

// preflightTimeout bounds the checks (a statfs and reading the image's header).
const preflightTimeout = time.Minute

// Shape is what a plan depends on besides its kind.
type Shape struct {
	// WasRunning: the instance's domain is (or may be) running now.
	WasRunning bool
	// SameHost: a resize that stays on its host (else it goes to the
	// operation's target; for a revert, the target is the original's host).
	SameHost bool
	// StartAfter: a resize or revert boots the domain it leaves behind
	// (the guest was running before the resize began).
	StartAfter bool
	// Decommission: a stop or delete of a running guest first gives it
	// this long to run its decommission work (zero: none).
	Decommission time.Duration
	// Deallocated: a start of a deallocated instance, whose domain must be
	// defined again (on its disk's host when SameHost, else the disk
	// moves to the operation's target first).
	Deallocated bool
	// Health: how long an upgrade waits for its guest to become healthy
	// (zero: DefaultHealthTimeout).
	Health time.Duration
	// FetchImage: a create's host lacks the image; it is fetched first.
	FetchImage bool
}

// DefaultHealthTimeout bounds an upgrade's wait for a healthy guest.
const DefaultHealthTimeout = 3 * time.Minute

// StepsFor returns the plan of an operation of kind k. wasRunning says
// whether the instance's domain is (or may be) running: for a move, whether
// it must be stopped first and started again on the target; for a hard
// restart, whether it is reset (running) or booted (off).
func StepsFor(k OpKind, wasRunning bool) []StepDef {
	return StepsForShape(k, Shape{WasRunning: wasRunning, StartAfter: wasRunning})
}

// StepsForShape returns the plan of an operation of kind k in shape sh.
func StepsForShape(k OpKind, sh Shape) []StepDef {
	wasRunning := sh.WasRunning
	one := func(name string, a StepAction, u *StepDef) []StepDef {
		return []StepDef{{Name: name, Action: a, Undo: u}}
	}
	// The undo of a boot: a forced stop, since the guest has barely begun.
	stopForced := &StepDef{Name: "stop-domain", Action: ActStop, Force: true}
	switch k {
	case OpCreate:
		create := []StepDef{preflight, {Name: "create-domain", Action: ActCreate, Undo: undo("delete-domain", ActDelete, OnSource)}}
		if sh.FetchImage {
			// A fetched image is a copy the catalogue then lists on this
			// host, useful to the next create: a rollback keeps it.
			return append([]StepDef{{Name: "fetch-image", Action: ActFetchImage, NothingToUndo: true, Timeout: fetchImageTimeout}}, create...)
		}
		return create
	case OpStart:
		if sh.Deallocated {
			return startDeallocatedSteps(sh)
		}
		return []StepDef{preflight, {Name: "start-domain", Action: ActStart, Undo: stopForced}}
	case OpStop:
		return decommissionFirst(sh, one("stop-domain", ActStop, undo("start-domain", ActStart, OnSource)))
	case OpRestart:
		return one("reboot-guest", ActRestart, nil)
	case OpHardRestart:
		if !wasRunning {
			// Off: the hard restart boots the domain (the agent's
			// hard-restart step starts a shut-off one), so it is checked
			// and undone as a start is.
			return []StepDef{preflight, {Name: "boot-domain", Action: ActHardRestart, Undo: stopForced}}
		}
		return one("reset-domain", ActHardRestart, nil)
	case OpPause:
		return one("pause-domain", ActPause, undo("unpause-domain", ActUnpause, OnSource))
	case OpUnpause:
		return one("unpause-domain", ActUnpause, undo("pause-domain", ActPause, OnSource))
	case OpSuspend:
		return one("suspend-domain", ActSuspend, undo("resume-domain", ActResume, OnSource))
	case OpResume:
		return one("resume-domain", ActResume, undo("suspend-domain", ActSuspend, OnSource))
	case OpDelete:
		return decommissionFirst(sh, one("delete-domain", ActDelete, nil))
	case OpPreempt:
		return one("evict-domain", ActDelete, nil)
	case OpUpdate:
		// One atomic write of the domain's title: nothing to undo if it fails.
		return []StepDef{{Name: "update-domain", Action: ActUpdate, NothingToUndo: true}}
	case OpMove:
		// A move's steps have their own timeouts, so a hung one fails (and
		// rolls back) long before the whole move's deadline; the copy has
		// what the move has.
		var s []StepDef
		if wasRunning {
			s = append(s, StepDef{Name: "stop-on-source", Action: ActStop, Force: true, Timeout: quickStep,
				Undo: undo("start-on-source", ActStart, OnSource)})
		}
		s = append(s,
			StepDef{Name: "offer-disk", Action: ActOfferDisk, NothingToUndo: true, Timeout: quickStep},
			StepDef{Name: "copy-disk-to-target", Action: ActImportDisk, Where: OnTarget,
				Undo: undo("remove-from-target", ActDelete, OnTarget)})
		if wasRunning {
			s = append(s, StepDef{Name: "start-on-target", Action: ActStart, Where: OnTarget, Timeout: quickStep,
				Undo: &StepDef{Name: "stop-on-target", Action: ActStop, Where: OnTarget, Force: true}})
		}
		return append(s,
			StepDef{Name: "switch-host", Action: ActSwitchHost, Where: OnCoordinator},
			StepDef{Name: "remove-from-source", Action: ActDelete, Timeout: quickStep})
	case OpResize:
		return resizeSteps(sh)
	case OpConfirmResize:
		if sh.SameHost {
			return []StepDef{{Name: "drop-original", Action: ActDropOrig, Timeout: quickStep}}
		}
		// The original is the domain of the same id on the host it came
		// from (the operation's target).
		return []StepDef{{Name: "delete-original", Action: ActDelete, Where: OnTarget, Timeout: quickStep}}
	case OpRevertResize:
		return revertSteps(sh)
	case OpExtend:
		// One block resize (or qemu-img resize): it happened or it did not.
		return []StepDef{{Name: "grow-disk", Action: ActGrowDisk, NothingToUndo: true, Timeout: quickStep}}
	case OpRebuild:
		return rebuildSteps(sh)
	case OpRescue, OpUnrescue:
		return rescueSteps(k, sh)
	case OpBundle:
		// Only from offline. The image appears whole or not at all (the agent
		// writes it aside and renames it in), so there is nothing to undo.
		return []StepDef{{Name: "bundle-disk", Action: ActBundleDisk, NothingToUndo: true, Timeout: bundleTimeout}}
	case OpDeallocate:
		// Only a stopped instance is deallocated (see allowed): the release
		// undefines a shut-off domain, and a define undoes it.
		return []StepDef{{Name: "release-domain", Action: ActRelease, Timeout: quickStep,
			Undo: undo("define-domain", ActDefine, OnSource)}}
	case OpSoftDelete:
		// As a stop, forced after its grace: the domain and disk stay.
		return decommissionFirst(sh, []StepDef{{Name: "stop-domain", Action: ActStop, Force: true,
			Undo: undo("start-domain", ActStart, OnSource)}})
	case OpRestore:
		if !sh.StartAfter {
			// Back to stopped: the domain is as the soft delete left it;
			// the host only checks that it could boot it.
			return []StepDef{preflight}
		}
		return []StepDef{preflight, {Name: "start-domain", Action: ActStart, Undo: stopForced}}
	case OpUpgrade:
		return upgradeSteps(sh)
	case OpSetPassword:
		// The guest sets it or it does not; an old password cannot be
		// restored (nobody knows it), so there is nothing to undo.
		return []StepDef{{Name: "set-password", Action: ActSetPassword, NothingToUndo: true, Timeout: passwordTimeout}}
	}
	return nil
}

// startDeallocatedSteps plans the start of a deallocated instance: on the
// host that kept its disk, the domain is defined again; elsewhere the disk
// is copied to the target first (as a cold move does, the domain defined
// there shut off), the instance switches host, and the source's copy goes.
func startDeallocatedSteps(sh Shape) []StepDef {
	stopForced := func(w Where) *StepDef {
		return &StepDef{Name: "stop-domain", Action: ActStop, Where: w, Force: true}
	}
	if sh.SameHost {
		return []StepDef{preflight,
			{Name: "define-domain", Action: ActDefine, Timeout: quickStep, Undo: undo("release-domain", ActRelease, OnSource)},
			{Name: "start-domain", Action: ActStart, Timeout: quickStep, Undo: stopForced(OnSource)}}
	}
	targetPreflight := preflight
	targetPreflight.Where = OnTarget
	return []StepDef{targetPreflight,
		{Name: "offer-disk", Action: ActOfferDisk, NothingToUndo: true, Timeout: quickStep},
		{Name: "copy-disk-to-target", Action: ActImportDisk, Where: OnTarget, Undo: undo("remove-from-target", ActDelete, OnTarget)},
		{Name: "start-on-target", Action: ActStart, Where: OnTarget, Timeout: quickStep, Undo: stopForced(OnTarget)},
		{Name: "switch-host", Action: ActSwitchHost, Where: OnCoordinator},
		{Name: "remove-from-source", Action: ActDelete, Timeout: quickStep}}
}

// upgradeSteps plans an upgrade: the domain goes down, its disk and model
// are kept apart (the snapshot) while it is redefined at the new image
// version and model, it boots, and the guest must become healthy within
// the health timeout; only then is the snapshot dropped. Any failure
// before the drop rolls back: the snapshot's disk and model return and
// the domain is brought back to the power state it had.
func upgradeSteps(sh Shape) []StepDef {
	health := healthTimeout(sh)
	s := []StepDef{preflight}
	if sh.WasRunning {
		s = append(s, StepDef{Name: "stop-domain", Action: ActStop, Force: true, Timeout: quickStep,
			Undo: undo("start-domain", ActStart, OnSource)})
	}
	s = append(s,
		StepDef{Name: "upgrade-disk", Action: ActUpgradeDisk, Timeout: quickStep,
			Undo: undo("rollback-disk", ActRollbackDisk, OnSource)},
		StepDef{Name: "boot-upgraded", Action: ActStart, Timeout: quickStep,
			Undo: &StepDef{Name: "stop-upgraded", Action: ActStop, Force: true}},
		// Waiting changes nothing: the boot's undo stops the guest.
		StepDef{Name: "await-healthy", Action: ActAwaitHealthy, NothingToUndo: true, Timeout: health})
	if !sh.StartAfter {
		// It was off: checked, it goes back to off.
		s = append(s, StepDef{Name: "stop-upgraded", Action: ActStop, Force: true, Timeout: quickStep,
			Undo: undo("start-upgraded", ActStart, OnSource)})
	}
	// The point of no return: the previous disk is gone.
	return append(s, StepDef{Name: "drop-snapshot", Action: ActDropSnapshot, Timeout: quickStep})
}

// decommissionFirst puts a decommission before a stop's or a delete's
// steps when the shape asks for one: it changes nothing on the host, so
// there is nothing to undo, and its failure does not fail the plan (see
// BestEffort).
func decommissionFirst(sh Shape, s []StepDef) []StepDef {
	if sh.Decommission <= 0 || !sh.WasRunning {
		return s
	}
	d := StepDef{Name: "decommission", Action: ActDecommission, NothingToUndo: true, Timeout: sh.Decommission}
	return append([]StepDef{d}, s...)
}

// resizeSteps plans a resize. In place: stop, reshape (the original kept),
// start. To another host, a running guest's disk travels while it runs, in
// two passes: the base, frozen; then the mid, what the guest wrote during
// the base's copy, frozen in turn. Only then is the guest shut down (Nova's
// RESIZED), and only the top crosses, what it wrote during the second pass:
// the downtime follows the writes, not the disk's size.
func resizeSteps(sh Shape) []StepDef {
	stopForced := func(w Where) *StepDef {
		return &StepDef{Name: "stop-domain", Action: ActStop, Where: w, Force: true}
	}
	if sh.SameHost {
		s := []StepDef{preflight}
		if sh.WasRunning {
			s = append(s, StepDef{Name: "stop-domain", Action: ActStop, Force: true, Timeout: quickStep,
				Undo: undo("start-domain", ActStart, OnSource)})
		}
		s = append(s, StepDef{Name: "reshape-domain", Action: ActReshape,
			Undo: undo("unshape-domain", ActUnshape, OnSource)})
		if sh.StartAfter {
			s = append(s, StepDef{Name: "start-domain", Action: ActStart, Timeout: quickStep, Undo: stopForced(OnSource)})
		}
		return s
	}
	targetPreflight := preflight
	targetPreflight.Where = OnTarget
	removeTarget := undo("remove-from-target", ActDelete, OnTarget)
	s := []StepDef{targetPreflight}
	if sh.WasRunning {
		s = append(s,
			StepDef{Name: "freeze-disk", Action: ActFreezeDisk, Timeout: quickStep,
				Undo: undo("thaw-disk", ActThawDisk, OnSource)},
			StepDef{Name: "offer-base", Action: ActOfferDisk, Layer: LayerBase, NothingToUndo: true, Timeout: quickStep},
			StepDef{Name: "copy-base-to-target", Action: ActReceiveDisk, Layer: LayerBase, Where: OnTarget, Undo: removeTarget},
			// The freeze's undo (a thaw) merges every layer back.
			StepDef{Name: "refreeze-disk", Action: ActRefreeze, NothingToUndo: true, Timeout: quickStep},
			StepDef{Name: "offer-mid", Action: ActOfferDisk, Layer: LayerMid, NothingToUndo: true, Timeout: quickStep},
			// Undone with the base's copy (one delete removes all staged).
			StepDef{Name: "copy-mid-to-target", Action: ActReceiveDisk, Layer: LayerMid, Where: OnTarget, NothingToUndo: true},
			StepDef{Name: "stop-on-source", Action: ActStop, Force: true, Timeout: quickStep,
				Undo: undo("start-on-source", ActStart, OnSource)},
			StepDef{Name: "offer-top", Action: ActOfferDisk, Layer: LayerTop, NothingToUndo: true, Timeout: quickStep},
			// Undone with the base's copy (one delete removes all staged).
			StepDef{Name: "copy-top-to-target", Action: ActReceiveDisk, Layer: LayerTop, Where: OnTarget, NothingToUndo: true})
	} else {
		s = append(s,
			StepDef{Name: "offer-disk", Action: ActOfferDisk, NothingToUndo: true, Timeout: quickStep},
			StepDef{Name: "copy-disk-to-target", Action: ActReceiveDisk, Where: OnTarget, Undo: removeTarget})
	}
	s = append(s, StepDef{Name: "define-on-target", Action: ActAdoptDisk, Where: OnTarget, Timeout: quickStep,
		Undo: removeTarget})
	if sh.StartAfter {
		s = append(s, StepDef{Name: "start-on-target", Action: ActStart, Where: OnTarget, Timeout: quickStep,
			Undo: stopForced(OnTarget)})
	}
	return append(s, StepDef{Name: "switch-host", Action: ActSwitchHost, Where: OnCoordinator})
}

// revertSteps plans a revert: the resized domain stops, the original comes
// back (its disk as it was when the resize took the guest down) and, once
// the instance is the original again, the resized copy is removed.
func revertSteps(sh Shape) []StepDef {
	var s []StepDef
	if sh.WasRunning {
		s = append(s, StepDef{Name: "stop-resized", Action: ActStop, Force: true, Timeout: quickStep,
			Undo: undo("start-resized", ActStart, OnSource)})
	}
	if sh.SameHost {
		// The unshape is the point of no return: the resized disk is gone.
		s = append(s, StepDef{Name: "unshape-domain", Action: ActUnshape, Timeout: quickStep})
		if sh.StartAfter {
			s = append(s, StepDef{Name: "start-original", Action: ActStart, Timeout: quickStep,
				Undo: &StepDef{Name: "stop-original", Action: ActStop, Force: true}})
		}
		return s
	}
	// The original's top merges back into its base: the disk's content is
	// the same either way, so there is nothing to undo.
	s = append(s, StepDef{Name: "thaw-original", Action: ActThawDisk, Where: OnTarget, NothingToUndo: true, Timeout: quickStep})
	if sh.StartAfter {
		s = append(s, StepDef{Name: "start-original", Action: ActStart, Where: OnTarget, Timeout: quickStep,
			Undo: &StepDef{Name: "stop-original", Action: ActStop, Where: OnTarget, Force: true}})
	}
	return append(s,
		StepDef{Name: "switch-host", Action: ActSwitchHost, Where: OnCoordinator},
		StepDef{Name: "remove-resized", Action: ActDelete, Timeout: quickStep})
}

// rebuildSteps plans a rebuild: the old disk is kept aside (as a resize
// in place keeps its original) until the new one has booted, and put back
// by the rollback if anything before that fails.
func rebuildSteps(sh Shape) []StepDef {
	s := []StepDef{preflight}
	if sh.WasRunning {
		s = append(s, StepDef{Name: "stop-domain", Action: ActStop, Force: true, Timeout: quickStep,
			Undo: undo("start-domain", ActStart, OnSource)})
	}
	return append(s,
		StepDef{Name: "rebuild-disk", Action: ActRebuildDisk, Timeout: quickStep,
			Undo: undo("restore-old-disk", ActUnshape, OnSource)},
		StepDef{Name: "start-domain", Action: ActStart, Timeout: quickStep,
			Undo: &StepDef{Name: "stop-domain", Action: ActStop, Force: true}},
		// The new disk must boot a guest that says it is ready (on its
		// guest channel; a guest without one: it keeps running for a settle
		// time), not merely a domain that runs. Waiting changes nothing:
		// the boot's undo stops the guest, and the old disk comes back.
		StepDef{Name: "await-healthy", Action: ActAwaitHealthy, NothingToUndo: true, Timeout: healthTimeout(sh)},
		// The point of no return: the new disk booted.
		StepDef{Name: "drop-old-disk", Action: ActDropOrig, Timeout: quickStep})
}

// healthTimeout is how long a plan waits for its guest to become healthy.
func healthTimeout(sh Shape) time.Duration {
	if sh.Health > 0 {
		return sh.Health
	}
	return DefaultHealthTimeout
}

// rescueSteps plans a rescue (boot the rescue system, the instance's disk
// second) or an unrescue (boot its own disk again); each undoes the other.
func rescueSteps(k OpKind, sh Shape) []StepDef {
	define := StepDef{Name: "rescue-domain", Action: ActRescueDomain, Timeout: quickStep,
		Undo: undo("unrescue-domain", ActUnrescueDomain, OnSource)}
	if k == OpUnrescue {
		define = StepDef{Name: "unrescue-domain", Action: ActUnrescueDomain, Timeout: quickStep,
			Undo: undo("rescue-domain", ActRescueDomain, OnSource)}
	}
	var s []StepDef
	if sh.WasRunning {
		s = append(s, StepDef{Name: "stop-domain", Action: ActStop, Force: true, Timeout: quickStep,
			Undo: undo("start-domain", ActStart, OnSource)})
	}
	return append(s, define,
		StepDef{Name: "start-domain", Action: ActStart, Timeout: quickStep,
			Undo: &StepDef{Name: "stop-domain", Action: ActStop, Force: true}})
}

// bundleTimeout bounds writing a disk out as an image (a full read and a
// compressed write of the disk).
const bundleTimeout = 30 * time.Minute

// quickStep bounds a move's steps that only start, stop, offer or remove.
const quickStep = 3 * time.Minute

// Expect returns the power state a successful step leaves the domain in
// (PowerNone: the step does not change it).
func (a StepAction) Expect() Power {
	switch a {
	case ActCreate, ActStart, ActRestart, ActHardRestart, ActUnpause, ActResume:
		return PowerRunning
	case ActStop, ActImportDisk, ActAdoptDisk, ActReshape, ActUnshape, ActRebuildDisk, ActRescueDomain, ActUnrescueDomain, ActDefine, ActUpgradeDisk, ActRollbackDisk:
		return PowerShutOff
	case ActRelease:
		return PowerNoDomain
	case ActPause:
		return PowerPaused
	case ActSuspend:
		return PowerSavedToDisk
	case ActDelete:
		return PowerNoDomain
	}
	return PowerNone
}

// Retry policy for transient faults: a step is tried at most MaxAttempts
// times, waiting Backoff(attempt) after a failed attempt.
const (
	MaxAttempts  = 3
	firstBackoff = 500 * time.Millisecond
)

// Backoff is the wait after the given failed attempt (1-based): 0.5 s, 1 s, 2 s, ...
func Backoff(attempt int32) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	return firstBackoff << (attempt - 1)
}

// transient lists the fault codes worth another attempt: the hypervisor
// connection dropped, the peer of a disk copy could not be reached, or the
// copy arrived damaged. Anything else (a refused spec, a missing image, a
// step interrupted by an agent restart whose effect is unknown) is permanent.
var transient = map[string]bool{
	"HYPERVISOR_UNAVAILABLE": true,
	"PEER_UNAVAILABLE":       true,
	"DISK_CORRUPT":           true,
	// The guest channel closed mid-command (an agent or guest restart):
	// the commands guests run are safe to run again.
	"GUEST_UNAVAILABLE": true,
}

// Transient reports whether a fault code may succeed when tried again.
func Transient(code string) bool { return transient[code] }
