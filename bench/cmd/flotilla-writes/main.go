// Command flotilla-writes benchmarks committed write throughput and latency of
// Flotilla's coordinator cluster against a 3-member etcd cluster on the same
// machine, in the same run, at several client concurrencies.
//
//	go run ./bench/cmd/flotilla-writes [--duration 10s] [--warmup 2s] [--clients 1,16,256]
//	    [--systems etcd,flotilla,flotilla+agent]
//
// etcd comes from Debian's etcd-server package (bench/writes/install-etcd.sh).
// Flotilla is built from this module (go build, no -race) and run as three
// flotilla-coordinator processes: "flotilla" without agents (every create is
// committed waiting for capacity), "flotilla+agent" with one fake agent that
// places and runs every create; "flotilla@leader", a diagnostic, connects its
// clients to the leader only, so that no write is forwarded. See
// bench/writes/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flotilla-vm/flotilla/bench/writes"
)

// flotillaLogLevel is the coordinators' and the agent's log level.
// perfMembers makes --perf-dir record every member, not only the leader.
var perfMembers = flag.Bool("perf-members", false, "with --perf-dir, record every Flotilla member (one file; perf report --sort pid,symbol), not only the leader")

var flotillaLogLevel = flag.String("flotilla-log-level", "warn", "log level of Flotilla's coordinators and agent (etcd runs at error); info adds a log line per placed create on the leader")

func main() {
	duration := flag.Duration("duration", 10*time.Second, "measured time per row")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured warmup before each row")
	clientsFlag := flag.String("clients", "1,16,256", "comma-separated concurrent client counts, one row each")
	systemsFlag := flag.String("systems", "etcd,flotilla,flotilla+agent", "comma-separated systems to run: etcd, flotilla, flotilla+agent, flotilla@leader (clients on the leader only: what forwarding costs)")
	dir := flag.String("dir", "", "parent directory for the clusters' temporary data dirs (default: $TMPDIR or /tmp)")
	opTimeout := flag.Duration("op-timeout", 10*time.Second, "timeout of a single write (a timed-out write counts as an error)")
	perfDir := flag.String("perf-dir", "", "if set, record the Flotilla leader with `perf record -g` during each row's measured window into this directory")
	flag.Parse()

	clients, err := parseClients(*clientsFlag)
	if err != nil {
		fatalf("--clients: %v", err)
	}
	want := strings.Split(*systemsFlag, ",")
	var known []string
	for _, s := range systems() {
		known = append(known, s.name)
	}
	for _, w := range want {
		if !slices.Contains(known, w) {
			fatalf("--systems: unknown system %q (have %s)", w, strings.Join(known, ", "))
		}
	}

	// Ctrl-C / SIGTERM cancel the run; the deferred Closes then kill the
	// clusters and remove their data, and the rows measured so far are printed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	printEnv(*dir)
	// Build Flotilla before measuring anything, so a tree that does not
	// compile fails the run at once rather than after the etcd rows.
	for _, w := range want {
		if strings.HasPrefix(w, "flotilla") {
			if _, err := buildOnce(*dir); err != nil {
				fatalf("%v", err)
			}
			break
		}
	}

	var rows []writes.Row
	failed := false
	for _, sys := range systems() {
		if !slices.Contains(want, sys.name) || ctx.Err() != nil {
			continue
		}
		r, err := runSystem(ctx, sys, *dir, clients, writes.Config{Duration: *duration, Warmup: *warmup}, *opTimeout, *perfDir)
		rows = append(rows, r...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", sys.name, err)
			failed = true
		}
	}
	removeBinaries()
	fmt.Println()
	if err := writes.WriteTable(os.Stdout, rows); err != nil {
		fatalf("%v", err)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "interrupted: partial results")
		os.Exit(130)
	}
	if failed {
		os.Exit(1)
	}
}

