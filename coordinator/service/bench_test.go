package service

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/flotilla-vm/flotilla/coordinator/caller"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// BenchmarkCreate is the leader's part of a create the write benchmark
// (bench/cmd/flotilla-writes) makes, relayed by a follower: request id and
// fingerprint, placement (no host: it waits for capacity), the command's
// encoding, its apply (straight to an FSM, as a single-node log would) and
// the operation read back. Compare builds by allocs/op and B/op (ns/op
// moves with the machine's load).
func BenchmarkCreate(b *testing.B) {
	st := state.New(0)
	s := New(Config{Store: st, Applier: &local{f: fsm.New(st, nil)}})
	if err := st.Update(time.Now(), func(tx *state.Tx) error { tx.SetLogVersion(fsm.SupportedLogVersion); return nil }); err != nil {
		b.Fatal(err)
	}
	// A client's deadline, as the write benchmark's 10 s op timeout gives every call (under fsm.ProposeTimeout: no timer of its own).
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
	defer cancel()
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}})
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(caller.Header,
		caller.Encode(&state.Caller{Address: "127.0.0.1:50000"})))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprint("w-", i)
		if _, err := s.Create(ctx, Create{RequestID: id, Name: id,
			Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "flotilla-test"}}); err != nil {
			b.Fatal(err)
		}
	}
}
