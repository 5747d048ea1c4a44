package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/caller"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ids"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/placement"
	"github.com/flotilla-vm/flotilla/coordinator/placer"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/secrets"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Create is a validated request for a new instance.
type Create struct {
	RequestID string
	Name      string
	Spec      state.Spec
	Recovery  state.Recovery
	Placement state.Placement
	Labels    map[string]string
	// NICs name each interface's network and, for a static address, the
	// address; the commit allocates the rest.
	NICs     []state.NIC
	UserData string
	SSHKeys  []string
	// ReadyTimeout is how long its guest may boot before it is stranded;
	// nil for the cluster's default, 0 for never.
	ReadyTimeout *time.Duration
	// DecommissionTimeout is the time a stop or delete that gives none
	// gives its guest's decommission work (0: none).
	DecommissionTimeout time.Duration
	// Project is the project it belongs to ("" or "default": the default).
	Project string

	requestKey, requestHash string // the request id's scope and the content's fingerprint (requests.go)
	by                      *state.Caller
}

// defaultMaxRestarts is how many restarts RESTART without a limit allows.
const defaultMaxRestarts = 3

// withDefaults fills in what a recovery request left to the coordinator.
func withDefaults(r state.Recovery) state.Recovery {
	if r.Policy == state.RecoverRestart && r.MaxRestarts == 0 {
		r.MaxRestarts = defaultMaxRestarts
	}
	return r
}

// createCmds holds create commands for reuse: one is 800 bytes, and the
// leader builds one for every create.
var createCmds = sync.Pool{New: func() any { return new(fsm.CreateInstance) }}

// Create places and commits a new instance and returns its create
// operation; a request id already used returns that request's operation.
func (s *Service) Create(ctx context.Context, c Create) (state.Operation, error) {
	content := c
	content.RequestID = ""
	c.by = caller.Of(ctx)
	c.requestKey, c.requestHash = s.requestScope(c.by, c.RequestID, "create", content)
	if op, ok, err := s.priorRequest(c.RequestID, c.requestKey, c.requestHash); err != nil || ok {
		return op, err
	}
	if (len(c.NICs) > 0 || c.UserData != "" || len(c.SSHKeys) > 0) && s.store.LogVersion() < fsm.LogVersion3 {
		return state.Operation{}, fmt.Errorf("network interfaces, user data and SSH keys: %w (needs log version %d, the cluster is at %d)",
			fsm.ErrUnsupported, fsm.LogVersion3, s.store.LogVersion())
	}
	if err := s.checkNICs(c.NICs, &c.Placement); err != nil {
		return state.Operation{}, err
	}
	if c.Project == state.DefaultProject {
		c.Project = "" // recorded as older servers record every instance
	}
	if c.Project != "" && s.store.LogVersion() < fsm.LogVersion7 {
		return state.Operation{}, fmt.Errorf("projects: %w (needs log version %d, the cluster is at %d)",
			fsm.ErrUnsupported, fsm.LogVersion7, s.store.LogVersion())
	}
	if c.ReadyTimeout != nil && s.store.LogVersion() < fsm.LogVersion4 {
		return state.Operation{}, fmt.Errorf("readiness timeout: %w (needs log version %d, the cluster is at %d)",
			fsm.ErrUnsupported, fsm.LogVersion4, s.store.LogVersion())
	}
	if err := s.checkDecommission(c.DecommissionTimeout); err != nil {
		return state.Operation{}, err
	}
	// The host is chosen from the state as it is now and checked again when
	// the create commits: a create that lost its host meanwhile (a
	// concurrent create took the room, the host was cordoned or went away)
	// is placed again, and at the last try left to wait for capacity like
	// any create that does not fit now, rather than failing for losing a
	// race.
	const tries = 3
	for try := 1; ; try++ {
		d, err := s.place(c.Spec, c.Placement)
		if err != nil {
			return state.Operation{}, err
		}
		hostID := d.HostID
		if try == tries {
			hostID = ""
		}
		op, err := s.create(ctx, c, hostID)
		d.Release() // applied (the state shows its room) or failed
		if hostID != "" && (errors.Is(err, fsm.ErrHostUnavailable) || errors.Is(err, fsm.ErrNoCapacity)) {
			continue
		}
		return op, err
	}
}

