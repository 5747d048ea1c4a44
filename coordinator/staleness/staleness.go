// Package staleness tracks how long this coordinator has known no Raft
// leader, so that it does not claim to be healthy, nor answer reads from
// state that may be arbitrarily old, while it cannot reach a quorum.
//
// Health (grpc.health.v1, service "") says NOT_SERVING once no leader has
// been known for longer than the election timeout, and SERVING again as
// soon as one is. Reads (the public API's, but for ClusterService, which
// is how an operator finds out what is wrong) are refused with
// UNAVAILABLE once no leader has been known for longer than the read
// bound: a member that knows a leader serves reads from its own state, as
// before, with the revision they reflect.
package staleness

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Raft is what the tracker asks of the Raft store.
type Raft interface {
	Leader() (addr, id string)
}

// Tracker follows whether a leader is known.
type Tracker struct {
	raft      Raft
	election  time.Duration // health turns NOT_SERVING past it
	readBound time.Duration // reads are refused past it
	now       func() time.Time
	since     atomic.Int64 // unix nanoseconds since no leader is known; 0: one is
}

// New returns a tracker; a member starts without a known leader.
func New(r Raft, election, readBound time.Duration, now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	t := &Tracker{raft: r, election: election, readBound: readBound, now: now}
	t.since.Store(now().UnixNano())
	return t
}

// Poll records whether a leader is known now, and returns how long none
// has been (0 when one is).
func (t *Tracker) Poll() time.Duration {
	now := t.now()
	if _, id := t.raft.Leader(); id != "" {
		t.since.Store(0)
		return 0
	}
	t.since.CompareAndSwap(0, now.UnixNano())
	return now.Sub(time.Unix(0, t.since.Load()))
}

// Leaderless is how long no leader has been known, as of the last Poll.
func (t *Tracker) Leaderless() time.Duration {
	s := t.since.Load()
	if s == 0 {
		return 0
	}
	return t.now().Sub(time.Unix(0, s))
}

// Run polls every interval until ctx ends, setting hs's overall status.
func (t *Tracker) Run(ctx context.Context, hs *health.Server, interval time.Duration) {
	serving := healthpb.HealthCheckResponse_SERVICE_UNKNOWN
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		want := healthpb.HealthCheckResponse_SERVING
		if t.Poll() > t.election {
			want = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if want != serving {
			hs.SetServingStatus("", want)
			serving = want
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Check returns UNAVAILABLE for a read of method (guarded(method) true)
// when no leader has been known for longer than the read bound.
func (t *Tracker) Check(method string, guarded func(string) bool) error {
	if t.readBound <= 0 || !guarded(method) {
		return nil
	}
	if d := t.Leaderless(); d > t.readBound {
		return status.Errorf(codes.Unavailable, "this coordinator has known no leader for %s (more than %s): its state may be stale; ask another member, or ClusterService for why",
			d.Round(time.Millisecond), t.readBound)
	}
	return nil
}

// Unary refuses guarded reads on a member without a leader.
func (t *Tracker) Unary(guarded func(string) bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := t.Check(info.FullMethod, guarded); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// Stream refuses to open guarded streams (watches) on a member without a
// leader; a watch already open goes on.
func (t *Tracker) Stream(guarded func(string) bool) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := t.Check(info.FullMethod, guarded); err != nil {
			return err
		}
		return h(srv, ss)
	}
}
