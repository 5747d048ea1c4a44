package fsm

import (
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	raftv1 "github.com/flotilla-vm/flotilla/proto/flotilla/raft/v1"
)

// Conversions between the state's records and their log form (format 2).
// Every field of every record is carried: TestRecordsRoundTrip fills each
// field, found by reflection, and fails on one that does not come back, so
// a field added to a record without a line here is caught.

// unixNano is t in the log's form: 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromUnixNano is the time n stands for, in UTC (as every replica reads it).
func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func specToPB(s state.Spec) *raftv1.Spec {
	return &raftv1.Spec{Vcpus: s.VCPUs, MemoryMib: s.MemoryMiB, DiskGib: s.DiskGiB, Image: s.Image}
}

func specFromPB(m *raftv1.Spec) state.Spec {
	if m == nil {
		return state.Spec{}
	}
	return state.Spec{VCPUs: m.Vcpus, MemoryMiB: m.MemoryMib, DiskGiB: m.DiskGib, Image: m.Image}
}

func faultToPB(f *state.Fault) *raftv1.Fault {
	if f == nil {
		return nil
	}
	return &raftv1.Fault{Code: f.Code, Message: f.Message, TimeUnixNano: unixNano(f.Time), HostId: f.HostID}
}

func faultFromPB(m *raftv1.Fault) *state.Fault {
	if m == nil {
		return nil
	}
	return &state.Fault{Code: m.Code, Message: m.Message, Time: fromUnixNano(m.TimeUnixNano), HostID: m.HostId}
}

func recoveryToPB(r state.Recovery) *raftv1.Recovery {
	if r == (state.Recovery{}) {
		return nil
	}
	return &raftv1.Recovery{Policy: string(r.Policy), MaxRestarts: r.MaxRestarts}
}

func recoveryFromPB(m *raftv1.Recovery) state.Recovery {
	if m == nil {
		return state.Recovery{}
	}
	return state.Recovery{Policy: state.RecoveryPolicy(m.Policy), MaxRestarts: m.MaxRestarts}
}

func resizeToPB(r *state.Resize) *raftv1.Resize {
	if r == nil {
		return nil
	}
	return &raftv1.Resize{From: specToPB(r.From), To: specToPB(r.To), Source: r.Source, WasRunning: r.WasRunning,
		WindowNanos: int64(r.Window), ConfirmByUnixNano: unixNano(r.ConfirmBy)}
}

func resizeFromPB(m *raftv1.Resize) *state.Resize {
	if m == nil {
		return nil
	}
	return &state.Resize{From: specFromPB(m.From), To: specFromPB(m.To), Source: m.Source, WasRunning: m.WasRunning,
		Window: time.Duration(m.WindowNanos), ConfirmBy: fromUnixNano(m.ConfirmByUnixNano)}
}

func copyToPB(c *state.CopyProgress) *raftv1.StepCopy {
	if c == nil {
		return nil
	}
	return &raftv1.StepCopy{StepId: c.StepID, BytesDone: c.BytesDone, BytesTotal: c.BytesTotal,
		BytesPerSecond: c.BytesPerSecond, BytesSent: c.BytesSent, ReportTimeUnixNano: unixNano(c.ReportTime)}
}

func copyFromPB(m *raftv1.StepCopy) *state.CopyProgress {
	if m == nil {
		return nil
	}
	return &state.CopyProgress{StepID: m.StepId, BytesDone: m.BytesDone, BytesTotal: m.BytesTotal,
		BytesPerSecond: m.BytesPerSecond, BytesSent: m.BytesSent, ReportTime: fromUnixNano(m.ReportTimeUnixNano)}
}

