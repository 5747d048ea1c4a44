package e2e

import (
	"strings"
	"testing"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestUpdateModel changes a running guest's name, labels and recovery
// policy through grpcurl: the watch shows UPDATING (Azure's
// "ProvisioningState/updating") while the guest keeps running, libvirt's
// domain title follows the new name live and in its definition, and a
// refused update changes nothing.
func TestUpdateModel(t *testing.T) {
	e := newEnv(t, nil, nil)
	id := e.create("before")
	list := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", nil)
	w := e.g.Stream("flotilla.v1.InstanceService/WatchInstances", map[string]any{"startRevision": testenv.Str(list, "revision"),
		"instanceId": id, "vocabularies": []string{"VOCABULARY_AZURE"}})
	var h history
	go h.record(w)

	op := e.do("UpdateInstance", map[string]any{"id": id, "updateMask": map[string]any{"paths": []string{"name", "labels", "recovery"}}, "name": "after",
		"labels": map[string]string{"team": "db"}, "recovery": map[string]any{"policy": "RECOVERY_POLICY_RESTART", "maxRestarts": 2}})
	e.mustSucceed(op)
	if testenv.Str(op, "kind") != "OPERATION_KIND_UPDATE" {
		t.Fatalf("operation: %v", op)
	}
	inst := e.instance(id)
	if testenv.Str(inst, "name") != "after" || testenv.Str(inst, "labels", "team") != "db" ||
		testenv.Str(inst, "recovery", "policy") != "RECOVERY_POLICY_RESTART" || testenv.Str(inst, "status") != "STATUS_RUNNING" {
		t.Fatalf("after the update: %v", inst)
	}
	for _, where := range []string{"--live", "--config"} {
		if out, err := virsh(t, "desc", "flotilla-"+id, "--title", where); err != nil || strings.TrimSpace(out) != "after" {
			t.Fatalf("libvirt title (%s): %q %v", where, out, err)
		}
	}
	if domstate(t, id) != "running" {
		t.Fatalf("the guest stopped for an update: %s", domstate(t, id))
	}
	h.waitSeen(t, id, "STATUS_UPDATING")
	updating := vocabSeed("azure", "updating")
	if !h.shown(id, "STATUS_UPDATING", updating) {
		t.Fatalf("the watch showed no ProvisioningState/updating while updating:\n%s", h.of(id))
	}

	// Refused: a field that cannot change without a reboot, and a bad name.
	for _, bad := range []map[string]any{
		{"id": id, "updateMask": map[string]any{"paths": []string{"spec"}}, "name": "x"},
		{"id": id, "updateMask": map[string]any{"paths": []string{"name"}}, "name": "Not A Name"},
	} {
		if _, err := e.g.Call("flotilla.v1.InstanceService/UpdateInstance", bad); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
			t.Fatalf("update %v: %v", bad, err)
		}
	}
	// A stopped guest is renamed in its definition alone; the labels go.
	e.waitGuestReady(id, 1)
	e.mustSucceed(e.do("StopInstance", map[string]any{"id": id, "gracefulTimeout": "60s"}))
	e.mustSucceed(e.do("UpdateInstance", map[string]any{"id": id, "updateMask": map[string]any{"paths": []string{"name", "labels"}}, "name": "stopped-one"}))
	if out, err := virsh(t, "desc", "flotilla-"+id, "--title", "--config"); err != nil || strings.TrimSpace(out) != "stopped-one" {
		t.Fatalf("libvirt title of the stopped domain: %q %v", out, err)
	}
	inst = e.instance(id)
	if testenv.Str(inst, "name") != "stopped-one" || len(inst["labels"].(map[string]any)) != 0 || testenv.Str(inst, "status") != "STATUS_STOPPED" {
		t.Fatalf("after the second update: %v", inst)
	}
	ops := e.g.MustCall("flotilla.v1.OperationService/ListOperations", map[string]any{"instanceId": id})
	if n := len(ops["operations"].([]any)); n != 4 {
		t.Fatalf("%d operations, want 4 (create, update, stop, update): refused updates must record nothing", n)
	}
}