// create commits a create placed on hostID ("" to wait for capacity).
func (s *Service) create(ctx context.Context, c Create, hostID string) (state.Operation, error) {
	now := s.now()
	cmd := createCmds.Get().(*fsm.CreateInstance)
	*cmd = fsm.CreateInstance{
		Policy: s.policy,
		Instance: state.Instance{ID: ids.New("i-"), Name: c.Name, Spec: c.Spec, HostID: hostID,
			Recovery: withDefaults(c.Recovery), Placement: c.Placement, Labels: c.Labels,
			NICs: c.NICs, UserData: c.UserData, SSHKeys: c.SSHKeys, ReadyTimeout: s.readyTimeout(c.ReadyTimeout),
			DecommissionTimeout: c.DecommissionTimeout, Project: c.Project},
		Operation: state.Operation{ID: ids.New("op-"), RequestID: c.RequestID, RequestKey: c.requestKey, RequestHash: c.requestHash, Deadline: now.Add(s.deadline(lifecycle.OpCreate)),
			RequestedBy: c.by},
	}
	cmd.Operation.InstanceID = cmd.Instance.ID
	v, err := s.apply(ctx, fsm.TypeCreateInstance, cmd) // encoded before it returns: cmd is free again
	*cmd = fsm.CreateInstance{}
	createCmds.Put(cmd)
	if err != nil {
		return state.Operation{}, err
	}
	return s.store.Operation(v.(string))
}

// place chooses a host for a new instance, reserved until the decision's
// Release, or no host (HostID "") to let it wait for capacity (PENDING, or
// BIDDING if preemptible): hosts are full, down, or a preemption must make
// room first. Only a request that no host could hold even empty is refused.
func (s *Service) place(spec state.Spec, pl state.Placement) (placer.Decision, error) {
	req := placement.Request(spec, pl)
	d, err := s.placer.Place(req)
	if err == nil && len(d.Preempt) == 0 {
		return d, nil
	}
	if errors.Is(err, placer.ErrNoHosts) {
		return placer.Decision{}, nil // no host at all: it waits (nothing to refuse it against)
	}
	if err != nil && !errors.Is(err, scheduler.ErrNoHost) {
		return placer.Decision{}, err
	}
	if all := s.placer.All(); len(all) > 0 && !couldEverFit(req, all, s.policy) {
		return placer.Decision{}, fmt.Errorf("no host could ever hold it, even empty: %w", fsm.ErrNoCapacity)
	}
	return placer.Decision{}, nil // no host at all, or none with room now: it waits
}

// couldEverFit reports whether some host, emptied, up and open, would take r.
func couldEverFit(r scheduler.Request, hosts []scheduler.Host, p scheduler.Policy) bool {
	for _, h := range hosts {
		h.Allocated, h.Groups, h.Ready, h.Cordoned = scheduler.Resources{}, nil, true, false
		if scheduler.Fits(h, r, p) {
			return true
		}
	}
	return false
}

// Action is one user action on an instance and its parameters.
type Action struct {
	InstanceID, RequestID string
	Action                lifecycle.Action
	Hard                  bool
	Graceful              time.Duration
	Force                 bool
	Update                *state.ModelUpdate
	// For a move or a resize: where to (empty: in place, for a resize),
	// and for a resize or an extend, the shape.
	Target string
	Resize *state.Resize
	// OperationID is the new operation's id; empty: a new one.
	OperationID string
	// Decommission is, for a stop or delete, how long a running guest gets
	// to run its decommission work first: nil for the instance's own
	// default, 0 for none.
	Decommission *time.Duration
	// Image is a rebuild's new image, a rescue's rescue image or a
	// bundle's new image ("" for a rebuild or rescue: the instance's own).
	Image string
}

