package e2echaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// killPoints are when, after the operation is accepted, the agent is
// SIGKILLed: before the step reaches it, while the domain is defined and
// booting, and after the step ended.
var killPoints = []time.Duration{0, 50 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond, 500 * time.Millisecond, 1500 * time.Millisecond}

// env is one coordinator and one agent on the real libvirtd (as in internal/e2e).
type env struct {
	t     *testing.T
	dir   string
	coord *testenv.Coordinator
	agent *testenv.Agent
	g     *testenv.Grpcurl
	host  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testenv.LockLibvirt(t, false)
	testenv.RequireLibvirt(t)
	dir := t.TempDir()
	e := &env{t: t, dir: dir, host: "chaos-" + fmt.Sprint(time.Now().UnixNano()%1e6)}
	e.coord = testenv.StartCoordinator(t, dir, "--agent-heartbeat-interval=500ms")
	e.g = testenv.NewGrpcurl(t, e.coord.Addr)
	e.coord.WaitReady(t, e.g)
	e.agent = testenv.StartAgent(t, dir, e.coord.Addr, e.host, "libvirt")
	testenv.WaitHost(t, e.g, e.host, 0)
	return e
}

func (e *env) waitOp(id string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		op := e.g.MustCall("flotilla.v1.OperationService/WaitOperation", map[string]any{"id": id, "timeout": "60s"})
		if testenv.Str(op, "done") == "true" {
			return op
		}
	}
	e.t.Fatalf("operation %s not done in 5 minutes", id)
	return nil
}

func (e *env) status(id string) string {
	return testenv.Str(e.g.MustCall("flotilla.v1.InstanceService/GetInstance", map[string]any{"id": id}), "status")
}

// settledStatus is the instance's status once the restarted agent has
// reported (until then its power state is unknown).
func (e *env) settledStatus(id string) string {
	e.t.Helper()
	var st string
	testenv.Eventually(e.t, 30*time.Second, id+" to leave UNKNOWN", func() bool {
		st = e.status(id)
		return st != "STATUS_UNKNOWN"
	})
	return st
}

func virsh(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return testenv.Run(ctx, "virsh", append([]string{"-q", "-c", "qemu:///system"}, args...)...)
}

// domstate is libvirt's word for the domain's state; "missing" without one.
func domstate(id string) string {
	out, err := virsh("domstate", "flotilla-"+id)
	if err != nil {
		return "missing"
	}
	return strings.TrimSpace(out)
}

// impliedStatus is the status libvirt's state implies for an instance the
// user wants running (or stopped).
func impliedStatus(dom string, wantStopped bool) []string {
	switch dom {
	case "running":
		return []string{"STATUS_RUNNING", "STATUS_BOOTING", "STATUS_OPERATIONAL"}
	case "shut off":
		if wantStopped {
			return []string{"STATUS_STOPPED"}
		}
		return []string{"STATUS_UNEXPECTED_SHUTOFF"}
	case "paused":
		return []string{"STATUS_PAUSED"}
	}
	return []string{"STATUS_DELETED", "STATUS_ERROR"}
}

// cleanup deletes the instance when the subtest ends (the host has room
// for two guests) and, whatever happened, its domain.
func (e *env) cleanup(id string) {
	e.t.Cleanup(func() {
		if op, err := e.g.Call("flotilla.v1.InstanceService/DeleteInstance", map[string]any{"id": id}); err == nil {
			e.waitOp(testenv.Str(op, "id"))
		}
		_, _ = virsh("destroy", "flotilla-"+id)
		_, _ = virsh("undefine", "--managed-save", "flotilla-"+id)
	})
}

// diskFiles lists what the agent's disk directory holds of the instance.
func (e *env) diskFiles(id string) []string {
	m, _ := filepath.Glob(filepath.Join(e.agent.DiskDir, "*"+id+"*"))
	return m
}