// labels returns m, or nil for an empty map (as the log carries none).
func labels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func instanceToPB(i *state.Instance) *raftv1.Instance {
	m := &raftv1.Instance{
		Id: i.ID, Name: i.Name, Spec: specToPB(i.Spec), HostId: i.HostID, Desired: string(i.Desired),
		CurrentOp: i.CurrentOp, Copy: copyToPB(i.Copy), CurrentOpKind: string(i.CurrentOpK), LastOp: i.LastOp,
		LastOpKind: string(i.LastOpK), Result: string(i.Result), Fault: faultToPB(i.Fault), Power: string(i.Power),
		PowerReason: i.PowerWhy, PowerTimeUnixNano: unixNano(i.PowerTime), CreateTimeUnixNano: unixNano(i.CreateTime),
		UpdateTimeUnixNano: unixNano(i.UpdateTime), CreateRev: i.CreateRev, ModifyRev: i.ModifyRev,
		Recovery: recoveryToPB(i.Recovery), Restarts: i.Restarts, MoveTarget: i.MoveTarget, Labels: i.Labels,
		Resize: resizeToPB(i.Resize), RollingBack: i.RollingBack, UserData: i.UserData, SshKeys: i.SSHKeys,
		ReadyTimeoutNanos: int64(i.ReadyTimeout), DecommissionTimeoutNanos: int64(i.DecommissionTimeout),
		Decommission: string(i.Decommission), Project: i.Project, Frozen: i.Frozen, ThawRun: i.ThawRun,
		RescueImage: i.RescueImage,
	}
	if g := i.Guest; g != (state.GuestFacts{}) {
		m.Guest = &raftv1.GuestFacts{State: string(g.State), Stage: g.Stage, Reason: g.Reason, Version: g.Version,
			SinceUnixNano: unixNano(g.Since), TimeUnixNano: unixNano(g.Time),
			Protocol: g.Side.Protocol, BootId: g.Side.Boot, Os: g.Side.OS, OsVersion: g.Side.OSVersion,
			Kernel: g.Side.Kernel, Unresponsive: g.Side.Unresponsive}
	}
	if p := i.Placement; p.Kind != "" || len(p.Labels) > 0 || p.Group != "" || p.Preemptible || p.ManagedNetworks || len(p.Bridges) > 0 {
		m.Placement = &raftv1.Placement{Kind: p.Kind, Labels: p.Labels, Group: p.Group, Preemptible: p.Preemptible,
			ManagedNetworks: p.ManagedNetworks, Bridges: p.Bridges}
	}
	if len(i.NICs) > 0 {
		m.Nics = make([]*raftv1.Nic, len(i.NICs))
		for k, n := range i.NICs {
			m.Nics[k] = &raftv1.Nic{Network: n.Network, Mac: n.MAC, Ipv4: n.IPv4, Hostname: n.Hostname}
		}
	}
	return m
}

func instanceFromPB(m *raftv1.Instance) state.Instance {
	i := state.Instance{
		ID: m.Id, Name: m.Name, Spec: specFromPB(m.Spec), HostID: m.HostId, Desired: lifecycle.Desired(m.Desired),
		CurrentOp: m.CurrentOp, Copy: copyFromPB(m.Copy), CurrentOpK: lifecycle.OpKind(m.CurrentOpKind), LastOp: m.LastOp,
		LastOpK: lifecycle.OpKind(m.LastOpKind), Result: lifecycle.Result(m.Result), Fault: faultFromPB(m.Fault),
		Power: lifecycle.Power(m.Power), PowerWhy: m.PowerReason, PowerTime: fromUnixNano(m.PowerTimeUnixNano),
		CreateTime: fromUnixNano(m.CreateTimeUnixNano), UpdateTime: fromUnixNano(m.UpdateTimeUnixNano),
		CreateRev: m.CreateRev, ModifyRev: m.ModifyRev, Recovery: recoveryFromPB(m.Recovery), Restarts: m.Restarts,
		MoveTarget: m.MoveTarget, Labels: labels(m.Labels), Resize: resizeFromPB(m.Resize), RollingBack: m.RollingBack,
		UserData: m.UserData, SSHKeys: nonEmpty(m.SshKeys), ReadyTimeout: time.Duration(m.ReadyTimeoutNanos),
		DecommissionTimeout: time.Duration(m.DecommissionTimeoutNanos), Decommission: lifecycle.Decommission(m.Decommission),
		Project: m.Project, Frozen: m.Frozen, ThawRun: m.ThawRun, RescueImage: m.RescueImage,
	}
	if g := m.Guest; g != nil {
		i.Guest = state.GuestFacts{State: lifecycle.Guest(g.State), Stage: g.Stage, Reason: g.Reason, Version: g.Version,
			Since: fromUnixNano(g.SinceUnixNano), Time: fromUnixNano(g.TimeUnixNano),
			Side: state.GuestSide{Protocol: g.Protocol, Boot: g.BootId, OS: g.Os, OSVersion: g.OsVersion,
				Kernel: g.Kernel, Unresponsive: g.Unresponsive}}
	}
	if p := m.Placement; p != nil {
		i.Placement = state.Placement{Kind: p.Kind, Labels: labels(p.Labels), Group: p.Group, Preemptible: p.Preemptible,
			ManagedNetworks: p.ManagedNetworks, Bridges: nonEmpty(p.Bridges)}
	}
	if len(m.Nics) > 0 {
		i.NICs = make([]state.NIC, len(m.Nics))
		for k, n := range m.Nics {
			i.NICs[k] = state.NIC{Network: n.Network, MAC: n.Mac, IPv4: n.Ipv4, Hostname: n.Hostname}
		}
	}
	return i
}

