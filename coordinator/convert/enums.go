package convert

import (
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

var statuses = newEnum(map[lifecycle.Status]pb.Status{
	lifecycle.StatusCreating:                pb.Status_STATUS_CREATING,
	lifecycle.StatusStarting:                pb.Status_STATUS_STARTING,
	lifecycle.StatusRunning:                 pb.Status_STATUS_RUNNING,
	lifecycle.StatusStopping:                pb.Status_STATUS_STOPPING,
	lifecycle.StatusStopped:                 pb.Status_STATUS_STOPPED,
	lifecycle.StatusRebooting:               pb.Status_STATUS_REBOOTING,
	lifecycle.StatusHardRebooting:           pb.Status_STATUS_HARD_REBOOTING,
	lifecycle.StatusPausing:                 pb.Status_STATUS_PAUSING,
	lifecycle.StatusPaused:                  pb.Status_STATUS_PAUSED,
	lifecycle.StatusUnpausing:               pb.Status_STATUS_UNPAUSING,
	lifecycle.StatusSuspending:              pb.Status_STATUS_SUSPENDING,
	lifecycle.StatusSuspended:               pb.Status_STATUS_SUSPENDED,
	lifecycle.StatusResuming:                pb.Status_STATUS_RESUMING,
	lifecycle.StatusDeleting:                pb.Status_STATUS_DELETING,
	lifecycle.StatusDeleted:                 pb.Status_STATUS_DELETED,
	lifecycle.StatusError:                   pb.Status_STATUS_ERROR,
	lifecycle.StatusUnknown:                 pb.Status_STATUS_UNKNOWN,
	lifecycle.StatusUnexpectedShutoff:       pb.Status_STATUS_UNEXPECTED_SHUTOFF,
	lifecycle.StatusCrashed:                 pb.Status_STATUS_CRASHED,
	lifecycle.StatusPending:                 pb.Status_STATUS_PENDING,
	lifecycle.StatusBidding:                 pb.Status_STATUS_BIDDING,
	lifecycle.StatusMoving:                  pb.Status_STATUS_MOVING,
	lifecycle.StatusUpdating:                pb.Status_STATUS_UPDATING,
	lifecycle.StatusResizing:                pb.Status_STATUS_RESIZING,
	lifecycle.StatusVerifyResize:            pb.Status_STATUS_VERIFY_RESIZE,
	lifecycle.StatusConfirmingResize:        pb.Status_STATUS_CONFIRMING_RESIZE,
	lifecycle.StatusRevertingResize:         pb.Status_STATUS_REVERTING_RESIZE,
	lifecycle.StatusExtending:               pb.Status_STATUS_EXTENDING,
	lifecycle.StatusSettingPassword:         pb.Status_STATUS_SETTING_PASSWORD,
	lifecycle.StatusDecommissioning:         pb.Status_STATUS_DECOMMISSIONING,
	lifecycle.StatusStrandedDecommissioning: pb.Status_STATUS_STRANDED_DECOMMISSIONING,
	lifecycle.StatusFrozen:                  pb.Status_STATUS_FROZEN,
	lifecycle.StatusRebuilding:              pb.Status_STATUS_REBUILDING,
	lifecycle.StatusRescuing:                pb.Status_STATUS_RESCUING,
	lifecycle.StatusRescued:                 pb.Status_STATUS_RESCUED,
	lifecycle.StatusUnrescuing:              pb.Status_STATUS_UNRESCUING,
	lifecycle.StatusBundling:                pb.Status_STATUS_BUNDLING,
	lifecycle.StatusDeallocating:            pb.Status_STATUS_DEALLOCATING,
	lifecycle.StatusDeallocated:             pb.Status_STATUS_DEALLOCATED,
	lifecycle.StatusSoftDeleted:             pb.Status_STATUS_SOFT_DELETED,
	lifecycle.StatusRestoring:               pb.Status_STATUS_RESTORING,
	lifecycle.StatusUpgrading:               pb.Status_STATUS_UPGRADING,
	lifecycle.StatusRollback:                pb.Status_STATUS_ROLLBACK,
})

// StatusToPB maps an instance status to the public enum.
func StatusToPB(s lifecycle.Status) pb.Status { return statuses.pb(s) }

// StatusFromPB maps a public status (a list filter) to the domain one;
// false for UNSPECIFIED or a value this build does not know.
func StatusFromPB(s pb.Status) (lifecycle.Status, bool) { return statuses.domain(s) }

var desired = newEnum(map[lifecycle.Desired]pb.DesiredState{
	lifecycle.DesiredRunning:     pb.DesiredState_DESIRED_STATE_RUNNING,
	lifecycle.DesiredStopped:     pb.DesiredState_DESIRED_STATE_STOPPED,
	lifecycle.DesiredPaused:      pb.DesiredState_DESIRED_STATE_PAUSED,
	lifecycle.DesiredSuspended:   pb.DesiredState_DESIRED_STATE_SUSPENDED,
	lifecycle.DesiredDeleted:     pb.DesiredState_DESIRED_STATE_DELETED,
	lifecycle.DesiredDeallocated: pb.DesiredState_DESIRED_STATE_DEALLOCATED,
	lifecycle.DesiredSoftDeleted: pb.DesiredState_DESIRED_STATE_SOFT_DELETED,
})

// DesiredToPB maps a desired state to the public enum.
func DesiredToPB(d lifecycle.Desired) pb.DesiredState { return desired.pb(d) }

// powers is shared by the public API (the instance's power state) and the
// agent link (the power events agents report).
var powers = newEnum(map[lifecycle.Power]pb.PowerState{
	lifecycle.PowerNone:         pb.PowerState_POWER_STATE_UNSPECIFIED,
	lifecycle.PowerRunning:      pb.PowerState_POWER_STATE_RUNNING,
	lifecycle.PowerPaused:       pb.PowerState_POWER_STATE_PAUSED,
	lifecycle.PowerShuttingDown: pb.PowerState_POWER_STATE_SHUTTING_DOWN,
	lifecycle.PowerShutOff:      pb.PowerState_POWER_STATE_SHUT_OFF,
	lifecycle.PowerCrashed:      pb.PowerState_POWER_STATE_CRASHED,
	lifecycle.PowerSavedToDisk:  pb.PowerState_POWER_STATE_SAVED_TO_DISK,
	lifecycle.PowerNoDomain:     pb.PowerState_POWER_STATE_NO_DOMAIN,
	lifecycle.PowerUnknown:      pb.PowerState_POWER_STATE_UNKNOWN,
})

// PowerToPB maps an observed power state to the wire enum.
func PowerToPB(p lifecycle.Power) pb.PowerState { return powers.pb(p) }

// PowerFromPB maps a reported power state to the domain one; a value from a
// newer agent that this build does not know is PowerUnknown.
func PowerFromPB(p pb.PowerState) lifecycle.Power {
	if d, ok := powers.domain(p); ok {
		return d
	}
	return lifecycle.PowerUnknown
}

var results = newEnum(map[lifecycle.Result]pb.ProvisioningResult{
	lifecycle.ResultNone:       pb.ProvisioningResult_PROVISIONING_RESULT_UNSPECIFIED,
	lifecycle.ResultSucceeded:  pb.ProvisioningResult_PROVISIONING_RESULT_SUCCEEDED,
	lifecycle.ResultFailed:     pb.ProvisioningResult_PROVISIONING_RESULT_FAILED,
	lifecycle.ResultCanceled:   pb.ProvisioningResult_PROVISIONING_RESULT_CANCELED,
	lifecycle.ResultRolledBack: pb.ProvisioningResult_PROVISIONING_RESULT_ROLLED_BACK,
})

// ResultToPB maps how the last operation ended to the public enum.
func ResultToPB(r lifecycle.Result) pb.ProvisioningResult { return results.pb(r) }

var actions = newEnum(map[lifecycle.Action]pb.Action{
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
	lifecycle.ActionSetPassword:   pb.Action_ACTION_SET_PASSWORD,
	lifecycle.ActionRebuild:       pb.Action_ACTION_REBUILD,
	lifecycle.ActionRescue:        pb.Action_ACTION_RESCUE,
	lifecycle.ActionUnrescue:      pb.Action_ACTION_UNRESCUE,
	lifecycle.ActionBundle:        pb.Action_ACTION_BUNDLE,
	lifecycle.ActionMove:          pb.Action_ACTION_MOVE,
	lifecycle.ActionDeallocate:    pb.Action_ACTION_DEALLOCATE,
	lifecycle.ActionRestore:       pb.Action_ACTION_RESTORE,
	lifecycle.ActionUpgrade:       pb.Action_ACTION_UPGRADE,
})

// ActionToPB maps a user action to the public enum.
func ActionToPB(a lifecycle.Action) pb.Action { return actions.pb(a) }

// opKinds is shared by the public API (an operation's kind) and the agent
// link (the kind a step belongs to). OpNone has no wire value.
var opKinds = newEnum(map[lifecycle.OpKind]pb.OperationKind{
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
	lifecycle.OpSetPassword:   pb.OperationKind_OPERATION_KIND_SET_PASSWORD,
	lifecycle.OpRebuild:       pb.OperationKind_OPERATION_KIND_REBUILD,
	lifecycle.OpRescue:        pb.OperationKind_OPERATION_KIND_RESCUE,
	lifecycle.OpUnrescue:      pb.OperationKind_OPERATION_KIND_UNRESCUE,
	lifecycle.OpBundle:        pb.OperationKind_OPERATION_KIND_BUNDLE,
	lifecycle.OpDeallocate:    pb.OperationKind_OPERATION_KIND_DEALLOCATE,
	lifecycle.OpSoftDelete:    pb.OperationKind_OPERATION_KIND_SOFT_DELETE,
	lifecycle.OpRestore:       pb.OperationKind_OPERATION_KIND_RESTORE,
	lifecycle.OpUpgrade:       pb.OperationKind_OPERATION_KIND_UPGRADE,
})

// OpKindToPB maps an operation kind to the wire enum.
func OpKindToPB(k lifecycle.OpKind) pb.OperationKind { return opKinds.pb(k) }

var opStates = newEnum(map[state.OpState]pb.OperationState{
	state.OpPending:     pb.OperationState_OPERATION_STATE_PENDING,
	state.OpRunning:     pb.OperationState_OPERATION_STATE_RUNNING,
	state.OpSucceeded:   pb.OperationState_OPERATION_STATE_SUCCEEDED,
	state.OpFailed:      pb.OperationState_OPERATION_STATE_FAILED,
	state.OpCanceled:    pb.OperationState_OPERATION_STATE_CANCELED,
	state.OpRollingBack: pb.OperationState_OPERATION_STATE_ROLLING_BACK,
})

// OpStateToPB maps an operation's state to the public enum.
func OpStateToPB(s state.OpState) pb.OperationState { return opStates.pb(s) }

var stepStates = newEnum(map[state.StepState]pb.StepState{
	state.StepPending:     pb.StepState_STEP_STATE_PENDING,
	state.StepRunning:     pb.StepState_STEP_STATE_RUNNING,
	state.StepRetryWait:   pb.StepState_STEP_STATE_RETRY_WAIT,
	state.StepSucceeded:   pb.StepState_STEP_STATE_SUCCEEDED,
	state.StepFailed:      pb.StepState_STEP_STATE_FAILED,
	state.StepSkipped:     pb.StepState_STEP_STATE_SKIPPED,
	state.StepCompensated: pb.StepState_STEP_STATE_COMPENSATED,
})

// StepStateToPB maps a step's state to the public enum.
func StepStateToPB(s state.StepState) pb.StepState { return stepStates.pb(s) }

var recoveries = newEnum(map[state.RecoveryPolicy]pb.RecoveryPolicy{
	state.RecoverLeave:      pb.RecoveryPolicy_RECOVERY_POLICY_LEAVE,
	state.RecoverRestart:    pb.RecoveryPolicy_RECOVERY_POLICY_RESTART,
	state.RecoverMarkFailed: pb.RecoveryPolicy_RECOVERY_POLICY_MARK_FAILED,
})

// RecoveryPolicyToPB maps a recovery policy to the public enum.
func RecoveryPolicyToPB(p state.RecoveryPolicy) pb.RecoveryPolicy { return recoveries.pb(p) }

var vocabularies = newEnum(map[vocabulary.Vocabulary]pb.Vocabulary{
	vocabulary.ManageInstance:  pb.Vocabulary_VOCABULARY_MANAGE_INSTANCE,
	vocabulary.Nova:            pb.Vocabulary_VOCABULARY_NOVA,
	vocabulary.RightScale:      pb.Vocabulary_VOCABULARY_RIGHTSCALE,
	vocabulary.Azure:           pb.Vocabulary_VOCABULARY_AZURE,
	vocabulary.ManagedInstance: pb.Vocabulary_VOCABULARY_MANAGED_INSTANCE,
})

// VocabularyToPB maps a vocabulary to the public enum.
func VocabularyToPB(v vocabulary.Vocabulary) pb.Vocabulary { return vocabularies.pb(v) }

// VocabularyFromPB maps a requested vocabulary to the domain one; false for
// UNSPECIFIED or a value this build does not know.
func VocabularyFromPB(v pb.Vocabulary) (vocabulary.Vocabulary, bool) { return vocabularies.domain(v) }

// stepActions are what the agent is told to do. ActSwitchHost has no wire
// value: the coordinator does it itself.
var stepActions = newEnum(map[lifecycle.StepAction]agentv1.StepAction{
	lifecycle.ActCreate:         agentv1.StepAction_STEP_ACTION_CREATE,
	lifecycle.ActStart:          agentv1.StepAction_STEP_ACTION_START,
	lifecycle.ActStop:           agentv1.StepAction_STEP_ACTION_STOP,
	lifecycle.ActRestart:        agentv1.StepAction_STEP_ACTION_RESTART,
	lifecycle.ActHardRestart:    agentv1.StepAction_STEP_ACTION_HARD_RESTART,
	lifecycle.ActPause:          agentv1.StepAction_STEP_ACTION_PAUSE,
	lifecycle.ActUnpause:        agentv1.StepAction_STEP_ACTION_UNPAUSE,
	lifecycle.ActSuspend:        agentv1.StepAction_STEP_ACTION_SUSPEND,
	lifecycle.ActResume:         agentv1.StepAction_STEP_ACTION_RESUME,
	lifecycle.ActDelete:         agentv1.StepAction_STEP_ACTION_DELETE,
	lifecycle.ActOfferDisk:      agentv1.StepAction_STEP_ACTION_OFFER_DISK,
	lifecycle.ActImportDisk:     agentv1.StepAction_STEP_ACTION_IMPORT_DISK,
	lifecycle.ActUpdate:         agentv1.StepAction_STEP_ACTION_UPDATE,
	lifecycle.ActPreflight:      agentv1.StepAction_STEP_ACTION_PREFLIGHT,
	lifecycle.ActFreezeDisk:     agentv1.StepAction_STEP_ACTION_FREEZE_DISK,
	lifecycle.ActThawDisk:       agentv1.StepAction_STEP_ACTION_THAW_DISK,
	lifecycle.ActRefreeze:       agentv1.StepAction_STEP_ACTION_REFREEZE_DISK,
	lifecycle.ActReceiveDisk:    agentv1.StepAction_STEP_ACTION_RECEIVE_DISK,
	lifecycle.ActAdoptDisk:      agentv1.StepAction_STEP_ACTION_ADOPT_DISK,
	lifecycle.ActReshape:        agentv1.StepAction_STEP_ACTION_RESHAPE,
	lifecycle.ActUnshape:        agentv1.StepAction_STEP_ACTION_UNSHAPE,
	lifecycle.ActDropOrig:       agentv1.StepAction_STEP_ACTION_DROP_ORIGINAL,
	lifecycle.ActGrowDisk:       agentv1.StepAction_STEP_ACTION_GROW_DISK,
	lifecycle.ActSetPassword:    agentv1.StepAction_STEP_ACTION_SET_PASSWORD,
	lifecycle.ActDecommission:   agentv1.StepAction_STEP_ACTION_DECOMMISSION,
	lifecycle.ActRebuildDisk:    agentv1.StepAction_STEP_ACTION_REBUILD_DISK,
	lifecycle.ActRescueDomain:   agentv1.StepAction_STEP_ACTION_RESCUE_DOMAIN,
	lifecycle.ActUnrescueDomain: agentv1.StepAction_STEP_ACTION_UNRESCUE_DOMAIN,
	lifecycle.ActBundleDisk:     agentv1.StepAction_STEP_ACTION_BUNDLE_DISK,
	lifecycle.ActRelease:        agentv1.StepAction_STEP_ACTION_RELEASE_DOMAIN,
	lifecycle.ActDefine:         agentv1.StepAction_STEP_ACTION_DEFINE_DOMAIN,
	lifecycle.ActUpgradeDisk:    agentv1.StepAction_STEP_ACTION_UPGRADE_DISK,
	lifecycle.ActRollbackDisk:   agentv1.StepAction_STEP_ACTION_ROLLBACK_DISK,
	lifecycle.ActAwaitHealthy:   agentv1.StepAction_STEP_ACTION_AWAIT_HEALTHY,
	lifecycle.ActDropSnapshot:   agentv1.StepAction_STEP_ACTION_DROP_SNAPSHOT,
	lifecycle.ActFetchImage:     agentv1.StepAction_STEP_ACTION_FETCH_IMAGE,
})

// StepActionToPB maps a step's action to the agent link's enum.
func StepActionToPB(a lifecycle.StepAction) agentv1.StepAction { return stepActions.pb(a) }

var layers = newEnum(map[lifecycle.Layer]agentv1.DiskLayer{
	lifecycle.LayerWhole: agentv1.DiskLayer_DISK_LAYER_UNSPECIFIED,
	lifecycle.LayerBase:  agentv1.DiskLayer_DISK_LAYER_BASE,
	lifecycle.LayerMid:   agentv1.DiskLayer_DISK_LAYER_MID,
	lifecycle.LayerTop:   agentv1.DiskLayer_DISK_LAYER_TOP,
})

// LayerToPB maps the disk layer a copy step moves to the agent link's enum.
func LayerToPB(l lifecycle.Layer) agentv1.DiskLayer { return layers.pb(l) }

var networkModes = newEnum(map[state.NetworkMode]pb.NetworkMode{
	state.NetworkNAT:      pb.NetworkMode_NETWORK_MODE_NAT,
	state.NetworkIsolated: pb.NetworkMode_NETWORK_MODE_ISOLATED,
	state.NetworkBridge:   pb.NetworkMode_NETWORK_MODE_BRIDGE,
})

var readiness = newEnum(map[lifecycle.Readiness]pb.Readiness{
	lifecycle.ReadinessNone:        pb.Readiness_READINESS_UNSPECIFIED,
	lifecycle.ReadinessUnknown:     pb.Readiness_READINESS_UNKNOWN,
	lifecycle.ReadinessBooting:     pb.Readiness_READINESS_BOOTING,
	lifecycle.ReadinessOperational: pb.Readiness_READINESS_OPERATIONAL,
	lifecycle.ReadinessStranded:    pb.Readiness_READINESS_STRANDED,
})

// ReadinessToPB converts a readiness.
func ReadinessToPB(r lifecycle.Readiness) pb.Readiness { return readiness.pb(r) }
