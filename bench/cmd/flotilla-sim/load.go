package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// size is an instance size, picked by weight.
type size struct {
	vcpus     int32
	memoryMiB int64
	diskGiB   int64
	weight    int
}

var instanceSizes = []size{
	{1, 512, 10, 15},
	{1, 1024, 10, 15},
	{1, 2048, 20, 15},
	{2, 4096, 40, 20},
	{4, 8192, 80, 15},
	{4, 16384, 80, 8},
	{8, 16384, 160, 7},
	{8, 8192, 160, 5},
}

const (
	groups        = 50
	groupPercent  = 10 // instances in one of the anti-affinity groups
	zoneAPercent  = 5  // instances asking for host_labels zone=a
	maxRetries    = 20 // conflicts and unavailable coordinators retried per instance
	createTimeout = 30 * time.Second
)

// request is the i-th create: deterministic for a seed.
func request(i int, seed uint64) *pb.CreateInstanceRequest {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	total := 0
	for _, s := range instanceSizes {
		total += s.weight
	}
	k := rng.IntN(total)
	var sz size
	for _, s := range instanceSizes {
		if k < s.weight {
			sz = s
			break
		}
		k -= s.weight
	}
	r := &pb.CreateInstanceRequest{
		Name:      fmt.Sprintf("sim-%06d", i),
		RequestId: fmt.Sprintf("sim-%d-%06d", seed, i),
		Spec:      &pb.InstanceSpec{Vcpus: sz.vcpus, MemoryMib: sz.memoryMiB, DiskGib: sz.diskGiB, Image: "flotilla-test"},
	}
	if rng.IntN(100) < groupPercent {
		r.Placement = &pb.Placement{AntiAffinityGroup: fmt.Sprintf("grp-%02d", rng.IntN(groups))}
	}
	if rng.IntN(100) < zoneAPercent {
		if r.Placement == nil {
			r.Placement = &pb.Placement{}
		}
		r.Placement.HostLabels = map[string]string{"zone": "a"}
	}
	return r
}

// createResult is the create phase's tally.
type createResult struct {
	acked, failed int
	notIssued     int             // left when the create budget ran out
	latencies     []time.Duration // per acknowledged instance, retries included
	ackTimes      []time.Time
	conflicts     int            // commit-time rejections that were retried
	errors        map[string]int // final failures by code
	firstErr      string
}

