package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// eventBound is how long a power-state change may take from libvirt to the
// coordinator's status in these tests. A test that must tell an event from
// a resync gets that from the resync interval (an hour), not from this
// bound, which only has to be long enough for a machine loaded by the whole
// suite (a Raft commit behind an fsync, -race binaries). The latency itself
// is bench/cmd/flotilla-bench's to measure, on a quiet machine.
const eventBound = 15 * time.Second

// env is one coordinator, one agent on the real libvirtd, and a grpcurl client.
type env struct {
	t     *testing.T
	dir   string
	coord *testenv.Coordinator
	agent *testenv.Agent
	g     *testenv.Grpcurl
	host  string
	epoch int
}

func newEnv(t *testing.T, coordFlags, agentFlags []string) *env {
	t.Helper()
	return newEnvWith(t, coordFlags, agentFlags, nil)
}

// newEnvWith is newEnv with agentEnv (NAME=value) in the agent's environment.
func newEnvWith(t *testing.T, coordFlags, agentFlags, agentEnv []string) *env {
	t.Helper()
	// Lock first: a test of another package may be restarting libvirtd,
	// and its socket is only sure to be there while nobody does.
	testenv.LockLibvirt(t, false)
	testenv.RequireLibvirt(t)
	dir := t.TempDir()
	e := &env{t: t, dir: dir, host: "e2e-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))}
	if len(e.host) > 40 {
		e.host = e.host[:40]
	}
	e.coord = testenv.StartCoordinator(t, dir, coordFlags...)
	e.g = testenv.NewGrpcurl(t, e.coord.Addr)
	e.coord.WaitReady(t, e.g)
	e.agent = testenv.StartAgentEnv(t, dir, e.coord.Addr, e.host, "libvirt", agentEnv, agentFlags...)
	e.epoch = testenv.WaitHost(t, e.g, e.host, 0)
	return e
}

// do calls a mutating method and waits for its operation to end.
func (e *env) do(method string, req map[string]any) map[string]any {
	e.t.Helper()
	op := e.g.MustCall("flotilla.v1.InstanceService/"+method, req)
	return e.waitOp(testenv.Str(op, "id"))
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

func (e *env) mustSucceed(op map[string]any) {
	e.t.Helper()
	if got := testenv.Str(op, "state"); got != "OPERATION_STATE_SUCCEEDED" {
		e.t.Fatalf("operation %s %s ended %s: %s", testenv.Str(op, "id"), testenv.Str(op, "kind"), got, testenv.Str(op, "error"))
	}
}

func (e *env) instance(id string) map[string]any {
	e.t.Helper()
	return e.g.MustCall("flotilla.v1.InstanceService/GetInstance", map[string]any{"id": id})
}

func (e *env) status(id string) string {
	e.t.Helper()
	return testenv.Str(e.instance(id), "status")
}

func (e *env) waitStatus(id, want string, timeout time.Duration) {
	e.t.Helper()
	testenv.Eventually(e.t, timeout, id+" to be "+want, func() bool { return e.status(id) == want })
}

// virsh runs virsh against the system libvirtd.
func virsh(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return testenv.Run(ctx, "virsh", append([]string{"-q", "-c", "qemu:///system"}, args...)...)
}

// domstate is libvirt's own word for the domain's state.
func domstate(t *testing.T, id string) string {
	t.Helper()
	out, err := virsh(t, "domstate", "flotilla-"+id)
	if err != nil {
		return "missing"
	}
	return out
}

// waitGuestReady waits until the guest's init has printed its ready line,
// so an ACPI power button press reaches a guest that listens for it.
func (e *env) waitGuestReady(id string, minCount int) {
	e.t.Helper()
	log := filepath.Join(e.agent.RunDir, id+".console.log")
	testenv.Eventually(e.t, 60*time.Second, "the guest to print FLOTILLA-GUEST-READY", func() bool {
		b, err := os.ReadFile(log)
		return err == nil && strings.Count(string(b), "FLOTILLA-GUEST-READY") >= minCount
	})
}

func (e *env) create(name string) string {
	e.t.Helper()
	return e.createWith(name, "", "")
}

// createWith creates a test guest whose seed's user data holds the given
// test switch ("" for none), with a readiness timeout ("" for the
// cluster's), and returns its id; its domain goes with the test.
func (e *env) createWith(name, userData, readinessTimeout string) string {
	e.t.Helper()
	req := map[string]any{"name": name, "requestId": "create-" + name,
		"spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"}}
	if userData != "" {
		req["userData"] = userData
	}
	if readinessTimeout != "" {
		req["readinessTimeout"] = readinessTimeout
	}
	op := e.do("CreateInstance", req)
	e.mustSucceed(op)
	id := testenv.Str(op, "instanceId")
	e.t.Cleanup(func() {
		_, _ = virsh(e.t, "destroy", "flotilla-"+id)
		_, _ = virsh(e.t, "undefine", "--managed-save", "flotilla-"+id)
	})
	return id
}