// Act checks an action against the instance's status and commits it; a
// request id already used returns that request's operation.
func (s *Service) Act(ctx context.Context, r Action) (state.Operation, error) {
	content := r
	content.RequestID, content.OperationID = "", ""
	by := caller.Of(ctx)
	key, hash := s.requestScope(by, r.RequestID, string(r.Action), content)
	if op, ok, err := s.priorRequest(r.RequestID, key, hash); err != nil || ok {
		return op, err
	}
	inst, err := s.store.Instance(r.InstanceID)
	if err != nil {
		return state.Operation{}, err
	}
	// Refuse early from local state; the FSM checks again at commit time.
	if err := lifecycle.Check(inst.Status(), r.Action); err != nil {
		return state.Operation{}, err
	}
	if u := r.Update; u != nil && u.Recovery != nil {
		rc := withDefaults(*u.Recovery)
		withRC := *u
		withRC.Recovery = &rc
		r.Update = &withRC
	}
	retain := r.Action == lifecycle.ActionDelete && s.softDel > 0
	if lifecycle2(r.Action) || retain {
		if v := s.store.LogVersion(); v < fsm.LogVersion9 {
			return state.Operation{}, fmt.Errorf("%s: %w (needs log version %d, the cluster is at %d)", r.Action, fsm.ErrUnsupported, fsm.LogVersion9, v)
		}
	}
	kind := lifecycle.PlanFor(inst.Status(), r.Action, r.Hard).Op
	if r.Action == lifecycle.ActionDelete {
		kind = lifecycle.PlanDelete(inst.Status(), retain, r.Force).Op
	}
	decom := inst.DecommissionTimeout
	if r.Decommission != nil {
		decom = *r.Decommission
	}
	if kind != lifecycle.OpStop && kind != lifecycle.OpDelete && kind != lifecycle.OpSoftDelete {
		decom = 0
	}
	if err := s.checkDecommission(decom); err != nil {
		return state.Operation{}, err
	}
	now := s.now()
	if kind == lifecycle.OpUpgrade && r.Resize != nil {
		decom += r.Resize.Window // not a decommission: the guest's time to become healthy, on top likewise
	}
	cmd := fsm.InstanceAction{Action: r.Action, Hard: r.Hard, Policy: s.policy, Retain: retain, Operation: state.Operation{
		ID: cmp.Or(r.OperationID, ids.New("op-")), InstanceID: r.InstanceID, RequestID: r.RequestID, RequestKey: key, RequestHash: hash,
		// The guest's decommission time comes on top: its stop or delete
		// follows it.
		Deadline: now.Add(s.deadline(kind) + r.Graceful + decom), Graceful: r.Graceful, Force: r.Force, Update: r.Update,
		RequestedBy: by, TargetHostID: r.Target, Resize: r.Resize, Decommission: decom, Image: r.Image,
	}}
	if r.Target != "" && r.Target != inst.HostID {
		cmd.Operation.Token = newToken()
	}
	res, err := s.apply(ctx, fsm.TypeInstanceAction, cmd)
	if err != nil {
		return state.Operation{}, err
	}
	return s.store.Operation(res.(string))
}

// lifecycle2 reports the actions of log version 9.
func lifecycle2(a lifecycle.Action) bool {
	return a == lifecycle.ActionDeallocate || a == lifecycle.ActionRestore || a == lifecycle.ActionUpgrade
}

// Start starts an instance. A deallocated one is placed again: on the host
// that kept its disk when it fits there, else where the scheduler finds
// room, its disk copied there first.
func (s *Service) Start(ctx context.Context, id, requestID string) (state.Operation, error) {
	a := Action{InstanceID: id, RequestID: requestID, Action: lifecycle.ActionStart}
	op, err := s.Act(ctx, a)
	if !errors.Is(err, fsm.ErrNoCapacity) {
		return op, err
	}
	inst, ierr := s.store.Instance(id)
	if ierr != nil || inst.Status() != lifecycle.StatusDeallocated {
		return op, err
	}
	target, terr := s.elsewhere(&inst, inst.Spec)
	if terr != nil {
		return state.Operation{}, terr
	}
	a.Target = target
	return s.Act(ctx, a)
}

// Upgrade is a validated upgrade request: an empty image and zero sizes
// keep the current ones.
type Upgrade struct {
	InstanceID, RequestID string
	Image                 string
	VCPUs                 uint32
	MemoryMiB             uint64
	// Health is how long the upgraded guest has to become healthy (0:
	// lifecycle.DefaultHealthTimeout).
	Health   time.Duration
	Graceful time.Duration
}

// Upgrade changes an instance's image version and/or model; the plan rolls
// back by itself when the guest does not become healthy in time.
func (s *Service) Upgrade(ctx context.Context, u Upgrade) (state.Operation, error) {
	inst, err := s.store.Instance(u.InstanceID)
	if err != nil {
		return state.Operation{}, err
	}
	to := inst.Spec
	if u.Image != "" {
		to.Image = u.Image
	}
	if u.VCPUs > 0 {
		to.VCPUs = u.VCPUs
	}
	if u.MemoryMiB > 0 {
		to.MemoryMiB = u.MemoryMiB
	}
	if to == inst.Spec {
		return state.Operation{}, &FieldError{"image", "the instance has that image and model already"}
	}
	health := u.Health
	if health <= 0 {
		health = lifecycle.DefaultHealthTimeout
	}
	return s.Act(ctx, Action{InstanceID: u.InstanceID, RequestID: u.RequestID, Action: lifecycle.ActionUpgrade, Graceful: u.Graceful,
		Force: true, Resize: &state.Resize{To: to, Window: health}})
}

