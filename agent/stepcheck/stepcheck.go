// Package stepcheck decides, from what the hypervisor shows of a domain,
// whether a step an agent started and never finished (the agent was killed
// under it) took effect. The decision is a pure table (Decide); Observe
// reads the facts it needs from a driver.
//
// The verdicts are the agent's options after a restart: report the step
// done with its real result, run it again (its effect is absent, so running
// it once more is still once in effect), undo a partial effect and run it
// again, or admit that nobody can know (AGENT_RESTARTED).
package stepcheck

import (
	"context"
	"fmt"

	"github.com/flotilla-vm/flotilla/hypervisor"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// Verdict is what an interrupted step's effect is.
type Verdict int

const (
	// Unknowable: the hypervisor's state cannot tell (a reboot leaves a
	// running guest running; a guest command leaves no trace), or it shows
	// something the step cannot have produced. Reported AGENT_RESTARTED.
	Unknowable Verdict = iota
	// Done: the effect is present; the step succeeded.
	Done
	// NotDone: the effect is absent (or the step is idempotent and a rerun
	// finishes what it began); the step runs again.
	NotDone
	// Partly: part of the effect is present (a domain defined but not
	// booted, a disk half written); Undo removes it, then the step runs again.
	Partly
)

func (v Verdict) String() string {
	switch v {
	case Done:
		return "done"
	case NotDone:
		return "not-done"
	case Partly:
		return "partly-done"
	}
	return "unknowable"
}

// Undo is how a partial effect is settled before the step runs again.
type Undo int

const (
	UndoNone   Undo = iota
	UndoDelete      // hypervisor.Driver.Delete: domain, disks and staged layers
	// UndoResume finishes a boot cut off before its vCPUs ran: QEMU starts
	// a domain paused and libvirt resumes it as its last act, so a killed
	// start can leave it paused. Resuming (not destroying) keeps the
	// memory a restore from a managed save already loaded.
	UndoResume
)

// Leftovers says whether the host holds files of an instance that has no
// domain (a disk a killed create or import began).
type Leftovers int

const (
	LeftoversUnknown Leftovers = iota // the driver cannot tell
	LeftoversNone
	LeftoversPresent
)

// Facts is what the hypervisor shows of the step's instance.
type Facts struct {
	Power     hypervisor.PowerState
	Leftovers Leftovers // meaningful only with PowerNoDomain
}

// Decision is Decide's answer.
type Decision struct {
	Verdict Verdict
	Undo    Undo   // with Partly
	Why     string // for logs and the step's note
}

// AllPowers are the power states Decide is defined over (every one).
var AllPowers = []hypervisor.PowerState{
	hypervisor.PowerRunning, hypervisor.PowerPaused, hypervisor.PowerShuttingDown, hypervisor.PowerShutOff,
	hypervisor.PowerCrashed, hypervisor.PowerSavedToDisk, hypervisor.PowerNoDomain, hypervisor.PowerUnknown,
}

// AllLeftovers are the Leftovers values.
var AllLeftovers = []Leftovers{LeftoversUnknown, LeftoversNone, LeftoversPresent}

// power state shorthands for the table
const (
	run   = hypervisor.PowerRunning
	pause = hypervisor.PowerPaused
	down  = hypervisor.PowerShuttingDown
	off   = hypervisor.PowerShutOff
	crash = hypervisor.PowerCrashed
	saved = hypervisor.PowerSavedToDisk
	none  = hypervisor.PowerNoDomain
)

// row maps power states to verdicts for one action; a state it does not
// name is Unknowable.
type row map[hypervisor.PowerState]Verdict

// table is the decision for every action but CREATE, IMPORT_DISK and
// DELETE, which also look at leftovers (see Decide). Actions it does not
// name (guest commands, reboots, actions newer than this table) are
// Unknowable in every state.
var table = map[agentv1.StepAction]row{
	// Start restores from a managed save image, so a saved domain is a
	// start not yet done.
	// Paused: the boot was cut off before libvirt resumed the vCPUs (see UndoResume).
	agentv1.StepAction_STEP_ACTION_START:  {run: Done, down: Done, off: NotDone, crash: NotDone, saved: NotDone, pause: Partly},
	agentv1.StepAction_STEP_ACTION_RESUME: {run: Done, down: Done, off: NotDone, crash: NotDone, saved: NotDone, pause: Partly},
	// A stop that was interrupted asks again: the guest gets its grace anew.
	agentv1.StepAction_STEP_ACTION_STOP:    {off: Done, run: NotDone, down: NotDone, pause: NotDone},
	agentv1.StepAction_STEP_ACTION_PAUSE:   {pause: Done, run: NotDone},
	agentv1.StepAction_STEP_ACTION_UNPAUSE: {run: Done, pause: NotDone},
	// A managed save writes its image before it stops the domain: running
	// or paused means it never finished, and libvirt drops a partial image.
	agentv1.StepAction_STEP_ACTION_SUSPEND: {saved: Done, run: NotDone, pause: NotDone},
	// Idempotent by the driver's contract ("already done is success"):
	// running them again finishes or confirms what was begun.
	agentv1.StepAction_STEP_ACTION_FREEZE_DISK:   {run: NotDone, down: NotDone, off: NotDone},
	agentv1.StepAction_STEP_ACTION_REFREEZE_DISK: {run: NotDone, down: NotDone, off: NotDone},
	agentv1.StepAction_STEP_ACTION_THAW_DISK:     {run: NotDone, down: NotDone, off: NotDone},
	agentv1.StepAction_STEP_ACTION_RESHAPE:       {off: NotDone},
	agentv1.StepAction_STEP_ACTION_UNSHAPE:       {off: NotDone},
	agentv1.StepAction_STEP_ACTION_GROW_DISK:     {run: NotDone, pause: NotDone, off: NotDone},
	agentv1.StepAction_STEP_ACTION_UPDATE:        {run: NotDone, pause: NotDone, down: NotDone, off: NotDone, crash: NotDone, saved: NotDone},
	agentv1.StepAction_STEP_ACTION_DROP_ORIGINAL: {run: NotDone, pause: NotDone, down: NotDone, off: NotDone, crash: NotDone, saved: NotDone, none: Done},
	// An offer lives in the agent's memory, which the restart lost.
	agentv1.StepAction_STEP_ACTION_OFFER_DISK: {run: NotDone, pause: NotDone, down: NotDone, off: NotDone, crash: NotDone, saved: NotDone},
	// A preflight changes nothing.
	agentv1.StepAction_STEP_ACTION_PREFLIGHT: {run: NotDone, pause: NotDone, down: NotDone, off: NotDone, crash: NotDone, saved: NotDone, none: NotDone},
	// The target of a resize has no domain until the adoption: a received
	// layer replaces a half-written one of its kind, so it is received
	// again; with the domain defined, the adoption (after it) happened.
	agentv1.StepAction_STEP_ACTION_RECEIVE_DISK: {none: NotDone, off: Done, run: Done},
	// Adoption defines the domain shut off as its last act; without it the
	// staged layers are still there (or a rerun says they are not).
	agentv1.StepAction_STEP_ACTION_ADOPT_DISK: {off: Done, none: NotDone},
	// An upgrade is a reshape to a new image (already done is success); a
	// rollback is an unshape and dropping the snapshot drops the original.
	agentv1.StepAction_STEP_ACTION_UPGRADE_DISK:  {off: NotDone},
	agentv1.StepAction_STEP_ACTION_ROLLBACK_DISK: {off: NotDone},
	agentv1.StepAction_STEP_ACTION_DROP_SNAPSHOT: {run: NotDone, pause: NotDone, down: NotDone, off: NotDone, crash: NotDone, saved: NotDone, none: Done},
	// A release undefines the shut-off domain as its only act (the disk is
	// kept); a define defines it shut off as its last act.
	agentv1.StepAction_STEP_ACTION_RELEASE_DOMAIN: {off: NotDone, none: Done},
	agentv1.StepAction_STEP_ACTION_DEFINE_DOMAIN:  {off: Done, none: NotDone},
	// A fetch writes the image whole or not at all and skips one held
	// already with its checksum: running it again finishes or confirms it.
	agentv1.StepAction_STEP_ACTION_FETCH_IMAGE: {run: NotDone, pause: NotDone, down: NotDone, off: NotDone, crash: NotDone, saved: NotDone, none: NotDone},
	// Waiting for health changes nothing: it waits again.
	agentv1.StepAction_STEP_ACTION_AWAIT_HEALTHY: {run: NotDone, pause: NotDone, down: NotDone, off: NotDone, crash: NotDone, saved: NotDone, none: NotDone},
}

// Decide is the verdict on an interrupted step of action given facts. It
// is total: every action and every fact has an answer.
func Decide(action agentv1.StepAction, f Facts) Decision {
	if f.Power == hypervisor.PowerUnknown || f.Power == "" {
		return Decision{Verdict: Unknowable, Why: "the hypervisor cannot say what the domain is"}
	}
	switch action {
	case agentv1.StepAction_STEP_ACTION_CREATE:
		switch f.Power {
		case run, down:
			return Decision{Verdict: Done, Why: "the domain is defined and booted"}
		case off, crash, pause:
			// Paused: the boot was cut off before the vCPUs ran; the guest
			// never ran, so it is removed and created anew.
			return Decision{Verdict: Partly, Undo: UndoDelete, Why: fmt.Sprintf("the domain is defined but %s", f.Power)}
		case none:
			if f.Leftovers == LeftoversNone {
				return Decision{Verdict: NotDone, Why: "no domain and no disk"}
			}
			// A disk may have been begun; Delete of no domain removes the files.
			return Decision{Verdict: Partly, Undo: UndoDelete, Why: "no domain; a disk may have been begun"}
		}
		return Decision{Verdict: Unknowable, Why: fmt.Sprintf("a create cannot leave a domain %s", f.Power)}
	case agentv1.StepAction_STEP_ACTION_IMPORT_DISK:
		switch f.Power {
		case off:
			// The import defines the domain as its last act, from a verified disk.
			return Decision{Verdict: Done, Why: "the domain is defined shut off from the imported disk"}
		case none:
			if f.Leftovers == LeftoversNone {
				return Decision{Verdict: NotDone, Why: "no domain and no disk"}
			}
			return Decision{Verdict: Partly, Undo: UndoDelete, Why: "no domain; the disk may be half copied"}
		}
		return Decision{Verdict: Unknowable, Why: fmt.Sprintf("an import cannot leave a domain %s", f.Power)}
	case agentv1.StepAction_STEP_ACTION_DELETE:
		if f.Power == none && f.Leftovers == LeftoversNone {
			return Decision{Verdict: Done, Why: "no domain and no disk"}
		}
		// Delete is idempotent: it finishes whatever is left.
		return Decision{Verdict: NotDone, Why: fmt.Sprintf("domain %s; the delete finishes what is left", f.Power)}
	}
	v, ok := table[action][f.Power]
	if !ok {
		return Decision{Verdict: Unknowable, Why: fmt.Sprintf("%s leaves no trace the hypervisor shows (domain %s)", action, f.Power)}
	}
	d := Decision{Verdict: v, Why: fmt.Sprintf("%s with the domain %s", action, f.Power)}
	if v == Partly {
		d.Undo = UndoResume // the only partial effect the table names: a boot cut off
	}
	return d
}

// LeftoverProber is a driver that can tell whether an instance without a
// domain left files behind (the fake driver; libvirt answers unknown).
type LeftoverProber interface {
	HasLeftovers(ctx context.Context, id string) (bool, error)
}

// Observe reads the facts Decide needs of instance id from d.
func Observe(ctx context.Context, d hypervisor.Driver, id string) Facts {
	st, err := d.Status(ctx, id)
	if err != nil {
		return Facts{Power: hypervisor.PowerUnknown}
	}
	f := Facts{Power: st.State}
	if f.Power != hypervisor.PowerNoDomain {
		return f
	}
	if p, ok := d.(LeftoverProber); ok {
		if has, err := p.HasLeftovers(ctx, id); err == nil {
			f.Leftovers = LeftoversNone
			if has {
				f.Leftovers = LeftoversPresent
			}
		}
	}
	return f
}
