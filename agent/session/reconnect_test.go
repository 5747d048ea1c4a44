package session

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func refusal(t *testing.T, leader string) error {
	t.Helper()
	meta := map[string]string{}
	if leader != "" {
		meta["leader_api_address"] = leader
	}
	st, err := status.New(codes.Unavailable, "not the leader").WithDetails(&errdetails.ErrorInfo{Reason: "NOT_LEADER", Domain: "flotilla.dev", Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// TestNextMove walks the agent's reconnection through the failures seen
// when a leader dies: a dead member, members without a leader during the
// election, a stale hint, and a coordinator that is down for good.
func TestNextMove(t *testing.T) {
	const minWait, maxWait = 100 * time.Millisecond, 5 * time.Second
	targets := []string{"c1:1", "c2:1", "c3:1"}
	unreachable := status.Error(codes.Unavailable, "connection error: dial tcp: connect: connection refused")
	type attempt struct {
		registered bool
		err        error
		target     string        // where the agent goes next
		follow     bool          // following a named leader
		maxWait    time.Duration // the longest pause allowed before it
		minWait    time.Duration // the shortest
	}
	tests := []struct {
		name     string
		attempts []attempt
	}{
		{"a leader's hint is followed at once, keeping the place in the list", []attempt{
			{err: refusal(t, "c3:1"), target: "c3:1", follow: true, minWait: minWait, maxWait: minWait},
			{err: unreachable, target: "c2:1", maxWait: minWait},
		}},
		{"members refusing without a leader, and a dead one, never grow the pause", []attempt{
			{registered: true, err: errors.New("connection reset by peer"), target: "c2:1", maxWait: minWait},
			{err: refusal(t, ""), target: "c3:1", maxWait: minWait},
			{err: unreachable, target: "c1:1", maxWait: 2 * minWait},
			{err: refusal(t, ""), target: "c2:1", maxWait: minWait},
			{err: refusal(t, ""), target: "c3:1", maxWait: minWait},
			{err: unreachable, target: "c1:1", maxWait: 2 * minWait},
			{err: refusal(t, ""), target: "c2:1", maxWait: minWait},
		}},
		{"a session that registered starts the back-off over", []attempt{
			{err: unreachable, target: "c2:1", maxWait: minWait},
			{err: unreachable, target: "c3:1", maxWait: 2 * minWait, minWait: minWait},
			{err: unreachable, target: "c1:1", maxWait: 4 * minWait, minWait: 2 * minWait},
			{registered: true, err: errors.New("EOF"), target: "c2:1", maxWait: minWait},
		}},
		{"no member answering backs off up to the maximum", []attempt{
			{err: unreachable, target: "c2:1", maxWait: minWait},
			{err: unreachable, target: "c3:1", maxWait: 2 * minWait, minWait: minWait},
			{err: unreachable, target: "c1:1", maxWait: 4 * minWait, minWait: 2 * minWait},
			{err: unreachable, target: "c2:1", maxWait: 8 * minWait, minWait: 4 * minWait},
			{err: unreachable, target: "c3:1", maxWait: 16 * minWait, minWait: 8 * minWait},
			{err: unreachable, target: "c1:1", maxWait: 32 * minWait, minWait: 16 * minWait},
			{err: unreachable, target: "c2:1", maxWait: maxWait, minWait: maxWait / 2},
			{err: unreachable, target: "c3:1", maxWait: maxWait, minWait: maxWait / 2},
		}},
		{"an error that is not a refusal is not read as one", []attempt{
			{err: unreachable, target: "c2:1", maxWait: minWait},
			{err: status.Error(codes.Unavailable, "not the leader"), target: "c3:1", maxWait: 2 * minWait, minWait: minWait},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := backoff{min: minWait, max: maxWait}
			cur := 0
			for i, a := range tc.attempts {
				var m move
				m, cur = nextMove(targets, cur, a.registered, a.err, &b, minWait)
				if m.target != a.target || m.follow != a.follow {
					t.Fatalf("attempt %d: next is %s (follow %v), want %s (follow %v)", i, m.target, m.follow, a.target, a.follow)
				}
				if m.wait > a.maxWait || m.wait < a.minWait {
					t.Fatalf("attempt %d: waits %s, want between %s and %s", i, m.wait, a.minWait, a.maxWait)
				}
			}
		})
	}
}
