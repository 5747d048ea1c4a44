package agentlink

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// newLinkAt is newLink with the cluster at log version v.
func newLinkAt(t *testing.T, v uint32) (*Server, *state.Store) {
	t.Helper()
	s, store := newLink(t)
	cmd, err := fsm.Encode(fsm.TypeSetLogVersion, time.Now(), fsm.SetLogVersion{Version: v})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cfg.Applier.Apply(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	return s, store
}

func heartbeat(at time.Time) *agentv1.ConnectRequest {
	return &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Heartbeat{Heartbeat: &agentv1.Heartbeat{SentAt: timestamppb.New(at)}}}
}

// An agent's clock skew is measured from its registration and heartbeats
// and recorded on its host; past the threshold the host shows a warning,
// which goes once the clock is right again.
func TestClockSkewRecorded(t *testing.T) {
	s, store := newLinkAt(t, fsm.LogVersion13)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &scripted{ctx: ctx, msgs: make(chan *agentv1.ConnectRequest, 4)}
	st.msgs <- register("h", func(r *agentv1.Register) { r.SentAt = timestamppb.New(time.Now().Add(10 * time.Second)) })
	go s.Connect(st)
	skewNear := func(want time.Duration) func() bool {
		return func() bool {
			h, err := store.Host("h")
			return err == nil && !h.ClockMeasured.IsZero() && (h.ClockSkew-want).Abs() < time.Second
		}
	}
	testenv.Eventually(t, 10*time.Second, "a 10 s skew recorded from the registration", skewNear(10*time.Second))
	h, _ := store.Host("h")
	if w := convert.HostWarnings(&h); len(w) != 1 {
		t.Fatalf("warnings of a host 10 s ahead: %q", w)
	}
	st.msgs <- heartbeat(time.Now().Add(-4 * time.Second))
	testenv.Eventually(t, 10*time.Second, "a -4 s skew recorded from a heartbeat", skewNear(-4*time.Second))
	st.msgs <- heartbeat(time.Now())
	testenv.Eventually(t, 10*time.Second, "the skew back near 0", skewNear(0))
	h, _ = store.Host("h")
	if w := convert.HostWarnings(&h); len(w) != 0 {
		t.Fatalf("warnings of a host on time: %q", w)
	}
}

// A cluster below log version 13 does not know the record: nothing is
// proposed and the session goes on.
func TestClockSkewNotRecordedBeforeVersion13(t *testing.T) {
	s, store := newLinkAt(t, fsm.LogVersion9)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &scripted{ctx: ctx, msgs: make(chan *agentv1.ConnectRequest, 4)}
	st.msgs <- register("h", func(r *agentv1.Register) { r.SentAt = timestamppb.New(time.Now().Add(time.Minute)) })
	st.msgs <- heartbeat(time.Now().Add(time.Minute))
	st.msgs <- heartbeat(time.Now().Add(-time.Minute))
	go s.Connect(st)
	testenv.Eventually(t, 10*time.Second, "the heartbeats read", func() bool { return len(st.msgs) == 0 && s.Sessions() == 1 })
	if h, err := store.Host("h"); err != nil || !h.ClockMeasured.IsZero() {
		t.Fatalf("host %+v, %v: clock recorded at log version 9", h, err)
	}
}

// A skew is recorded the first time, then only when it moves by more
// than skewStep.
func TestClockMeasure(t *testing.T) {
	c := &clock{s: &Server{log: slog.New(slog.DiscardHandler)}, host: "h"}
	now := time.Unix(1_000_000, 0)
	for _, tc := range []struct {
		ahead  time.Duration
		record bool
	}{
		{0, true},
		{200 * time.Millisecond, false},
		{-250 * time.Millisecond, false},
		{300 * time.Millisecond, true},
		{400 * time.Millisecond, false},
		{-3 * time.Second, true},
		{-3 * time.Second, false},
	} {
		skew, record := c.measure(now.Add(tc.ahead), now)
		if skew != tc.ahead || record != tc.record {
			t.Errorf("agent %v ahead: skew %v, record %v; want %v, %v", tc.ahead, skew, record, tc.ahead, tc.record)
		}
	}
}
