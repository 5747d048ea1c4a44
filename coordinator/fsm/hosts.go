package fsm

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

func applyRegisterHost(tx *state.Tx, c *RegisterHost) (any, error) {
	h, ok := tx.Host(c.Host.ID)
	if !ok {
		h = &state.Host{ID: c.Host.ID}
	}
	h.Epoch++
	h.Status = state.HostReady
	h.Kind = c.Host.Kind
	h.Capacity = c.Host.Capacity
	h.AgentVersion = c.Host.AgentVersion
	h.Labels = c.Host.Labels
	h.PeerAddr = c.Host.PeerAddr
	h.ManagedNetworks, h.Bridges = c.Host.ManagedNetworks, c.Host.Bridges
	h.ImagesListed = false // until this agent lists its images (an older one never does)
	h.RegisterTime = tx.Now()
	h.Orphans = applyInventory(tx, h.ID, c.Inventory, true, tx.Now())
	tx.PutHost(h)
	return h.Epoch, nil
}

func applyDisconnectHost(tx *state.Tx, c *DisconnectHost) (any, error) {
	h, ok := tx.Host(c.HostID)
	if !ok {
		return nil, fmt.Errorf("host %q: %w", c.HostID, ErrNotFound)
	}
	if h.Epoch != c.Epoch {
		return nil, fmt.Errorf("host %q epoch %d, current %d: %w", h.ID, c.Epoch, h.Epoch, ErrStaleEpoch)
	}
	h.Status = state.HostDisconnected
	reason := "host-disconnected"
	if c.Down {
		h.Status, reason = state.HostDown, "host-down"
	}
	tx.PutHost(h)
	// Unreachable is not stopped: the power state becomes unknown, nothing more.
	for _, inst := range tx.InstancesOnHost(h.ID) {
		if inst.Power == lifecycle.PowerNone || inst.Power == lifecycle.PowerUnknown || inst.Desired == lifecycle.DesiredDeleted && inst.Power == lifecycle.PowerNoDomain {
			continue
		}
		inst.Power, inst.PowerWhy, inst.PowerTime = lifecycle.PowerUnknown, reason, tx.Now()
		tx.PutInstance(inst)
	}
	return nil, nil
}

func applyObserve(tx *state.Tx, c *Observe) (any, error) {
	h, ok := tx.Host(c.HostID)
	if !ok {
		return nil, fmt.Errorf("host %q: %w", c.HostID, ErrNotFound)
	}
	if h.Epoch != c.Epoch {
		return nil, fmt.Errorf("host %q epoch %d, current %d: %w", h.ID, c.Epoch, h.Epoch, ErrStaleEpoch)
	}
	taken := c.Taken
	if taken.IsZero() {
		taken = tx.Now()
	}
	orphans := applyInventory(tx, h.ID, c.Observations, c.Full, taken)
	if c.Full && !slices.Equal(orphans, h.Orphans) {
		h.Orphans = orphans
		tx.PutHost(h)
	}
	return nil, nil
}

// applyInventory records observations for the instances placed on hostID
// and returns the ids it reported that are not Flotilla's there (orphans,
// never touched). A report about an instance placed elsewhere is ignored: a
// host speaks only for itself. When full, placed instances missing from
// the list are observed to have had no domain at taken.
func applyInventory(tx *state.Tx, hostID string, obs []Observation, full bool, taken time.Time) []string {
	var orphans []string
	seen := map[string]bool{}
	for _, o := range obs {
		seen[o.InstanceID] = true
		// Looked up one by one: a single event must not cost a scan of
		// every instance on the host.
		inst, ok := tx.Instance(o.InstanceID)
		if ok && inst.HostID != hostID && movingVia(tx, inst, hostID) {
			continue // the other end of a move: neither its state nor an orphan
		}
		if !ok || inst.HostID != hostID {
			orphans = append(orphans, o.InstanceID)
			continue
		}
		if observe(inst, o) {
			tx.PutInstance(inst)
		}
	}
	if full {
		placed := map[string]*state.Instance{}
		for _, inst := range tx.InstancesOnHost(hostID) {
			placed[inst.ID] = inst
		}
		for id, inst := range placed {
			if seen[id] || inst.Power == lifecycle.PowerNoDomain {
				continue
			}
			if observe(inst, Observation{InstanceID: id, Power: lifecycle.PowerNoDomain, Reason: "not-in-inventory", Time: taken}) {
				tx.PutInstance(inst)
			}
		}
	}
	sort.Strings(orphans)
	return orphans
}

