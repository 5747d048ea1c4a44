package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/secrets"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// reports collects agents' answers to QueryStep, from the agent link's
// goroutines, for the next pass.
type reports struct {
	mu      sync.Mutex
	unknown map[string]uint64 // step id -> epoch: the agent never got it
	running map[string]uint64 // step id -> epoch: it runs there
	wake    chan struct{}
}

func newReports() *reports {
	return &reports{unknown: map[string]uint64{}, running: map[string]uint64{}, wake: make(chan struct{}, 1)}
}

// StepReport takes an agent's answer to a query (wire it to the agent link).
func (o *Orchestrator) StepReport(hostID string, epoch uint64, r *agentv1.StepReport) {
	rs := o.reports
	rs.mu.Lock()
	switch r.GetState() {
	case agentv1.StepReportState_STEP_REPORT_STATE_UNKNOWN,
		// Interrupted with its effect absent: the agent runs it again
		// (once) when it is sent again, undoing a partial effect first.
		agentv1.StepReportState_STEP_REPORT_STATE_NOT_DONE:
		rs.unknown[r.GetStepId()] = epoch
	case agentv1.StepReportState_STEP_REPORT_STATE_RUNNING:
		rs.running[r.GetStepId()] = epoch
	}
	rs.mu.Unlock()
	select {
	case rs.wake <- struct{}{}:
	default:
	}
}

func (rs *reports) take() (unknown, running map[string]uint64) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	unknown, running = rs.unknown, rs.running
	rs.unknown, rs.running = map[string]uint64{}, map[string]uint64{}
	return unknown, running
}

// drive moves every operation with a host one step on: it ends what is past
// its deadline, starts steps and retries that are due, and asks about steps
// recorded as running that this leader has not sent on the current session.
func (o *Orchestrator) drive(ctx context.Context, open []state.Operation, now time.Time) {
	unknown, running := o.reports.take()
	for id, epoch := range running {
		o.sent[id] = epoch // the agent has it: its result will come
	}
	live := make(map[string]bool, len(open))
	o.forgetSecrets()
	var batch fsm.Dispatch
	ready := map[string]state.Operation{}
	for _, op := range open {
		if op.HostID == "" || ctx.Err() != nil {
			continue // waiting for capacity: the placement pass handles it
		}
		st := op.Current()
		if !op.Deadline.IsZero() && now.After(op.Deadline.Add(o.cfg.Grace)) {
			o.expire(ctx, op, "", "the operation did not finish by its deadline",
				o.log.With("operation", op.ID, "instance", op.InstanceID, "host", op.HostID))
			continue
		}
		if st == nil {
			continue
		}
		host := op.StepHost(st)
		log := o.log.With("operation", op.ID, "instance", op.InstanceID, "host", host, "step", st.Name)
		epoch, connected := o.cfg.Sessions.Epoch(host)
		var stepID string
		switch st.State {
		case state.StepRunning:
			stepID = op.StepID(op.Cur, st.Attempt)
			live[stepID] = true
			if !st.Deadline.IsZero() && now.After(st.Deadline.Add(o.cfg.Grace)) {
				o.expire(ctx, op, stepID, "step "+st.Name+" did not finish by its deadline", log)
				continue
			}
			if !connected || o.sent[stepID] == epoch {
				continue
			}
			if unknown[stepID] != epoch {
				// Sent by a previous leader or on a previous session: ask
				// before anything is decided or re-sent.
				if q := o.asked[stepID]; q.epoch != epoch || now.Sub(q.at) > reaskAfter {
					o.ask(host, op, stepID, epoch, now, log)
				}
				continue
			}
			// The agent never got it: nothing ran, so sending it is safe.
		case state.StepPending, state.StepRetryWait:
			if st.State == state.StepRetryWait && now.Before(st.RetryTime) {
				continue // the ticker brings the next pass
			}
			stepID = op.StepID(op.Cur, st.Attempt+1)
			live[stepID] = true
			if !connected {
				continue
			}
		default:
			continue
		}
		batch.Steps = append(batch.Steps, fsm.DispatchStep{OperationID: op.ID, StepID: stepID, HostEpoch: epoch})
		ready[stepID] = op
	}
	for id := range o.sent {
		if !live[id] {
			delete(o.sent, id)
		}
	}
	for id := range o.asked {
		if !live[id] {
			delete(o.asked, id)
		}
	}
	if len(batch.Steps) == 0 {
		return
	}
	// Record every step attempt as running in one entry, then send them.
	v, err := o.applyValue(ctx, fsm.TypeDispatch, batch)
	if err != nil {
		o.log.Warn("dispatch failed; will retry", "steps", len(batch.Steps), "err", err)
		return
	}
	sent, _ := v.([]string)
	for _, id := range sent {
		op, err := o.cfg.Store.Operation(ready[id].ID)
		if err != nil {
			continue
		}
		st := op.Current()
		if st == nil || op.StepID(op.Cur, st.Attempt) != id {
			continue
		}
		host := op.StepHost(st)
		log := o.log.With("operation", op.ID, "instance", op.InstanceID, "host", host, "step", st.Name, "attempt", st.Attempt)
		if err := o.send(op, st, id); errors.Is(err, errPasswordLost) {
			o.failStep(ctx, op, id, host, faultPasswordLost, err.Error(), log)
			continue
		} else if err != nil {
			log.Warn("send failed; will retry", "err", err)
			continue
		}
		o.sent[id] = st.HostEpoch
		log.Info("step sent", "kind", op.Kind, "action", st.Action, "epoch", st.HostEpoch)
	}
}

