// Command flotilla-coordinator runs one member of the Flotilla coordinator
// cluster: the replicated state, the public gRPC API and the agent link.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-vm/flotilla/cmd/internal/daemon"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/limits"
	"github.com/flotilla-vm/flotilla/coordinator/metrics"
	"github.com/flotilla-vm/flotilla/coordinator/node"
	"github.com/flotilla-vm/flotilla/coordinator/raftstore"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/opshttp"
	"github.com/flotilla-vm/flotilla/internal/version"
)

func main() {
	var (
		nodeID       = flag.String("node-id", "coordinator-1", "stable id of this coordinator")
		dataDir      = flag.String("data-dir", "/var/lib/flotilla/coordinator", "directory for the Raft log and snapshots")
		listen       = flag.String("listen", "127.0.0.1:7443", "address of the gRPC API and agent link")
		raftAddr     = flag.String("raft-addr", "127.0.0.1:7000", "address of the Raft transport")
		bootstrap    = flag.Bool("bootstrap", true, "form a new single-server cluster if the data dir is empty (ignored with --join)")
		join         = flag.String("join", "", "API address of any member of an existing cluster to join")
		snapEvery    = flag.Uint64("snapshot-threshold", 0, "log entries between snapshots (0: default 8192)")
		trailing     = flag.Uint64("trailing-logs", 0, "log entries kept after a snapshot (0: default 10240)")
		fastRaft     = flag.Bool("raft-fast", false, "short Raft timeouts (for clusters on one machine, e.g. tests)")
		heartbeat    = flag.Duration("agent-heartbeat-interval", 2*time.Second, "how often agents send heartbeats")
		resync       = flag.Duration("agent-resync-interval", 30*time.Second, "how often agents send their full inventory")
		placement    = flag.String("placement", "spread", "spread (least used memory share first) or pack (fill hosts first)")
		cpuOver      = flag.Float64("cpu-overcommit", 4, "vCPUs placed per physical CPU (Nova's default allocation ratio)")
		memOver      = flag.Float64("memory-overcommit", 1, "memory placed per MiB of physical memory")
		diskOver     = flag.Float64("disk-overcommit", 1, "disk placed per GiB of physical disk (copy-on-write disks are sparse)")
		deadlines    = deadlineFlag{}
		readiness    = flag.Duration("readiness-timeout", 10*time.Minute, "how long a guest that reports its boot may take to be ready before it is stranded, unless its create says; 0: never stranded")
		softDel      = flag.Duration("soft-delete-retention", 0, "the retention window of deleted instances: a delete keeps the instance SOFT_DELETED (disk and record, restorable) this long, then reclaims it; 0 deletes at once")
		billingEvery = flag.Duration("billing-interval", node.DefaultBillingInterval, "how often billed projects are charged for their usage (and frozen when their balance runs out)")
		retention    = flag.Duration("history-retention", 720*time.Hour, "how long a deleted instance's records (operations, usage) are kept after its deletion; 0 keeps them for ever")
		tlsCert      = flag.String("tls-cert", "", "certificate (PEM) for mutual TLS; with --tls-key and --tls-ca")
		tlsKey       = flag.String("tls-key", "", "private key (PEM) of --tls-cert")
		tlsCA        = flag.String("tls-ca", "", "CA bundle (PEM) that signs agents, coordinators and clients")
		recoverSN    = flag.Bool("recover-single-node", false, "disaster recovery, with the server stopped: rewrite the Raft configuration in --data-dir so this server (--node-id at --raft-addr) is the only voter, keeping all its data, then exit (docs/cluster.md)")
		insecure     = flag.Bool("insecure-dev", false, "plaintext development mode, loopback only: no authentication, every caller holds every role (without TLS and without this flag, loopback still works with a warning)")
		limRate      = flag.Float64("limit-rate", limits.Defaults.Rate, "calls per second one caller (certificate name, or IP address in plaintext) may make, sustained; 0: no limit")
		limBurst     = flag.Int("limit-burst", limits.Defaults.Burst, "calls one caller may make at once above --limit-rate")
		limFlight    = flag.Int("limit-in-flight", limits.Defaults.InFlight, "unary calls one caller may have running at once; 0: no limit")
		limStream    = flag.Int("limit-streams", limits.Defaults.Streams, "streams (watches, agent sessions) one caller may have open at once; 0: no limit")
		staleRead    = flag.Duration("stale-read-bound", node.DefaultStaleReadBound, "how long this coordinator may know no Raft leader before it refuses reads with UNAVAILABLE (health says NOT_SERVING after one election timeout); negative: never")
		logJSON      = flag.Bool("log-json", false, "deprecated: use --log-format=json (--log-json=false: --log-format=text)")
		common       daemon.Flags
	)
	common.Register(flag.CommandLine)
	flag.Var(deadlines, "operation-deadline", "deadline of one kind of operation, kind=duration (e.g. create=10m; repeatable)")
	if err := daemon.Configure(flag.CommandLine, "FLOTILLA_COORDINATOR_", os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-coordinator:", err)
		os.Exit(2)
	}
	if common.Version {
		daemon.PrintVersion(os.Stdout, "flotilla-coordinator")
		return
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "flotilla-coordinator: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	deprecated, err := logJSONAlias(flag.CommandLine, *logJSON, &common)
	if err == nil {
		err = common.Check()
	}
	if err == nil && !common.PrintConfig {
		err = errors.Join(daemon.CheckAddr("listen", *listen), daemon.CheckAddr("raft-addr", *raftAddr),
			daemon.CheckWritableDir("data-dir", *dataDir))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-coordinator:", err)
		os.Exit(2)
	}
	if common.PrintConfig {
		daemon.PrintConfig(os.Stdout, flag.CommandLine)
		return
	}
	gogc, memLimit := tuneGC()
	log := common.Logger(os.Stderr)
	if deprecated {
		log.Warn("--log-json is deprecated: use --log-format=json or --log-format=text")
	}
	log.Info("starting", "version", version.Get().Short())
	log.Info("garbage collector", "gogc", gogc, "memory_limit_bytes", memLimit)
	if *placement != "spread" && *placement != "pack" {
		fmt.Fprintln(os.Stderr, "flotilla-coordinator: --placement must be spread or pack")
		os.Exit(2)
	}
	for _, r := range []float64{*cpuOver, *memOver, *diskOver} {
		if r < 1 || r > 64 {
			fmt.Fprintln(os.Stderr, "flotilla-coordinator: overcommit ratios must be 1..64")
			os.Exit(2)
		}
	}
	if *readiness < 0 {
		fmt.Fprintln(os.Stderr, "flotilla-coordinator: --readiness-timeout must not be negative")
		os.Exit(2)
	}
	if *softDel < 0 {
		fmt.Fprintln(os.Stderr, "flotilla-coordinator: --soft-delete-retention must not be negative")
		os.Exit(2)
	}
	if *retention < 0 {
		fmt.Fprintln(os.Stderr, "flotilla-coordinator: --history-retention must not be negative")
		os.Exit(2)
	}
	if *limRate < 0 || *limBurst < 0 || *limFlight < 0 || *limStream < 0 {
		fmt.Fprintln(os.Stderr, "flotilla-coordinator: --limit-* must not be negative")
		os.Exit(2)
	}
	if *heartbeat <= 0 || *resync <= 0 {
		fmt.Fprintln(os.Stderr, "flotilla-coordinator: intervals must be positive")
		os.Exit(2)
	}
	if *recoverSN {
		if err := raftstore.RecoverSingleNode(raftstore.Config{NodeID: *nodeID, DataDir: *dataDir, BindAddr: *raftAddr, FastTimeouts: *fastRaft, Logger: log},
			fsm.New(state.New(0), log)); err != nil {
			log.Error("recovery failed", "err", err)
			os.Exit(1)
		}
		log.Warn("recovered: this server is now a cluster of one voter with all its data; start it without --recover-single-node, then add new servers (never restart the lost ones with their old data dirs)",
			"node", *nodeID, "raft", *raftAddr, "data_dir", *dataDir)
		return
	}
	m := metrics.New()
	n, err := node.Start(node.Config{
		NodeID: *nodeID, DataDir: *dataDir, RaftAddr: *raftAddr, APIAddr: *listen, Bootstrap: *bootstrap,
		Join: *join, SnapshotThreshold: *snapEvery, TrailingLogs: *trailing, FastRaft: *fastRaft,
		HeartbeatInterval: *heartbeat, ResyncInterval: *resync, Logger: log,
		Deadlines: deadlines, HistoryRetention: *retention, BillingInterval: *billingEvery, SoftDeleteRetention: *softDel, ReadinessTimeout: *readiness,
		TLS:       mtls.Files{Cert: *tlsCert, Key: *tlsKey, CA: *tlsCA},
		Placement: scheduler.Policy{Pack: *placement == "pack", CPUOvercommit: *cpuOver, MemoryOvercommit: *memOver, DiskOvercommit: *diskOver},
		Metrics:   m, InsecureDev: *insecure, StaleReadBound: *staleRead,
		Limits: &limits.Config{Rate: *limRate, Burst: *limBurst, InFlight: *limFlight, Streams: *limStream},
	})
	if err != nil {
		log.Error("start failed", "err", err)
		os.Exit(1)
	}
	if common.HTTPListen != "" {
		ops, err := opshttp.Start(common.HTTPListen, opshttp.Config{Gatherer: m.Registry, Ready: n.Ready, Pprof: common.Pprof}, log)
		if err != nil {
			log.Error("start failed", "err", err)
			n.Close()
			os.Exit(1)
		}
		defer ops.Close()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	log.Info("shutting down")
	if err := n.Close(); err != nil {
		log.Error("shutdown", "err", err)
		os.Exit(1)
	}
}

// logJSONAlias applies the deprecated --log-json, if it was given, to
// --log-format, and reports whether it was. Both given and disagreeing is
// an error.
func logJSONAlias(fs *flag.FlagSet, logJSON bool, f *daemon.Flags) (given bool, err error) {
	formatGiven := false
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "log-json":
			given = true
		case "log-format":
			formatGiven = true
		}
	})
	if !given {
		return false, nil
	}
	want := "text"
	if logJSON {
		want = "json"
	}
	if formatGiven && f.LogFormat != want {
		return true, fmt.Errorf("--log-json=%t contradicts --log-format=%s (--log-json is deprecated: drop it)", logJSON, f.LogFormat)
	}
	f.LogFormat = want
	return true, nil
}

// deadlineFlag parses repeated kind=duration operation deadlines.
type deadlineFlag map[lifecycle.OpKind]time.Duration

func (f deadlineFlag) String() string { return fmt.Sprint(map[lifecycle.OpKind]time.Duration(f)) }

// Settings is each kind=duration, for --print-config.
func (f deadlineFlag) Settings() []string { return daemon.SortedSettings(f) }

func (f deadlineFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want kind=duration, got %q", s)
	}
	kind := lifecycle.OpKind(k)
	if _, known := lifecycle.DefaultDeadlines[kind]; !known {
		return fmt.Errorf("unknown operation kind %q", k)
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second || d > 24*time.Hour {
		return fmt.Errorf("deadline %q: want a duration of 1s..24h", v)
	}
	f[kind] = d
	return nil
}