// create runs o.clients callers until o.instances creates are done.
func (c *cluster) create(ctx context.Context, o options, w *watcher) createResult {
	var (
		next      atomic.Int64
		conflicts atomic.Int64
		mu        sync.Mutex
		res       = createResult{errors: map[string]int{}}
		wg        sync.WaitGroup
		progress  atomic.Int64
	)
	stopProgress := make(chan struct{})
	go func() { // a line every 10 s, so a slow run shows where it is
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		start, last := time.Now(), int64(0)
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				n := progress.Load()
				logf("create: %d done after %s (%.0f/s in the last 10s), %d RUNNING",
					n, time.Since(start).Round(time.Second), float64(n-last)/10, w.runningCount())
				last = n
			}
		}
	}()
	// The budget only stops new creates; calls in flight finish.
	budget, cancel := context.WithTimeout(ctx, o.createBudget)
	defer cancel()
	var issued atomic.Int64
	for k := range o.clients {
		wg.Go(func() {
			var (
				lats []time.Duration
				acks []time.Time
			)
			for budget.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= o.instances {
					break
				}
				issued.Add(1)
				req := request(i, o.seed)
				start := time.Now()
				var (
					op  *pb.Operation
					err error
				)
				for try := 0; ; try++ {
					// Another coordinator on each try: one may have been closed.
					api := pb.NewInstanceServiceClient(c.conns[(k+try)%len(c.conns)])
					cctx, cancel := context.WithTimeout(ctx, createTimeout)
					op, err = api.CreateInstance(cctx, req)
					cancel()
					if err == nil || try >= maxRetries || !retryable(err) {
						break
					}
					if status.Code(err) == codes.Unavailable {
						_ = sleep(ctx, time.Duration(min(try+1, 10))*50*time.Millisecond) // an election takes a moment
					} else {
						conflicts.Add(1)
					}
				}
				d := time.Since(start)
				progress.Add(1)
				if err != nil {
					mu.Lock()
					res.failed++
					res.errors[status.Code(err).String()]++
					if res.firstErr == "" {
						res.firstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				w.acked(op.InstanceId, start.Add(d))
				c.ackedN.Add(1)
				lats = append(lats, d)
				acks = append(acks, start.Add(d))
			}
			mu.Lock()
			res.latencies = append(res.latencies, lats...)
			res.ackTimes = append(res.ackTimes, acks...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(stopProgress)
	res.acked = len(res.latencies)
	res.notIssued = o.instances - int(issued.Load())
	res.conflicts = int(conflicts.Load())
	return res
}

// retryable: a placement decided against a snapshot that no longer fits when
// committed (another create took the room or the group's slot first), or the
// coordinator briefly unavailable. "no host can take" means nothing fits at
// all: not retried.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.ResourceExhausted:
		return !strings.Contains(err.Error(), "no host can take")
	case codes.Unavailable, codes.Aborted:
		return true
	}
	return false
}

// watcher follows WatchInstances from just before the create phase and
// records when each instance is first seen RUNNING.
type watcher struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	start     time.Time
	runningAt map[string]time.Time
	ackAt     map[string]time.Time
	changed   chan struct{} // closed on the next change of runningAt, then replaced
	err       error         // why the stream ended, if it did
}

func (c *cluster) watch(ctx context.Context) (*watcher, error) {
	api := pb.NewInstanceServiceClient(c.conns[0])
	list, err := api.ListInstances(ctx, &pb.ListInstancesRequest{PageSize: 1})
	if err != nil {
		return nil, fmt.Errorf("ListInstances: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	stream, err := api.WatchInstances(wctx, &pb.WatchInstancesRequest{StartRevision: list.Revision})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("WatchInstances: %w", err)
	}
	w := &watcher{
		cancel: cancel, done: make(chan struct{}),
		runningAt: map[string]time.Time{}, ackAt: map[string]time.Time{},
		changed: make(chan struct{}),
	}
	go func() {
		defer close(w.done)
		// A broken watch resumes on another coordinator from the last
		// revision seen (the failover closes one); a minute of failures
		// ends it.
		rev, k := list.Revision, 0
		var failing time.Time
		for {
			msg, err := stream.Recv()
			if err != nil && wctx.Err() == nil && (failing.IsZero() || time.Since(failing) < time.Minute) {
				if failing.IsZero() {
					failing = time.Now()
				}
				k++
				_ = sleep(wctx, 100*time.Millisecond)
				api := pb.NewInstanceServiceClient(c.conns[k%len(c.conns)])
				if s, err := api.WatchInstances(wctx, &pb.WatchInstancesRequest{StartRevision: rev}); err == nil {
					stream = s
				}
				continue
			}
			if err != nil {
				w.mu.Lock()
				if wctx.Err() == nil {
					w.err = err
				}
				close(w.changed)
				w.changed = make(chan struct{})
				w.mu.Unlock()
				return
			}
			failing, rev = time.Time{}, msg.Revision
			now := time.Now()
			w.mu.Lock()
			for _, inst := range msg.Instances {
				if inst.Status == pb.Status_STATUS_RUNNING {
					if _, seen := w.runningAt[inst.Id]; !seen {
						w.runningAt[inst.Id] = now
						close(w.changed)
						w.changed = make(chan struct{})
					}
				}
			}
			w.mu.Unlock()
		}
	}()
	return w, nil
}

func (w *watcher) setStart(t time.Time) {
	w.mu.Lock()
	w.start = t
	w.mu.Unlock()
}

func (w *watcher) acked(id string, at time.Time) {
	w.mu.Lock()
	w.ackAt[id] = at
	w.mu.Unlock()
}

func (w *watcher) runningCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.runningAt)
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

// runningResult is what the wait for RUNNING saw.
type runningResult struct {
	count     int
	allAt     time.Duration   // from the first create to the last instance RUNNING
	ackToRun  []time.Duration // per instance: acknowledged -> seen RUNNING
	waited    bool
	streamErr error
}

// waitRunning waits until want instances have been seen RUNNING, the stream
// breaks or timeout passes.
func (w *watcher) waitRunning(ctx context.Context, want int, timeout time.Duration) runningResult {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		n, ch, err := len(w.runningAt), w.changed, w.err
		w.mu.Unlock()
		if n >= want || err != nil {
			break
		}
		select {
		case <-ch:
			continue
		case <-deadline:
		case <-ctx.Done():
		}
		break
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	r := runningResult{waited: true, count: len(w.runningAt), streamErr: w.err}
	var last time.Time
	for id, t := range w.runningAt {
		if t.After(last) {
			last = t
		}
		if a, ok := w.ackAt[id]; ok {
			r.ackToRun = append(r.ackToRun, max(0, t.Sub(a)))
		}
	}
	if !last.IsZero() {
		r.allAt = last.Sub(w.start)
	}
	return r
}
