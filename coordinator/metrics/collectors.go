package metrics

import (
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

var (
	raftStateDesc = prometheus.NewDesc("flotilla_raft_state",
		"1 for this member's Raft state (leader, follower, candidate, shutdown), 0 for the others.", []string{"state"}, nil)
	raftLeaderDesc = prometheus.NewDesc("flotilla_raft_leader_known",
		"1 if this member knows a leader, else 0.", nil, nil)
	raftLastDesc = prometheus.NewDesc("flotilla_raft_last_index",
		"Index of the last entry in this member's Raft log.", nil, nil)
	raftCommitDesc = prometheus.NewDesc("flotilla_raft_commit_index",
		"Index of the last entry this member knows committed.", nil, nil)
	raftAppliedDesc = prometheus.NewDesc("flotilla_raft_applied_index",
		"Index of the last entry this member handed to its state machine.", nil, nil)
	instancesDesc = prometheus.NewDesc("flotilla_instances",
		"Instances by status (the API's status, e.g. RUNNING), as this member's state holds them; deleted instances count until retention removes them.", []string{"status"}, nil)
	hostsDesc = prometheus.NewDesc("flotilla_hosts",
		"Hosts by status (ready, disconnected, down), as this member's state holds them.", []string{"status"}, nil)
	sessionsDesc = prometheus.NewDesc("flotilla_agent_sessions",
		"Agents with a live session to this member (the leader holds them all).", nil, nil)
)

// raftStates are the values of flotilla_raft_state's label, each always
// reported, so that a dashboard sees a state's 0 as well as its 1.
var raftStates = []string{"leader", "follower", "candidate", "shutdown"}

type raftCollector struct{ r Raft }

func (c raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{raftStateDesc, raftLeaderDesc, raftLastDesc, raftCommitDesc, raftAppliedDesc} {
		ch <- d
	}
}

func (c raftCollector) Collect(ch chan<- prometheus.Metric) {
	now := strings.ToLower(c.r.State())
	for _, s := range raftStates {
		ch <- prometheus.MustNewConstMetric(raftStateDesc, prometheus.GaugeValue, bool01(s == now), s)
	}
	_, id := c.r.Leader()
	ch <- prometheus.MustNewConstMetric(raftLeaderDesc, prometheus.GaugeValue, bool01(id != ""))
	last, commit, applied := c.r.Indexes()
	ch <- prometheus.MustNewConstMetric(raftLastDesc, prometheus.GaugeValue, float64(last))
	ch <- prometheus.MustNewConstMetric(raftCommitDesc, prometheus.GaugeValue, float64(commit))
	ch <- prometheus.MustNewConstMetric(raftAppliedDesc, prometheus.GaugeValue, float64(applied))
}

// hostStatuses are always reported, 0 included.
var hostStatuses = []state.HostStatus{state.HostReady, state.HostDisconnected, state.HostDown}

type stateCollector struct{ s Store }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- instancesDesc
	ch <- hostsDesc
}

// Collect counts the records under the store's read lock, one pass each:
// scrapes are seconds apart, and the write path pays nothing.
func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	instances := map[lifecycle.Status]int{}
	c.s.EachInstance(func(i *state.Instance) { instances[i.Status()]++ })
	hosts := map[state.HostStatus]int{}
	for _, s := range hostStatuses {
		hosts[s] = 0
	}
	c.s.EachHost(func(h *state.Host) { hosts[h.Status]++ })
	for _, s := range sortedKeys(instances) {
		ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(instances[s]), string(s))
	}
	for _, s := range sortedKeys(hosts) {
		ch <- prometheus.MustNewConstMetric(hostsDesc, prometheus.GaugeValue, float64(hosts[s]), string(s))
	}
}

type agentsCollector struct{ a Agents }

func (c agentsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- sessionsDesc }

func (c agentsCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(c.a.Sessions()))
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[K ~string](m map[K]int) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}
