package vocabulary

import (
	"strconv"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
)

// Every table below has a row for every canonical status but UPDATING,
// which Render shows as the state underneath, and the decommissioning
// statuses, which all but RightScale show as the stop or delete they
// belong to (see shown; a test holds them to lifecycle.AllStatuses); a row
// with no word is the seed having none, stated, not forgotten.
var unmapped = word{}

// manageInstanceWords is seed 000: eight words, stable (running, failed,
// offline) and transitional (starting, restarting, shutting down,
// terminating; resizing and bundling once those operations exist). It has
// no pause, suspend, host-unreachable or deleted state.
var manageInstanceWords = map[lifecycle.Status]word{
	lifecycle.StatusPending:       {Status: "starting"}, // launch accepted; the pre-flight checks wait for room
	lifecycle.StatusCreating:      {Status: "starting"}, // "shown almost immediately after ... launch"
	lifecycle.StatusStarting:      {Status: "starting"},
	lifecycle.StatusRunning:       {Status: "running"},
	lifecycle.StatusRebooting:     {Status: "restarting"},
	lifecycle.StatusHardRebooting: {Status: "restarting"},
	lifecycle.StatusStopping:      {Status: "shutting down"},
	lifecycle.StatusStopped:       {Status: "offline"},
	// Off without anyone asking: still offline in a system with no word for why.
	lifecycle.StatusUnexpectedShutoff: {Status: "offline"},
	lifecycle.StatusDeleting:          {Status: "terminating"},
	lifecycle.StatusError:             {Status: "failed"},
	lifecycle.StatusCrashed:           {Status: "failed"},
	lifecycle.StatusBidding:           unmapped,
	lifecycle.StatusPausing:           unmapped,
	lifecycle.StatusPaused:            unmapped,
	lifecycle.StatusUnpausing:         unmapped,
	lifecycle.StatusSuspending:        unmapped,
	lifecycle.StatusSuspended:         unmapped,
	lifecycle.StatusResuming:          unmapped,
	lifecycle.StatusDeleted:           unmapped, // the instance is simply gone
	lifecycle.StatusUnknown:           unmapped,
	lifecycle.StatusMoving:            unmapped,
	// "Resizing ... displayed during the resize process; then you will see
	// the Offline status again": the whole of it, a revert included.
	lifecycle.StatusResizing:         {Status: "resizing"},
	lifecycle.StatusExtending:        {Status: "resizing"},
	lifecycle.StatusConfirmingResize: {Status: "resizing"},
	lifecycle.StatusRevertingResize:  {Status: "resizing"},
	// The seed's password reset happens to a running instance.
	lifecycle.StatusSettingPassword: {Status: "running"},
	lifecycle.StatusFrozen:          unmapped, // the system has no tenants' lock
	// "Bundling: the instance is being bundled into an image", from offline.
	lifecycle.StatusBundling:   {Status: "bundling"},
	lifecycle.StatusRebuilding: unmapped,
	lifecycle.StatusRescuing:   unmapped,
	lifecycle.StatusRescued:    unmapped,
	lifecycle.StatusUnrescuing: unmapped,
	// The seed has no released host: a deallocated instance is offline.
	lifecycle.StatusDeallocating: {Status: "offline"},
	lifecycle.StatusDeallocated:  {Status: "offline"},
	lifecycle.StatusSoftDeleted:  unmapped, // no restorable deletion in the seed
	lifecycle.StatusRestoring:    unmapped,
	lifecycle.StatusUpgrading:    unmapped,
	lifecycle.StatusRollback:     unmapped,
}

func manageInstance(_ Input, s lifecycle.Status) View { return fromTable(manageInstanceWords, s) }

// novaRow is Nova's status with the vm_state and task_state behind it (as
// nova/api/openstack/common.py maps them); the status words are seed 001's.
type novaRow struct {
	Status, VMState, TaskState string
}

