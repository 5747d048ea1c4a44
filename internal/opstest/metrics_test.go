package opstest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// A coordinator and a fake-hypervisor agent, each with its HTTP endpoint,
// run a known sequence (create a and b, stop a, delete b); then each one's
// /metrics says so.
func TestMetricsAfterOperations(t *testing.T) {
	dir := t.TempDir()
	coordHTTP, agentHTTP := testenv.FreeAddr(t), testenv.FreeAddr(t)
	c := testenv.StartCoordinator(t, dir, "--http-listen="+coordHTTP, "--pprof")
	g := testenv.NewGrpcurl(t, c.Addr)
	c.WaitReady(t, g)
	testenv.StartAgent(t, dir, c.Addr, "fake-1", "fake", "--http-listen="+agentHTTP)
	testenv.WaitHost(t, g, "fake-1", 0)

	for _, addr := range []string{coordHTTP, agentHTTP} {
		testenv.Eventually(t, 30*time.Second, addr+"/readyz to answer 200", func() bool {
			code, _ := get(addr, "/readyz")
			return code == http.StatusOK
		})
		if code, body := get(addr, "/healthz"); code != http.StatusOK {
			t.Errorf("%s/healthz: %d %s", addr, code, body)
		}
	}
	if code, body := get(coordHTTP, "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("coordinator /debug/pprof/ with --pprof: %d", code)
	}
	if code, _ := get(agentHTTP, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("agent /debug/pprof/ without --pprof: %d, want 404", code)
	}

	watch := g.Stream("flotilla.v1.InstanceService/WatchInstances", map[string]any{})
	waitMetrics(t, coordHTTP, []expect{{"flotilla_watch_streams", nil, 1}})

	a := createInstance(t, g, "a")
	b := createInstance(t, g, "b")
	mustSucceed(t, g, call(t, g, "StopInstance", map[string]any{"id": a, "requestId": "stop-a"}))
	mustSucceed(t, g, call(t, g, "DeleteInstance", map[string]any{"id": b, "requestId": "delete-b"}))

	waitMetrics(t, coordHTTP, []expect{
		{"flotilla_operations_finished_total", []string{"kind=create", "result=succeeded"}, 2},
		{"flotilla_operations_finished_total", []string{"kind=stop", "result=succeeded"}, 1},
		{"flotilla_operations_finished_total", []string{"kind=delete", "result=succeeded"}, 1},
		{"flotilla_operations_finished_total", nil, 4}, // and so none failed or was canceled
		{"flotilla_operation_duration_seconds_count", []string{"kind=create", "result=succeeded"}, 2},
		{"flotilla_operation_duration_seconds_count", []string{"kind=stop", "result=succeeded"}, 1},
		{"flotilla_instances", []string{"status=STOPPED"}, 1},
		{"flotilla_instances", []string{"status=DELETED"}, 1},
		{"flotilla_instances", nil, 2},
		{"flotilla_hosts", []string{"status=ready"}, 1},
		{"flotilla_hosts", nil, 1},
		{"flotilla_agent_sessions", nil, 1},
		{"flotilla_raft_state", []string{"state=leader"}, 1},
		{"flotilla_raft_state", nil, 1},
		{"flotilla_raft_leader_known", nil, 1},
		{"grpc_server_handled_total", []string{"grpc_service=flotilla.v1.InstanceService", "grpc_method=CreateInstance", "grpc_code=OK"}, 2},
		{"grpc_server_handled_total", []string{"grpc_method=StopInstance", "grpc_code=OK"}, 1},
		{"grpc_server_handled_total", []string{"grpc_method=DeleteInstance", "grpc_code=OK"}, 1},
		{"grpc_server_handling_seconds_count", []string{"grpc_method=CreateInstance"}, 2},
		{"flotilla_watch_streams", nil, 1},
		{"flotilla_build_info", nil, 1},
	})
	m := scrape(t, coordHTTP)
	if n, _ := m.value("flotilla_raft_apply_duration_seconds_count"); n < 4 {
		t.Errorf("flotilla_raft_apply_duration_seconds_count %v: want at least one entry per write (4)", n)
	}
	if n, _ := m.value("flotilla_raft_apply_batch_commands_sum"); n < 4 {
		t.Errorf("flotilla_raft_apply_batch_commands_sum %v: want at least the 4 writes", n)
	}
	if commit, _ := m.value("flotilla_raft_commit_index"); commit < 4 {
		t.Errorf("flotilla_raft_commit_index %v", commit)
	}
	// The stop's power event (and the creates') reached the leader.
	testenv.Eventually(t, 30*time.Second, "flotilla_event_visible_seconds{kind=power} to count the power events", func() bool {
		n, _ := scrape(t, coordHTTP).value("flotilla_event_visible_seconds_count", "kind=power")
		return n >= 1
	})

	waitMetrics(t, agentHTTP, []expect{
		{"flotilla_agent_registered", nil, 1},
		{"flotilla_agent_steps_total", []string{"action=preflight", "result=succeeded"}, 2},
		{"flotilla_agent_steps_total", []string{"action=create", "result=succeeded"}, 2},
		{"flotilla_agent_steps_total", []string{"action=stop", "result=succeeded"}, 1},
		{"flotilla_agent_steps_total", []string{"action=delete", "result=succeeded"}, 1},
		{"flotilla_agent_steps_total", nil, 6}, // and so none failed
		{"flotilla_agent_step_duration_seconds_count", []string{"action=create"}, 2},
		{"flotilla_build_info", nil, 1},
		// The fake hypervisor's guests have no channel: none connected.
		{"flotilla_agent_guest_channels", []string{"protocol=v1"}, 0},
		{"flotilla_agent_guest_channels", []string{"protocol=v2"}, 0},
	})

	// Every metric either daemon exposes is in docs/observability.md.
	doc := observabilityDoc(t)
	for _, addr := range []string{coordHTTP, agentHTTP} {
		var names []string
		for _, s := range scrape(t, addr) {
			if metricName.MatchString(s.name) {
				names = append(names, s.name)
			}
		}
		if missing := undocumented(doc, names); len(missing) > 0 {
			t.Errorf("%s exposes metrics docs/observability.md does not list: %v", addr, missing)
		}
	}

	watch.Close()
	waitMetrics(t, coordHTTP, []expect{{"flotilla_watch_streams", nil, 0}})
}