// query is one QueryStep sent.
type query struct {
	epoch uint64
	at    time.Time
}

// reaskAfter is when an unanswered query is sent again: an agent that was
// shutting down, or a session that ended, may have dropped the answer.
const reaskAfter = 5 * time.Second

func (o *Orchestrator) ask(host string, op state.Operation, stepID string, epoch uint64, now time.Time, log *slog.Logger) {
	if err := o.cfg.Sessions.Query(host, &agentv1.QueryStep{StepId: stepID, OperationId: op.ID}); err != nil {
		log.Warn("asking for a step's result failed; will retry", "err", err)
		return
	}
	o.asked[stepID] = query{epoch: epoch, at: now}
	log.Info("asked the agent what became of the step", "step_id", stepID, "epoch", epoch)
}

// stepSpec is the shape a step acts with: the instance's, but for the
// steps of a resize or an extend that make or check the new shape (To),
// and the one that restores the old (From).
func stepSpec(inst *state.Instance, op *state.Operation, a lifecycle.StepAction) state.Spec {
	r := op.Resize
	if r == nil {
		return inst.Spec
	}
	switch a {
	case lifecycle.ActUnshape, lifecycle.ActRollbackDisk:
		return r.From
	case lifecycle.ActReshape, lifecycle.ActAdoptDisk, lifecycle.ActReceiveDisk, lifecycle.ActGrowDisk, lifecycle.ActRebuildDisk,
		lifecycle.ActUpgradeDisk:
		return r.To
	case lifecycle.ActPreflight:
		// A rebuild's preflight checks the new image is there.
		if op.Kind == lifecycle.OpResize || op.Kind == lifecycle.OpRebuild || op.Kind == lifecycle.OpUpgrade {
			return r.To
		}
	}
	return inst.Spec
}

// send gives one recorded step attempt to its host's session.
func (o *Orchestrator) send(op state.Operation, st *state.Step, stepID string) error {
	inst, err := o.cfg.Store.Instance(op.InstanceID)
	if err != nil {
		return err
	}
	step := &agentv1.RunStep{
		OperationId: op.ID, StepId: stepID, InstanceId: op.InstanceID, Kind: convert.OpKindToPB(op.Kind),
		Action: convert.StepActionToPB(st.Action), Name: inst.Name, Spec: convert.SpecToPB(stepSpec(&inst, &op, st.Action)),
		Force: op.Force || st.Force, Deadline: timestamppb.New(st.Deadline),
	}
	if op.Graceful > 0 {
		step.GracefulTimeout = durationpb.New(op.Graceful)
	}
	if u := op.Update; u != nil && u.Name != nil {
		step.Name = *u.Name // the name the update gives the domain
	}
	if definesDomain(st.Action) {
		if step.Nics, err = o.nics(&inst); err != nil {
			return err
		}
		if len(inst.NICs) > 0 || inst.UserData != "" || len(inst.SSHKeys) > 0 {
			step.Guest = &agentv1.GuestConfig{Hostname: guestHostname(&inst), UserData: inst.UserData, SshAuthorizedKeys: inst.SSHKeys}
		}
	}
	switch st.Action {
	case lifecycle.ActRescueDomain, lifecycle.ActBundleDisk:
		step.Image = op.Image
	case lifecycle.ActSetPassword:
		pw, ok := o.secret(op.ID)
		if !ok {
			return errPasswordLost
		}
		step.Password = &agentv1.GuestPassword{User: pw.User, Password: pw.Reveal()}
	case lifecycle.ActOfferDisk:
		step.OfferToken, step.PeerHostId, step.DiskLayer = op.Token, op.TargetHostID, convert.LayerToPB(st.Layer)
	case lifecycle.ActReceiveDisk:
		src, err := o.cfg.Store.Host(op.HostID)
		if err != nil {
			return err
		}
		step.OfferToken, step.PeerHostId, step.PeerAddress = op.Token, op.HostID, src.PeerAddr
		step.DiskLayer = convert.LayerToPB(st.Layer)
	case lifecycle.ActImportDisk:
		src, err := o.cfg.Store.Host(op.HostID)
		if err != nil {
			return err
		}
		step.OfferToken, step.PeerHostId, step.PeerAddress = op.Token, op.HostID, src.PeerAddr
	case lifecycle.ActFetchImage:
		src, err := o.cfg.Store.Host(op.ImageSource)
		if err != nil {
			return err
		}
		step.Image, step.PeerHostId, step.PeerAddress = inst.Spec.Image, op.ImageSource, src.PeerAddr
		if im, err := o.cfg.Store.Image(inst.Spec.Image); err == nil {
			step.ImageSha256 = im.SHA256
		}
	}
	return o.cfg.Sessions.Send(op.StepHost(st), step)
}

