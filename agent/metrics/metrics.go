// Package metrics is the agent's Prometheus metrics: the steps it runs
// (counted and timed where the session hands them to the executor) and
// whether it is registered with a coordinator. docs/observability.md lists
// them.
package metrics

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flotilla-vm/flotilla/internal/version"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// Agent is one agent's metrics, in a registry of its own.
type Agent struct {
	Registry *prometheus.Registry
	steps    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// Disk copies this agent pulled (moves, resizes across hosts).
	copyBytes *prometheus.CounterVec
	copyRate  prometheus.Histogram
}

// Buckets of a step's duration: from a pause to a disk copied between hosts.
var stepBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800}

// New makes the agent's metrics: the Go runtime's and the process's too,
// and the build's (flotilla_build_info).
func New() *Agent {
	m := &Agent{
		Registry: prometheus.NewRegistry(),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flotilla_agent_steps_total",
			Help: "Steps this agent answered, by action (create, start, ...) and result (succeeded, failed); a step asked again after it ended is answered from the journal and counted again.",
		}, []string{"action", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flotilla_agent_step_duration_seconds",
			Help:    "Time this agent took to answer a step, by action and result.",
			Buckets: stepBuckets,
		}, []string{"action", "result"}),
		copyBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flotilla_agent_disk_copy_bytes_total",
			Help: "Bytes of the disk copies this agent pulled and verified: kind=disk the image's bytes (holes included), kind=wire what came over the network (compressed, holes free).",
		}, []string{"kind"}),
		copyRate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flotilla_agent_disk_copy_rate_bytes_per_second",
			Help:    "Rate of each disk copy this agent pulled: the image's bytes over the time the copy took.",
			Buckets: prometheus.ExponentialBuckets(1<<20, 2, 12), // 1 MiB/s .. 2 GiB/s
		}),
	}
	info := version.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "flotilla_build_info",
		Help:        "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": info.Version, "commit": info.Commit, "goversion": info.Go},
	})
	build.Set(1)
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.steps, m.duration, m.copyBytes, m.copyRate, build)
	return m
}

// Registered reports the agent's session: registered says whether a
// coordinator has registered it now.
func (m *Agent) Registered(registered func() bool) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flotilla_agent_registered",
		Help: "1 while the agent is connected and registered with a coordinator, else 0.",
	}, func() float64 {
		if registered() {
			return 1
		}
		return 0
	}))
}

// Executor runs steps (agent/executor.Executor, as agent/session uses it).
type Executor interface {
	Execute(step *agentv1.RunStep, sessionEpoch uint64) *agentv1.StepResult
	Report(stepID, operationID string) *agentv1.StepReport
}

// Steps wraps e so that every step it answers is counted and timed.
func (m *Agent) Steps(e Executor) Executor { return steps{e, m} }

type steps struct {
	Executor
	m *Agent
}

func (s steps) Execute(step *agentv1.RunStep, sessionEpoch uint64) *agentv1.StepResult {
	began := time.Now()
	res := s.Executor.Execute(step, sessionEpoch)
	if res != nil { // nil: the step was already running; its first call answers
		result := "failed"
		if res.GetSucceeded() {
			result = "succeeded"
		}
		action := actionName(step.GetAction())
		s.m.steps.WithLabelValues(action, result).Inc()
		s.m.duration.WithLabelValues(action, result).Observe(time.Since(began).Seconds())
	}
	return res
}

// actionNames are the actions as labels: STEP_ACTION_HARD_RESTART is
// hard_restart.
var actionNames = func() map[agentv1.StepAction]string {
	out := map[agentv1.StepAction]string{}
	for v, name := range agentv1.StepAction_name {
		out[agentv1.StepAction(v)] = strings.ToLower(strings.TrimPrefix(name, "STEP_ACTION_"))
	}
	return out
}()

func actionName(a agentv1.StepAction) string {
	if name, ok := actionNames[a]; ok {
		return name
	}
	return "unknown"
}

// DiskCopied counts one finished disk copy (transfer.Config.Copied):
// disk and wire bytes, and its rate.
func (m *Agent) DiskCopied(disk, wire int64, took time.Duration) {
	m.copyBytes.WithLabelValues("disk").Add(float64(max(disk, 0)))
	m.copyBytes.WithLabelValues("wire").Add(float64(max(wire, 0)))
	if took > 0 {
		m.copyRate.Observe(float64(disk) / took.Seconds())
	}
}

// GuestChannels registers the gauge of the guest channels connected now,
// by protocol (guestchan.Watcher.Connections), read when scraped.
func (m *Agent) GuestChannels(connections func() map[int]int) {
	m.Registry.MustRegister(guestChannels{connections})
}

var guestChannelsDesc = prometheus.NewDesc("flotilla_agent_guest_channels",
	"Guest channels connected now, by the protocol the guest side's HELLO named (v1, v2; none: connected, no HELLO yet).",
	[]string{"protocol"}, nil)

type guestChannels struct{ connections func() map[int]int }

func (c guestChannels) Describe(ch chan<- *prometheus.Desc) { ch <- guestChannelsDesc }

func (c guestChannels) Collect(ch chan<- prometheus.Metric) {
	n := c.connections()
	// v1 and v2 always, so that a dashboard shows 0 rather than nothing.
	for _, p := range []int{1, 2} {
		ch <- prometheus.MustNewConstMetric(guestChannelsDesc, prometheus.GaugeValue, float64(n[p]), fmt.Sprintf("v%d", p))
	}
	if n[0] > 0 {
		ch <- prometheus.MustNewConstMetric(guestChannelsDesc, prometheus.GaugeValue, float64(n[0]), "none")
	}
	for p, v := range n {
		if p > 2 {
			ch <- prometheus.MustNewConstMetric(guestChannelsDesc, prometheus.GaugeValue, float64(v), fmt.Sprintf("v%d", p))
		}
	}
}
