package convert

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/usage"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// RecoveryFromPB converts a validated recovery request: UNSPECIFIED is
// LEAVE. A limit of 0 stays 0: the service gives RESTART its default.
func RecoveryFromPB(r *pb.Recovery) state.Recovery {
	out := state.Recovery{MaxRestarts: r.GetMaxRestarts()}
	out.Policy, _ = recoveries.domain(r.GetPolicy())
	return out
}

// hostStatus derives what the API shows: liveness first, then the
// operator's cordon, and DRAINING while a drained host still runs guests.
func hostStatus(h *state.Host, running int32) pb.HostStatus {
	switch {
	case h.Status == state.HostDown:
		return pb.HostStatus_HOST_STATUS_DOWN
	case h.Status != state.HostReady:
		return pb.HostStatus_HOST_STATUS_DISCONNECTED
	case h.Draining && running > 0:
		return pb.HostStatus_HOST_STATUS_DRAINING
	case h.Cordoned:
		return pb.HostStatus_HOST_STATUS_CORDONED
	}
	return pb.HostStatus_HOST_STATUS_READY
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// FaultToPB converts a recorded fault.
func FaultToPB(f *state.Fault) *pb.Fault {
	if f == nil {
		return nil
	}
	return &pb.Fault{Code: f.Code, Message: f.Message, Time: ts(f.Time), HostId: f.HostID}
}

// FaultFromPB converts a fault reported by an agent.
func FaultFromPB(f *pb.Fault) *state.Fault {
	if f == nil {
		return nil
	}
	return &state.Fault{Code: f.Code, Message: f.Message, Time: f.GetTime().AsTime(), HostID: f.HostId}
}

// SpecToPB converts an instance spec.
func SpecToPB(s state.Spec) *pb.InstanceSpec {
	return &pb.InstanceSpec{Vcpus: int32(s.VCPUs), MemoryMib: int64(s.MemoryMiB), DiskGib: int64(s.DiskGiB), Image: s.Image}
}

// InstanceToPB converts an instance, with its views in vocabs.
func InstanceToPB(i *state.Instance, vocabs ...vocabulary.Vocabulary) *pb.Instance {
	status := i.Status()
	out := &pb.Instance{
		Id:                 i.ID,
		Name:               i.Name,
		Spec:               SpecToPB(i.Spec),
		Status:             StatusToPB(status),
		DesiredState:       DesiredToPB(i.Desired),
		PowerState:         PowerToPB(i.Power),
		PowerStateReason:   i.PowerWhy,
		PowerStateTime:     ts(i.PowerTime),
		ProvisioningResult: ResultToPB(i.Result),
		HostId:             i.HostID,
		Project:            state.ProjectOf(i),
		CurrentOperationId: i.CurrentOp,
		LastOperationId:    i.LastOp,
		Fault:              FaultToPB(i.Fault),
		CreateTime:         ts(i.CreateTime),
		UpdateTime:         ts(i.UpdateTime),
		CreateRevision:     i.CreateRev,
		ModifyRevision:     i.ModifyRev,
		Recovery:           &pb.Recovery{Policy: RecoveryPolicyToPB(i.Recovery.Policy), MaxRestarts: i.Recovery.MaxRestarts},
		RestartCount:       i.Restarts,
		Placement: &pb.Placement{HypervisorKind: i.Placement.Kind, HostLabels: i.Placement.Labels,
			AntiAffinityGroup: i.Placement.Group, Preemptible: i.Placement.Preemptible},
		Labels:            i.Labels,
		SshAuthorizedKeys: i.SSHKeys,
		HasUserData:       i.UserData != "",
		Readiness:         ReadinessToPB(i.Readiness()),
	}
	if g := i.Guest; g.State != lifecycle.GuestSilent {
		out.Guest = &pb.GuestStatus{Stage: g.Stage, Reason: g.Reason, GuestVersion: g.Version, Since: ts(g.Since),
			Protocol: g.Side.Protocol, Os: g.Side.OS, OsVersion: g.Side.OSVersion, Kernel: g.Side.Kernel,
			Unresponsive: g.Side.Unresponsive}
	}
	if i.ReadyTimeout > 0 {
		out.ReadinessTimeout = durationpb.New(i.ReadyTimeout)
	}
	if i.DecommissionTimeout > 0 {
		out.DecommissionTimeout = durationpb.New(i.DecommissionTimeout)
	}
	for _, n := range i.NICs {
		out.Interfaces = append(out.Interfaces, &pb.NetworkInterface{Network: n.Network, MacAddress: n.MAC,
			Ipv4Address: n.IPv4, DnsName: n.Hostname + "." + n.Network})
	}
	if r := i.Resize; r != nil {
		out.Resize = &pb.PendingResize{From: SpecToPB(r.From), To: SpecToPB(r.To), SourceHostId: r.Source, ConfirmTime: ts(r.ConfirmBy)}
	}
	out.Copy = CopyToPB(i.RunningCopy())
	for _, a := range lifecycle.Allowed(status) {
		out.AllowedActions = append(out.AllowedActions, ActionToPB(a))
	}
	in := vocabulary.Input{Facts: i.Facts(), LastOp: i.LastOpK, Readiness: i.Readiness()}
	for _, n := range out.Interfaces {
		in.Addresses, in.DNSNames = append(in.Addresses, n.Ipv4Address), append(in.DNSNames, n.DnsName)
	}
	for _, v := range vocabs {
		out.Views = append(out.Views, viewToPB(vocabulary.Render(v, in)))
	}
	return out
}

// viewToPB converts one vocabulary's view of an instance.
func viewToPB(v vocabulary.View) *pb.VocabularyView {
	out := &pb.VocabularyView{Vocabulary: VocabularyToPB(v.Vocabulary), Status: v.Status, Mapped: v.Mapped(),
		CanonicalStatus: StatusToPB(v.Canonical), BillingClass: string(v.Billing)}
	if len(v.Fields) > 0 {
		out.Fields = make(map[string]string, len(v.Fields))
		for _, f := range v.Fields {
			out.Fields[f.Name] = f.Value
		}
	}
	return out
}

// OperationToPB converts an operation, with its steps.
func OperationToPB(o *state.Operation) *pb.Operation {
	out := &pb.Operation{
		Id:              o.ID,
		InstanceId:      o.InstanceID,
		Kind:            OpKindToPB(o.Kind),
		State:           OpStateToPB(o.State),
		Done:            o.State.Done(),
		Step:            o.Step,
		ProgressPercent: o.Progress,
		Error:           FaultToPB(o.Fault),
		Deadline:        ts(o.Deadline),
		CreateTime:      ts(o.CreateTime),
		StartTime:       ts(o.StartTime),
		EndTime:         ts(o.EndTime),
		HostId:          o.HostID,
		HostEpoch:       o.HostEpoch,
		RequestId:       o.RequestID,
		Revision:        o.Revision,
		Force:           o.Force,
	}
	if o.Graceful > 0 {
		out.GracefulTimeout = durationpb.New(o.Graceful)
	}
	out.RequestedBy = CallerToPB(o.RequestedBy)
	out.Cancellable = fsm.Cancellable(o)
	out.CancelRequested = o.CancelRequested
	out.TargetHostId = o.TargetHostID
	out.Copy = CopyToPB(o.RunningCopy())
	for i := range o.Steps {
		st := &o.Steps[i]
		ps := &pb.OperationStep{
			Name: st.Name, State: StepStateToPB(st.State), HostId: o.StepHost(st),
			Attempt: st.Attempt, MaxAttempts: st.MaxAttempts, Deadline: ts(st.Deadline),
			StartTime: ts(st.StartTime), EndTime: ts(st.EndTime), Error: FaultToPB(st.Fault), RetryTime: ts(st.RetryTime),
			Note: st.Note,
		}
		if st.Undo != nil {
			ps.Compensation = st.Undo.Name
		}
		out.Steps = append(out.Steps, ps)
	}
	return out
}

// HostToPB converts a host; used is what its instances take, count how many
// are placed there and running how many of their domains are up.
// soft is the part of used that soft-deleted instances hold.
func HostToPB(h *state.Host, used, soft state.Resources, count, running int32) *pb.Host {
	return &pb.Host{
		SoftDeleted:       &pb.Resources{Vcpus: soft.VCPUs, MemoryMib: soft.MemoryMiB, DiskGib: soft.DiskGiB},
		Id:                h.ID,
		Status:            hostStatus(h, running),
		Labels:            h.Labels,
		Cordoned:          h.Cordoned,
		HypervisorKind:    h.Kind,
		Capacity:          &pb.Resources{Vcpus: h.Capacity.VCPUs, MemoryMib: h.Capacity.MemoryMiB, DiskGib: h.Capacity.DiskGiB},
		Allocated:         &pb.Resources{Vcpus: used.VCPUs, MemoryMib: used.MemoryMiB, DiskGib: used.DiskGiB},
		Epoch:             h.Epoch,
		InstanceCount:     count,
		OrphanDomains:     h.Orphans,
		RegisterTime:      ts(h.RegisterTime),
		AgentVersion:      h.AgentVersion,
		ManagedNetworks:   h.ManagedNetworks,
		Bridges:           h.Bridges,
		Warnings:          HostWarnings(h),
		ClockSkew:         clockSkew(h),
		ClockMeasuredTime: ts(h.ClockMeasured),
	}
}

// ClockSkewWarning is the clock skew (either way) past which a host gets
// a warning: its power events and guest reports are ordered on its clock,
// and 5 s ahead its timestamps are no longer believed (agentlink).
const ClockSkewWarning = 2 * time.Second

// HostWarnings are the conditions of a host an operator should look at.
func HostWarnings(h *state.Host) []string {
	var out []string
	if !h.ClockMeasured.IsZero() && (h.ClockSkew > ClockSkewWarning || h.ClockSkew < -ClockSkewWarning) {
		out = append(out, fmt.Sprintf("clock skew %s exceeds %s: check the host's time synchronisation (NTP)",
			h.ClockSkew.Round(time.Millisecond), ClockSkewWarning))
	}
	return out
}

func clockSkew(h *state.Host) *durationpb.Duration {
	if h.ClockMeasured.IsZero() {
		return nil
	}
	return durationpb.New(h.ClockSkew)
}

// NetworkToPB converts a network; inUse is how many addresses instances
// hold on it, hosts the hosts that serve it.
func NetworkToPB(n *state.Network, inUse int, hosts []string) *pb.Network {
	out := &pb.Network{Name: n.Name, Cidr: n.CIDR, Gateway: n.Gateway, Mode: networkModes.pb(n.Mode), Bridge: n.Bridge,
		AddressesInUse: int32(inUse), Hosts: hosts, CreateTime: ts(n.CreateTime), CreateRevision: n.CreateRev}
	if p, err := netip.ParsePrefix(n.CIDR); err == nil {
		out.AddressesTotal = int32(1<<(32-p.Bits()) - 3)
	}
	return out
}

// NetworkModeFromPB converts a network mode; false for UNSPECIFIED and unknown values.
func NetworkModeFromPB(m pb.NetworkMode) (state.NetworkMode, bool) { return networkModes.domain(m) }

// NetworkModeToPB converts a network mode.
func NetworkModeToPB(m state.NetworkMode) pb.NetworkMode { return networkModes.pb(m) }

// WithNetworks completes an instance's interfaces with their networks'
// prefix length and gateway (networks are never changed, only created
// and, unused, deleted).
func WithNetworks(out *pb.Instance, network func(string) (state.Network, error)) {
	for _, nic := range out.Interfaces {
		n, err := network(nic.Network)
		if err != nil {
			continue
		}
		if p, err := netip.ParsePrefix(n.CIDR); err == nil {
			nic.PrefixLength = int32(p.Bits())
		}
		nic.Gateway = n.Gateway
	}
}

// CallerToPB converts who asked for an operation.
func CallerToPB(c *state.Caller) *pb.Caller {
	if c == nil {
		return nil
	}
	return &pb.Caller{Name: c.Name, Roles: c.Roles, Authenticated: c.Authenticated, Address: c.Address}
}

// UsageToPB lists every class of the vocabulary, in the seed's order.
func UsageToPB(id string, v vocabulary.Vocabulary, r usage.Report, rev int64) *pb.InstanceUsage {
	out := &pb.InstanceUsage{InstanceId: id, Vocabulary: VocabularyToPB(v), StartTime: ts(r.From), EndTime: ts(r.To),
		Unclassified: durationpb.New(r.Time[vocabulary.BillingNone]), MeteredSince: ts(r.Since), Revision: rev}
	for _, c := range v.Classes() {
		out.Classes = append(out.Classes, &pb.BillingClassUsage{BillingClass: string(c), Duration: durationpb.New(r.Time[c])})
	}
	return out
}

// CopyToPB is the public form of a running copy's progress (nil: none).
func CopyToPB(c *state.CopyProgress) *pb.CopyProgress {
	if c == nil {
		return nil
	}
	return &pb.CopyProgress{
		StepId: c.StepID, BytesDone: c.BytesDone, BytesTotal: c.BytesTotal,
		BytesPerSecond: c.BytesPerSecond, BytesSent: c.BytesSent, ReportTime: ts(c.ReportTime),
	}
}

// ProjectToPB converts a project's record and what its instances take.
func ProjectToPB(p *state.Project, u state.Use) *pb.Project {
	return &pb.Project{Name: p.Name,
		Quota:  &pb.ProjectQuota{Instances: p.Quota.Instances, Vcpus: p.Quota.VCPUs, MemoryMib: p.Quota.MemoryMiB, DiskGib: p.Quota.DiskGiB},
		Usage:  &pb.ProjectQuota{Instances: u.Instances, Vcpus: u.VCPUs, MemoryMib: u.MemoryMiB, DiskGib: u.DiskGiB},
		Billed: p.Billed, BalanceMilli: p.BalanceMilli, PricesMilli: p.PricesMilli, Frozen: p.Frozen, FrozenByAdmin: p.FrozenByAdmin,
		ChargedThrough: ts(p.ChargedThrough), CreateTime: ts(p.CreateTime)}
}

// ImageToPB converts an image of the catalogue.
func ImageToPB(im *state.Image) *pb.Image {
	out := &pb.Image{Name: im.Name, Format: im.Format, VirtualSize: im.VirtualSize, AllocatedSize: im.AllocatedSize,
		Sha256: im.SHA256, Hosts: slices.Clone(im.Hosts), CreateTime: ts(im.CreateTime), Fault: FaultToPB(im.Fault)}
	switch im.Status() {
	case state.ImageAvailable:
		out.Status = pb.ImageStatus_IMAGE_STATUS_AVAILABLE
	case state.ImageImporting:
		out.Status = pb.ImageStatus_IMAGE_STATUS_IMPORTING
	case state.ImageDeleting:
		out.Status = pb.ImageStatus_IMAGE_STATUS_DELETING
	default:
		out.Status = pb.ImageStatus_IMAGE_STATUS_FAILED
	}
	for _, x := range im.Imports {
		out.Imports = append(out.Imports, &pb.ImageImport{HostId: x.HostID, Path: x.Path, FromHostId: x.FromHost, RequestTime: ts(x.RequestTime)})
	}
	return out
}