// novaRows: statuses whose row depends on more than the status (DELETING,
// UNKNOWN, UNEXPECTED_SHUTOFF, CRASHED, STOPPING, HARD_REBOOTING) are
// refined in nova below.
var novaRows = map[lifecycle.Status]novaRow{
	lifecycle.StatusPending:       {"BUILDING", "building", "scheduling"},
	lifecycle.StatusCreating:      {"BUILDING", "building", "spawning"},
	lifecycle.StatusStarting:      {"STOPPED", "stopped", "powering-on"},
	lifecycle.StatusRunning:       {"ACTIVE", "active", ""},
	lifecycle.StatusStopping:      {"ACTIVE", "active", "powering-off"},
	lifecycle.StatusStopped:       {"STOPPED", "stopped", ""},
	lifecycle.StatusRebooting:     {"REBOOT", "active", "rebooting"},
	lifecycle.StatusHardRebooting: {"HARD_REBOOT", "active", "rebooting_hard"},
	lifecycle.StatusPausing:       {"ACTIVE", "active", "pausing"},
	lifecycle.StatusPaused:        {"PAUSED", "paused", ""},
	// A frozen server is paused under the lock (Nova's own lock does not
	// change the status).
	lifecycle.StatusFrozen:            {"PAUSED", "paused", ""},
	lifecycle.StatusUnpausing:         {"PAUSED", "paused", "unpausing"},
	lifecycle.StatusSuspending:        {"ACTIVE", "active", "suspending"},
	lifecycle.StatusSuspended:         {"SUSPENDED", "suspended", ""},
	lifecycle.StatusResuming:          {"SUSPENDED", "suspended", "resuming"},
	lifecycle.StatusDeleting:          {"", "", "deleting"},
	lifecycle.StatusDeleted:           {"DELETED", "deleted", ""},
	lifecycle.StatusError:             {"ERROR", "error", ""},
	lifecycle.StatusUnknown:           {"UNKNOWN", "", ""},
	lifecycle.StatusUnexpectedShutoff: {"", "", ""},
	lifecycle.StatusCrashed:           {"", "", ""},
	// Nova has no waiting for spare capacity (a server that does not fit is
	// ERROR/NoValidHost), and calls a cold move RESIZE/MIGRATING: words
	// that seed 001 does not have.
	lifecycle.StatusBidding: {},
	lifecycle.StatusMoving:  {},
	// While the disk's bulk copy runs the server is up: Nova's RESIZE, not
	// a word of the seed's; refined below for the stage when it is down
	// (RESIZED) and for a failed resize being undone (REVERT_RESIZE).
	lifecycle.StatusResizing:         {},
	lifecycle.StatusVerifyResize:     {"VERIFY_RESIZE", "resized", ""},
	lifecycle.StatusConfirmingResize: {"VERIFY_RESIZE", "resized", "resize_confirming"},
	lifecycle.StatusRevertingResize:  {"REVERT_RESIZE", "resized", "resize_reverting"},
	lifecycle.StatusExtending:        {},
	// "The password is being reset on the server": Nova's ACTIVE server
	// with task_state updating_password.
	lifecycle.StatusSettingPassword: {"PASSWORD", "active", "updating_password"},
	// Nova's rebuild: vm_state active, task_state rebuilding, status REBUILD.
	lifecycle.StatusRebuilding: {"REBUILD", "active", "rebuilding"},
	// Nova's rescue: the server is ACTIVE with task rescuing, then RESCUED
	// (vm_state rescued) until unrescued.
	lifecycle.StatusRescuing:   {"ACTIVE", "active", "rescuing"},
	lifecycle.StatusRescued:    {"RESCUED", "rescued", ""},
	lifecycle.StatusUnrescuing: {"RESCUED", "rescued", "unrescuing"},
	// A stopped server's snapshot into an image (Nova's image_snapshot task).
	lifecycle.StatusBundling: {"STOPPED", "stopped", "image_snapshot"},
	// Nova's nearest is SHELVED_OFFLOADED, not a word of the seed's.
	lifecycle.StatusDeallocating: {},
	lifecycle.StatusDeallocated:  {},
	// "The server is marked as deleted but the disk images are still
	// available to restore"; Nova's restore runs under task restoring.
	lifecycle.StatusSoftDeleted: {"SOFT_DELETED", "soft-delete", ""},
	lifecycle.StatusRestoring:   {"SOFT_DELETED", "soft-delete", "restoring"},
	// An image or model change is Nova's REBUILD or RESIZE, neither this.
	lifecycle.StatusUpgrading: {},
	lifecycle.StatusRollback:  {},
}

