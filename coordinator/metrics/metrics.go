// Package metrics is the coordinator's Prometheus metrics: the gRPC API's
// (through the ecosystem's middleware), Raft's, the operations', and the
// state's, which are read from the store when scraped rather than kept up
// to date on the write path. docs/observability.md lists them.
package metrics

import (
	"strings"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/version"
)

// Raft is this member's Raft node (raftstore.Store).
type Raft interface {
	State() string
	Indexes() (last, commit, applied uint64)
	Leader() (addr, id string)
}

// Store is the replicated state, read at scrape time (state.Store).
type Store interface {
	EachInstance(fn func(*state.Instance))
	EachHost(fn func(*state.Host))
}

// Agents counts the agents' live sessions (agentlink.Server).
type Agents interface{ Sessions() int }

// Coordinator is one coordinator's metrics, in a registry of its own.
type Coordinator struct {
	Registry *prometheus.Registry
	grpc     *grpcprom.ServerMetrics

	applyLatency prometheus.Histogram
	batchSize    prometheus.Histogram
	opsFinished  *prometheus.CounterVec
	opDuration   *prometheus.HistogramVec
	watches      prometheus.Gauge
	eventVisible *prometheus.HistogramVec
	// ends holds the children of opsFinished and opDuration for the
	// known kinds and ends, made once: the store tells of an ending
	// operation under its write lock, where a vector's own lookup (a lock
	// and a hash of the labels) is not wanted.
	ends map[opEnd]endMetrics
}

type opEnd struct {
	kind lifecycle.OpKind
	end  state.OpState
}

type endMetrics struct {
	finished prometheus.Counter
	duration prometheus.Observer
}

// Buckets of the operations' durations: from a recorded no-op to a disk
// copied between hosts.
var opBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

// Buckets of a Raft entry's way from Apply to applied: an fsync on a quorum.
var applyBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// New makes the coordinator's metrics: the Go runtime's and the process's
// too, and the build's (flotilla_build_info).
func New() *Coordinator {
	m := &Coordinator{
		Registry: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}))),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flotilla_raft_apply_duration_seconds",
			Help:    "Time from proposing a Raft entry to its being applied on this member (the leader): commit on a quorum and apply.",
			Buckets: applyBuckets,
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flotilla_raft_apply_batch_commands",
			Help:    "Commands in each Raft entry the leader proposed (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
		opsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flotilla_operations_finished_total",
			Help: "Operations that ended, by kind and result (succeeded, failed, canceled), as this member applied them.",
		}, []string{"kind", "result"}),
		opDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flotilla_operation_duration_seconds",
			Help:    "Time from an operation's acceptance to its end, by kind and result.",
			Buckets: opBuckets,
		}, []string{"kind", "result"}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flotilla_watch_streams",
			Help: "Watch streams (WatchInstances and the like) open on this member.",
		}),
		eventVisible: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flotilla_event_visible_seconds",
			Help:    "Time from an agent's event (its timestamp, clamped to this member's clock) until this member, the leader, applied it, by kind (power, resync, guest).",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"kind"}),
		ends: map[opEnd]endMetrics{},
	}
	for kind := range lifecycle.DefaultDeadlines {
		for _, end := range []state.OpState{state.OpSucceeded, state.OpFailed, state.OpCanceled} {
			m.ends[opEnd{kind, end}] = m.endMetrics(kind, end)
		}
	}
	info := version.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "flotilla_build_info",
		Help:        "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": info.Version, "commit": info.Commit, "goversion": info.Go},
	})
	build.Set(1)
	m.Registry.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpc, m.applyLatency, m.batchSize, m.opsFinished, m.opDuration, m.watches, m.eventVisible, build,
	)
	return m
}

func (m *Coordinator) endMetrics(kind lifecycle.OpKind, end state.OpState) endMetrics {
	return endMetrics{
		finished: m.opsFinished.WithLabelValues(string(kind), string(end)),
		duration: m.opDuration.WithLabelValues(string(kind), string(end)),
	}
}

// Committed is raftstore.Config.Committed: one entry proposed by this
// member (the leader) is applied.
func (m *Coordinator) Committed(commands int, took time.Duration) {
	m.applyLatency.Observe(took.Seconds())
	m.batchSize.Observe(float64(commands))
}

// OperationEnded is state.Store.OnOperationEnd's function.
func (m *Coordinator) OperationEnded(kind lifecycle.OpKind, end state.OpState, took time.Duration) {
	e, ok := m.ends[opEnd{kind, end}]
	if !ok { // a kind newer than this table: the vector's lookup, rarely
		e = m.endMetrics(kind, end)
	}
	e.finished.Inc()
	e.duration.Observe(max(took, 0).Seconds())
}

// EventVisible is agentlink.Config.EventVisible: an agent's event of
// kind was applied d after the agent stamped it.
func (m *Coordinator) EventVisible(kind string, d time.Duration) {
	m.eventVisible.WithLabelValues(kind).Observe(d.Seconds())
}

// UnaryInterceptor counts and times unary API calls by method and code.
func (m *Coordinator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return m.grpc.UnaryServerInterceptor()
}

// StreamInterceptor counts and times streaming calls, and keeps
// flotilla_watch_streams.
func (m *Coordinator) StreamInterceptor() grpc.StreamServerInterceptor {
	measured := m.grpc.StreamServerInterceptor()
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if isWatch(info.FullMethod) {
			m.watches.Inc()
			defer m.watches.Dec()
		}
		return measured(srv, ss, info, h)
	}
}

// isWatch reports whether a full method name ("/pkg.Service/Method") is a
// watch: a method whose name begins with Watch.
func isWatch(fullMethod string) bool {
	i := strings.LastIndexByte(fullMethod, '/')
	return strings.HasPrefix(fullMethod[i+1:], "Watch")
}

// Observe registers the collectors that read the member's Raft node, its
// state and its agent sessions when scraped.
func (m *Coordinator) Observe(r Raft, s Store, a Agents) {
	m.Registry.MustRegister(raftCollector{r}, stateCollector{s}, agentsCollector{a})
}