// nonEmpty is s, or nil when it is empty (as a JSON round trip gives it).
func nonEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func networkToPB(n *state.Network) *raftv1.Network {
	return &raftv1.Network{Name: n.Name, Cidr: n.CIDR, Gateway: n.Gateway, Mode: string(n.Mode), Bridge: n.Bridge,
		CreateTimeUnixNano: unixNano(n.CreateTime), CreateRev: n.CreateRev}
}

func networkFromPB(m *raftv1.Network) state.Network {
	return state.Network{Name: m.GetName(), CIDR: m.GetCidr(), Gateway: m.GetGateway(), Mode: state.NetworkMode(m.GetMode()),
		Bridge: m.GetBridge(), CreateTime: fromUnixNano(m.GetCreateTimeUnixNano()), CreateRev: m.GetCreateRev()}
}

func callerToPB(c *state.Caller) *raftv1.Caller {
	if c == nil {
		return nil
	}
	return &raftv1.Caller{Name: c.Name, Roles: c.Roles, Authenticated: c.Authenticated, Address: c.Address}
}

func callerFromPB(m *raftv1.Caller) *state.Caller {
	if m == nil {
		return nil
	}
	return &state.Caller{Name: m.Name, Roles: m.Roles, Authenticated: m.Authenticated, Address: m.Address}
}

func updateToPB(u *state.ModelUpdate) *raftv1.ModelUpdate {
	if u == nil {
		return nil
	}
	m := &raftv1.ModelUpdate{Name: u.Name, SetLabels: u.SetLabels, Labels: u.Labels}
	if u.Recovery != nil {
		m.Recovery = &raftv1.Recovery{Policy: string(u.Recovery.Policy), MaxRestarts: u.Recovery.MaxRestarts}
	}
	return m
}

func updateFromPB(m *raftv1.ModelUpdate) *state.ModelUpdate {
	if m == nil {
		return nil
	}
	u := &state.ModelUpdate{Name: m.Name, SetLabels: m.SetLabels, Labels: labels(m.Labels)}
	if m.Recovery != nil {
		r := recoveryFromPB(m.Recovery)
		u.Recovery = &r
	}
	return u
}

func stepToPB(s *state.Step) *raftv1.Step {
	m := &raftv1.Step{
		Name: s.Name, Action: string(s.Action), OnTarget: s.OnTarget, State: string(s.State), Attempt: s.Attempt,
		MaxAttempts: s.MaxAttempts, Force: s.Force, DeadlineUnixNano: unixNano(s.Deadline),
		StartTimeUnixNano: unixNano(s.StartTime), EndTimeUnixNano: unixNano(s.EndTime),
		RetryTimeUnixNano: unixNano(s.RetryTime), HostEpoch: s.HostEpoch, Fault: faultToPB(s.Fault),
		TimeoutNanos: int64(s.Timeout), Irreversible: s.Irreversible, Layer: string(s.Layer),
		Undoes: int64(s.Undoes), IsUndo: s.IsUndo, Note: s.Note,
	}
	if s.Undo != nil {
		m.Undo = stepToPB(s.Undo)
	}
	return m
}

