package e2e

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestBadInputChangesNothing sends malformed and disallowed requests through
// grpcurl and requires the right gRPC code for each, with no change to the
// coordinator's state.
func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t, nil, nil)
	id := e.create("target")
	before := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", map[string]any{"showDeleted": true})
	opsBefore := e.g.MustCall("flotilla.v1.OperationService/ListOperations", nil)

	spec := func(vcpus, mem int, image string) map[string]any {
		return map[string]any{"vcpus": vcpus, "memoryMib": mem, "image": image}
	}
	cases := []struct {
		name, method string
		req          map[string]any
		code         codes.Code
		mention      string // a word the error message must contain
	}{
		{"empty create", "InstanceService/CreateInstance", map[string]any{}, codes.InvalidArgument, "name"},
		{"missing spec", "InstanceService/CreateInstance", map[string]any{"name": "a"}, codes.InvalidArgument, "spec"},
		{"negative vcpus", "InstanceService/CreateInstance", map[string]any{"name": "a", "spec": spec(-1, 256, "flotilla-test")}, codes.InvalidArgument, "spec.vcpus"},
		{"negative memory", "InstanceService/CreateInstance", map[string]any{"name": "a", "spec": spec(1, -256, "flotilla-test")}, codes.InvalidArgument, "spec.memory_mib"},
		{"negative disk", "InstanceService/CreateInstance", map[string]any{"name": "a", "spec": map[string]any{"vcpus": 1, "memoryMib": 256, "diskGib": -1, "image": "flotilla-test"}}, codes.InvalidArgument, "spec.disk_gib"},
		{"xml in name", "InstanceService/CreateInstance", map[string]any{"name": "a'/><devices>&x", "spec": spec(1, 256, "flotilla-test")}, codes.InvalidArgument, "name"},
		{"path in name", "InstanceService/CreateInstance", map[string]any{"name": "../../etc/passwd", "spec": spec(1, 256, "flotilla-test")}, codes.InvalidArgument, "name"},
		{"image outside dir", "InstanceService/CreateInstance", map[string]any{"name": "a", "spec": spec(1, 256, "../../../etc/passwd")}, codes.InvalidArgument, "spec.image"},
		{"absolute image", "InstanceService/CreateInstance", map[string]any{"name": "a", "spec": spec(1, 256, "/etc/passwd")}, codes.InvalidArgument, "spec.image"},
		{"bad request id", "InstanceService/CreateInstance", map[string]any{"name": "a", "spec": spec(1, 256, "flotilla-test"), "requestId": "a b/c"}, codes.InvalidArgument, "request_id"},
		{"too big for any host", "InstanceService/CreateInstance", map[string]any{"name": "a", "spec": spec(64, 262144, "flotilla-test")}, codes.ResourceExhausted, ""},
		{"unknown instance", "InstanceService/GetInstance", map[string]any{"id": "i-00000000000000000000"}, codes.NotFound, "i-00000000000000000000"},
		{"unknown instance stop", "InstanceService/StopInstance", map[string]any{"id": "i-00000000000000000000"}, codes.NotFound, ""},
		{"malformed id", "InstanceService/PauseInstance", map[string]any{"id": "../x"}, codes.InvalidArgument, "id"},
		{"missing id", "InstanceService/DeleteInstance", map[string]any{}, codes.InvalidArgument, "id"},
		{"unknown operation", "OperationService/GetOperation", map[string]any{"id": "op-00000000000000000000"}, codes.NotFound, ""},
		{"unknown host", "HostService/GetHost", map[string]any{"id": "no-such-host"}, codes.NotFound, ""},
		{"graceful too short", "InstanceService/StopInstance", map[string]any{"id": id, "gracefulTimeout": "0.5s"}, codes.InvalidArgument, "graceful_timeout"},
		{"unpause a running instance", "InstanceService/UnpauseInstance", map[string]any{"id": id}, codes.FailedPrecondition, "allowed: stop, restart, pause, suspend, delete, update, resize, extend, move, set-password, rebuild, rescue, upgrade)"},
		{"resize to the same shape", "InstanceService/ResizeInstance", map[string]any{"id": id, "vcpus": 1}, codes.InvalidArgument, "that shape already"},
		{"resize to a negative disk", "InstanceService/ResizeInstance", map[string]any{"id": id, "diskGib": -1}, codes.InvalidArgument, "disk_gib"},
		{"resize beyond any host", "InstanceService/ResizeInstance", map[string]any{"id": id, "vcpus": 64, "memoryMib": 262144}, codes.ResourceExhausted, ""},
		{"resize to an unknown host", "InstanceService/ResizeInstance", map[string]any{"id": id, "vcpus": 2, "targetHostId": "no-such-host"}, codes.NotFound, ""},
		{"confirm with nothing to confirm", "InstanceService/ConfirmResize", map[string]any{"id": id}, codes.FailedPrecondition, "allowed"},
		{"revert with nothing to revert", "InstanceService/RevertResize", map[string]any{"id": id}, codes.FailedPrecondition, "allowed"},
		{"extend that does not grow", "InstanceService/ExtendInstance", map[string]any{"id": id, "diskGib": 0}, codes.InvalidArgument, "disk_gib"},
		{"move to its own host", "InstanceService/MoveInstance", map[string]any{"id": id, "targetHostId": e.host}, codes.InvalidArgument, "target_host_id"},
		{"resume a running instance", "InstanceService/ResumeInstance", map[string]any{"id": id}, codes.FailedPrecondition, "RUNNING"},
		{"start a running instance", "InstanceService/StartInstance", map[string]any{"id": id}, codes.FailedPrecondition, "allowed"},
		{"unknown vocabulary", "InstanceService/GetInstance", map[string]any{"id": id, "vocabularies": []int{99}}, codes.InvalidArgument, "vocabularies"},
		{"update without a mask", "InstanceService/UpdateInstance", map[string]any{"id": id, "name": "x"}, codes.InvalidArgument, "update_mask"},
		{"update of the spec", "InstanceService/UpdateInstance", map[string]any{"id": id, "updateMask": map[string]any{"paths": []string{"spec"}}}, codes.InvalidArgument, "update_mask"},
		{"too many labels", "InstanceService/CreateInstance", map[string]any{"name": "a", "spec": spec(1, 256, "flotilla-test"), "labels": manyLabels(65)}, codes.InvalidArgument, "labels"},
		{"watch from the future is fine, negative is not", "InstanceService/ListInstances", map[string]any{"pageSize": -1}, codes.InvalidArgument, "page_size"},
	}
	for _, c := range cases {
		_, err := e.g.Call("flotilla.v1."+c.method, c.req)
		ce, ok := err.(*testenv.CallError)
		if !ok {
			t.Errorf("%s: want %s, got success/%v", c.name, c.code, err)
			continue
		}
		if ce.Code != c.code {
			t.Errorf("%s: code %s, want %s (%s)", c.name, ce.Code, c.code, ce.Message)
		}
		if !strings.Contains(ce.Message, c.mention) {
			t.Errorf("%s: message %q does not mention %q", c.name, ce.Message, c.mention)
		}
	}

	// The refusal of a disallowed action carries the allowed actions as a detail.
	_, err := e.g.Call("flotilla.v1.InstanceService/UnpauseInstance", map[string]any{"id": id})
	ce := err.(*testenv.CallError)
	found := false
	for _, d := range ce.Details {
		if md, ok := d["metadata"].(map[string]any); ok && md["allowed_actions"] == "stop,restart,pause,suspend,delete,update,resize,extend,move,set-password,rebuild,rescue,upgrade" && md["status"] == "RUNNING" {
			found = true
		}
	}
	if !found {
		t.Errorf("FAILED_PRECONDITION without an ErrorInfo listing allowed actions: %v", ce.Details)
	}

	after := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", map[string]any{"showDeleted": true})
	opsAfter := e.g.MustCall("flotilla.v1.OperationService/ListOperations", nil)
	if testenv.Str(before, "instances") != testenv.Str(after, "instances") {
		t.Errorf("instances changed:\n%s\n%s", testenv.Str(before, "instances"), testenv.Str(after, "instances"))
	}
	if testenv.Str(opsBefore, "operations") != testenv.Str(opsAfter, "operations") {
		t.Errorf("operations changed")
	}
	if domstate(t, id) != "running" {
		t.Errorf("libvirt state changed: %s", domstate(t, id))
	}
}

