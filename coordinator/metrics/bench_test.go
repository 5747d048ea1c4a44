package metrics

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// What the metrics add to each API call (the middleware) and to each
// operation's end (under the store's write lock).
func BenchmarkUnaryInterceptor(b *testing.B) {
	ic := New().UnaryInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/flotilla.v1.InstanceService/CreateInstance"}
	h := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ic(ctx, nil, info, h)
	}
}

func BenchmarkOperationEnded(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.OperationEnded(lifecycle.OpCreate, state.OpSucceeded, time.Second)
	}
}

func BenchmarkCommitted(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.Committed(8, time.Millisecond)
	}
}
