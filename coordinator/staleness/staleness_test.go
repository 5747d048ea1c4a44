package staleness

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

type fakeRaft struct{ leader atomic.Value }

func (f *fakeRaft) Leader() (string, string) { s, _ := f.leader.Load().(string); return "", s }

func TestReadsAndHealth(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	r := &fakeRaft{}
	r.leader.Store("")
	tr := New(r, time.Second, 5*time.Second, clock)
	reads := func(m string) bool { return m == "/read" }
	cases := []struct {
		name     string
		leader   string
		advance  time.Duration
		readCode codes.Code
	}{
		{"starting", "", 0, codes.OK},
		{"no leader past the election timeout", "", 2 * time.Second, codes.OK},
		{"no leader past the read bound", "", 4 * time.Second, codes.Unavailable},
		{"a leader again", "c1", 0, codes.OK},
		{"lost it, briefly", "", 3 * time.Second, codes.OK},
		{"lost it for long", "", 3 * time.Second, codes.Unavailable},
	}
	for _, c := range cases {
		r.leader.Store(c.leader)
		tr.Poll()
		now = now.Add(c.advance)
		tr.Poll()
		if got := status.Code(tr.Check("/read", reads)); got != c.readCode {
			t.Errorf("%s: read %v, want %v", c.name, got, c.readCode)
		}
		if err := tr.Check("/status", reads); err != nil {
			t.Errorf("%s: an unguarded method refused: %v", c.name, err)
		}
	}

	// Health follows the election timeout.
	hs := health.NewServer()
	r.leader.Store("")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr2 := New(r, time.Second, 0, clock)
	now = now.Add(2 * time.Second)
	go tr2.Run(ctx, hs, time.Millisecond)
	waitStatus(t, hs, healthpb.HealthCheckResponse_NOT_SERVING)
	r.leader.Store("c1")
	waitStatus(t, hs, healthpb.HealthCheckResponse_SERVING)
}

func waitStatus(t *testing.T, hs *health.Server, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "health "+want.String(), func() bool {
		r, err := hs.Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err == nil && r.Status == want
	})
}