// TestMissingImageFailsWithFault: a well-formed image name the host does not
// have passes validation, then the create fails on the host with a recorded
// fault and the instance shows ERROR; nothing is left in libvirt.
func TestMissingImageFailsWithFault(t *testing.T) {
	e := newEnv(t, nil, nil)
	op := e.do("CreateInstance", map[string]any{"name": "noimage", "spec": map[string]any{"vcpus": 1, "memoryMib": 128, "image": "no-such-image"}})
	if testenv.Str(op, "state") != "OPERATION_STATE_FAILED" || testenv.Str(op, "error", "code") != "IMAGE_NOT_FOUND" {
		t.Fatalf("create with a missing image: %v", op)
	}
	// Caught by the host's preflight, before anything was made.
	if steps := stepList(op); len(steps) != 2 || steps[0] != "preflight:STEP_STATE_FAILED@1" || steps[1] != "create-domain:STEP_STATE_SKIPPED@0" {
		t.Fatalf("steps of the create with a missing image: %v", steps)
	}
	id := testenv.Str(op, "instanceId")
	inst := e.instance(id)
	if testenv.Str(inst, "status") != "STATUS_ERROR" || testenv.Str(inst, "fault", "code") != "IMAGE_NOT_FOUND" {
		t.Fatalf("instance: %v", inst)
	}
	if domstate(t, id) != "missing" {
		t.Fatalf("a failed create left a domain: %s", domstate(t, id))
	}
	// ERROR is recoverable by delete.
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": id}))
	if s := e.status(id); s != "STATUS_DELETED" {
		t.Fatalf("after delete: %s", s)
	}
}

func manyLabels(n int) map[string]string {
	out := map[string]string{}
	for i := range n {
		out[fmt.Sprintf("k%d", i)] = "v"
	}
	return out
}
