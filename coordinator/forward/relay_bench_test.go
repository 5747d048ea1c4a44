package forward

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// BenchmarkRelayedCreate is a client's create through a follower, relayed
// to the leader, with the given number of clients at once (both servers in
// this process, on loopback). Compare builds by allocs/op and ns/op.
func BenchmarkRelayedCreate(b *testing.B) {
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprint("clients=", clients), func(b *testing.B) {
			leader, follower := startServer(b, "leader"), startServer(b, "follower")
			leader.leads.leads.Store(true)
			follower.leads.addr.Store(leader.addr)
			cl := client(b, follower.addr)
			ctx := context.Background()
			if _, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "warm"}); err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(p *testing.PB) {
				for p.Next() {
					name := fmt.Sprint("w", n.Add(1))
					if _, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: name, RequestId: name}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