func stepFromPB(m *raftv1.Step) state.Step {
	s := state.Step{
		Name: m.Name, Action: lifecycle.StepAction(m.Action), OnTarget: m.OnTarget, State: state.StepState(m.State),
		Attempt: m.Attempt, MaxAttempts: m.MaxAttempts, Force: m.Force, Deadline: fromUnixNano(m.DeadlineUnixNano),
		StartTime: fromUnixNano(m.StartTimeUnixNano), EndTime: fromUnixNano(m.EndTimeUnixNano),
		RetryTime: fromUnixNano(m.RetryTimeUnixNano), HostEpoch: m.HostEpoch, Fault: faultFromPB(m.Fault),
		Timeout: time.Duration(m.TimeoutNanos), Irreversible: m.Irreversible, Layer: lifecycle.Layer(m.Layer),
		Undoes: int(m.Undoes), IsUndo: m.IsUndo, Note: m.Note,
	}
	if m.Undo != nil {
		u := stepFromPB(m.Undo)
		s.Undo = &u
	}
	return s
}

func operationToPB(o *state.Operation) *raftv1.Operation {
	m := &raftv1.Operation{
		Id: o.ID, InstanceId: o.InstanceID, Kind: string(o.Kind), State: string(o.State), Step: o.Step,
		Progress: o.Progress, Fault: faultToPB(o.Fault), DeadlineUnixNano: unixNano(o.Deadline),
		CreateTimeUnixNano: unixNano(o.CreateTime), StartTimeUnixNano: unixNano(o.StartTime),
		EndTimeUnixNano: unixNano(o.EndTime), HostId: o.HostID, HostEpoch: o.HostEpoch, RequestId: o.RequestID,
		Revision: o.Revision, GracefulNanos: int64(o.Graceful), Force: o.Force, PrevDesired: string(o.PrevDesired),
		Seq: o.Seq, Cur: int64(o.Cur), RollingBack: o.RollingBack, CancelRequested: o.CancelRequested,
		TargetHostId: o.TargetHostID, Token: o.Token, Update: updateToPB(o.Update), Resize: resizeToPB(o.Resize),
		RequestedBy: callerToPB(o.RequestedBy), Copy: copyToPB(o.Copy), DecommissionNanos: int64(o.Decommission), Image: o.Image, ImageSource: o.ImageSource,
		RequestKey: o.RequestKey, RequestHash: o.RequestHash,
	}
	if len(o.Steps) > 0 {
		m.Steps = make([]*raftv1.Step, len(o.Steps))
		for k := range o.Steps {
			m.Steps[k] = stepToPB(&o.Steps[k])
		}
	}
	return m
}

func operationFromPB(m *raftv1.Operation) state.Operation {
	o := state.Operation{
		ID: m.Id, InstanceID: m.InstanceId, Kind: lifecycle.OpKind(m.Kind), State: state.OpState(m.State),
		Step: m.Step, Progress: m.Progress, Fault: faultFromPB(m.Fault), Deadline: fromUnixNano(m.DeadlineUnixNano),
		CreateTime: fromUnixNano(m.CreateTimeUnixNano), StartTime: fromUnixNano(m.StartTimeUnixNano),
		EndTime: fromUnixNano(m.EndTimeUnixNano), HostID: m.HostId, HostEpoch: m.HostEpoch, RequestID: m.RequestId,
		Revision: m.Revision, Graceful: time.Duration(m.GracefulNanos), Force: m.Force,
		PrevDesired: lifecycle.Desired(m.PrevDesired), Seq: m.Seq, Cur: int(m.Cur), RollingBack: m.RollingBack,
		CancelRequested: m.CancelRequested, TargetHostID: m.TargetHostId, Token: m.Token,
		Update: updateFromPB(m.Update), Resize: resizeFromPB(m.Resize), RequestedBy: callerFromPB(m.RequestedBy),
		Copy: copyFromPB(m.Copy), Decommission: time.Duration(m.DecommissionNanos), Image: m.Image, ImageSource: m.ImageSource,
		RequestKey: m.RequestKey, RequestHash: m.RequestHash,
	}
	if len(m.Steps) > 0 {
		o.Steps = make([]state.Step, len(m.Steps))
		for k, s := range m.Steps {
			o.Steps[k] = stepFromPB(s)
		}
	}
	return o
}