// novaPower is Nova's power_state for the observed power state, as its
// libvirt driver maps libvirt's states (nova/compute/power_state.py:
// NOSTATE 0, RUNNING 1, PAUSED 3, SHUTDOWN 4, CRASHED 6, SUSPENDED 7).
var novaPower = map[lifecycle.Power]int{
	lifecycle.PowerNone:         0,
	lifecycle.PowerRunning:      1,
	lifecycle.PowerPaused:       3,
	lifecycle.PowerShuttingDown: 4, // libvirt's SHUTDOWN (being shut down) is Nova's SHUTDOWN
	lifecycle.PowerShutOff:      4,
	lifecycle.PowerCrashed:      6,
	lifecycle.PowerSavedToDisk:  4, // a managed-saved domain is shut off to libvirt
	lifecycle.PowerNoDomain:     0,
	lifecycle.PowerUnknown:      0,
}

// novaByDesired is the status and vm_state Nova keeps while what the
// hypervisor reports disagrees with the user's last request (Nova's
// vm_state is that request; its power_state shows the disagreement).
var novaByDesired = map[lifecycle.Desired]novaRow{
	lifecycle.DesiredRunning:   {"ACTIVE", "active", ""},
	lifecycle.DesiredStopped:   {"STOPPED", "stopped", ""},
	lifecycle.DesiredPaused:    {"PAUSED", "paused", ""},
	lifecycle.DesiredSuspended: {"SUSPENDED", "suspended", ""},
	lifecycle.DesiredDeleted:   {"DELETED", "deleted", ""},
}

// novaByPower is the status and vm_state for what the hypervisor shows,
// while a delete runs (Nova keeps the vm_state and sets task deleting; once
// the domain is destroyed it sets vm_state deleted before it clears the task).
var novaByPower = map[lifecycle.Power]novaRow{
	lifecycle.PowerRunning:      {"ACTIVE", "active", ""},
	lifecycle.PowerShuttingDown: {"ACTIVE", "active", ""},
	lifecycle.PowerPaused:       {"PAUSED", "paused", ""},
	lifecycle.PowerSavedToDisk:  {"SUSPENDED", "suspended", ""},
	lifecycle.PowerShutOff:      {"STOPPED", "stopped", ""},
	lifecycle.PowerNoDomain:     {"DELETED", "deleted", ""},
	lifecycle.PowerUnknown:      {"UNKNOWN", "", ""}, // Nova shows UNKNOWN while the host is down
}

func nova(in Input, s lifecycle.Status) View {
	r := novaRows[s]
	switch s {
	case lifecycle.StatusStopping:
		if in.Op != lifecycle.OpStop {
			r.TaskState = "" // the guest is shutting itself down: no task of Nova's
		}
	case lifecycle.StatusHardRebooting:
		if in.Power == lifecycle.PowerShutOff {
			r.VMState = "stopped" // a hard reboot from STOPPED boots it
		}
	case lifecycle.StatusDeleting:
		by, ok := novaByPower[in.Power]
		if !ok {
			by = novaRow{"ERROR", "error", ""}
		}
		r.Status, r.VMState = by.Status, by.VMState
		if in.Op == lifecycle.OpSoftDelete {
			r.TaskState = "soft-deleting"
		}
	case lifecycle.StatusUnknown:
		r.VMState = novaByDesired[in.Desired].VMState
	case lifecycle.StatusUnexpectedShutoff, lifecycle.StatusCrashed:
		by, ok := novaByDesired[in.Desired]
		if !ok {
			by = novaRow{"ERROR", "error", ""}
		}
		r.Status, r.VMState = by.Status, by.VMState
	case lifecycle.StatusResizing:
		switch {
		case in.RollingBack:
			// "The resize ... failed. The destination server is being
			// cleaned up and the original source server is restarting."
			r = novaRow{"REVERT_RESIZE", novaByDesired[in.Desired].VMState, "resize_reverting"}
		case in.Power == lifecycle.PowerShutOff && in.Desired == lifecycle.DesiredRunning:
			// "performing the differential copy of data that changed during
			// its initial copy. Server is down for this stage."
			r = novaRow{"RESIZED", "active", "resize_migrating"}
		}
	}
	if r.Status == "" {
		return View{Status: Unmapped}
	}
	v := View{Status: r.Status, Fields: []Field{{FieldVMState, r.VMState}}}
	if r.TaskState != "" {
		v.Fields = append(v.Fields, Field{FieldTaskState, r.TaskState})
	}
	v.Fields = append(v.Fields, Field{FieldPowerState, strconv.Itoa(novaPower[in.Power])})
	return v
}

