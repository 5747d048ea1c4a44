package writes

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestRunFakeOp(t *testing.T) {
	const clients = 4
	var mu sync.Mutex
	seen := map[[2]int]bool{}
	next := make([]int, clients)
	op := func(ctx context.Context, c, s int) error {
		mu.Lock()
		k := [2]int{c, s}
		if seen[k] {
			t.Errorf("(client %d, seq %d) issued twice", c, s)
		}
		if s != next[c] {
			t.Errorf("client %d: seq %d, want %d", c, s, next[c])
		}
		seen[k] = true
		next[c]++
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		return nil
	}
	r := Run(context.Background(), Config{Clients: clients, Duration: 400 * time.Millisecond, Warmup: 100 * time.Millisecond}, op)
	if r.Errors != 0 {
		t.Errorf("Errors = %d", r.Errors)
	}
	if r.Elapsed != 400*time.Millisecond {
		t.Errorf("Elapsed = %v", r.Elapsed)
	}
	// 4 closed-loop clients with ~2ms ops over 0.4s: at most 800, and well
	// above half of that unless the machine is badly overloaded.
	if r.Ops < 200 || r.Ops > 800 {
		t.Errorf("Ops = %d, want in [200, 800]", r.Ops)
	}
	if want := float64(r.Ops) / 0.4; r.Throughput < want*0.99 || r.Throughput > want*1.01 {
		t.Errorf("Throughput = %v, want %v", r.Throughput, want)
	}
	if r.P50 < 2*time.Millisecond || r.P99 < r.P50 || r.Max < r.P99 {
		t.Errorf("latencies p50=%v p99=%v max=%v", r.P50, r.P99, r.Max)
	}
	t.Logf("%+v", r)
}

func TestRunExcludesWarmup(t *testing.T) {
	op := func(ctx context.Context, c, s int) error {
		time.Sleep(10 * time.Millisecond)
		return nil
	}
	r := Run(context.Background(), Config{Clients: 1, Duration: 200 * time.Millisecond, Warmup: 100 * time.Millisecond}, op)
	// ~20 ops in the window; ~30 if the warmup were counted.
	if r.Ops < 10 || r.Ops > 21 {
		t.Errorf("Ops = %d, want ~20", r.Ops)
	}
}

func TestRunCountsErrors(t *testing.T) {
	errOdd := errors.New("odd")
	op := func(ctx context.Context, c, s int) error {
		time.Sleep(time.Millisecond)
		if s%2 == 1 {
			return errOdd
		}
		return nil
	}
	r := Run(context.Background(), Config{Clients: 2, Duration: 200 * time.Millisecond}, op)
	if r.Ops == 0 || r.Errors == 0 {
		t.Fatalf("Ops=%d Errors=%d", r.Ops, r.Errors)
	}
	if d := r.Ops - r.Errors; d < -2 || d > 2 {
		t.Errorf("Ops=%d Errors=%d, want about equal", r.Ops, r.Errors)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	op := func(ctx context.Context, c, s int) error {
		select {
		case <-time.After(time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	start := time.Now()
	r := Run(ctx, Config{Clients: 8, Duration: 10 * time.Second, Warmup: 50 * time.Millisecond}, op)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Run took %v after cancel", took)
	}
	if r.Elapsed <= 0 || r.Elapsed > time.Second {
		t.Errorf("Elapsed = %v", r.Elapsed)
	}
	if r.Errors != 0 {
		t.Errorf("cancellation counted as %d errors", r.Errors)
	}
	if r.Ops == 0 {
		t.Errorf("no ops")
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {0, 1}, {1, 1}} {
		if got := Percentile(s, c.p); got != c.want {
			t.Errorf("Percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("empty")
	}
	if got := Percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("single = %v", got)
	}
}
