package fsm

import (
	"errors"
	"fmt"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	raftv1 "github.com/flotilla-vm/flotilla/proto/flotilla/raft/v1"
)

// Project command types (log version 7).
const (
	TypePutProject     = "project.put"
	TypeTopUpProject   = "project.topup"
	TypeFreezeProject  = "project.freeze"
	TypeChargeProjects = "project.charge"
)

var (
	// ErrQuotaExceeded refuses a create that would take its project past
	// a quota; the API answers RESOURCE_EXHAUSTED.
	ErrQuotaExceeded = errors.New("project quota exceeded")
	// ErrFrozen refuses work in a frozen project.
	ErrFrozen = errors.New("project is frozen")
)

func init() {
	commands[TypePutProject] = def(LogVersion7, newPB[raftv1.PutProject], applyPutProject)
	commands[TypeTopUpProject] = def(LogVersion7, newPB[raftv1.TopUpProject], applyTopUpProject)
	commands[TypeFreezeProject] = def(LogVersion7, newPB[raftv1.FreezeProject], applyFreezeProject)
	commands[TypeChargeProjects] = def(LogVersion7, newPB[raftv1.ChargeProjects], applyChargeProjects)
}

// PutProject creates a project (Create) or replaces its quota, prices and
// billing; a balance is set only by the create.
type PutProject struct {
	Project state.Project
	Create  bool
}

// TopUpProject adds to a project's balance.
type TopUpProject struct {
	Name        string
	AmountMilli int64
}

// FreezeProject sets or lifts an admin's freeze (Admin), or only brings
// the project's instances in line with its frozen state (a sync, proposed
// by the leader after a charge or a top-up changed it). Ops are
// operations the leader prepared (ID, InstanceID, Deadline) for the
// project's instances: the freeze pauses those that run, the unfreeze
// unpauses those it paused.
type FreezeProject struct {
	Name   string
	Freeze bool
	Admin  bool
	Ops    []state.Operation
}

// ChargeProjects takes usage charges off balances.
type ChargeProjects struct {
	Charges []ProjectCharge
}

// ProjectCharge is one project's charge for its usage up to Through.
type ProjectCharge struct {
	Name        string
	AmountMilli int64
	Through     time.Time
}

func (c *PutProject) toPB() *raftv1.PutProject {
	return &raftv1.PutProject{Project: projectToPB(&c.Project), Create: c.Create}
}

func (c *PutProject) fromPB(m *raftv1.PutProject) {
	c.Create = m.Create
	c.Project = state.Project{}
	if m.Project != nil {
		c.Project = projectFromPB(m.Project)
	}
}

func (c *TopUpProject) toPB() *raftv1.TopUpProject {
	return &raftv1.TopUpProject{Name: c.Name, AmountMilli: c.AmountMilli}
}
func (c *TopUpProject) fromPB(m *raftv1.TopUpProject) { c.Name, c.AmountMilli = m.Name, m.AmountMilli }

func (c *FreezeProject) toPB() *raftv1.FreezeProject {
	return &raftv1.FreezeProject{Name: c.Name, Freeze: c.Freeze, Admin: c.Admin, Ops: operationsToPB(c.Ops)}
}

func (c *FreezeProject) fromPB(m *raftv1.FreezeProject) {
	c.Name, c.Freeze, c.Admin, c.Ops = m.Name, m.Freeze, m.Admin, operationsFromPB(m.Ops)
}

func (c *ChargeProjects) toPB() *raftv1.ChargeProjects {
	m := &raftv1.ChargeProjects{}
	for _, ch := range c.Charges {
		m.Charges = append(m.Charges, &raftv1.ProjectCharge{Name: ch.Name, AmountMilli: ch.AmountMilli, ThroughUnixNano: unixNano(ch.Through)})
	}
	return m
}

func (c *ChargeProjects) fromPB(m *raftv1.ChargeProjects) {
	c.Charges = c.Charges[:0]
	for _, ch := range m.Charges {
		c.Charges = append(c.Charges, ProjectCharge{Name: ch.Name, AmountMilli: ch.AmountMilli, Through: fromUnixNano(ch.ThroughUnixNano)})
	}
}

