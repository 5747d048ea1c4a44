package e2elifecycle

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// The helpers below are internal/e2e's (helpers_test.go), copied: that
// package is long and serial, this one runs on its own.

// env is one coordinator, one agent on the real libvirtd, and a grpcurl client.
type env struct {
	t     *testing.T
	dir   string
	coord *testenv.Coordinator
	agent *testenv.Agent
	g     *testenv.Grpcurl
	host  string
}

func newEnv(t *testing.T, coordFlags, agentFlags []string) *env {
	t.Helper()
	testenv.LockLibvirt(t, false)
	testenv.RequireLibvirt(t)
	dir := t.TempDir()
	e := &env{t: t, dir: dir, host: "lc2-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))}
	if len(e.host) > 40 {
		e.host = e.host[:40]
	}
	e.coord = testenv.StartCoordinator(t, dir, coordFlags...)
	e.g = testenv.NewGrpcurl(t, e.coord.Addr)
	e.coord.WaitReady(t, e.g)
	e.agent = testenv.StartAgentEnv(t, dir, e.coord.Addr, e.host, "libvirt", nil, agentFlags...)
	testenv.WaitHost(t, e.g, e.host, 0)
	return e
}

// start calls a mutating method and returns its operation's id.
func (e *env) start(method string, req map[string]any) string {
	e.t.Helper()
	return testenv.Str(e.g.MustCall("flotilla.v1.InstanceService/"+method, req), "id")
}

// do calls a mutating method and waits for its operation to end.
func (e *env) do(method string, req map[string]any) map[string]any {
	e.t.Helper()
	return e.waitOp(e.start(method, req))
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

func (e *env) instance(id string, vocabularies ...string) map[string]any {
	e.t.Helper()
	req := map[string]any{"id": id}
	if len(vocabularies) > 0 {
		req["vocabularies"] = vocabularies
	}
	return e.g.MustCall("flotilla.v1.InstanceService/GetInstance", req)
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

// domstate is libvirt's own word for the domain's state ("missing": none).
func domstate(t *testing.T, id string) string {
	t.Helper()
	out, err := virsh(t, "domstate", "flotilla-"+id)
	if err != nil {
		return "missing"
	}
	return out
}

// waitGuestReady waits until the guest's init has printed its ready line
// at least minCount times (once per boot).
func (e *env) waitGuestReady(id string, minCount int) {
	e.t.Helper()
	log := filepath.Join(e.agent.RunDir, id+".console.log")
	testenv.Eventually(e.t, 90*time.Second, "the guest to print FLOTILLA-GUEST-READY", func() bool {
		b, err := os.ReadFile(log)
		return err == nil && strings.Count(string(b), "FLOTILLA-GUEST-READY") >= minCount
	})
}

// disk is the path of the instance's disk on the agent's host.
func (e *env) disk(id string) string { return filepath.Join(e.agent.DiskDir, id+".qcow2") }

// create creates a 1-vCPU test guest and returns its id; its domain goes
// with the test.
func (e *env) create(name, userData string) string {
	e.t.Helper()
	req := map[string]any{"name": name, "requestId": "create-" + name,
		"spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"}}
	if userData != "" {
		req["userData"] = userData
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

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// word is the instance's status word in one vocabulary (e.g. "VOCABULARY_AZURE").
func (e *env) word(id, vocabulary string) string {
	e.t.Helper()
	views, _ := e.instance(id, vocabulary)["views"].([]any)
	if len(views) == 0 {
		return ""
	}
	v, _ := views[0].(map[string]any)
	return testenv.Str(v, "status")
}