// rightScaleWords is seed 002 for a server launched without boot or
// decommission scripts (the seed's "bare instance"): until the guest can
// say it finished booting, a running server is operational and a
// terminated one skips decommissioning. Billing is the seed's (on EC2).
var rightScaleWords = map[lifecycle.Status]word{
	lifecycle.StatusBidding:  {Status: "bidding"},
	lifecycle.StatusPending:  {Status: "pending", Billing: BillingNotCharged},
	lifecycle.StatusCreating: {Status: "pending", Billing: BillingNotCharged},
	lifecycle.StatusStarting: {Status: "pending", Billing: BillingNotCharged},
	lifecycle.StatusRunning:  {Status: "operational", Billing: BillingInstanceUsage},
	// "When you reboot a running instance it will ... transition directly
	// to the 'booting' state without ever being completely shutdown."
	lifecycle.StatusRebooting:         {Status: "booting", Billing: BillingInstanceUsage},
	lifecycle.StatusHardRebooting:     {Status: "booting", Billing: BillingInstanceUsage},
	lifecycle.StatusStopping:          {Status: "stopping", Billing: BillingStorageOnly},
	lifecycle.StatusStopped:           {Status: "stopped", Billing: BillingStorageOnly},
	lifecycle.StatusUnexpectedShutoff: {Status: "stopped", Billing: BillingStorageOnly},
	lifecycle.StatusDeleting:          {Status: "shutting-down"},
	lifecycle.StatusDeleted:           {Status: "terminated", Billing: BillingNotCharged},
	lifecycle.StatusError:             {Status: "error"},
	lifecycle.StatusCrashed:           {Status: "error"},
	lifecycle.StatusPausing:           unmapped,
	lifecycle.StatusPaused:            unmapped,
	lifecycle.StatusUnpausing:         unmapped,
	lifecycle.StatusSuspending:        unmapped,
	lifecycle.StatusSuspended:         unmapped,
	lifecycle.StatusResuming:          unmapped,
	lifecycle.StatusUnknown:           unmapped,
	lifecycle.StatusMoving:            unmapped,
	lifecycle.StatusResizing:          unmapped,
	lifecycle.StatusExtending:         unmapped,
	lifecycle.StatusConfirmingResize:  unmapped,
	lifecycle.StatusRevertingResize:   unmapped,
	// A password set inside the guest leaves the server as it was.
	lifecycle.StatusSettingPassword: {Status: "operational", Billing: BillingInstanceUsage},
	// "RightScale will explicitly run the decommission scripts ... before it
	// makes a request to the cloud infrastructure to terminate the instance.
	// As a result, you may still incur cloud instance usage costs"; "If a
	// script fails to run during the 'decommissioning' state ... a server
	// may become stranded in decommissioning. Typically, a server will
	// still be terminated" (or stopped: "force a terminate or stop").
	lifecycle.StatusDecommissioning:         {Status: "decommissioning", Billing: BillingInstanceUsage},
	lifecycle.StatusStrandedDecommissioning: {Status: "stranded in decommissioning", Billing: BillingInstanceUsage},
	lifecycle.StatusFrozen:                  unmapped,
	// A rebuild boots the server again from a fresh disk.
	lifecycle.StatusRebuilding: {Status: "booting", Billing: BillingInstanceUsage},
	lifecycle.StatusRescuing:   unmapped,
	lifecycle.StatusRescued:    unmapped,
	lifecycle.StatusUnrescuing: unmapped,
	// Imaging a stopped server leaves it stopped: its volumes are what is billed.
	lifecycle.StatusBundling: {Status: "stopped", Billing: BillingStorageOnly},
	// An EBS-backed server that is stopped gives up its host on EC2
	// anyway: stopping, then stopped, with its volumes charged.
	lifecycle.StatusDeallocating: {Status: "stopping", Billing: BillingStorageOnly},
	lifecycle.StatusDeallocated:  {Status: "stopped", Billing: BillingStorageOnly},
	lifecycle.StatusSoftDeleted:  unmapped,
	lifecycle.StatusRestoring:    unmapped,
	lifecycle.StatusUpgrading:    unmapped,
	lifecycle.StatusRollback:     unmapped,
}