func projectToPB(p *state.Project) *raftv1.Project {
	return &raftv1.Project{Name: p.Name, Quota: &raftv1.ProjectQuota{Instances: p.Quota.Instances, Vcpus: p.Quota.VCPUs,
		MemoryMib: p.Quota.MemoryMiB, DiskGib: p.Quota.DiskGiB}, BalanceMilli: p.BalanceMilli, PricesMilli: p.PricesMilli,
		Frozen: p.Frozen, FrozenByAdmin: p.FrozenByAdmin, ChargedThroughUnixNano: unixNano(p.ChargedThrough),
		CreateTimeUnixNano: unixNano(p.CreateTime), CreateRev: p.CreateRev, Billed: p.Billed}
}

func projectFromPB(m *raftv1.Project) state.Project {
	p := state.Project{Name: m.GetName(), BalanceMilli: m.GetBalanceMilli(), Frozen: m.GetFrozen(), FrozenByAdmin: m.GetFrozenByAdmin(),
		ChargedThrough: fromUnixNano(m.GetChargedThroughUnixNano()), CreateTime: fromUnixNano(m.GetCreateTimeUnixNano()),
		CreateRev: m.GetCreateRev(), Billed: m.GetBilled()}
	if q := m.GetQuota(); q != nil {
		p.Quota = state.Quota{Instances: q.Instances, VCPUs: q.Vcpus, MemoryMiB: q.MemoryMib, DiskGiB: q.DiskGib}
	}
	if len(m.GetPricesMilli()) > 0 {
		p.PricesMilli = make(map[string]int64, len(m.PricesMilli))
		for k, v := range m.PricesMilli {
			p.PricesMilli[k] = v
		}
	}
	return p
}

// shouldFreeze is the one rule of a project's frozen state: an admin froze
// it, or it is billed and its balance ran out.
func shouldFreeze(p *state.Project) bool {
	return p.FrozenByAdmin || p.Billed && p.BalanceMilli <= 0
}

func applyPutProject(tx *state.Tx, c *PutProject) (any, error) {
	old, exists := tx.Project(c.Project.Name)
	if c.Create && exists {
		return nil, fmt.Errorf("project %q: %w", c.Project.Name, ErrAlreadyExists)
	}
	if !c.Create && !exists {
		return nil, fmt.Errorf("project %q: %w", c.Project.Name, ErrNotFound)
	}
	p := c.Project
	if exists {
		// Only quotas, prices and billing change; the rest is the record's.
		old.Quota, old.PricesMilli, old.Billed = p.Quota, p.PricesMilli, p.Billed
		p = old
	} else {
		p.Frozen, p.FrozenByAdmin, p.ChargedThrough, p.CreateRev = false, false, tx.Now(), 0
	}
	p.Frozen = shouldFreeze(&p)
	tx.PutProject(p)
	return nil, nil
}

func applyTopUpProject(tx *state.Tx, c *TopUpProject) (any, error) {
	p, ok := tx.Project(c.Name)
	if !ok {
		return nil, fmt.Errorf("project %q: %w", c.Name, ErrNotFound)
	}
	if c.AmountMilli <= 0 {
		return nil, fmt.Errorf("top-up of %d: %w", c.AmountMilli, ErrInvalid)
	}
	p.BalanceMilli += c.AmountMilli
	p.Frozen = shouldFreeze(&p)
	tx.PutProject(p)
	return p.Frozen, nil
}

func applyChargeProjects(tx *state.Tx, c *ChargeProjects) (any, error) {
	for _, ch := range c.Charges {
		p, ok := tx.Project(ch.Name)
		if !ok || !ch.Through.After(p.ChargedThrough) {
			continue // gone, or charged already (a repeated proposal)
		}
		p.BalanceMilli -= ch.AmountMilli
		p.ChargedThrough = ch.Through
		p.Frozen = shouldFreeze(&p)
		tx.PutProject(p)
	}
	return nil, nil
}

