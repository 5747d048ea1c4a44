package e2echaos

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// libvirtdRounds is how many libvirtd restarts TestChaosLibvirtdRestart
// makes; FLOTILLA_CHAOS_LIBVIRTD_ROUNDS overrides it (make chaos).
const libvirtdRounds = 3

// maxLibvirtdDelay bounds when, after an operation is accepted, the
// host's libvirtd is restarted: before, in or after its step.
const maxLibvirtdDelay = 1500 * time.Millisecond

// TestChaosLibvirtdRestart restarts a test bed host's own libvirtd (never
// the machine's, which others use) while a real guest is created, stopped,
// started or deleted on it, and checks the invariants once the operation
// ends: it ends by its deadline, the instance's status is what the host's
// libvirtd shows (a running guest is never ERROR), and no domain is left
// that no record owns.
func TestChaosLibvirtdRestart(t *testing.T) {
	rounds := envInt("FLOTILLA_CHAOS_LIBVIRTD_ROUNDS", libvirtdRounds)
	seed := uint64(envInt("FLOTILLA_CHAOS_SEED", defaultSeed))
	in := NewInjector(seed, []Fault{FaultLibvirtdRestart}, true)
	t.Logf("chaos (test bed libvirtd): seed %d, %d rounds", seed, rounds)

	tb := testenv.StartTestbed(t, 1)
	dir := t.TempDir()
	ca, err := mtls.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name, role string, hosts ...string) []string {
		f, err := ca.Issue(name, role, hosts...)
		if err != nil {
			t.Fatal(err)
		}
		return []string{"--tls-cert=" + f.Cert, "--tls-key=" + f.Key, "--tls-ca=" + f.CA}
	}
	coord := testenv.StartCoordinatorAt(t, dir, tb.FreeAddr(t), append(issue("c1", mtls.RoleCoordinator, tb.BridgeAddr), "--agent-heartbeat-interval=500ms")...)
	admin, err := ca.Issue("chaos", "admin")
	if err != nil {
		t.Fatal(err)
	}
	g := testenv.NewGrpcurlTLS(t, coord.Addr, admin)
	coord.WaitReady(t, g)
	h := tb.Hosts[0]
	agent := testenv.StartTestbedAgent(t, dir, coord.Addr, h, issue(h.Name, mtls.RoleAgent, h.Addr)...)
	testenv.WaitHost(t, g, h.Name, 0)

	stats := NewStats()
	var id string
	for r := range rounds {
		_, delay := in.Next(maxLibvirtdDelay)
		op := nextRealOp(g, id, r)
		id = testenv.Str(op, "instanceId")
		time.Sleep(delay) // the fault's timing, not a wait for a condition
		at := time.Now()
		h = tb.RestartLibvirtd(t, 0)
		vs := settleReal(t, g, h, testenv.Str(op, "id"), id)
		stats.Add(FaultLibvirtdRestart, len(vs), time.Since(at))
		for _, v := range vs {
			t.Errorf("round %d (seed %d, restart %s after %s): %s", r, seed, testenv.Str(op, "kind"), delay, v)
		}
		if len(vs) > 0 {
			t.Logf("the agent's log of %s:\n%s", testenv.Str(op, "id"), linesOf(agent.Log, testenv.Str(op, "id")))
		}
	}
	t.Logf("\n%s", stats.Table())
	fmt.Print(stats.Table())
}

// nextRealOp starts the round's operation on instance id ("" for none
// yet): a create, then stops and starts in turn; a delete of an instance
// in any other status, and a create after it.
func nextRealOp(g *testenv.Grpcurl, id string, round int) map[string]any {
	req := fmt.Sprintf("chaos-libvirtd-%d", round)
	st := ""
	if id != "" {
		st = testenv.Str(g.MustCall("flotilla.v1.InstanceService/GetInstance", map[string]any{"id": id}), "status")
	}
	switch st {
	case "STATUS_RUNNING":
		return g.MustCall("flotilla.v1.InstanceService/StopInstance", map[string]any{"id": id, "requestId": req, "force": true, "gracefulTimeout": "5s"})
	case "STATUS_STOPPED", "STATUS_UNEXPECTED_SHUTOFF":
		return g.MustCall("flotilla.v1.InstanceService/StartInstance", map[string]any{"id": id, "requestId": req})
	case "", "STATUS_DELETED":
		return g.MustCall("flotilla.v1.InstanceService/CreateInstance", map[string]any{"name": req, "requestId": req,
			"spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"}})
	}
	return g.MustCall("flotilla.v1.InstanceService/DeleteInstance", map[string]any{"id": id, "requestId": req})
}