// movingVia reports whether inst's other end is on hostID: a move or a
// resize runs between hostID and its host, or hostID keeps the original of
// an unconfirmed resize. Such a host speaks of a domain that is neither the
// instance's state nor an orphan.
func movingVia(tx *state.Tx, inst *state.Instance, hostID string) bool {
	if r := inst.Resize; r != nil && r.Source == hostID {
		return true
	}
	if inst.CurrentOp == "" {
		return false
	}
	op, ok := tx.Operation(inst.CurrentOp)
	return ok && op.TargetHostID != "" && (op.HostID == hostID || op.TargetHostID == hostID)
}

// observe applies one observation unless it is older than what is recorded,
// and reports whether anything changed.
func observe(inst *state.Instance, o Observation) bool {
	if o.Time.Before(inst.PowerTime) {
		return false
	}
	if inst.Power == o.Power && inst.PowerWhy == o.Reason {
		return false
	}
	inst.Power, inst.PowerWhy, inst.PowerTime = o.Power, o.Reason, o.Time
	return true
}

func applyCordonHost(tx *state.Tx, c *CordonHost) (any, error) {
	h, ok := tx.Host(c.HostID)
	if !ok {
		return nil, fmt.Errorf("host %q: %w", c.HostID, ErrNotFound)
	}
	if h.Cordoned == c.Cordon && !(!c.Cordon && h.Draining) {
		return nil, nil
	}
	h.Cordoned = c.Cordon
	if !c.Cordon {
		h.Draining = false
	}
	tx.PutHost(h)
	return nil, nil
}

func applyDrainHost(tx *state.Tx, c *DrainHost) (any, error) {
	h, ok := tx.Host(c.HostID)
	if !ok {
		return nil, fmt.Errorf("host %q: %w", c.HostID, ErrNotFound)
	}
	h.Cordoned, h.Draining = true, true
	tx.PutHost(h)
	var started []string
	for _, op := range c.Moves {
		if o := startMove(tx, h.ID, op, c.Policy); o != nil {
			started = append(started, o.ID)
		}
	}
	for _, op := range c.Stops {
		if o := startDrainStop(tx, h.ID, op); o != nil {
			started = append(started, o.ID)
		}
	}
	return started, nil
}

// startDrainStop stops an instance of a draining host, if it still runs there.
func startDrainStop(tx *state.Tx, hostID string, op state.Operation) *state.Operation {
	inst, ok := tx.Instance(op.InstanceID)
	if !ok || inst.HostID != hostID {
		return nil
	}
	status := inst.Status()
	if lifecycle.Check(status, lifecycle.ActionStop) != nil || status == lifecycle.StatusStopped {
		return nil // already down, gone, or busy: nothing to drain
	}
	o := newOperation(tx, op, lifecycle.OpStop, hostID)
	o.PrevDesired = inst.Desired
	inst.Desired = lifecycle.DesiredStopped
	inst.CurrentOp, inst.CurrentOpK = o.ID, o.Kind
	tx.PutInstance(inst)
	tx.PutOperation(o)
	return o
}

// startMove moves an idle running or stopped instance off a draining host;
// one whose target no longer fits is stopped instead.
func startMove(tx *state.Tx, hostID string, op state.Operation, policy scheduler.Policy) *state.Operation {
	inst, ok := tx.Instance(op.InstanceID)
	if !ok || inst.HostID != hostID {
		return nil
	}
	status := inst.Status()
	if status != lifecycle.StatusRunning && status != lifecycle.StatusStopped {
		return startDrainStop(tx, hostID, op)
	}
	if op.TargetHostID == hostID || op.Token == "" || checkPlacement(tx, inst, op.TargetHostID, policy) != nil {
		return startDrainStop(tx, hostID, op)
	}
	target := op.TargetHostID
	o := newOperation(tx, op, lifecycle.OpMove, hostID)
	o.TargetHostID = target
	planSteps(o, status == lifecycle.StatusRunning)
	o.PrevDesired = inst.Desired
	inst.CurrentOp, inst.CurrentOpK = o.ID, o.Kind
	inst.MoveTarget = target
	tx.PutInstance(inst)
	tx.PutOperation(o)
	return o
}