// applyFreezeProject sets the admin's freeze if asked, then brings every
// instance of the project in line: frozen ones that run idle are paused
// (by the prepared operation for them), unfrozen ones the freeze paused
// are unpaused. An instance busy with an operation is marked now and
// paused by a later sync, once its operation ended.
func applyFreezeProject(tx *state.Tx, c *FreezeProject) (any, error) {
	p, ok := tx.Project(c.Name)
	if !ok {
		return nil, fmt.Errorf("project %q: %w", c.Name, ErrNotFound)
	}
	if c.Admin {
		p.FrozenByAdmin = c.Freeze
	}
	p.Frozen = shouldFreeze(&p)
	tx.PutProject(p)
	prepared := make(map[string]state.Operation, len(c.Ops))
	for _, op := range c.Ops {
		prepared[op.InstanceID] = op
	}
	var started []string
	for _, inst := range tx.ProjectInstances(p.Name) {
		if inst.Desired == lifecycle.DesiredDeleted {
			continue
		}
		changed := inst.Frozen != p.Frozen
		inst.Frozen = p.Frozen
		op, haveOp := prepared[inst.ID]
		if inst.CurrentOp == "" && haveOp {
			if o := startThawOrFreeze(tx, inst, op); o != nil {
				started = append(started, o.ID)
				continue
			}
		}
		if changed {
			tx.PutInstance(inst)
		}
	}
	return started, nil
}

// startThawOrFreeze pauses a frozen instance that runs, or unpauses an
// unfrozen one its freeze paused, with op; nil if neither applies.
func startThawOrFreeze(tx *state.Tx, inst *state.Instance, req state.Operation) *state.Operation {
	var kind lifecycle.OpKind
	var desired lifecycle.Desired
	switch {
	case inst.Frozen && inst.Desired == lifecycle.DesiredRunning && inst.Power == lifecycle.PowerRunning && inst.Result != lifecycle.ResultFailed:
		kind, desired = lifecycle.OpPause, lifecycle.DesiredPaused
		inst.ThawRun = true
	case !inst.Frozen && inst.ThawRun:
		inst.ThawRun = false
		if inst.Desired != lifecycle.DesiredPaused || inst.Power != lifecycle.PowerPaused {
			tx.PutInstance(inst)
			return nil // something else happened to it meanwhile: left as it is
		}
		kind, desired = lifecycle.OpUnpause, lifecycle.DesiredRunning
	default:
		return nil
	}
	req.InstanceID = inst.ID
	o := newOperation(tx, req, kind, inst.HostID)
	o.PrevDesired = inst.Desired
	inst.Desired = desired
	inst.CurrentOp, inst.CurrentOpK = o.ID, o.Kind
	tx.PutInstance(inst)
	tx.PutOperation(o)
	return o
}

// checkReshape admits a resize or an extend into its project's quotas.
func checkReshape(tx *state.Tx, inst *state.Instance, to state.Spec) error {
	name := state.ProjectOf(inst)
	p, ok := tx.Project(name)
	if !ok {
		return nil
	}
	if what := p.Quota.Exceeded(tx.ProjectUse(name).Reshape(inst.Spec, to)); what != "" {
		return fmt.Errorf("project %q: quota %s: %w", name, what, ErrQuotaExceeded)
	}
	return nil
}

// checkProject admits a new instance into its project at commit time: the
// project exists (the default one need not), is not frozen, and has room
// under its quotas for it. Creates apply one at a time, each against what
// the committed instances take, so concurrent creates cannot together
// pass a quota.
func checkProject(tx *state.Tx, inst *state.Instance) error {
	name := state.ProjectOf(inst)
	p, ok := tx.Project(name)
	if !ok {
		if name == state.DefaultProject {
			return nil
		}
		return fmt.Errorf("project %q: %w", name, ErrNotFound)
	}
	if p.Frozen {
		return fmt.Errorf("project %q is frozen (insufficient account balance or an admin's freeze): %w", name, ErrFrozen)
	}
	if what := p.Quota.Exceeded(tx.ProjectUse(name).Add(inst.Spec)); what != "" {
		return fmt.Errorf("project %q: quota %s: %w", name, what, ErrQuotaExceeded)
	}
	return nil
}
