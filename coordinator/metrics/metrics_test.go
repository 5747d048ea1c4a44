package metrics

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

type fakeRaft struct {
	state                 string
	leader                string
	last, commit, applied uint64
}

func (f fakeRaft) State() string                           { return f.state }
func (f fakeRaft) Leader() (string, string)                { return "", f.leader }
func (f fakeRaft) Indexes() (last, commit, applied uint64) { return f.last, f.commit, f.applied }

type fakeStore struct {
	instances []*state.Instance
	hosts     []*state.Host
}

func (f fakeStore) EachInstance(fn func(*state.Instance)) {
	for _, i := range f.instances {
		fn(i)
	}
}

func (f fakeStore) EachHost(fn func(*state.Host)) {
	for _, h := range f.hosts {
		fn(h)
	}
}

type fakeAgents int

func (f fakeAgents) Sessions() int { return int(f) }

func TestRaftCollector(t *testing.T) {
	for _, tc := range []struct {
		name string
		raft fakeRaft
		want string
	}{
		{"leader", fakeRaft{"Leader", "c1", 12, 11, 10}, `
flotilla_raft_state{state="candidate"} 0
flotilla_raft_state{state="follower"} 0
flotilla_raft_state{state="leader"} 1
flotilla_raft_state{state="shutdown"} 0
flotilla_raft_leader_known 1
flotilla_raft_last_index 12
flotilla_raft_commit_index 11
flotilla_raft_applied_index 10
`},
		{"candidate without a leader", fakeRaft{"Candidate", "", 5, 5, 5}, `
flotilla_raft_state{state="candidate"} 1
flotilla_raft_state{state="follower"} 0
flotilla_raft_state{state="leader"} 0
flotilla_raft_state{state="shutdown"} 0
flotilla_raft_leader_known 0
flotilla_raft_last_index 5
flotilla_raft_commit_index 5
flotilla_raft_applied_index 5
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := exposition(t, raftCollector{tc.raft})
			if got != sortedLines(tc.want) {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestStateCollector(t *testing.T) {
	deleted := &state.Instance{ID: "i-1", Desired: lifecycle.DesiredDeleted, Power: lifecycle.PowerNoDomain, Result: lifecycle.ResultSucceeded}
	running := &state.Instance{ID: "i-2", HostID: "h1", Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Result: lifecycle.ResultSucceeded}
	running2 := &state.Instance{ID: "i-3", HostID: "h1", Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Result: lifecycle.ResultSucceeded}
	creating := &state.Instance{ID: "i-4", HostID: "h1", Desired: lifecycle.DesiredRunning, CurrentOpK: lifecycle.OpCreate}
	for _, tc := range []struct {
		name  string
		store fakeStore
		want  string
	}{
		{"empty: every host status, no instance", fakeStore{}, `
flotilla_hosts{status="disconnected"} 0
flotilla_hosts{status="down"} 0
flotilla_hosts{status="ready"} 0
`},
		{"some of each", fakeStore{
			instances: []*state.Instance{deleted, running, running2, creating},
			hosts:     []*state.Host{{ID: "h1", Status: state.HostReady}, {ID: "h2", Status: state.HostReady}, {ID: "h3", Status: state.HostDown}},
		}, `
flotilla_instances{status="CREATING"} 1
flotilla_instances{status="DELETED"} 1
flotilla_instances{status="RUNNING"} 2
flotilla_hosts{status="disconnected"} 0
flotilla_hosts{status="down"} 1
flotilla_hosts{status="ready"} 2
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := exposition(t, stateCollector{tc.store})
			if got != sortedLines(tc.want) {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestOperationsAndCommits(t *testing.T) {
	m := New()
	m.Observe(fakeRaft{state: "Follower"}, fakeStore{}, fakeAgents(2))
	for _, e := range []struct {
		kind lifecycle.OpKind
		end  state.OpState
		took time.Duration
	}{
		{lifecycle.OpCreate, state.OpSucceeded, 2 * time.Second},
		{lifecycle.OpCreate, state.OpSucceeded, 3 * time.Second},
		{lifecycle.OpCreate, state.OpFailed, time.Second},
		{lifecycle.OpStop, state.OpCanceled, -time.Second}, // no end time recorded: counted as 0
		{lifecycle.OpKind("future-kind"), state.OpSucceeded, time.Second},
	} {
		m.OperationEnded(e.kind, e.end, e.took)
	}
	m.Committed(3, 4*time.Millisecond)
	m.Committed(1, time.Millisecond)
	// Children made in advance report 0 too; compare only those that moved.
	got := exposition(t, m.opsFinished)
	for _, line := range []string{
		`flotilla_operations_finished_total{kind="create",result="failed"} 1`,
		`flotilla_operations_finished_total{kind="create",result="succeeded"} 2`,
		`flotilla_operations_finished_total{kind="future-kind",result="succeeded"} 1`,
		`flotilla_operations_finished_total{kind="stop",result="canceled"} 1`,
		`flotilla_operations_finished_total{kind="start",result="succeeded"} 0`,
	} {
		if !strings.Contains("\n"+got+"\n", "\n"+line+"\n") {
			t.Errorf("missing %s in\n%s", line, got)
		}
	}
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(`
# HELP flotilla_agent_sessions Agents with a live session to this member (the leader holds them all).
# TYPE flotilla_agent_sessions gauge
flotilla_agent_sessions 2
`), "flotilla_agent_sessions"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.opDuration); n != len(m.ends)+1 {
		t.Errorf("%d duration series, want %d", n, len(m.ends)+1)
	}
	if got := histogramSum(t, m, "flotilla_operation_duration_seconds", `kind="create",result="succeeded"`); got != 5 {
		t.Errorf("create duration sum %v, want 5", got)
	}
	if got := histogramSum(t, m, "flotilla_operation_duration_seconds", `kind="stop",result="canceled"`); got != 0 {
		t.Errorf("stop duration sum %v, want 0", got)
	}
	if got := histogramSum(t, m, "flotilla_raft_apply_batch_commands", ""); got != 4 {
		t.Errorf("batch commands sum %v, want 4", got)
	}
}

func TestWatchStreams(t *testing.T) {
	m := New()
	ic := m.StreamInterceptor()
	for _, tc := range []struct {
		method string
		watch  bool
	}{
		{"/flotilla.v1.InstanceService/WatchInstances", true},
		{"/flotilla.v1.OperationService/WatchOperations", true},
		{"/flotilla.cluster.v1.RelayService/Relay", false},
		{"/flotilla.agent.v1.AgentService/Connect", false},
	} {
		var during float64
		err := ic(nil, fakeStream{}, &grpc.StreamServerInfo{FullMethod: tc.method, IsServerStream: true}, func(any, grpc.ServerStream) error {
			during = testutil.ToFloat64(m.watches)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]float64{true: 1, false: 0}[tc.watch]; during != want {
			t.Errorf("%s: %v watch streams while open, want %v", tc.method, during, want)
		}
		if after := testutil.ToFloat64(m.watches); after != 0 {
			t.Errorf("%s: %v watch streams after, want 0", tc.method, after)
		}
	}
}

type fakeStream struct{ grpc.ServerStream }

func (fakeStream) Context() context.Context { return context.Background() }

// exposition is what c exposes, in the text format, without comments,
// its lines sorted.
func exposition(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range fams {
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	return sortedLines(b.String())
}

func sortedLines(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// histogramSum is the sum of the histogram name's series with labels
// (as exposed, e.g. `kind="create",result="succeeded"`).
func histogramSum(t *testing.T, m *Coordinator, name, labels string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			var ls []string
			for _, l := range s.GetLabel() {
				ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if strings.Join(ls, ",") == labels {
				return s.GetHistogram().GetSampleSum()
			}
		}
	}
	t.Fatalf("no %s{%s}", name, labels)
	return 0
}
