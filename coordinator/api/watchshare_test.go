package api

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// watchStream is a WatchInstances stream that marshals what it is sent, as
// gRPC would, and ends its watch once it has seen revision last.
type watchStream struct {
	grpc.ServerStream
	ctx    context.Context
	cancel context.CancelFunc
	last   int64
	bytes  *atomic.Int64
	seen   []*pb.Instance
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(m *pb.WatchInstancesResponse) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	w.bytes.Add(int64(len(b)))
	w.seen = append(w.seen, m.Instances...)
	if m.Revision >= w.last {
		w.cancel()
	}
	return nil
}

// watchedStore has n instances, each committed at its own revision.
func watchedStore(tb testing.TB, n int) *state.Store {
	tb.Helper()
	st := state.New(n + 1)
	for k := range n {
		if err := st.Update(time.Unix(int64(k), 0), func(tx *state.Tx) error {
			tx.PutInstance(&state.Instance{ID: fmt.Sprintf("i-%06d", k), Name: "w", HostID: "h", Spec: state.Spec{VCPUs: 1, MemoryMiB: 512, Image: "img"},
				Labels: map[string]string{"app": "web"}, Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning})
			return nil
		}); err != nil {
			tb.Fatal(err)
		}
	}
	return st
}

// watchAll runs watchers watches of every instance from the start of the
// history to its end, at once, and returns what they were sent.
func watchAll(tb testing.TB, s *instances, watchers int) [][]*pb.Instance {
	last := s.store.Revision()
	var bytes atomic.Int64
	out := make([][]*pb.Instance, watchers)
	var wg sync.WaitGroup
	for k := range watchers {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &watchStream{ctx: ctx, cancel: cancel, last: last, bytes: &bytes}
			if err := s.WatchInstances(&pb.WatchInstancesRequest{StartRevision: 0 + 1}, w); err != nil {
				tb.Error(err)
			}
			out[k] = w.seen
		})
	}
	wg.Wait()
	return out
}

// Every watcher gets the same messages whether they are shared or not.
func TestSharedWatchMessages(t *testing.T) {
	st := watchedStore(t, 300)
	shared := watchAll(t, &instances{core: &core{store: st, watched: newSharedPB()}}, 4)
	own := watchAll(t, &instances{core: &core{store: st}}, 1)[0]
	for k, got := range shared {
		if len(got) != len(own) {
			t.Fatalf("watcher %d: %d instances, want %d", k, len(got), len(own))
		}
		for j := range got {
			if !proto.Equal(got[j], own[j]) {
				t.Fatalf("watcher %d, message %d: %v, want %v", k, j, got[j], own[j])
			}
			if got[j] != shared[0][j] {
				t.Fatalf("watcher %d, message %d: not shared", k, j)
			}
		}
	}
}

// 64 clients each watching all of 10,000 instance changes: the wire form
// built once per change (shared) or once per change per watcher (own).
func BenchmarkWatchFanout(b *testing.B) {
	st := watchedStore(b, 10000)
	for _, c := range []struct {
		name    string
		watched *sharedPB
	}{{"own", nil}, {"shared", newSharedPB()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				w := c.watched
				if w != nil {
					w = newSharedPB() // every iteration converts afresh
				}
				watchAll(b, &instances{core: &core{store: st, watched: w}}, 64)
			}
		})
	}
}