// rightScale refines a running server by what its guest said about its
// boot (a server whose guest never speaks is the seed's bare instance:
// operational): "booting" while its boot scripts run, "operational" once
// they finished, "stranded" when they failed or did not finish in time.
// All three are billed as the instance runs.
func rightScale(in Input, s lifecycle.Status) View {
	if s == lifecycle.StatusRunning {
		switch in.Readiness {
		case lifecycle.ReadinessBooting:
			return fromWord(word{Status: "booting", Billing: BillingInstanceUsage})
		case lifecycle.ReadinessStranded:
			return fromWord(word{Status: "stranded", Billing: BillingInstanceUsage})
		}
	}
	return fromTable(rightScaleWords, s)
}

// azurePowerWords is seed 003's power state (the view's status word) for
// each canonical status, with the seed's billing for that power state.
// DELETING and ERROR show what the hypervisor reports (azureObserved).
var azurePowerWords = map[lifecycle.Status]word{
	lifecycle.StatusPending:  {Status: "starting", Billing: BillingNotBilled}, // "ProvisioningState/creating" + "PowerState/starting"
	lifecycle.StatusCreating: {Status: "starting", Billing: BillingNotBilled},
	lifecycle.StatusStarting: {Status: "starting", Billing: BillingNotBilled},
	// A restart is an update that starts the VM again.
	lifecycle.StatusRebooting:     {Status: "starting", Billing: BillingNotBilled},
	lifecycle.StatusHardRebooting: {Status: "starting", Billing: BillingNotBilled},
	lifecycle.StatusRunning:       {Status: "running", Billing: BillingHardwareAndSoftware},
	// "Status of the VM when a VM is either stopped from client or guest OS."
	lifecycle.StatusStopping: {Status: "stopping", Billing: BillingHardwareAndSoftware},
	lifecycle.StatusStopped:  {Status: "stopped", Billing: BillingHardwareOnly},
	// "State occurs when a VM has been shut down from the guest OS."
	lifecycle.StatusUnexpectedShutoff: {Status: "stopped", Billing: BillingHardwareOnly},
	lifecycle.StatusDeleting:          unmapped, // refined by azureObserved
	lifecycle.StatusError:             unmapped, // refined by azureObserved
	lifecycle.StatusBidding:           unmapped,
	lifecycle.StatusPausing:           unmapped,
	lifecycle.StatusPaused:            unmapped,
	lifecycle.StatusUnpausing:         unmapped,
	lifecycle.StatusSuspending:        unmapped,
	lifecycle.StatusSuspended:         unmapped,
	lifecycle.StatusResuming:          unmapped,
	lifecycle.StatusDeleted:           unmapped, // a deleted VM no longer exists to have a state
	lifecycle.StatusUnknown:           unmapped,
	lifecycle.StatusCrashed:           unmapped,
	lifecycle.StatusMoving:            unmapped,
	// Changing the VM's size is an update of its model (ProvisioningState/
	// updating); the power state is what the guest is doing meanwhile.
	lifecycle.StatusResizing:         unmapped, // refined by azureObserved
	lifecycle.StatusExtending:        unmapped, // refined by azureObserved
	lifecycle.StatusConfirmingResize: unmapped, // refined by azureObserved
	lifecycle.StatusRevertingResize:  unmapped, // refined by azureObserved
	// Azure resets a password through a VM extension: an update
	// (ProvisioningState/updating) of a running VM.
	lifecycle.StatusSettingPassword: {Status: "running", Billing: BillingHardwareAndSoftware},
	lifecycle.StatusFrozen:          unmapped,
	// Reimaging, rescuing and capturing an image are updates of the VM
	// (ProvisioningState/updating); the power state is what the hypervisor
	// reports meanwhile.
	lifecycle.StatusRebuilding: unmapped, // refined by azureObserved
	lifecycle.StatusRescuing:   unmapped, // refined by azureObserved
	lifecycle.StatusRescued:    {Status: "running", Billing: BillingHardwareAndSoftware},
	lifecycle.StatusUnrescuing: unmapped, // refined by azureObserved
	lifecycle.StatusBundling:   {Status: "stopped", Billing: BillingHardwareOnly},
	// "when the user stops the VM using client APIs VM transitions to
	// deallocating"; "VM is stopped and removed/deallocated from the host".
	lifecycle.StatusDeallocating: {Status: "deallocating", Billing: BillingHardwareOnly},
	lifecycle.StatusDeallocated:  {Status: "deallocated", Billing: BillingNotBilled},
	lifecycle.StatusSoftDeleted:  unmapped, // a deleted VM no longer exists to have a state
	lifecycle.StatusRestoring:    unmapped,
	// A model change (ProvisioningState/updating); the power state is what
	// the guest does meanwhile.
	lifecycle.StatusUpgrading: unmapped, // refined by azureObserved
	lifecycle.StatusRollback:  unmapped, // refined by azureObserved
}