// settleReal waits for operation opID to end and the invariants to hold
// (or the bound to pass) and returns what still fails.
func settleReal(t *testing.T, g *testenv.Grpcurl, h testenv.TestbedHost, opID, id string) []Violation {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		o := observeReal(t, g, h, opID, id)
		vs := Check(o)
		inst := o.Instances[id]
		if inst.Status == "STATUS_ERROR" && o.Domains[h.Name][id] == "running" {
			vs = append(vs, Violation{"running-guest-in-error", fmt.Sprintf("instance %s is ERROR but its guest runs", id)})
		}
		if inst.Status == "STATUS_UNKNOWN" {
			vs = append(vs, Violation{"unknown", fmt.Sprintf("instance %s is UNKNOWN", id)})
		}
		done := o.Ops[opID].Done
		if (done && len(vs) == 0) || time.Now().After(deadline) {
			if !done {
				vs = append(vs, Violation{"op-not-done", fmt.Sprintf("operation %s not done", opID)})
			}
			return vs
		}
		time.Sleep(200 * time.Millisecond) // polling the cluster and libvirtd
	}
}

// linesOf is the lines of the log at path that mention s.
func linesOf(path, s string) string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// virshStates maps virsh's words to the power states Check compares.
var virshStates = map[string]string{"running": "running", "shut off": "shut-off", "paused": "paused", "crashed": "crashed"}

func observeReal(t *testing.T, g *testenv.Grpcurl, h testenv.TestbedHost, opID, id string) Observed {
	t.Helper()
	o := Observed{Now: time.Now(), Grace: 500 * time.Millisecond, Ops: map[string]OpView{}, Instances: map[string]InstanceView{},
		Domains: map[string]map[string]string{h.Name: {}}}
	op := g.MustCall("flotilla.v1.OperationService/GetOperation", map[string]any{"id": opID})
	dl, _ := time.Parse(time.RFC3339Nano, testenv.Str(op, "deadline"))
	o.Ops[opID] = OpView{Found: true, Done: testenv.Str(op, "done") == "true", Deadline: dl}
	inst := g.MustCall("flotilla.v1.InstanceService/GetInstance", map[string]any{"id": id})
	st := testenv.Str(inst, "status")
	o.Instances[id] = InstanceView{Status: st, HostID: testenv.Str(inst, "hostId"), Deleted: st == "STATUS_DELETED",
		Transitional: testenv.Str(inst, "currentOperationId") != "", Expect: realExpect[st]}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := testenv.Run(ctx, "virsh", "-q", "-c", h.URI(), "list", "--all", "--name")
	if err != nil {
		t.Logf("virsh list on %s: %v", h.Name, err)
		return o
	}
	for _, name := range strings.Fields(out) {
		dom, ok := strings.CutPrefix(name, "flotilla-")
		if !ok {
			continue
		}
		s, err := testenv.Run(ctx, "virsh", "-q", "-c", h.URI(), "domstate", name)
		if err != nil {
			continue // gone between the two calls
		}
		o.Domains[h.Name][dom] = cmp.Or(virshStates[strings.TrimSpace(s)], strings.TrimSpace(s))
	}
	return o
}

// realExpect is expectPower less the suspended state, which this workload
// never asks for.
var realExpect = map[string]string{
	"STATUS_RUNNING": "running", "STATUS_STOPPED": "shut-off", "STATUS_UNEXPECTED_SHUTOFF": "shut-off",
	"STATUS_PAUSED": "paused", "STATUS_DELETED": "no-domain",
}
