package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// stepList is an operation's steps as name:STATE@attempt, e.g.
// "preflight:STEP_STATE_SUCCEEDED@1".
func stepList(op map[string]any) (out []string) {
	steps, _ := op["steps"].([]any)
	for _, s := range steps {
		m, _ := s.(map[string]any)
		out = append(out, testenv.Str(m, "name")+":"+testenv.Str(m, "state")+"@"+testenv.Str(m, "attempt"))
	}
	return out
}

// watchedStatuses collects the statuses a watch shows for one instance
// until it shows want after having shown every status in before (in any
// order), or the timeout passes.
func watchedStatuses(t *testing.T, w *testenv.Stream, want string, before []string, timeout time.Duration) []string {
	t.Helper()
	var seen []string
	end := time.After(timeout)
	for {
		select {
		case m, ok := <-w.C:
			if !ok {
				t.Fatalf("watch ended; saw %v", seen)
			}
			insts, _ := m["instances"].([]any)
			for _, i := range insts {
				s := testenv.Str(i.(map[string]any), "status")
				if len(seen) == 0 || seen[len(seen)-1] != s {
					seen = append(seen, s)
				}
			}
			done := len(seen) > 0 && seen[len(seen)-1] == want
			for _, b := range before {
				done = done && slices.Contains(seen, b)
			}
			if done {
				return seen
			}
		case <-end:
			t.Fatalf("the watch did not show %s after %v within %s; saw %v", want, before, timeout, seen)
		}
	}
}

// TestRestartFromStopped restarts a stopped instance on real libvirt: the
// restart is a hard restart that checks the host and boots the domain,
// shown as HARD_REBOOTING on the watch, and ends RUNNING with libvirt's
// domain running. The same from an unexpected shut-off (the domain
// destroyed behind Flotilla's back).
func TestRestartFromStopped(t *testing.T) {
	e := newEnv(t, nil, nil)
	id := e.create("restart-stopped")
	e.mustSucceed(e.do("StopInstance", map[string]any{"id": id, "gracefulTimeout": "1s", "force": true}))
	if s, d := e.status(id), domstate(t, id); s != "STATUS_STOPPED" || d != "shut off" {
		t.Fatalf("after stop: %s, libvirt %q", s, d)
	}
	allowed, _ := json.Marshal(e.instance(id)["allowedActions"])
	if !strings.Contains(string(allowed), "ACTION_RESTART") {
		t.Fatalf("a stopped instance allows %s, want a restart among them", allowed)
	}

	restart := func(from string) {
		t.Helper()
		list := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", nil)
		w := e.g.Stream("flotilla.v1.InstanceService/WatchInstances", map[string]any{"startRevision": testenv.Str(list, "revision"), "instanceId": id})
		defer w.Close()
		op := e.g.MustCall("flotilla.v1.InstanceService/RestartInstance", map[string]any{"id": id})
		if k := testenv.Str(op, "kind"); k != "OPERATION_KIND_HARD_RESTART" {
			t.Fatalf("restart from %s: operation kind %s, want a hard restart", from, k)
		}
		seen := watchedStatuses(t, w, "STATUS_RUNNING", []string{"STATUS_HARD_REBOOTING"}, 2*time.Minute)
		done := e.waitOp(testenv.Str(op, "id"))
		e.mustSucceed(done)
		if got, want := stepList(done), []string{"preflight:STEP_STATE_SUCCEEDED@1", "boot-domain:STEP_STATE_SUCCEEDED@1"}; !slices.Equal(got, want) {
			t.Fatalf("restart from %s: steps %v, want %v", from, got, want)
		}
		inst := e.instance(id)
		if s, d := testenv.Str(inst, "status"), domstate(t, id); s != "STATUS_RUNNING" || d != "running" || testenv.Str(inst, "desiredState") != "DESIRED_STATE_RUNNING" {
			t.Fatalf("after the restart from %s: %s, desired %s, libvirt %q", from, s, testenv.Str(inst, "desiredState"), d)
		}
		t.Logf("restart from %s: the watch showed %v", from, seen)
	}
	restart("STOPPED")

	// Off without a request: the restart boots it all the same.
	if out, err := virsh(t, "destroy", "flotilla-"+id); err != nil {
		t.Fatalf("virsh destroy: %v %s", err, out)
	}
	e.waitStatus(id, "STATUS_UNEXPECTED_SHUTOFF", 10*time.Second)
	restart("UNEXPECTED_SHUTOFF")
}

