// Package writes is a small closed-loop load generator for committed-write
// benchmarks (Flotilla's coordinator vs etcd), plus the helpers to run an etcd
// cluster on loopback as the reference system.
package writes

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// Config describes one benchmark run.
type Config struct {
	// Clients is the number of concurrent goroutines, each issuing op back to
	// back (closed loop: a client's next op starts when its previous one ends).
	Clients int
	// Duration is the length of the measured window, after the warmup.
	Duration time.Duration
	// Warmup is run before the measured window; its ops are not counted.
	Warmup time.Duration
}

// Result summarises the measured window of a run.
type Result struct {
	Ops        int64         // successful ops completed inside the window
	Errors     int64         // failed ops completed inside the window
	Elapsed    time.Duration // length of the window actually measured (< Duration if ctx was cancelled)
	Throughput float64       // successful ops per second over Elapsed
	P50        time.Duration // latency percentiles of successful ops
	P99        time.Duration
	Max        time.Duration
}

// Op performs one write. client is in [0, Clients); seq counts the ops that
// client has issued in this run, from 0 (warmup ops included), so (client, seq)
// is unique within one Run.
type Op func(ctx context.Context, client, seq int) error

// Run drives op from cfg.Clients goroutines for cfg.Warmup+cfg.Duration and
// reports on the ops that completed inside the measured window
// [start+Warmup, start+Warmup+Duration]. Ops still in flight when the window
// closes are allowed to finish (they are not cancelled, so they don't show up
// as errors) but are not counted. If ctx is cancelled, Run stops early and
// reports on the part of the window that was measured.
func Run(ctx context.Context, cfg Config, op Op) Result {
	if cfg.Clients <= 0 || cfg.Duration <= 0 {
		return Result{}
	}
	start := time.Now()
	winStart := start.Add(cfg.Warmup)
	winEnd := winStart.Add(cfg.Duration)

	type clientStats struct {
		lat    []time.Duration
		errors int64
	}
	stats := make([]clientStats, cfg.Clients)
	var wg sync.WaitGroup
	for c := 0; c < cfg.Clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			st := &stats[c]
			st.lat = make([]time.Duration, 0, 1024)
			for seq := 0; ; seq++ {
				t0 := time.Now()
				if !t0.Before(winEnd) || ctx.Err() != nil {
					return
				}
				err := op(ctx, c, seq)
				t1 := time.Now()
				if t1.Before(winStart) || t1.After(winEnd) {
					continue
				}
				if err != nil {
					if ctx.Err() == nil { // don't count the cancellation itself
						st.errors++
					}
					continue
				}
				st.lat = append(st.lat, t1.Sub(t0))
			}
		}(c)
	}
	wg.Wait()

	end := time.Now()
	if end.After(winEnd) {
		end = winEnd
	}
	var r Result
	if end.After(winStart) {
		r.Elapsed = end.Sub(winStart)
	}
	n := 0
	for i := range stats {
		n += len(stats[i].lat)
		r.Errors += stats[i].errors
	}
	all := make([]time.Duration, 0, n)
	for i := range stats {
		all = append(all, stats[i].lat...)
	}
	slices.Sort(all)
	r.Ops = int64(len(all))
	if r.Elapsed > 0 {
		r.Throughput = float64(r.Ops) / r.Elapsed.Seconds()
	}
	r.P50 = Percentile(all, 50)
	r.P99 = Percentile(all, 99)
	if len(all) > 0 {
		r.Max = all[len(all)-1]
	}
	return r
}

// Percentile returns the p-th percentile (nearest rank) of sorted, or 0 if it
// is empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}