func hostToPB(h *state.Host) *raftv1.Host {
	c := h.Capacity
	return &raftv1.Host{
		Id: h.ID, Status: string(h.Status), Kind: h.Kind,
		Capacity: &raftv1.Resources{Vcpus: c.VCPUs, MemoryMib: c.MemoryMiB, DiskGib: c.DiskGiB},
		Epoch:    h.Epoch, RegisterTimeUnixNano: unixNano(h.RegisterTime), AgentVersion: h.AgentVersion,
		Orphans: h.Orphans, Labels: h.Labels, Cordoned: h.Cordoned, Draining: h.Draining, ModifyRev: h.ModifyRev,
		PeerAddr: h.PeerAddr, ManagedNetworks: h.ManagedNetworks, Bridges: h.Bridges,
		ClockSkewNanos: int64(h.ClockSkew), ClockMeasuredUnixNano: unixNano(h.ClockMeasured),
		ImagesListed: h.ImagesListed,
	}
}

func hostFromPB(m *raftv1.Host) state.Host {
	h := state.Host{
		ID: m.Id, Status: state.HostStatus(m.Status), Kind: m.Kind, Epoch: m.Epoch,
		RegisterTime: fromUnixNano(m.RegisterTimeUnixNano), AgentVersion: m.AgentVersion, Orphans: m.Orphans,
		Labels: labels(m.Labels), Cordoned: m.Cordoned, Draining: m.Draining, ModifyRev: m.ModifyRev, PeerAddr: m.PeerAddr,
		ManagedNetworks: m.ManagedNetworks, Bridges: nonEmpty(m.Bridges),
		ClockSkew: time.Duration(m.ClockSkewNanos), ClockMeasured: fromUnixNano(m.ClockMeasuredUnixNano),
		ImagesListed: m.ImagesListed,
	}
	if c := m.Capacity; c != nil {
		h.Capacity = state.Resources{VCPUs: c.Vcpus, MemoryMiB: c.MemoryMib, DiskGiB: c.DiskGib}
	}
	return h
}

func serverToPB(s *state.Server) *raftv1.Server {
	return &raftv1.Server{Id: s.ID, RaftAddr: s.RaftAddr, ApiAddr: s.APIAddr}
}

func serverFromPB(m *raftv1.Server) state.Server {
	if m == nil {
		return state.Server{}
	}
	return state.Server{ID: m.Id, RaftAddr: m.RaftAddr, APIAddr: m.ApiAddr}
}

func policyToPB(p scheduler.Policy) *raftv1.Policy {
	if p == (scheduler.Policy{}) {
		return nil
	}
	return &raftv1.Policy{Pack: p.Pack, CpuOvercommit: p.CPUOvercommit, MemoryOvercommit: p.MemoryOvercommit, DiskOvercommit: p.DiskOvercommit}
}

func policyFromPB(m *raftv1.Policy) scheduler.Policy {
	if m == nil {
		return scheduler.Policy{}
	}
	return scheduler.Policy{Pack: m.Pack, CPUOvercommit: m.CpuOvercommit, MemoryOvercommit: m.MemoryOvercommit, DiskOvercommit: m.DiskOvercommit}
}

func observationToPB(o *Observation) *raftv1.Observation {
	return &raftv1.Observation{InstanceId: o.InstanceID, Power: string(o.Power), Reason: o.Reason, TimeUnixNano: unixNano(o.Time)}
}

func observationFromPB(m *raftv1.Observation) Observation {
	return Observation{InstanceID: m.InstanceId, Power: lifecycle.Power(m.Power), Reason: m.Reason, Time: fromUnixNano(m.TimeUnixNano)}
}

func operationsToPB(ops []state.Operation) []*raftv1.Operation {
	if len(ops) == 0 {
		return nil
	}
	out := make([]*raftv1.Operation, len(ops))
	for k := range ops {
		out[k] = operationToPB(&ops[k])
	}
	return out
}

func operationsFromPB(ms []*raftv1.Operation) []state.Operation {
	if len(ms) == 0 {
		return nil
	}
	out := make([]state.Operation, len(ms))
	for k, m := range ms {
		out[k] = operationFromPB(m)
	}
	return out
}

func observationsToPB(obs []Observation) []*raftv1.Observation {
	if len(obs) == 0 {
		return nil
	}
	out := make([]*raftv1.Observation, len(obs))
	for k := range obs {
		out[k] = observationToPB(&obs[k])
	}
	return out
}

func observationsFromPB(ms []*raftv1.Observation) []Observation {
	if len(ms) == 0 {
		return nil
	}
	out := make([]Observation, len(ms))
	for k, m := range ms {
		out[k] = observationFromPB(m)
	}
	return out
}