// TestPreflightRefusesAFullHost makes the agent believe its disk directory
// is short of space (a reserve larger than any disk): a create fails fast
// with INSUFFICIENT_DISK in its preflight step, before any domain or disk
// exists, and is not retried; a start of a stopped instance fails the
// same way and leaves the domain shut off. With the reserve back to
// normal, the start succeeds.
func TestPreflightRefusesAFullHost(t *testing.T) {
	e := newEnv(t, nil, nil)
	id := e.create("preflight-ok")
	ops := e.g.MustCall("flotilla.v1.OperationService/ListOperations", map[string]any{"instanceId": id})
	first, _ := ops["operations"].([]any)
	if len(first) != 1 {
		t.Fatalf("operations after create: %v", ops)
	}
	if got, want := stepList(first[0].(map[string]any)), []string{"preflight:STEP_STATE_SUCCEEDED@1", "create-domain:STEP_STATE_SUCCEEDED@1"}; !slices.Equal(got, want) {
		t.Fatalf("create steps %v, want %v", got, want)
	}
	e.mustSucceed(e.do("StopInstance", map[string]any{"id": id, "gracefulTimeout": "1s", "force": true}))

	// The same agent, now keeping a reserve no disk can hold.
	args := e.agent.Args
	e.agent.Stop()
	e.agent.Args = append(slices.Clone(args), "--disk-reserve-gib=1000000000")
	e.agent.Restart()
	e.epoch = testenv.WaitHost(t, e.g, e.host, e.epoch)

	wantFault := func(what string, op map[string]any) {
		t.Helper()
		msg := testenv.Str(op, "error", "message")
		if st, code := testenv.Str(op, "state"), testenv.Str(op, "error", "code"); st != "OPERATION_STATE_FAILED" || code != "INSUFFICIENT_DISK" {
			t.Fatalf("%s on a full host: %s %s %s", what, st, code, msg)
		}
		// The numbers and the place: what is free, what is needed, where.
		for _, part := range []string{"disk directory " + e.agent.DiskDir + " has ", " bytes (", " free, needs ", " reserve"} {
			if !strings.Contains(msg, part) {
				t.Fatalf("%s: fault message %q lacks %q", what, msg, part)
			}
		}
		if testenv.Str(op, "error", "hostId") != e.host {
			t.Fatalf("%s: fault %v names no host", what, op["error"])
		}
		t.Logf("%s: %s", what, msg)
	}

	op := e.do("CreateInstance", map[string]any{"name": "preflight-full", "spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"}})
	full := testenv.Str(op, "instanceId")
	t.Cleanup(func() { _, _ = virsh(t, "undefine", "flotilla-"+full) })
	wantFault("create", op)
	// Failed at once in its first step, never retried; nothing else ran.
	if got, want := stepList(op), []string{"preflight:STEP_STATE_FAILED@1", "create-domain:STEP_STATE_SKIPPED@0"}; !slices.Equal(got, want) {
		t.Fatalf("create steps on a full host: %v, want %v", got, want)
	}
	inst := e.instance(full)
	if s, f := testenv.Str(inst, "status"), testenv.Str(inst, "fault", "code"); s != "STATUS_ERROR" || f != "INSUFFICIENT_DISK" {
		t.Fatalf("instance after the refused create: %s, fault %s", s, f)
	}
	if out, err := virsh(t, "dominfo", "flotilla-"+full); err == nil {
		t.Fatalf("a domain was defined for the refused create:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.agent.DiskDir, full+".qcow2")); !os.IsNotExist(err) {
		t.Fatalf("a disk was made for the refused create: %v", err)
	}

	op = e.do("StartInstance", map[string]any{"id": id})
	wantFault("start", op)
	if got, want := stepList(op), []string{"preflight:STEP_STATE_FAILED@1", "start-domain:STEP_STATE_SKIPPED@0"}; !slices.Equal(got, want) {
		t.Fatalf("start steps on a full host: %v, want %v", got, want)
	}
	if s, d := e.status(id), domstate(t, id); s != "STATUS_ERROR" || d != "shut off" {
		t.Fatalf("after the refused start: %s, libvirt %q", s, d)
	}

	// Room again: the instance starts.
	e.agent.Stop()
	e.agent.Args = args
	e.agent.Restart()
	e.epoch = testenv.WaitHost(t, e.g, e.host, e.epoch)
	e.mustSucceed(e.do("StartInstance", map[string]any{"id": id}))
	if s, d := e.status(id), domstate(t, id); s != "STATUS_RUNNING" || d != "running" {
		t.Fatalf("start with room again: %s, libvirt %q", s, d)
	}
}
