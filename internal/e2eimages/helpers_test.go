package e2eimages

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// env is one coordinator, one agent on the real libvirtd, and a grpcurl
// client (copied, trimmed, from internal/e2e).
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
	e := &env{t: t, dir: dir, host: "img-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))}
	if len(e.host) > 40 {
		e.host = e.host[:40]
	}
	e.coord = testenv.StartCoordinator(t, dir)
	e.g = testenv.NewGrpcurl(t, e.coord.Addr)
	e.coord.WaitReady(t, e.g)
	e.agent = testenv.StartAgent(t, dir, e.coord.Addr, e.host, "libvirt")
	testenv.WaitHost(t, e.g, e.host, 0)
	return e
}

// call starts a mutating method and returns its operation id.
func (e *env) call(method string, req map[string]any) string {
	e.t.Helper()
	return testenv.Str(e.g.MustCall("flotilla.v1.InstanceService/"+method, req), "id")
}

// do calls a mutating method and waits for its operation to end.
func (e *env) do(method string, req map[string]any) map[string]any {
	e.t.Helper()
	return e.waitOp(e.call(method, req))
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

func virsh(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return testenv.Run(ctx, "virsh", append([]string{"-q", "-c", "qemu:///system"}, args...)...)
}

// create creates a test guest of image with the given user data ("" for
// none), waits for it to run, and returns its id; its domain goes with the test.
func (e *env) create(name, image, userData string) string {
	e.t.Helper()
	req := map[string]any{"name": name, "requestId": "create-" + name,
		"spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": image}}
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

func (e *env) console(id string) string {
	b, _ := os.ReadFile(filepath.Join(e.agent.RunDir, id+".console.log"))
	return strings.ReplaceAll(string(b), "\r", "") // a serial console ends its lines with CRLF
}

// waitLine waits until the guest's console holds line at least n times
// (the console log keeps every boot's lines).
func (e *env) waitLine(id, line string, n int) {
	e.t.Helper()
	testenv.Eventually(e.t, 90*time.Second, id+" to print "+line, func() bool {
		return strings.Count(e.console(id), line+"\n") >= n
	})
}

// diskLines are the FLOTILLA-GUEST-DISK lines the guest printed, in order.
func (e *env) diskLines(id string) []string {
	var out []string
	for _, l := range strings.Split(e.console(id), "\n") {
		if strings.HasPrefix(l, "FLOTILLA-GUEST-DISK ") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// stop shuts the instance down (forced after a short grace).
func (e *env) stop(id string) {
	e.t.Helper()
	e.mustSucceed(e.do("StopInstance", map[string]any{"id": id, "gracefulTimeout": "20s", "force": true}))
	e.waitStatus(id, "STATUS_STOPPED", 30*time.Second)
}