// waitMetrics waits until addr's /metrics meets want, and fails saying
// what it lacks if it never does.
func waitMetrics(t *testing.T, addr string, want []expect) {
	t.Helper()
	var lacks []string
	deadline := time.Now().Add(30 * time.Second)
	testenv.Eventually(t, 31*time.Second, addr+"/metrics to show the operations", func() bool {
		lacks = scrape(t, addr).missing(want)
		if len(lacks) > 0 && time.Now().After(deadline) {
			t.Fatalf("%s/metrics lacks:\n  %s", addr, strings.Join(lacks, "\n  "))
		}
		return len(lacks) == 0
	})
}

func call(t *testing.T, g *testenv.Grpcurl, method string, req map[string]any) map[string]any {
	t.Helper()
	return g.MustCall("flotilla.v1.InstanceService/"+method, req)
}

func createInstance(t *testing.T, g *testenv.Grpcurl, name string) string {
	t.Helper()
	op := call(t, g, "CreateInstance", map[string]any{"name": name, "requestId": "create-" + name,
		"spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"}})
	mustSucceed(t, g, op)
	return testenv.Str(op, "instanceId")
}

// mustSucceed waits for the operation to end and fails unless it succeeded.
func mustSucceed(t *testing.T, g *testenv.Grpcurl, op map[string]any) {
	t.Helper()
	id := testenv.Str(op, "id")
	var done map[string]any
	testenv.Eventually(t, 2*time.Minute, "operation "+id+" to end", func() bool {
		done = g.MustCall("flotilla.v1.OperationService/WaitOperation", map[string]any{"id": id, "timeout": "30s"})
		return testenv.Str(done, "done") == "true"
	})
	if got := testenv.Str(done, "state"); got != "OPERATION_STATE_SUCCEEDED" {
		t.Fatalf("operation %s %s ended %s: %s", id, testenv.Str(done, "kind"), got, testenv.Str(done, "error"))
	}
}
