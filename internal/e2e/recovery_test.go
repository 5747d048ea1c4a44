package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestRecoveryPolicies powers real guests off from inside (an ACPI press
// the guest answers by running its own poweroff) and checks each policy:
// RESTART boots it again, MARK_FAILED records a fault, LEAVE shows it.
func TestRecoveryPolicies(t *testing.T) {
	// Three small guests on a 2-vCPU machine: these guests idle, so the
	// operator overcommits vCPUs.
	e := newEnv(t, []string{"--cpu-overcommit=4"}, nil)
	create := func(name, policy string) string {
		op := e.do("CreateInstance", map[string]any{"name": name, "spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"},
			"recovery": map[string]any{"policy": policy, "maxRestarts": 2}})
		e.mustSucceed(op)
		id := testenv.Str(op, "instanceId")
		t.Cleanup(func() {
			_, _ = virsh(t, "destroy", "flotilla-"+id)
			_, _ = virsh(t, "undefine", "--managed-save", "flotilla-"+id)
		})
		return id
	}
	restart := create("restarts", "RECOVERY_POLICY_RESTART")
	failed := create("fails", "RECOVERY_POLICY_MARK_FAILED")
	left := create("stays-off", "RECOVERY_POLICY_LEAVE")
	for _, id := range []string{restart, failed, left} {
		e.waitGuestReady(id, 1)
		if out, err := virsh(t, "shutdown", "flotilla-"+id); err != nil {
			t.Fatalf("virsh shutdown: %v %s", err, out)
		}
	}

	// RESTART: the coordinator starts it again on its own; the guest boots a second time.
	testenv.Eventually(t, 60*time.Second, "the restart policy to boot the guest again", func() bool {
		inst := e.instance(restart)
		return testenv.Str(inst, "status") == "STATUS_RUNNING" && testenv.Str(inst, "restartCount") == "1"
	})
	e.waitGuestReady(restart, 2)
	ops := e.g.MustCall("flotilla.v1.OperationService/ListOperations", map[string]any{"instanceId": restart})
	if first := ops["operations"].([]any)[0].(map[string]any); testenv.Str(first, "kind") != "OPERATION_KIND_START" || testenv.Str(first, "state") != "OPERATION_STATE_SUCCEEDED" {
		t.Fatalf("the restart is not a recorded, successful start operation: %v", first)
	}

	// MARK_FAILED: ERROR with the fault recorded; nothing restarted it.
	e.waitStatus(failed, "STATUS_ERROR", 30*time.Second)
	if f := testenv.Str(e.instance(failed), "fault", "code"); f != "GUEST_STOPPED_UNEXPECTEDLY" {
		t.Fatalf("fault %q", f)
	}
	if domstate(t, failed) != "shut off" {
		t.Fatalf("a marked-failed guest was touched: %s", domstate(t, failed))
	}

	// LEAVE: the unexpected state stays visible, and the desired state is untouched.
	e.waitStatus(left, "STATUS_UNEXPECTED_SHUTOFF", 30*time.Second)
	if inst := e.instance(left); testenv.Str(inst, "desiredState") != "DESIRED_STATE_RUNNING" || testenv.Str(inst, "restartCount") != "0" {
		t.Fatalf("left instance: %v", inst)
	}
	console, _ := os.ReadFile(filepath.Join(e.agent.RunDir, left+".console.log"))
	if strings.Count(string(console), "FLOTILLA-GUEST-READY") != 1 {
		t.Fatalf("the LEAVE guest booted again:\n%s", console)
	}
}

// TestSilentAgentGoesDownNotStopped freezes the agent: its host goes DOWN
// and its instance shows UNKNOWN (not STOPPED) while the guest keeps
// running; thawed, the agent re-registers and the instance is RUNNING again
// with no operation run.
func TestSilentAgentGoesDownNotStopped(t *testing.T) {
	e := newEnv(t, []string{"--agent-heartbeat-interval=300ms"}, nil)
	id := e.create("survives-silence")
	opsBefore := testenv.Str(e.g.MustCall("flotilla.v1.OperationService/ListOperations", map[string]any{"instanceId": id}), "operations")

	e.agent.Send(syscall.SIGSTOP)
	thawed := false
	defer func() {
		if !thawed {
			e.agent.Send(syscall.SIGCONT)
		}
	}()
	testenv.Eventually(t, 10*time.Second, "the host to go DOWN", func() bool {
		h, err := e.g.Call("flotilla.v1.HostService/GetHost", map[string]any{"id": e.host})
		return err == nil && testenv.Str(h, "status") == "HOST_STATUS_DOWN"
	})
	inst := e.instance(id)
	if testenv.Str(inst, "status") != "STATUS_UNKNOWN" || testenv.Str(inst, "powerState") != "POWER_STATE_UNKNOWN" || testenv.Str(inst, "desiredState") != "DESIRED_STATE_RUNNING" {
		t.Fatalf("instance on a down host: %v", inst)
	}
	if domstate(t, id) != "running" {
		t.Fatalf("the guest itself stopped: %s", domstate(t, id))
	}

	e.agent.Send(syscall.SIGCONT)
	thawed = true
	e.epoch = testenv.WaitHost(t, e.g, e.host, e.epoch)
	e.waitStatus(id, "STATUS_RUNNING", 10*time.Second)
	if after := testenv.Str(e.g.MustCall("flotilla.v1.OperationService/ListOperations", map[string]any{"instanceId": id}), "operations"); after != opsBefore {
		t.Fatalf("an operation ran while recovering from the silence:\nbefore %s\nafter  %s", opsBefore, after)
	}
}
