package convert

import (
	"testing"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Views come back in the order asked, in the seeds' words.
func TestInstanceViews(t *testing.T) {
	inst := &state.Instance{ID: "i-1", Desired: lifecycle.DesiredStopped, Power: lifecycle.PowerShutOff,
		Result: lifecycle.ResultSucceeded, HostID: "h", LastOpK: lifecycle.OpStop}
	got := InstanceToPB(inst, vocabulary.Azure, vocabulary.Nova).Views
	if len(got) != 2 {
		t.Fatalf("views %v", got)
	}
	az, nv := got[0], got[1]
	if az.Vocabulary != pb.Vocabulary_VOCABULARY_AZURE || az.Status != "stopped" || !az.Mapped ||
		az.Fields["provisioning"] != "ProvisioningState/succeeded" || az.Fields["power_state"] != "PowerState/stopped" ||
		az.BillingClass != "hardware-only" || az.CanonicalStatus != pb.Status_STATUS_STOPPED {
		t.Errorf("azure view %v", az)
	}
	if nv.Status != "STOPPED" || nv.Fields["vm_state"] != "stopped" || nv.Fields["power_state"] != "4" {
		t.Errorf("nova view %v", nv)
	}
	if len(InstanceToPB(inst).Views) != 0 {
		t.Error("views without asking")
	}
}