// killAfter SIGKILLs the agent d after now and starts it again.
func (e *env) killAfter(d time.Duration) {
	// The delay is the fault's timing, not a wait for a condition.
	time.Sleep(d)
	e.agent.Kill()
	e.agent.Restart()
}

// TestAgentKilledAcrossCreate: an agent SIGKILLed at each point of a
// create ends with the instance RUNNING on a running domain, or cleanly
// rolled back (no domain, no disk); never ERROR for a running guest.
func TestAgentKilledAcrossCreate(t *testing.T) {
	e := newEnv(t)
	for _, at := range killPoints {
		t.Run(at.String(), func(t *testing.T) {
			e.t = t
			name := fmt.Sprintf("kc%d", at.Milliseconds())
			op := e.g.MustCall("flotilla.v1.InstanceService/CreateInstance", map[string]any{"name": name,
				"spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"}})
			id := testenv.Str(op, "instanceId")
			e.cleanup(id)
			e.killAfter(at)
			done := e.waitOp(testenv.Str(op, "id"))
			st := e.settledStatus(id)
			dom := domstate(id)
			t.Logf("killed %s after acceptance: operation %s %s; libvirt %q; status %s",
				at, testenv.Str(done, "state"), testenv.Str(done, "error", "code"), dom, st)
			switch testenv.Str(done, "state") {
			case "OPERATION_STATE_SUCCEEDED":
				if dom != "running" || st != "STATUS_RUNNING" && st != "STATUS_BOOTING" && st != "STATUS_OPERATIONAL" {
					t.Fatalf("create succeeded, libvirt %q, status %s", dom, st)
				}
			default:
				if dom == "running" && st == "STATUS_ERROR" {
					t.Fatalf("a running guest shows ERROR")
				}
				if dom != "missing" && dom != "running" {
					t.Fatalf("an unfinished create left the domain %q", dom)
				}
				if dom == "missing" {
					if files := e.diskFiles(id); len(files) > 0 {
						t.Fatalf("a rolled-back create left disks %v", files)
					}
				}
			}
		})
	}
}

// TestAgentKilledAcrossStartAndStop: an agent SIGKILLed at each point of a
// start, then of a stop, leaves the instance in the status libvirt's state
// implies, never ERROR for a running guest.
func TestAgentKilledAcrossStartAndStop(t *testing.T) {
	e := newEnv(t)
	for _, at := range killPoints {
		t.Run(at.String(), func(t *testing.T) {
			e.t = t
			name := fmt.Sprintf("ks%d", at.Milliseconds())
			op := e.waitOp(testenv.Str(e.g.MustCall("flotilla.v1.InstanceService/CreateInstance", map[string]any{"name": name,
				"spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"}}), "id"))
			id := testenv.Str(op, "instanceId")
			e.cleanup(id)
			for _, action := range []string{"StopInstance", "StartInstance"} {
				req := map[string]any{"id": id}
				if action == "StopInstance" {
					req["force"] = true
					req["gracefulTimeout"] = "1s"
				}
				acc := e.g.MustCall("flotilla.v1.InstanceService/"+action, req)
				e.killAfter(at)
				done := e.waitOp(testenv.Str(acc, "id"))
				st := e.settledStatus(id)
				dom := domstate(id)
				t.Logf("%s, killed %s after acceptance: operation %s %s; libvirt %q; status %s",
					action, at, testenv.Str(done, "state"), testenv.Str(done, "error", "code"), dom, st)
				if dom == "running" && st == "STATUS_ERROR" {
					t.Fatalf("a running guest shows ERROR")
				}
				ok := false
				for _, s := range impliedStatus(dom, action == "StopInstance") {
					ok = ok || s == st
				}
				if !ok {
					t.Fatalf("status %s does not match libvirt's %q", st, dom)
				}
				if testenv.Str(done, "state") != "OPERATION_STATE_SUCCEEDED" {
					t.Fatalf("%s did not succeed though its effect is knowable: %s", action, testenv.Str(done, "error", "message"))
				}
			}
		})
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}