// runSystem starts one system, runs a row per client count and closes it.
func runSystem(ctx context.Context, sys system, dir string, clients []int, cfg writes.Config, opTimeout time.Duration, perfDir string) ([]writes.Row, error) {
	start := time.Now()
	t, err := sys.start(ctx, dir)
	if err != nil {
		return nil, err
	}
	if t == nil {
		fmt.Fprintf(os.Stderr, "%s: not available, skipped\n", sys.name)
		return nil, nil
	}
	defer t.Close()
	fmt.Fprintf(os.Stderr, "%s: cluster up in %v\n", sys.name, time.Since(start).Round(time.Millisecond))

	// seq restarts at 0 in every Run; shift it so (client, seq) stays unique
	// for the Target's whole life (rows write new keys, not overwrite, and a
	// create-style Target can use it as an ID).
	var base, maxSeq atomic.Int64
	maxSeq.Store(-1)
	var rows []writes.Row
	for _, n := range clients {
		if ctx.Err() != nil {
			break
		}
		cfg.Clients = n
		b := int(base.Load())
		var firstErr atomic.Pointer[string]
		op := func(ctx context.Context, client, seq int) error {
			s := int64(b + seq)
			for m := maxSeq.Load(); s > m && !maxSeq.CompareAndSwap(m, s); m = maxSeq.Load() {
			}
			octx, cancel := context.WithTimeout(ctx, opTimeout)
			defer cancel()
			err := t.Op(octx, client, int(s))
			if err != nil && ctx.Err() == nil && firstErr.Load() == nil {
				msg := err.Error()
				firstErr.CompareAndSwap(nil, &msg)
			}
			return err
		}
		leaderPid := 0
		if lp, ok := t.(leaderPider); ok {
			leaderPid = lp.LeaderPid(ctx)
		}
		fmt.Fprintf(os.Stderr, "%s: %d clients, %v warmup + %v ...", sys.name, n, cfg.Warmup, cfg.Duration)
		stopPerf := startPerf(perfDir, perfPids(t, leaderPid, *perfMembers), sys.name, n, cfg)
		idx0 := commitIndex(ctx, t)
		c0, cok := sampleCPU()
		p0, t0 := childTicks(), time.Now()
		r := writes.Run(ctx, cfg, op)
		c1, cok1 := sampleCPU()
		p1, wall := childTicks(), time.Since(t0).Seconds()
		idx1 := commitIndex(ctx, t)
		perfOut := stopPerf()
		base.Store(maxSeq.Load() + 1)
		fmt.Fprintf(os.Stderr, " %.0f ops/s, p50 %v, p99 %v, max %v, %d errors",
			r.Throughput, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond), r.Errors)
		var others float64
		if cok && cok1 {
			var ours float64
			ours, others = otherLoad(c0, c1)
			fmt.Fprintf(os.Stderr, "; CPU: benchmark+cluster %.0f%%, other processes %.0f%%", 100*ours, 100*others)
			if others > writes.NoisyCPU {
				fmt.Fprint(os.Stderr, " (WARNING: machine not quiet, numbers suspect)")
			}
		}
		fmt.Fprintln(os.Stderr)
		fmt.Fprintf(os.Stderr, "    CPU by process (%% of one core, warmup included): %s\n", cpuBreakdown(p0, p1, wall, leaderPid))
		if r.Throughput > 0 {
			// The machine is shared and noisy; CPU per write is steadier
			// than writes per second when comparing two builds.
			fmt.Fprintf(os.Stderr, "    cluster CPU per write: %.0f µs (warmup included)\n", 1e6*clusterCPU(p0, p1)/(r.Throughput*wall))
		}
		if idx0 > 0 && idx1 > idx0 {
			// Warmup included, as for the CPU figures: entries over all writes
			// of the row (measured ones are r.Ops of them).
			total := float64(r.Ops) * (cfg.Warmup + cfg.Duration).Seconds() / r.Elapsed.Seconds()
			fmt.Fprintf(os.Stderr, "    Raft log: %d entries, %.0f/s, ~%.1f writes per entry\n",
				idx1-idx0, float64(idx1-idx0)/wall, total/float64(idx1-idx0))
		}
		if e := firstErr.Load(); e != nil {
			fmt.Fprintf(os.Stderr, "    first error: %s\n", *e)
		}
		if perfOut != "" {
			fmt.Fprintf(os.Stderr, "    leader profile: %s\n", perfOut)
		}
		if ctx.Err() != nil && r.Elapsed < cfg.Duration {
			break // interrupted: don't report a truncated row
		}
		rows = append(rows, writes.Row{System: t.Name(), Clients: n, Result: r, OtherCPU: others})
	}
	if ctx.Err() != nil {
		return rows, ctx.Err()
	}
	return rows, nil
}

// commitIndex is the Target's Raft commit index, or 0 if it has none.
func commitIndex(ctx context.Context, t writes.Target) uint64 {
	c, ok := t.(committer)
	if !ok {
		return 0
	}
	i, err := c.CommitIndex(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "    commit index: %v\n", err)
		return 0
	}
	return i
}

func parseClients(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad client count %q", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty")
	}
	return out, nil
}

// printEnv prints what the numbers depend on: etcd version, cores, the disk
// under the data dirs and its fsync latency.
func printEnv(dir string) {
	if dir == "" {
		dir = os.TempDir()
	}
	if bin, err := writes.EtcdBinary(); err == nil {
		if v, err := writes.EtcdVersion(bin); err == nil {
			fmt.Printf("etcd:  %s (%s)\n", v, bin)
		}
	}
	fmt.Printf("cpu:   %d cores (GOMAXPROCS %d); clients and all cluster members share them\n", runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Printf("disk:  %s\n", describeDisk(dir))
	if p50, p99, err := fsyncProbe(dir, 200); err == nil {
		fmt.Printf("fsync: 4 KiB write+fdatasync in %s: p50 %v, p99 %v (~%.0f serial fsyncs/s)\n",
			dir, p50.Round(time.Microsecond), p99.Round(time.Microsecond), float64(time.Second)/float64(p50))
	} else {
		fmt.Printf("fsync: probe failed: %v\n", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "flotilla-writes: "+format+"\n", args...)
	os.Exit(2)
}
