package membership

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// fakeCluster is a configuration whose servers answer (or not) as the
// test says, and which records promotions.
type fakeCluster struct {
	mu       sync.Mutex
	members  []Member
	index    uint64
	promoted []string
}

func (f *fakeCluster) Members() ([]Member, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := append([]Member(nil), f.members...)
	for k := range out {
		if !out[k].LastContact.IsZero() {
			out[k].LastContact = time.Now() // answering all along
		}
	}
	return out, f.index, nil
}

func (f *fakeCluster) LastIndex() uint64 { return 1000 }

func (f *fakeCluster) Promote(id, addr string, prev uint64, timeout time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.promoted = append(f.promoted, id)
	for k := range f.members {
		if f.members[k].ID == id {
			f.members[k].Voter = true
		}
	}
	f.index++
	return nil
}

func (f *fakeCluster) voter(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.members {
		if m.ID == id {
			return m.Voter
		}
	}
	return false
}

// TestPromoteOnlyServersThatAnswer: a learner that answers and keeps up is
// promoted after the stable period; one that never answered, or lags, is
// not, however long it waits.
func TestPromoteOnlyServersThatAnswer(t *testing.T) {
	f := &fakeCluster{members: []Member{live("a", true), live("good", false), never("madeup", false), live("slow", false)}, index: 7}
	f.members[3].LastIndex = 10 // far behind
	p := Policy{LiveWithin: time.Second, MaxLag: 100, StableFor: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Promote(ctx, f, p, 10*time.Millisecond, slog.Default()) }()
	began := time.Now()
	testenv.Eventually(t, 10*time.Second, "the caught-up learner to be promoted", func() bool { return f.voter("good") })
	if time.Since(began) < p.StableFor {
		t.Errorf("promoted after %v, before its stable period of %v", time.Since(began), p.StableFor)
	}
	// Run on well past the stable period: the others must stay learners.
	for end := time.Now().Add(5 * p.StableFor); time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if f.voter("madeup") || f.voter("slow") {
		t.Fatalf("promoted %v: only good may be", f.promoted)
	}
}
