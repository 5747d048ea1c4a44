package limits

import (
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func retryOf(t *testing.T, err error) time.Duration {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.RetryDelay.AsDuration()
		}
	}
	t.Fatalf("%v carries no RetryInfo", err)
	return 0
}

func TestLimits(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	cases := []struct {
		name   string
		cfg    Config
		stream bool
		admit  int // admitted in a row, without release, before the refusal
	}{
		{"burst", Config{Rate: 10, Burst: 3}, false, 3},
		{"in flight", Config{InFlight: 2}, false, 2},
		{"streams", Config{Streams: 4}, true, 4},
		{"streams do not count as unary", Config{InFlight: 1, Streams: 2}, true, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Now = clock
			l := New(c.cfg)
			var releases []func()
			for i := range c.admit {
				r, err := l.admit("cert:alice", c.stream)
				if err != nil {
					t.Fatalf("call %d refused: %v", i, err)
				}
				releases = append(releases, r)
			}
			_, err := l.admit("cert:alice", c.stream)
			if retryOf(t, err) <= 0 {
				t.Fatal("no retry hint")
			}
			if _, err := l.admit("cert:bob", c.stream); err != nil {
				t.Fatalf("another caller refused: %v", err)
			}
			for _, r := range releases {
				r()
			}
			now = now.Add(time.Second) // refills the bucket
			if _, err := l.admit("cert:alice", c.stream); err != nil {
				t.Fatalf("after release and refill: %v", err)
			}
		})
	}
}
