package fsm

import (
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	raftv1 "github.com/flotilla-vm/flotilla/proto/flotilla/raft/v1"
)

// Each command's log form (format 2). TestCommandsRoundTrip covers every
// field of every command, as TestRecordsRoundTrip does for records.

func (c *CreateInstance) toPB() *raftv1.CreateInstance {
	return &raftv1.CreateInstance{Instance: instanceToPB(&c.Instance), Operation: operationToPB(&c.Operation), Policy: policyToPB(c.Policy)}
}

func (c *CreateInstance) fromPB(m *raftv1.CreateInstance) {
	if m.Instance != nil {
		c.Instance = instanceFromPB(m.Instance)
	}
	if m.Operation != nil {
		c.Operation = operationFromPB(m.Operation)
	}
	c.Policy = policyFromPB(m.Policy)
}

func (c *InstanceAction) toPB() *raftv1.InstanceAction {
	m := &raftv1.InstanceAction{Action: string(c.Action), Hard: c.Hard, Operation: operationToPB(&c.Operation), Policy: policyToPB(c.Policy),
		Retain: c.Retain}
	if !c.ReclaimBefore.IsZero() {
		m.ReclaimBeforeNanos = c.ReclaimBefore.UnixNano()
	}
	return m
}

func (c *InstanceAction) fromPB(m *raftv1.InstanceAction) {
	c.Action, c.Hard, c.Policy, c.Retain = lifecycle.Action(m.Action), m.Hard, policyFromPB(m.Policy), m.Retain
	if m.ReclaimBeforeNanos != 0 {
		c.ReclaimBefore = time.Unix(0, m.ReclaimBeforeNanos).UTC()
	}
	if m.Operation != nil {
		c.Operation = operationFromPB(m.Operation)
	}
}

func (c *Dispatch) toPB() *raftv1.Dispatch {
	m := &raftv1.Dispatch{}
	if len(c.Steps) > 0 {
		m.Steps = make([]*raftv1.DispatchStep, len(c.Steps))
		for k, s := range c.Steps {
			m.Steps[k] = &raftv1.DispatchStep{OperationId: s.OperationID, StepId: s.StepID, HostEpoch: s.HostEpoch}
		}
	}
	return m
}

func (c *Dispatch) fromPB(m *raftv1.Dispatch) {
	if len(m.Steps) > 0 {
		c.Steps = make([]DispatchStep, len(m.Steps))
		for k, s := range m.Steps {
			c.Steps[k] = DispatchStep{OperationID: s.OperationId, StepID: s.StepId, HostEpoch: s.HostEpoch}
		}
	}
}

func (c *Finish) toPB() *raftv1.Finish {
	m := &raftv1.Finish{OperationId: c.OperationID, StepId: c.StepID, Abort: c.Abort, Succeeded: c.Succeeded,
		Fault: faultToPB(c.Fault), HostId: c.HostID, Note: c.Note}
	if c.Observed != nil {
		m.Observed = observationToPB(c.Observed)
	}
	return m
}

func (c *Finish) fromPB(m *raftv1.Finish) {
	c.OperationID, c.StepID, c.Abort, c.Succeeded = m.OperationId, m.StepId, m.Abort, m.Succeeded
	c.Fault, c.HostID, c.Note = faultFromPB(m.Fault), m.HostId, m.Note
	if m.Observed != nil {
		o := observationFromPB(m.Observed)
		c.Observed = &o
	}
}

func (c *Cancel) toPB() *raftv1.Cancel          { return &raftv1.Cancel{OperationId: c.OperationID} }
func (c *Cancel) fromPB(m *raftv1.Cancel)       { c.OperationID = m.OperationId }
func (c *StartUsage) toPB() *raftv1.StartUsage  { return &raftv1.StartUsage{} }
func (c *StartUsage) fromPB(*raftv1.StartUsage) {}

func (c *RegisterHost) toPB() *raftv1.RegisterHost {
	return &raftv1.RegisterHost{Host: hostToPB(&c.Host), Inventory: observationsToPB(c.Inventory)}
}

func (c *RegisterHost) fromPB(m *raftv1.RegisterHost) {
	if m.Host != nil {
		c.Host = hostFromPB(m.Host)
	}
	c.Inventory = observationsFromPB(m.Inventory)
}

func (c *DisconnectHost) toPB() *raftv1.DisconnectHost {
	return &raftv1.DisconnectHost{HostId: c.HostID, Epoch: c.Epoch, Down: c.Down}
}

func (c *DisconnectHost) fromPB(m *raftv1.DisconnectHost) {
	c.HostID, c.Epoch, c.Down = m.HostId, m.Epoch, m.Down
}

func (c *CordonHost) toPB() *raftv1.CordonHost {
	return &raftv1.CordonHost{HostId: c.HostID, Cordon: c.Cordon}
}
func (c *CordonHost) fromPB(m *raftv1.CordonHost) { c.HostID, c.Cordon = m.HostId, m.Cordon }

func (c *DrainHost) toPB() *raftv1.DrainHost {
	return &raftv1.DrainHost{HostId: c.HostID, Stops: operationsToPB(c.Stops), Moves: operationsToPB(c.Moves), Policy: policyToPB(c.Policy)}
}

func (c *DrainHost) fromPB(m *raftv1.DrainHost) {
	c.HostID, c.Stops, c.Moves, c.Policy = m.HostId, operationsFromPB(m.Stops), operationsFromPB(m.Moves), policyFromPB(m.Policy)
}

func (c *Recover) toPB() *raftv1.Recover {
	m := &raftv1.Recover{InstanceId: c.InstanceID}
	if c.Restart != nil {
		m.Restart = operationToPB(c.Restart)
	}
	return m
}

