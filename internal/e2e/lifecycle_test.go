package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestLifecycleThroughGrpcurl takes a real guest through every state of the
// walking skeleton, driven by grpcurl alone, and checks each step both at
// the coordinator and in libvirt itself.
func TestLifecycleThroughGrpcurl(t *testing.T) {
	e := newEnv(t, nil, nil)
	id := e.create("lifecycle")
	if s := e.status(id); s != "STATUS_RUNNING" {
		t.Fatalf("after create: %s", s)
	}
	if got := domstate(t, id); got != "running" {
		t.Fatalf("libvirt says %q after create", got)
	}
	inst := e.instance(id)
	if testenv.Str(inst, "hostId") != e.host || testenv.Str(inst, "powerState") != "POWER_STATE_RUNNING" {
		t.Fatalf("instance after create: %v", inst)
	}

	steps := []struct {
		method, status, libvirt string
		check                   func()
	}{
		{"PauseInstance", "STATUS_PAUSED", "paused", nil},
		{"UnpauseInstance", "STATUS_RUNNING", "running", nil},
		{"SuspendInstance", "STATUS_SUSPENDED", "shut off", func() {
			save := "/var/lib/libvirt/qemu/save/flotilla-" + id + ".save"
			if _, err := os.Stat(save); err != nil {
				t.Fatalf("managed save file: %v", err)
			}
		}},
		{"ResumeInstance", "STATUS_RUNNING", "running", nil},
	}
	for _, s := range steps {
		e.mustSucceed(e.do(s.method, map[string]any{"id": id}))
		if got := e.status(id); got != s.status {
			t.Fatalf("after %s: status %s, want %s", s.method, got, s.status)
		}
		if got := domstate(t, id); got != s.libvirt {
			t.Fatalf("after %s: libvirt says %q, want %q", s.method, got, s.libvirt)
		}
		if s.check != nil {
			s.check()
		}
	}

	// A graceful stop without force: only the guest itself powering off on
	// the ACPI button can make this succeed.
	e.waitGuestReady(id, 1)
	op := e.do("StopInstance", map[string]any{"id": id, "gracefulTimeout": "60s", "force": false})
	e.mustSucceed(op)
	if got := e.status(id); got != "STATUS_STOPPED" {
		t.Fatalf("after stop: %s", got)
	}
	console, _ := os.ReadFile(filepath.Join(e.agent.RunDir, id+".console.log"))
	if !strings.Contains(string(console), "FLOTILLA-GUEST-POWEROFF") {
		t.Fatalf("the guest did not power itself off; console:\n%s", console)
	}
	if r := testenv.Str(e.instance(id), "powerStateReason"); r != "shutdown" {
		t.Fatalf("power state reason after a graceful stop: %q, want shutdown (not destroyed)", r)
	}

	e.mustSucceed(e.do("StartInstance", map[string]any{"id": id}))
	if got := e.status(id); got != "STATUS_RUNNING" || domstate(t, id) != "running" {
		t.Fatalf("after start: %s / %s", got, domstate(t, id))
	}

	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": id}))
	if got := e.status(id); got != "STATUS_DELETED" {
		t.Fatalf("after delete: %s", got)
	}
	if got := domstate(t, id); got != "missing" {
		t.Fatalf("libvirt still has the domain: %q", got)
	}
	if _, err := os.Stat(filepath.Join(e.agent.DiskDir, id+".qcow2")); !os.IsNotExist(err) {
		t.Fatalf("disk still there: %v", err)
	}
	ops := e.g.MustCall("flotilla.v1.OperationService/ListOperations", map[string]any{"instanceId": id})
	if n := len(ops["operations"].([]any)); n != 8 {
		t.Fatalf("%d operations recorded, want 8", n)
	}
}

// TestUnexpectedShutoffFromEvent destroys the domain behind Flotilla's back
// and requires the coordinator's watch to show it, with a resync interval
// far too long to be the cause: only the event path can deliver it. How
// fast it arrives is logged, not asserted (see eventBound).
func TestUnexpectedShutoffFromEvent(t *testing.T) {
	e := newEnv(t, []string{"--agent-resync-interval=1h"}, nil)
	id := e.create("destroyed")
	list := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", nil)
	w := e.g.Stream("flotilla.v1.InstanceService/WatchInstances", map[string]any{"startRevision": testenv.Str(list, "revision"), "instanceId": id})

	start := time.Now()
	if out, err := virsh(t, "destroy", "flotilla-"+id); err != nil {
		t.Fatalf("virsh destroy: %v %s", err, out)
	}
	returned := time.Now()
	timeout := time.After(eventBound)
	for {
		select {
		case m, ok := <-w.C:
			if !ok {
				t.Fatal("watch ended")
			}
			if strings.Contains(testenv.Str(m, "instances"), `"status":"STATUS_UNEXPECTED_SHUTOFF"`) {
				t.Logf("unexpected shut-off visible on the watch %s after virsh destroy returned (virsh took %s)",
					time.Since(returned).Round(time.Millisecond), returned.Sub(start).Round(time.Millisecond))
				inst := e.instance(id)
				if testenv.Str(inst, "desiredState") != "DESIRED_STATE_RUNNING" || testenv.Str(inst, "powerStateReason") != "destroyed" {
					t.Fatalf("instance after destroy: %v", inst)
				}
				return
			}
		case <-timeout:
			t.Fatalf("no UNEXPECTED_SHUTOFF on the watch within %s of virsh destroy (status now %s)", eventBound, e.status(id))
		}
	}
}

// TestResyncCatchesLostEvents runs the agent without event subscription
// (a switch of test builds, cmd/flotilla-agent/testhooks.go): only the
// periodic full resync can notice the domain was destroyed.
func TestResyncCatchesLostEvents(t *testing.T) {
	e := newEnvWith(t, []string{"--agent-resync-interval=1s"}, nil, []string{"FLOTILLA_AGENT_IGNORE_EVENTS=1"})
	id := e.create("resync")
	if out, err := virsh(t, "destroy", "flotilla-"+id); err != nil {
		t.Fatalf("virsh destroy: %v %s", err, out)
	}
	e.waitStatus(id, "STATUS_UNEXPECTED_SHUTOFF", time.Second+eventBound)
}
