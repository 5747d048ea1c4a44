package api

import (
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

var statusToPB = map[lifecycle.Status]pb.Status{
	lifecycle.StatusCreating:          pb.Status_STATUS_CREATING,
	lifecycle.StatusStarting:          pb.Status_STATUS_STARTING,
	lifecycle.StatusRunning:           pb.Status_STATUS_RUNNING,
	lifecycle.StatusStopping:          pb.Status_STATUS_STOPPING,
	lifecycle.StatusStopped:           pb.Status_STATUS_STOPPED,
	lifecycle.StatusRebooting:         pb.Status_STATUS_REBOOTING,
	lifecycle.StatusHardRebooting:     pb.Status_STATUS_HARD_REBOOTING,
	lifecycle.StatusPausing:           pb.Status_STATUS_PAUSING,
	lifecycle.StatusPaused:            pb.Status_STATUS_PAUSED,
	lifecycle.StatusUnpausing:         pb.Status_STATUS_UNPAUSING,
	lifecycle.StatusSuspending:        pb.Status_STATUS_SUSPENDING,
	lifecycle.StatusSuspended:         pb.Status_STATUS_SUSPENDED,
	lifecycle.StatusResuming:          pb.Status_STATUS_RESUMING,
	lifecycle.StatusDeleting:          pb.Status_STATUS_DELETING,
	lifecycle.StatusDeleted:           pb.Status_STATUS_DELETED,
	lifecycle.StatusError:             pb.Status_STATUS_ERROR,
	lifecycle.StatusUnknown:           pb.Status_STATUS_UNKNOWN,
	lifecycle.StatusUnexpectedShutoff: pb.Status_STATUS_UNEXPECTED_SHUTOFF,
	lifecycle.StatusCrashed:           pb.Status_STATUS_CRASHED,
	lifecycle.StatusPending:           pb.Status_STATUS_PENDING,
	lifecycle.StatusBidding:           pb.Status_STATUS_BIDDING,
	lifecycle.StatusMoving:            pb.Status_STATUS_MOVING,
	lifecycle.StatusUpdating:          pb.Status_STATUS_UPDATING,
	lifecycle.StatusResizing:          pb.Status_STATUS_RESIZING,
	lifecycle.StatusVerifyResize:      pb.Status_STATUS_VERIFY_RESIZE,
	lifecycle.StatusConfirmingResize:  pb.Status_STATUS_CONFIRMING_RESIZE,
	lifecycle.StatusRevertingResize:   pb.Status_STATUS_REVERTING_RESIZE,
	lifecycle.StatusExtending:         pb.Status_STATUS_EXTENDING,
}

var desiredToPB = map[lifecycle.Desired]pb.DesiredState{
	lifecycle.DesiredRunning:   pb.DesiredState_DESIRED_STATE_RUNNING,
	lifecycle.DesiredStopped:   pb.DesiredState_DESIRED_STATE_STOPPED,
	lifecycle.DesiredPaused:    pb.DesiredState_DESIRED_STATE_PAUSED,
	lifecycle.DesiredSuspended: pb.DesiredState_DESIRED_STATE_SUSPENDED,
	lifecycle.DesiredDeleted:   pb.DesiredState_DESIRED_STATE_DELETED,
}

// PowerToPB maps observed power states to the public enum; the agent link
// uses its inverse, PowerFromPB.
var powerToPB = map[lifecycle.Power]pb.PowerState{
	lifecycle.PowerNone:         pb.PowerState_POWER_STATE_UNSPECIFIED,
	lifecycle.PowerRunning:      pb.PowerState_POWER_STATE_RUNNING,
	lifecycle.PowerPaused:       pb.PowerState_POWER_STATE_PAUSED,
	lifecycle.PowerShuttingDown: pb.PowerState_POWER_STATE_SHUTTING_DOWN,
	lifecycle.PowerShutOff:      pb.PowerState_POWER_STATE_SHUT_OFF,
	lifecycle.PowerCrashed:      pb.PowerState_POWER_STATE_CRASHED,
	lifecycle.PowerSavedToDisk:  pb.PowerState_POWER_STATE_SAVED_TO_DISK,
	lifecycle.PowerNoDomain:     pb.PowerState_POWER_STATE_NO_DOMAIN,
	lifecycle.PowerUnknown:      pb.PowerState_POWER_STATE_UNKNOWN,
}

// PowerFromPB maps the wire power state to the domain one.
func PowerFromPB(p pb.PowerState) lifecycle.Power {
	for k, v := range powerToPB {
		if v == p {
			return k
		}
	}
	return lifecycle.PowerUnknown
}

var resultToPB = map[lifecycle.Result]pb.ProvisioningResult{
	lifecycle.ResultNone:       pb.ProvisioningResult_PROVISIONING_RESULT_UNSPECIFIED,
	lifecycle.ResultSucceeded:  pb.ProvisioningResult_PROVISIONING_RESULT_SUCCEEDED,
	lifecycle.ResultFailed:     pb.ProvisioningResult_PROVISIONING_RESULT_FAILED,
	lifecycle.ResultCanceled:   pb.ProvisioningResult_PROVISIONING_RESULT_CANCELED,
	lifecycle.ResultRolledBack: pb.ProvisioningResult_PROVISIONING_RESULT_ROLLED_BACK,
}

var actionToPB = map[lifecycle.Action]pb.Action{
	lifecycle.ActionStart:         pb.Action_ACTION_START,
	lifecycle.ActionStop:          pb.Action_ACTION_STOP,
	lifecycle.ActionRestart:       pb.Action_ACTION_RESTART,
	lifecycle.ActionPause:         pb.Action_ACTION_PAUSE,
	lifecycle.ActionUnpause:       pb.Action_ACTION_UNPAUSE,
	lifecycle.ActionSuspend:       pb.Action_ACTION_SUSPEND,
	lifecycle.ActionResume:        pb.Action_ACTION_RESUME,
	lifecycle.ActionDelete:        pb.Action_ACTION_DELETE,
	lifecycle.ActionUpdate:        pb.Action_ACTION_UPDATE,
	lifecycle.ActionResize:        pb.Action_ACTION_RESIZE,
	lifecycle.ActionConfirmResize: pb.Action_ACTION_CONFIRM_RESIZE,
	lifecycle.ActionRevertResize:  pb.Action_ACTION_REVERT_RESIZE,
	lifecycle.ActionExtend:        pb.Action_ACTION_EXTEND,
	lifecycle.ActionMove:          pb.Action_ACTION_MOVE,
}

// OpKindToPB maps operation kinds to the public enum.
var opKindToPB = map[lifecycle.OpKind]pb.OperationKind{
	lifecycle.OpCreate:        pb.OperationKind_OPERATION_KIND_CREATE,
	lifecycle.OpStart:         pb.OperationKind_OPERATION_KIND_START,
	lifecycle.OpStop:          pb.OperationKind_OPERATION_KIND_STOP,
	lifecycle.OpRestart:       pb.OperationKind_OPERATION_KIND_RESTART,
	lifecycle.OpHardRestart:   pb.OperationKind_OPERATION_KIND_HARD_RESTART,
	lifecycle.OpPause:         pb.OperationKind_OPERATION_KIND_PAUSE,
	lifecycle.OpUnpause:       pb.OperationKind_OPERATION_KIND_UNPAUSE,
	lifecycle.OpSuspend:       pb.OperationKind_OPERATION_KIND_SUSPEND,
	lifecycle.OpResume:        pb.OperationKind_OPERATION_KIND_RESUME,
	lifecycle.OpDelete:        pb.OperationKind_OPERATION_KIND_DELETE,
	lifecycle.OpPreempt:       pb.OperationKind_OPERATION_KIND_PREEMPT,
	lifecycle.OpMove:          pb.OperationKind_OPERATION_KIND_MOVE,
	lifecycle.OpUpdate:        pb.OperationKind_OPERATION_KIND_UPDATE,
	lifecycle.OpResize:        pb.OperationKind_OPERATION_KIND_RESIZE,
	lifecycle.OpConfirmResize: pb.OperationKind_OPERATION_KIND_CONFIRM_RESIZE,
	lifecycle.OpRevertResize:  pb.OperationKind_OPERATION_KIND_REVERT_RESIZE,
	lifecycle.OpExtend:        pb.OperationKind_OPERATION_KIND_EXTEND,
}

// OpKindToPB maps an operation kind to the public enum.
func OpKindToPB(k lifecycle.OpKind) pb.OperationKind { return opKindToPB[k] }

var opStateToPB = map[state.OpState]pb.OperationState{
	state.OpPending:     pb.OperationState_OPERATION_STATE_PENDING,
	state.OpRunning:     pb.OperationState_OPERATION_STATE_RUNNING,
	state.OpSucceeded:   pb.OperationState_OPERATION_STATE_SUCCEEDED,
	state.OpFailed:      pb.OperationState_OPERATION_STATE_FAILED,
	state.OpCanceled:    pb.OperationState_OPERATION_STATE_CANCELED,
	state.OpRollingBack: pb.OperationState_OPERATION_STATE_ROLLING_BACK,
}

var stepStateToPB = map[state.StepState]pb.StepState{
	state.StepPending:     pb.StepState_STEP_STATE_PENDING,
	state.StepRunning:     pb.StepState_STEP_STATE_RUNNING,
	state.StepRetryWait:   pb.StepState_STEP_STATE_RETRY_WAIT,
	state.StepSucceeded:   pb.StepState_STEP_STATE_SUCCEEDED,
	state.StepFailed:      pb.StepState_STEP_STATE_FAILED,
	state.StepSkipped:     pb.StepState_STEP_STATE_SKIPPED,
	state.StepCompensated: pb.StepState_STEP_STATE_COMPENSATED,
}

var recoveryToPB = map[state.RecoveryPolicy]pb.RecoveryPolicy{
	state.RecoverLeave:      pb.RecoveryPolicy_RECOVERY_POLICY_LEAVE,
	state.RecoverRestart:    pb.RecoveryPolicy_RECOVERY_POLICY_RESTART,
	state.RecoverMarkFailed: pb.RecoveryPolicy_RECOVERY_POLICY_MARK_FAILED,
}

// recoveryFromPB converts a validated recovery request; RESTART without a
// limit gets 3 restarts.
func recoveryFromPB(r *pb.Recovery) state.Recovery {
	out := state.Recovery{MaxRestarts: r.GetMaxRestarts()}
	switch r.GetPolicy() {
	case pb.RecoveryPolicy_RECOVERY_POLICY_RESTART:
		out.Policy = state.RecoverRestart
		if out.MaxRestarts == 0 {
			out.MaxRestarts = 3
		}
	case pb.RecoveryPolicy_RECOVERY_POLICY_MARK_FAILED:
		out.Policy = state.RecoverMarkFailed
	}
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

// instanceToPB converts an instance, with its views in vocabs.
func instanceToPB(i *state.Instance, vocabs ...vocabulary.Vocabulary) *pb.Instance {
	status := i.Status()
	out := &pb.Instance{
		Id:                 i.ID,
		Name:               i.Name,
		Spec:               SpecToPB(i.Spec),
		Status:             statusToPB[status],
		DesiredState:       desiredToPB[i.Desired],
		PowerState:         powerToPB[i.Power],
		PowerStateReason:   i.PowerWhy,
		PowerStateTime:     ts(i.PowerTime),
		ProvisioningResult: resultToPB[i.Result],
		HostId:             i.HostID,
		CurrentOperationId: i.CurrentOp,
		LastOperationId:    i.LastOp,
		Fault:              FaultToPB(i.Fault),
		CreateTime:         ts(i.CreateTime),
		UpdateTime:         ts(i.UpdateTime),
		CreateRevision:     i.CreateRev,
		ModifyRevision:     i.ModifyRev,
		Recovery:           &pb.Recovery{Policy: recoveryToPB[i.Recovery.Policy], MaxRestarts: i.Recovery.MaxRestarts},
		RestartCount:       i.Restarts,
		Placement: &pb.Placement{HypervisorKind: i.Placement.Kind, HostLabels: i.Placement.Labels,
			AntiAffinityGroup: i.Placement.Group, Preemptible: i.Placement.Preemptible},
		Labels: i.Labels,
	}
	if r := i.Resize; r != nil {
		out.Resize = &pb.PendingResize{From: SpecToPB(r.From), To: SpecToPB(r.To), SourceHostId: r.Source, ConfirmTime: ts(r.ConfirmBy)}
	}
	out.Copy = copyToPB(i.RunningCopy())
	for _, a := range lifecycle.Allowed(status) {
		out.AllowedActions = append(out.AllowedActions, actionToPB[a])
	}
	in := vocabulary.Input{Facts: i.Facts(), LastOp: i.LastOpK}
	for _, v := range vocabs {
		out.Views = append(out.Views, viewToPB(vocabulary.Render(v, in)))
	}
	return out
}

var vocabularyToPB = map[vocabulary.Vocabulary]pb.Vocabulary{
	vocabulary.ManageInstance:  pb.Vocabulary_VOCABULARY_MANAGE_INSTANCE,
	vocabulary.Nova:            pb.Vocabulary_VOCABULARY_NOVA,
	vocabulary.RightScale:      pb.Vocabulary_VOCABULARY_RIGHTSCALE,
	vocabulary.Azure:           pb.Vocabulary_VOCABULARY_AZURE,
	vocabulary.ManagedInstance: pb.Vocabulary_VOCABULARY_MANAGED_INSTANCE,
}

// vocabulariesFromPB validates the vocabularies a read asks for, keeping
// their order and dropping repeats. A list longer than there are
// vocabularies is refused as a whole, so no request can make a huge error.
func vocabulariesFromPB(v *violations, in []pb.Vocabulary) []vocabulary.Vocabulary {
	if len(in) > len(vocabulary.All) {
		v.add("vocabularies", "at most %d, one per vocabulary", len(vocabulary.All))
		return nil
	}
	var out []vocabulary.Vocabulary
next:
	for _, p := range in {
		for k, w := range vocabularyToPB {
			if w == p {
				if !slices.Contains(out, k) {
					out = append(out, k)
				}
				continue next
			}
		}
		v.add("vocabularies", "unknown vocabulary %v", p)
	}
	return out
}

func viewToPB(v vocabulary.View) *pb.VocabularyView {
	out := &pb.VocabularyView{Vocabulary: vocabularyToPB[v.Vocabulary], Status: v.Status, Mapped: v.Mapped(),
		CanonicalStatus: statusToPB[v.Canonical], BillingClass: string(v.Billing)}
	if len(v.Fields) > 0 {
		out.Fields = make(map[string]string, len(v.Fields))
		for _, f := range v.Fields {
			out.Fields[f.Name] = f.Value
		}
	}
	return out
}

func operationToPB(o *state.Operation) *pb.Operation {
	out := &pb.Operation{
		Id:              o.ID,
		InstanceId:      o.InstanceID,
		Kind:            opKindToPB[o.Kind],
		State:           opStateToPB[o.State],
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
	out.RequestedBy = callerToPB(o.RequestedBy)
	out.Cancellable = fsm.Cancellable(o)
	out.CancelRequested = o.CancelRequested
	out.TargetHostId = o.TargetHostID
	out.Copy = copyToPB(o.RunningCopy())
	for i := range o.Steps {
		st := &o.Steps[i]
		ps := &pb.OperationStep{
			Name: st.Name, State: stepStateToPB[st.State], HostId: o.StepHost(st),
			Attempt: st.Attempt, MaxAttempts: st.MaxAttempts, Deadline: ts(st.Deadline),
			StartTime: ts(st.StartTime), EndTime: ts(st.EndTime), Error: FaultToPB(st.Fault), RetryTime: ts(st.RetryTime),
		}
		if st.Undo != nil {
			ps.Compensation = st.Undo.Name
		}
		out.Steps = append(out.Steps, ps)
	}
	return out
}

func hostToPB(h *state.Host, used state.Resources, count, running int32) *pb.Host {
	return &pb.Host{
		Id:             h.ID,
		Status:         hostStatus(h, running),
		Labels:         h.Labels,
		Cordoned:       h.Cordoned,
		HypervisorKind: h.Kind,
		Capacity:       &pb.Resources{Vcpus: h.Capacity.VCPUs, MemoryMib: h.Capacity.MemoryMiB, DiskGib: h.Capacity.DiskGiB},
		Allocated:      &pb.Resources{Vcpus: used.VCPUs, MemoryMib: used.MemoryMiB, DiskGib: used.DiskGiB},
		Epoch:          h.Epoch,
		InstanceCount:  count,
		OrphanDomains:  h.Orphans,
		RegisterTime:   ts(h.RegisterTime),
		AgentVersion:   h.AgentVersion,
	}
}

// statusFromPB maps a public status filter value to the domain status.
func statusFromPB(s pb.Status) (lifecycle.Status, bool) {
	for k, v := range statusToPB {
		if v == s {
			return k, true
		}
	}
	return "", false
}

func callerToPB(c *state.Caller) *pb.Caller {
	if c == nil {
		return nil
	}
	return &pb.Caller{Name: c.Name, Roles: c.Roles, Authenticated: c.Authenticated, Address: c.Address}
}

// usageToPB lists every class of the vocabulary, in the seed's order.
func usageToPB(id string, v vocabulary.Vocabulary, r usage.Report, rev int64) *pb.InstanceUsage {
	out := &pb.InstanceUsage{InstanceId: id, Vocabulary: vocabularyToPB[v], StartTime: ts(r.From), EndTime: ts(r.To),
		Unclassified: durationpb.New(r.Time[vocabulary.BillingNone]), MeteredSince: ts(r.Since), Revision: rev}
	for _, c := range v.Classes() {
		out.Classes = append(out.Classes, &pb.BillingClassUsage{BillingClass: string(c), Duration: durationpb.New(r.Time[c])})
	}
	return out
}