// azureObserved is the power state for what the hypervisor reports, used
// while a delete runs and after a failure.
var azureObserved = map[lifecycle.Power]word{
	lifecycle.PowerRunning:      {Status: "running", Billing: BillingHardwareAndSoftware},
	lifecycle.PowerShuttingDown: {Status: "stopping", Billing: BillingHardwareAndSoftware},
	lifecycle.PowerShutOff:      {Status: "stopped", Billing: BillingHardwareOnly},
}

// azureProvisioning is the ProvisioningState for the operation in flight or,
// with none, for how the last one ended.
func azureProvisioning(in Input) string {
	switch in.Op {
	case lifecycle.OpNone:
	case lifecycle.OpCreate:
		return "creating"
	case lifecycle.OpDelete:
		return "deleting"
	default:
		// "Some non-model changes to VM such as start/Restart also fall under update."
		return "updating"
	}
	switch in.Result {
	case lifecycle.ResultSucceeded:
		return "succeeded"
	case lifecycle.ResultFailed, lifecycle.ResultRolledBack:
		// Rolled back is the seed's edge case: the operation failed and the
		// VM kept its original model.
		return "failed"
	case lifecycle.ResultCanceled:
		return "canceled"
	}
	return ""
}

// azureWord is the power state word, and its billing, for a canonical status.
func azureWord(in Input, s lifecycle.Status) word {
	switch s {
	case lifecycle.StatusDeleting, lifecycle.StatusError, lifecycle.StatusResizing, lifecycle.StatusExtending,
		lifecycle.StatusConfirmingResize, lifecycle.StatusRevertingResize,
		lifecycle.StatusRebuilding, lifecycle.StatusRescuing, lifecycle.StatusUnrescuing,
		lifecycle.StatusUpgrading, lifecycle.StatusRollback:
		if w, ok := azureObserved[in.Power]; ok {
			return w
		}
	}
	return azurePowerWords[s]
}

func azure(in Input, s lifecycle.Status) View {
	v := fromWord(azureWord(in, s))
	if p := azureProvisioning(in); p != "" && s != lifecycle.StatusDeleted {
		v.Fields = append(v.Fields, Field{FieldProvisioning, "ProvisioningState/" + p})
	}
	if v.Status != Unmapped {
		v.Fields = append(v.Fields, Field{FieldPowerState, "PowerState/" + v.Status})
	}
	if p := azureOSProvisioning[in.Readiness]; p != "" && v.Status == "running" {
		v.Fields = append(v.Fields, Field{FieldOSProvisioning, "ProvisioningState/" + p})
	}
	return v
}

