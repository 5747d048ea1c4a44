package e2e

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestRestartsLoseNothing restarts libvirtd, the agent and the coordinator
// in turn; after each, every record is still there and power-state events
// flow again.
func TestRestartsLoseNothing(t *testing.T) {
	testenv.LockLibvirt(t, true) // restarts the shared libvirtd
	e := newEnv(t, []string{"--agent-resync-interval=1h"}, nil)
	id := e.create("survivor")
	other := e.create("witness")

	// destroyAndSee proves the event path works end to end right now.
	destroyAndSee := func(what string) {
		t.Helper()
		if out, err := virsh(t, "destroy", "flotilla-"+id); err != nil {
			t.Fatalf("%s: virsh destroy: %v %s", what, err, out)
		}
		e.waitStatus(id, "STATUS_UNEXPECTED_SHUTOFF", eventBound)
		e.mustSucceed(e.do("StartInstance", map[string]any{"id": id}))
		if s := e.status(id); s != "STATUS_RUNNING" {
			t.Fatalf("%s: start after destroy: %s", what, s)
		}
	}

	// libvirtd restart: the driver reconnects and resubscribes. Nothing
	// shows the resubscription through the API, so the agent's log tells;
	// without waiting for it, the destroy below could be seen through the
	// resync that follows a late resubscription instead of an event.
	resubscribed := e.agent.LogCount(agentResubscribed)
	restartLibvirtd(t, "flotilla-"+id, "flotilla-"+other)
	testenv.Eventually(t, 30*time.Second, "the agent to resubscribe to libvirt events", func() bool {
		return e.agent.LogCount(agentResubscribed) > resubscribed
	})
	destroyAndSee("after libvirtd restart")
	if s := e.status(other); s != "STATUS_RUNNING" {
		t.Fatalf("witness after libvirtd restart: %s", s)
	}

	// Agent restart: it re-registers with a full inventory; nothing changes.
	e.agent.Stop()
	e.agent.Restart()
	e.epoch = testenv.WaitHost(t, e.g, e.host, e.epoch)
	e.waitStatus(other, "STATUS_RUNNING", 10*time.Second)
	destroyAndSee("after agent restart")

	// Coordinator crash (SIGKILL) and restart on the same data dir.
	snapshot := func() (string, string, int) {
		l := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", map[string]any{"showDeleted": true})
		o := e.g.MustCall("flotilla.v1.OperationService/ListOperations", nil)
		return testenv.Str(l, "instances"), testenv.Str(o, "operations"), testenv.Atoi(testenv.Str(l, "revision"))
	}
	instBefore, opsBefore, revBefore := snapshot()
	e.coord.Kill()
	e.coord.Restart()
	e.coord.WaitReady(t, e.g)
	instAfter, opsAfter, revAfter := snapshot()
	if revAfter < revBefore {
		t.Fatalf("revision went back from %d to %d", revBefore, revAfter)
	}
	if opsAfter != opsBefore {
		t.Fatalf("operations differ after coordinator restart:\nbefore %s\nafter  %s", opsBefore, opsAfter)
	}
	if revAfter == revBefore && instAfter != instBefore {
		t.Fatalf("instances differ at the same revision")
	}
	e.epoch = testenv.WaitHost(t, e.g, e.host, e.epoch)
	e.waitStatus(id, "STATUS_RUNNING", 10*time.Second)
	e.waitStatus(other, "STATUS_RUNNING", 10*time.Second)
	destroyAndSee("after coordinator restart")
}

// agentResubscribed is what the agent logs once it has subscribed to
// libvirt's events again (agent/session).
const agentResubscribed = "resubscribed to hypervisor events"

// restartLibvirtd stops libvirtd and starts it again with the project's
// own setup script, as an operator's restart would, and returns once
// libvirtd has reconnected to the given running domains (answering calls
// comes first; see testenv.WaitDomainsReconnected).
func restartLibvirtd(t *testing.T, domains ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_ = exec.CommandContext(ctx, "pkill", "-TERM", "-x", "libvirtd").Run()
	testenv.Eventually(t, 30*time.Second, "libvirtd to exit", func() bool {
		return exec.Command("pgrep", "-x", "libvirtd").Run() != nil
	})
	out, err := exec.CommandContext(ctx, testenv.RepoRoot(t)+"/scripts/setup-host.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("setup-host.sh: %v\n%s", err, out)
	}
	answered := time.Now()
	testenv.WaitDomainsReconnected(t, 60*time.Second, domains...)
	t.Logf("timing: libvirtd reconnected to %d domains %s after it answered", len(domains), time.Since(answered).Round(time.Millisecond))
}
