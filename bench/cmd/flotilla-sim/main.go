// Command flotilla-sim simulates a large fleet in one process: one real
// coordinator (node.Start: Raft on disk with fsync, the gRPC API and the
// agent link on one loopback listener) and -hosts in-process agents, each a
// fake hypervisor with its own bbolt step journal, executor and session
// client dialing the coordinator over TCP. -clients goroutines then create
// -instances instances through the public API, and it prints one table:
// placement throughput and latency, time until every instance is RUNNING,
// placement quality, and the process's memory and goroutines.
//
//	go run ./bench/cmd/flotilla-sim [-hosts 1000] [-instances 20000] [-clients 64]
//
// See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"
)

var logLevel slog.LevelVar

type options struct {
	hosts, instances, clients int
	coordinators              int    // 1 or 3 (in-process, one Raft cluster)
	agentDir                  string // parent of the fake agents' journals ("": the run's temp dir)
	failoverAfter             int    // close the leader once this many creates are acknowledged (0: never)
	cpuOvercommit             float64
	pack                      bool
	seed                      uint64
	cpuProfile                string
	createBudget              time.Duration
	runningTimeout            time.Duration
	logLevel                  string
}

func main() {
	var o options
	flag.IntVar(&o.hosts, "hosts", 1000, "in-process agents (fake hypervisors), host ids sim-0000...")
	flag.IntVar(&o.instances, "instances", 20000, "instances to create")
	flag.IntVar(&o.clients, "clients", 64, "concurrent CreateInstance callers")
	flag.IntVar(&o.coordinators, "coordinators", 1, "coordinators in the Raft cluster, in this process (1..5); clients and agents use all of them")
	flag.StringVar(&o.agentDir, "agent-dir", "", "parent directory of the fake agents' step journals (default: the run's temp dir; /dev/shm keeps 1,000s of agents' fsyncs off the disk the coordinators' Raft log is on)")
	flag.IntVar(&o.failoverAfter, "failover-after", 0, "close the leading coordinator once this many creates are acknowledged, and report how long until placements resume (needs -coordinators >= 3)")
	flag.Float64Var(&o.cpuOvercommit, "cpu-overcommit", 4, "coordinator placement policy: vCPUs per physical CPU (memory and disk: 1)")
	flag.BoolVar(&o.pack, "pack", false, "pack placement policy instead of spread")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the host shapes and instance mix")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the create phase to this file")
	flag.DurationVar(&o.createBudget, "create-budget", 150*time.Second, "stop issuing creates after this long (those in flight finish); the table says so")
	flag.DurationVar(&o.runningTimeout, "running-timeout", 90*time.Second, "give up waiting for RUNNING after this long past the create phase")
	flag.StringVar(&o.logLevel, "log-level", "warn", "log level of the coordinator and agents (debug, info, warn, error)")
	flag.Parse()
	if flag.NArg() > 0 || o.hosts < 1 || o.hosts > 10000 || o.instances < 1 || o.clients < 1 || o.coordinators < 1 || o.coordinators > 5 ||
		(o.failoverAfter > 0 && o.coordinators < 3) {
		fmt.Fprintln(os.Stderr, "usage: flotilla-sim [-hosts 1..10000] [-instances n>=1] [-clients n>=1] [-coordinators 1..5] [-failover-after n (with -coordinators >= 3)] [-agent-dir dir] [-cpuprofile file]")
		os.Exit(2)
	}
	// Each host takes three descriptors in this process (its journal, its
	// session's socket and the coordinator's end of it).
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && uint64(3*o.hosts+2000) > lim.Cur {
		fmt.Fprintf(os.Stderr, "flotilla-sim: %d hosts need about %d open files; the limit is %d (ulimit -n): run fewer hosts or raise it\n", o.hosts, 3*o.hosts+2000, lim.Cur)
		os.Exit(2)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-sim: -log-level:", err)
		os.Exit(2)
	}
	// One logger for the coordinator and every agent; raised to error for
	// the teardown, which would otherwise log every host disconnecting.
	logLevel.Set(lvl)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: &logLevel}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, o, log)
	if res != nil {
		res.print(os.Stdout, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "flotilla-sim:", err)
		os.Exit(1)
	}
}

// run does everything and always cleans up what it started (agents,
// coordinator, temp dir) before returning.
func run(ctx context.Context, o options, log *slog.Logger) (res *results, err error) {
	res = &results{loadStart: loadAvg()}
	t0 := time.Now()
	logf("%d hosts, %d instances, %d clients, GOMAXPROCS %d", o.hosts, o.instances, o.clients, runtime.GOMAXPROCS(0))

	c, err := startCluster(ctx, o, log)
	if c != nil {
		defer func() {
			logLevel.Set(slog.LevelError)
			td := time.Now()
			if cerr := c.close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
			logf("torn down in %s (temp dir removed)", time.Since(td).Round(time.Millisecond))
		}()
	}
	if err != nil {
		return nil, err
	}
	res.coordinatorUp = c.coordinatorUp
	res.agentsStarted = c.agentsStarted
	if err := c.waitReady(ctx, o.hosts); err != nil {
		return nil, err
	}
	res.hostsReady = time.Since(t0)
	logf("all %d hosts READY after %s", o.hosts, res.hostsReady.Round(time.Millisecond))

	w, err := c.watch(ctx)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	hm := c.monitorHosts(ctx)
	defer hm.stop()

	var prof io.Closer
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		prof = f
	}
	createStart := time.Now()
	w.setStart(createStart)
	fo := c.failover(ctx, o, w)
	cr := c.create(ctx, o, w)
	res.failover = fo.result(cr)
	res.create = cr
	res.createPhase = time.Since(createStart)
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
		logf("CPU profile of the create phase written to %s", o.cpuProfile)
	}
	logf("create phase: %d acknowledged, %d failed, %d not issued (budget) in %s", cr.acked, cr.failed, cr.notIssued, res.createPhase.Round(time.Millisecond))
	if ctx.Err() != nil {
		return res, ctx.Err()
	}

	res.running = w.waitRunning(ctx, cr.acked, o.runningTimeout)
	res.allRunning = res.running.allAt
	if res.running.count < cr.acked {
		logf("only %d of %d instances RUNNING after waiting %s", res.running.count, cr.acked, o.runningTimeout)
	} else {
		logf("all %d instances RUNNING %s after the first create", cr.acked, res.allRunning.Round(time.Millisecond))
	}

	q, err := c.quality(ctx, o)
	if err != nil {
		return res, err
	}
	res.quality = q
	res.snapshot = c.snapshot()
	res.hostsDown = hm.stop()
	res.mem = readMem()
	res.loadEnd = loadAvg()
	res.total = time.Since(t0)
	return res, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s flotilla-sim: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