func (c *Recover) fromPB(m *raftv1.Recover) {
	c.InstanceID = m.InstanceId
	if m.Restart != nil {
		o := operationFromPB(m.Restart)
		c.Restart = &o
	}
}

func (c *Observe) toPB() *raftv1.Observe {
	return &raftv1.Observe{HostId: c.HostID, Epoch: c.Epoch, Full: c.Full, TakenUnixNano: unixNano(c.Taken), Observations: observationsToPB(c.Observations)}
}

func (c *Observe) fromPB(m *raftv1.Observe) {
	c.HostID, c.Epoch, c.Full, c.Taken = m.HostId, m.Epoch, m.Full, fromUnixNano(m.TakenUnixNano)
	c.Observations = observationsFromPB(m.Observations)
}

func (c *RegisterServer) toPB() *raftv1.RegisterServer {
	return &raftv1.RegisterServer{Server: serverToPB(&c.Server)}
}
func (c *RegisterServer) fromPB(m *raftv1.RegisterServer) { c.Server = serverFromPB(m.Server) }
func (c *RemoveServer) toPB() *raftv1.RemoveServer        { return &raftv1.RemoveServer{Id: c.ID} }
func (c *RemoveServer) fromPB(m *raftv1.RemoveServer)     { c.ID = m.Id }

func (c *Place) toPB() *raftv1.Place {
	return &raftv1.Place{InstanceId: c.InstanceID, HostId: c.HostID, DeadlineUnixNano: unixNano(c.Deadline), Policy: policyToPB(c.Policy)}
}

func (c *Place) fromPB(m *raftv1.Place) {
	c.InstanceID, c.HostID, c.Deadline, c.Policy = m.InstanceId, m.HostId, fromUnixNano(m.DeadlineUnixNano), policyFromPB(m.Policy)
}

func (c *Preempt) toPB() *raftv1.Preempt {
	return &raftv1.Preempt{ForInstanceId: c.For, Victims: operationsToPB(c.Victims)}
}
func (c *Preempt) fromPB(m *raftv1.Preempt) {
	c.For, c.Victims = m.ForInstanceId, operationsFromPB(m.Victims)
}

func (c *Prune) toPB() *raftv1.Prune {
	return &raftv1.Prune{BeforeUnixNano: unixNano(c.Before), InstanceIds: c.InstanceIDs}
}
func (c *Prune) fromPB(m *raftv1.Prune) {
	c.Before, c.InstanceIDs = fromUnixNano(m.BeforeUnixNano), m.InstanceIds
}

func (c *CopyProgress) toPB() *raftv1.CopyProgress {
	return &raftv1.CopyProgress{OperationId: c.OperationID, StepId: c.StepID, HostId: c.HostID, BytesDone: c.BytesDone,
		BytesTotal: c.BytesTotal, BytesPerSecond: c.BytesPerSecond, BytesSent: c.BytesSent}
}

func (c *CopyProgress) fromPB(m *raftv1.CopyProgress) {
	*c = CopyProgress{OperationID: m.OperationId, StepID: m.StepId, HostID: m.HostId, BytesDone: m.BytesDone,
		BytesTotal: m.BytesTotal, BytesPerSecond: m.BytesPerSecond, BytesSent: m.BytesSent}
}

func (c *SetLogVersion) toPB() *raftv1.SetLogVersion {
	return &raftv1.SetLogVersion{Version: c.Version}
}
func (c *SetLogVersion) fromPB(m *raftv1.SetLogVersion) { c.Version = m.Version }

func (c *CreateNetwork) toPB() *raftv1.CreateNetwork {
	return &raftv1.CreateNetwork{Network: networkToPB(&c.Network)}
}
func (c *CreateNetwork) fromPB(m *raftv1.CreateNetwork) { c.Network = networkFromPB(m.GetNetwork()) }

func (c *DeleteNetwork) toPB() *raftv1.DeleteNetwork    { return &raftv1.DeleteNetwork{Name: c.Name} }
func (c *DeleteNetwork) fromPB(m *raftv1.DeleteNetwork) { c.Name = m.Name }

func (c *GuestReport) toPB() *raftv1.GuestReport {
	return &raftv1.GuestReport{HostId: c.HostID, Epoch: c.Epoch, InstanceId: c.InstanceID, State: string(c.State), Stage: c.Stage,
		Reason: c.Reason, Version: c.Version, TimeUnixNano: unixNano(c.Time),
		Protocol: c.Side.Protocol, BootId: c.Side.Boot, Os: c.Side.OS, OsVersion: c.Side.OSVersion,
		Kernel: c.Side.Kernel, Unresponsive: c.Side.Unresponsive}
}
func (c *GuestReport) fromPB(m *raftv1.GuestReport) {
	*c = GuestReport{HostID: m.HostId, Epoch: m.Epoch, InstanceID: m.InstanceId, State: lifecycle.Guest(m.State), Stage: m.Stage,
		Reason: m.Reason, Version: m.Version, Time: fromUnixNano(m.TimeUnixNano),
		Side: state.GuestSide{Protocol: m.Protocol, Boot: m.BootId, OS: m.Os, OSVersion: m.OsVersion,
			Kernel: m.Kernel, Unresponsive: m.Unresponsive}}
}

func (c *Strand) toPB() *raftv1.Strand {
	return &raftv1.Strand{InstanceId: c.InstanceID, SinceUnixNano: unixNano(c.Since), Operational: c.Operational, By: c.By}
}
func (c *Strand) fromPB(m *raftv1.Strand) {
	*c = Strand{InstanceID: m.InstanceId, Since: fromUnixNano(m.SinceUnixNano), Operational: m.Operational, By: m.By}
}
