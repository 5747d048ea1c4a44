package vocabulary

import "slices"

// SeedState is one state a seed document names, and where a view shows it.
type SeedState struct {
	Vocabulary Vocabulary
	// Word is the state as the seed spells it.
	Word string
	// Field is the view field that carries it; "" for the status word.
	Field string
	// Value is what Field holds in that state (Word when Field is "").
	Value string
	// Awaits names the operation Flotilla does not have yet that reaches
	// this state, and the issue that builds it; "" when it is reachable.
	Awaits string
	// Variants are other words the seed uses for the same state, in one
	// of its phases (RightScale's "stranded in decommissioning").
	Variants []string
}

// Shown reports whether view v shows the state.
func (s SeedState) Shown(v View) bool {
	if v.Vocabulary != s.Vocabulary {
		return false
	}
	if s.Field == "" {
		return v.Status == s.Value || slices.Contains(s.Variants, v.Status)
	}
	return v.Field(s.Field) == s.Value
}

const provisioningOf = "ProvisioningState/"

func status(v Vocabulary, w, awaits string) SeedState {
	return SeedState{Vocabulary: v, Word: w, Value: w, Awaits: awaits}
}

func azureProvisioningState(w, awaits string) SeedState {
	return SeedState{Vocabulary: Azure, Word: w, Field: FieldProvisioning, Value: provisioningOf + w, Awaits: awaits}
}

// Seeds is every state of the five seed documents (DESIGN.md section 2),
// in seed order: 63 in all.
var Seeds = []SeedState{
	status(ManageInstance, "starting", ""),
	status(ManageInstance, "running", ""),
	status(ManageInstance, "restarting", ""),
	status(ManageInstance, "shutting down", ""),
	status(ManageInstance, "offline", ""),
	status(ManageInstance, "terminating", ""),
	status(ManageInstance, "resizing", ""),
	status(ManageInstance, "bundling", ""),
	status(ManageInstance, "failed", ""),

	status(Nova, "BUILDING", ""),
	status(Nova, "ACTIVE", ""),
	status(Nova, "REBOOT", ""),
	status(Nova, "HARD_REBOOT", ""),
	status(Nova, "PASSWORD", ""),
	status(Nova, "PAUSED", ""),
	status(Nova, "SUSPENDED", ""),
	status(Nova, "STOPPED", ""),
	status(Nova, "RESIZED", ""),
	status(Nova, "VERIFY_RESIZE", ""),
	status(Nova, "REVERT_RESIZE", ""),
	status(Nova, "REBUILD", ""),
	status(Nova, "RESCUED", ""),
	status(Nova, "SOFT_DELETED", ""),
	status(Nova, "DELETED", ""),
	status(Nova, "ERROR", ""),
	status(Nova, "UNKNOWN", ""),

	status(RightScale, "bidding", ""),
	status(RightScale, "pending", ""),
	status(RightScale, "booting", ""),
	status(RightScale, "operational", ""),
	// "A server will strand whenever the execution of one of the scripts
	// fails during the boot/configuring/decommissioning phase": stranded
	// while it runs, stranded in decommissioning on its way down.
	{Vocabulary: RightScale, Word: "stranded", Value: "stranded", Variants: []string{"stranded in decommissioning"}},
	status(RightScale, "decommissioning", ""),
	status(RightScale, "shutting-down", ""),
	status(RightScale, "terminated", ""),
	status(RightScale, "stopping", ""),
	status(RightScale, "stopped", ""),
	status(RightScale, "error", ""),

	status(Azure, "starting", ""),
	status(Azure, "running", ""),
	status(Azure, "stopping", ""),
	status(Azure, "stopped", ""),
	status(Azure, "deallocating", ""),
	status(Azure, "deallocated", ""),
	azureProvisioningState("creating", ""),
	azureProvisioningState("updating", ""),
	azureProvisioningState("deleting", ""),
	azureProvisioningState("succeeded", ""),
	azureProvisioningState("failed", ""),
	azureProvisioningState("canceled", ""),
	{Vocabulary: Azure, Word: "OSProvisioningInprogress", Field: FieldOSProvisioning,
		Value: provisioningOf + "OSProvisioningInprogress"},
	{Vocabulary: Azure, Word: "OSProvisioningComplete", Field: FieldOSProvisioning,
		Value: provisioningOf + "OSProvisioningComplete"},

	status(ManagedInstance, "CREATING", ""),
	status(ManagedInstance, "CREATEFAILED", ""),
	status(ManagedInstance, "RUNNING", ""),
	status(ManagedInstance, "ERROR", ""),
	status(ManagedInstance, "RESTARTING", ""),
	status(ManagedInstance, "EXTENDING", ""),
	status(ManagedInstance, "EXTENDEDFAILED", ""),
	status(ManagedInstance, "DELETING", ""),
	status(ManagedInstance, "DELETED", ""),
	status(ManagedInstance, "FROZEN", ""),
	status(ManagedInstance, "UPGRADING", ""),
	status(ManagedInstance, "ROLLBACK", ""),
}

// Reachable counts the seed states Flotilla can reach today.
func Reachable() int {
	n := 0
	for _, s := range Seeds {
		if s.Awaits == "" {
			n++
		}
	}
	return n
}