// faultPasswordLost: a SetPassword whose password this leader does not
// hold (it was accepted by a leader that has since changed or restarted).
const faultPasswordLost = "PASSWORD_LOST"

var errPasswordLost = errors.New("the password was held in the memory of the leader that accepted the call, " +
	"which has changed or restarted since; nothing was set: call SetPassword again")

func (o *Orchestrator) secret(opID string) (secrets.Password, bool) {
	if o.cfg.Secrets == nil {
		return secrets.Password{}, false
	}
	return o.cfg.Secrets.Get(opID)
}

// forgetSecrets drops the passwords of operations that have ended.
func (o *Orchestrator) forgetSecrets() {
	if o.cfg.Secrets == nil {
		return
	}
	for _, id := range o.cfg.Secrets.IDs() {
		// An operation not in the store yet is being committed: keep it.
		if op, err := o.cfg.Store.Operation(id); err == nil && op.State.Done() {
			o.cfg.Secrets.Drop(id)
		}
	}
}

// failStep ends a step attempt as failed with a fault of the coordinator's
// own, before any agent saw it.
func (o *Orchestrator) failStep(ctx context.Context, op state.Operation, stepID, host, code, msg string, log *slog.Logger) {
	f := fsm.Finish{OperationID: op.ID, StepID: stepID, HostID: host,
		Fault: &state.Fault{Code: code, Message: msg, Time: o.cfg.Now(), HostID: host}}
	if err := o.apply(ctx, fsm.TypeFinish, f); err != nil && !errors.Is(err, fsm.ErrOperationDone) && !errors.Is(err, fsm.ErrStaleStep) {
		log.Warn("failing the step failed", "fault", code, "err", err)
		return
	}
	log.Warn("step failed before it was sent", "fault", code)
}

// expire ends a step attempt (stepID set) or the whole operation past its deadline.
func (o *Orchestrator) expire(ctx context.Context, op state.Operation, stepID, msg string, log *slog.Logger) {
	host := op.HostID
	if st := op.Current(); st != nil {
		host = op.StepHost(st)
	}
	if _, ok := o.cfg.Sessions.Epoch(host); !ok {
		msg += "; its host has no live agent session"
	}
	f := fsm.Finish{OperationID: op.ID, StepID: stepID, Abort: stepID == "", HostID: host,
		Fault: &state.Fault{Code: "DEADLINE_EXCEEDED", Message: msg, Time: o.cfg.Now(), HostID: host}}
	if err := o.apply(ctx, fsm.TypeFinish, f); err != nil && !errors.Is(err, fsm.ErrOperationDone) && !errors.Is(err, fsm.ErrStaleStep) {
		log.Warn("ending what passed its deadline failed", "err", err)
		return
	}
	log.Warn(msg, "deadline", op.Deadline)
}

// definesDomain reports whether a step defines the domain (or checks that
// it can): the steps that carry its NICs and guest configuration.
func definesDomain(a lifecycle.StepAction) bool {
	switch a {
	case lifecycle.ActCreate, lifecycle.ActPreflight, lifecycle.ActImportDisk, lifecycle.ActReceiveDisk,
		lifecycle.ActAdoptDisk, lifecycle.ActReshape, lifecycle.ActUnshape,
		lifecycle.ActRebuildDisk, lifecycle.ActRescueDomain, lifecycle.ActUnrescueDomain, lifecycle.ActDefine,
		lifecycle.ActUpgradeDisk, lifecycle.ActRollbackDisk:
		return true
	}
	return false
}

// nics is what the host needs of an instance's NICs and their networks.
func (o *Orchestrator) nics(inst *state.Instance) ([]*agentv1.Nic, error) {
	var out []*agentv1.Nic
	for _, n := range inst.NICs {
		nw, err := o.cfg.Store.Network(n.Network)
		if err != nil {
			return nil, err
		}
		out = append(out, &agentv1.Nic{Network: nw.Name, Mode: convert.NetworkModeToPB(nw.Mode), Bridge: nw.Bridge,
			Cidr: nw.CIDR, Gateway: nw.Gateway, MacAddress: n.MAC, Ipv4Address: n.IPv4, Hostname: n.Hostname})
	}
	return out, nil
}

// guestHostname is the guest's host name: its first NIC's (which is its
// name, unless another instance on that network has it), else its name.
func guestHostname(inst *state.Instance) string {
	if len(inst.NICs) > 0 {
		return inst.NICs[0].Hostname
	}
	return inst.Name
}