// Resize is a validated resize request: a zero size keeps the current one.
type Resize struct {
	InstanceID, RequestID string
	VCPUs                 uint32
	MemoryMiB, DiskGiB    uint64
	// Target is the host to resize onto; empty: in place if it fits there,
	// else where the scheduler finds room.
	Target   string
	Window   time.Duration // until the resize confirms itself; 0: the default
	Graceful time.Duration
}

// Resize gives an instance a new shape.
func (s *Service) Resize(ctx context.Context, r Resize) (state.Operation, error) {
	inst, err := s.store.Instance(r.InstanceID)
	if err != nil {
		return state.Operation{}, err
	}
	to := inst.Spec
	if r.VCPUs > 0 {
		to.VCPUs = r.VCPUs
	}
	if r.MemoryMiB > 0 {
		to.MemoryMiB = r.MemoryMiB
	}
	if r.DiskGiB > 0 {
		to.DiskGiB = r.DiskGiB
	}
	switch {
	case to.DiskGiB < inst.Spec.DiskGiB:
		return state.Operation{}, &FieldError{"disk_gib", fmt.Sprintf("a disk never shrinks: it has %d GiB", inst.Spec.DiskGiB)}
	case to == inst.Spec:
		return state.Operation{}, &FieldError{"vcpus", "the instance has that shape already"}
	}
	a := Action{InstanceID: r.InstanceID, RequestID: r.RequestID, Action: lifecycle.ActionResize, Graceful: r.Graceful, Force: true,
		Target: r.Target, Resize: &state.Resize{To: to, Window: r.Window}}
	if r.Target != "" {
		if err := s.checkTarget(&inst, r.Target); err != nil {
			return state.Operation{}, err
		}
		return s.Act(ctx, a)
	}
	// In place when it fits there (nothing travels); else where the
	// scheduler finds room for the new shape.
	op, err := s.Act(ctx, a)
	if !errors.Is(err, fsm.ErrNoCapacity) {
		return op, err
	}
	target, err := s.elsewhere(&inst, to)
	if err != nil {
		return state.Operation{}, err
	}
	a.Target = target
	return s.Act(ctx, a)
}

// Extend grows an instance's disk to diskGiB, in place.
func (s *Service) Extend(ctx context.Context, id, requestID string, diskGiB uint64) (state.Operation, error) {
	inst, err := s.store.Instance(id)
	if err != nil {
		return state.Operation{}, err
	}
	if diskGiB <= inst.Spec.DiskGiB {
		return state.Operation{}, &FieldError{"disk_gib", fmt.Sprintf("an extend grows the disk: it has %d GiB", inst.Spec.DiskGiB)}
	}
	to := inst.Spec
	to.DiskGiB = diskGiB
	return s.Act(ctx, Action{InstanceID: id, RequestID: requestID, Action: lifecycle.ActionExtend, Resize: &state.Resize{To: to}})
}

// Move moves an instance to target, or where the scheduler finds room
// when target is empty.
func (s *Service) Move(ctx context.Context, id, requestID, target string, graceful time.Duration) (state.Operation, error) {
	inst, err := s.store.Instance(id)
	if err != nil {
		return state.Operation{}, err
	}
	switch {
	case target == inst.HostID && target != "":
		return state.Operation{}, &FieldError{"target_host_id", fmt.Sprintf("the instance is on %s already", target)}
	case target != "":
		err = s.checkTarget(&inst, target)
	default:
		if err = lifecycle.Check(inst.Status(), lifecycle.ActionMove); err == nil {
			target, err = s.elsewhere(&inst, inst.Spec)
		}
	}
	if err != nil {
		return state.Operation{}, err
	}
	return s.Act(ctx, Action{InstanceID: id, RequestID: requestID, Action: lifecycle.ActionMove, Graceful: graceful, Force: true, Target: target})
}

// checkTarget checks, before anything is proposed, that a named target can
// take part in a disk copy: it exists, and both agents serve other agents.
// Room and readiness are the FSM's to check at commit time.
func (s *Service) checkTarget(inst *state.Instance, target string) error {
	h, err := s.store.Host(target)
	if err != nil {
		return err
	}
	if target == inst.HostID {
		return nil // in place: nothing travels
	}
	src, err := s.store.Host(inst.HostID)
	if err != nil {
		return err
	}
	if h.PeerAddr == "" || src.PeerAddr == "" {
		return fmt.Errorf("host %s or %s does not serve disk copies (no --peer-listen): %w", inst.HostID, target, fsm.ErrHostUnavailable)
	}
	return nil
}