// azureOSProvisioning is seed 003's OS provisioning substate of a running
// VM, from what its guest said: "OSProvisioningInprogress – The VM is
// running, and installation of guest OS is in progress", then
// "OSProvisioningComplete"; "OS Provisioning can transition to Failed if
// OS fails or if OS fails to install in time". A VM whose guest never
// speaks (a specialized image, in the seed's terms) has none.
var azureOSProvisioning = map[lifecycle.Readiness]string{
	lifecycle.ReadinessBooting:     "OSProvisioningInprogress",
	lifecycle.ReadinessOperational: "OSProvisioningComplete",
	lifecycle.ReadinessStranded:    "failed",
}

// managedInstanceWords is seed 004. It has no stopped, paused or suspended
// instance; an instance that should run and does not is "not running
// properly" (ERROR).
var managedInstanceWords = map[lifecycle.Status]word{
	lifecycle.StatusPending:           {Status: "CREATING"},
	lifecycle.StatusCreating:          {Status: "CREATING"},
	lifecycle.StatusRunning:           {Status: "RUNNING"},
	lifecycle.StatusRebooting:         {Status: "RESTARTING"},
	lifecycle.StatusHardRebooting:     {Status: "RESTARTING"},
	lifecycle.StatusDeleting:          {Status: "DELETING"},
	lifecycle.StatusDeleted:           {Status: "DELETED"},
	lifecycle.StatusError:             {Status: "ERROR"}, // CREATEFAILED when the create failed
	lifecycle.StatusUnexpectedShutoff: {Status: "ERROR"},
	lifecycle.StatusCrashed:           {Status: "ERROR"},
	lifecycle.StatusBidding:           unmapped,
	lifecycle.StatusStarting:          unmapped,
	lifecycle.StatusStopping:          unmapped,
	lifecycle.StatusStopped:           unmapped,
	lifecycle.StatusPausing:           unmapped,
	lifecycle.StatusPaused:            unmapped,
	lifecycle.StatusUnpausing:         unmapped,
	lifecycle.StatusSuspending:        unmapped,
	lifecycle.StatusSuspended:         unmapped,
	lifecycle.StatusResuming:          unmapped,
	lifecycle.StatusUnknown:           unmapped,
	lifecycle.StatusMoving:            unmapped,
	// "The instance specifications are being changed": a resize, an
	// extend, and the confirm or revert that ends a resize.
	lifecycle.StatusResizing:         {Status: "EXTENDING"},
	lifecycle.StatusExtending:        {Status: "EXTENDING"},
	lifecycle.StatusConfirmingResize: {Status: "EXTENDING"},
	lifecycle.StatusRevertingResize:  {Status: "EXTENDING"},
	// Nothing of the instance's specification changes.
	lifecycle.StatusSettingPassword: {Status: "RUNNING"},
	// "The instance has been frozen due to insufficient account balance."
	lifecycle.StatusFrozen: {Status: "FROZEN"},
	// Seed 004 has no rebuild, rescue or image capture.
	lifecycle.StatusRebuilding:   unmapped,
	lifecycle.StatusRescuing:     unmapped,
	lifecycle.StatusRescued:      unmapped,
	lifecycle.StatusUnrescuing:   unmapped,
	lifecycle.StatusBundling:     unmapped,
	lifecycle.StatusDeallocating: unmapped,
	lifecycle.StatusDeallocated:  unmapped,
	lifecycle.StatusSoftDeleted:  unmapped,
	lifecycle.StatusRestoring:    unmapped,
	// "The instance is being upgraded"; "The instance is being rolled back."
	lifecycle.StatusUpgrading: {Status: "UPGRADING"},
	lifecycle.StatusRollback:  {Status: "ROLLBACK"},
}

func managedInstance(in Input, s lifecycle.Status) View {
	v := fromTable(managedInstanceWords, s)
	switch {
	case s == lifecycle.StatusError && in.LastOp == lifecycle.OpCreate && in.Result != lifecycle.ResultSucceeded:
		v.Status = "CREATEFAILED" // "The instance fails to be created."
	case in.Op == lifecycle.OpNone && (in.LastOp == lifecycle.OpResize || in.LastOp == lifecycle.OpExtend) &&
		(in.Result == lifecycle.ResultFailed || in.Result == lifecycle.ResultRolledBack):
		// "The instance specifications failed to be changed", whether the
		// instance was left as it was or broken by the failure.
		v.Status = "EXTENDEDFAILED"
	}
	return v
}