// elsewhere picks another host with room for the instance at spec, among
// those that serve disk copies.
func (s *Service) elsewhere(inst *state.Instance, spec state.Spec) (string, error) {
	src, err := s.store.Host(inst.HostID)
	if err != nil {
		return "", err
	}
	var cands []scheduler.Host
	for _, h := range placement.FromStore(s.store) {
		if dst, err := s.store.Host(h.ID); err == nil && h.ID != inst.HostID && dst.PeerAddr != "" && src.PeerAddr != "" {
			cands = append(cands, h)
		}
	}
	d, err := scheduler.Place(placement.Request(spec, inst.Placement), cands, s.policy)
	if err != nil || len(d.Preempt) > 0 {
		return "", fmt.Errorf("no other host has room for %d vCPUs, %d MiB, %d GiB now: %w",
			spec.VCPUs, spec.MemoryMiB, spec.DiskGiB, fsm.ErrNoCapacity)
	}
	return d.HostID, nil
}

// readyTimeout is a new instance's readiness deadline: the one asked for,
// else the cluster's; none before every server records it (log version 4).
func (s *Service) readyTimeout(asked *time.Duration) time.Duration {
	switch {
	case s.store.LogVersion() < fsm.LogVersion4:
		return 0
	case asked != nil:
		return *asked
	}
	return s.readiness
}

// checkDecommission refuses decommissioning before every server records it
// (log version 5).
func (s *Service) checkDecommission(d time.Duration) error {
	if d > 0 && s.store.LogVersion() < fsm.LogVersion5 {
		return fmt.Errorf("decommission timeout: %w (needs log version %d, the cluster is at %d)",
			fsm.ErrUnsupported, fsm.LogVersion5, s.store.LogVersion())
	}
	return nil
}

// MarkOperational records an operator's word that a stranded instance's
// guest is ready for work.
func (s *Service) MarkOperational(ctx context.Context, id string) (state.Instance, error) {
	if s.store.LogVersion() < fsm.LogVersion4 {
		return state.Instance{}, fmt.Errorf("readiness: %w (needs log version %d)", fsm.ErrUnsupported, fsm.LogVersion4)
	}
	by := "an unauthenticated caller"
	if c := caller.Of(ctx); c != nil {
		by = c.String()
	}
	if _, err := s.apply(ctx, fsm.TypeStrand, &fsm.Strand{InstanceID: id, Operational: true, By: by}); err != nil {
		return state.Instance{}, err
	}
	return s.store.Instance(id)
}

// ErrGuestUnsupported refuses a command for a guest that has no guest side
// taking commands (guest channel protocol v2).
var ErrGuestUnsupported = errors.New("the guest has no guest side that takes commands")

// SetPassword sets user's password inside the instance's guest. The
// password is held by secrets, in this server's memory, for the operation's
// one step: no log entry, record or error carries it.
func (s *Service) SetPassword(ctx context.Context, id, requestID string, pw secrets.Password) (state.Operation, error) {
	if op, ok := s.store.OperationByRequest(requestID); requestID != "" && ok {
		return op, nil
	}
	if s.store.LogVersion() < fsm.LogVersion5 {
		return state.Operation{}, fmt.Errorf("set password: %w (needs log version %d)", fsm.ErrUnsupported, fsm.LogVersion5)
	}
	if s.secrets == nil {
		return state.Operation{}, fmt.Errorf("set password: %w: this server holds no secrets", fsm.ErrUnsupported)
	}
	inst, err := s.store.Instance(id)
	if err != nil {
		return state.Operation{}, err
	}
	if err := lifecycle.Check(inst.Status(), lifecycle.ActionSetPassword); err != nil {
		return state.Operation{}, err
	}
	if g := inst.Guest.Side; g.Protocol < 2 {
		why := "it has not spoken on its guest channel since it booted (readiness unknown)"
		if g.Protocol == 1 {
			why = "its guest side speaks guest channel protocol v1; commands need v2"
		}
		return state.Operation{}, fmt.Errorf("instance %s: %w: %s", id, ErrGuestUnsupported, why)
	}
	opID := ids.New("op-")
	s.secrets.Put(opID, pw, s.now().Add(s.deadline(lifecycle.OpSetPassword)))
	op, err := s.Act(ctx, Action{InstanceID: id, RequestID: requestID, Action: lifecycle.ActionSetPassword, OperationID: opID})
	if err != nil || op.ID != opID {
		s.secrets.Drop(opID) // refused, or another call's operation (same request id)
	}
	return op, err
}
