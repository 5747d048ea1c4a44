package caller

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Without mutual TLS nothing is authenticated: a header claiming a name
// yields an unauthenticated caller with the address it names.
func TestPlaintextIsNeverAuthenticated(t *testing.T) {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 4000}})
	if got := Of(ctx); got.Authenticated || got.Name != "" || got.Address != "10.0.0.2:4000" {
		t.Fatalf("direct plaintext call: %+v", got)
	}
	relayed := metadata.NewIncomingContext(ctx, metadata.Pairs(Header, `{"name":"root","roles":["coordinator"],"authenticated":true,"address":"10.0.0.9:5000"}`))
	if got := Of(relayed); got.Authenticated || got.Name != "" || len(got.Roles) != 0 || got.Address != "10.0.0.9:5000" {
		t.Fatalf("relayed plaintext call: %+v", got)
	}
	garbled := metadata.NewIncomingContext(ctx, metadata.Pairs(Header, `{`))
	if got := Of(garbled); got.Address != "10.0.0.2:4000" {
		t.Fatalf("a garbled header: %+v", got)
	}
	if got := Relayed(relayed); got != `{"address":"10.0.0.2:4000"}` {
		t.Fatalf("a follower relays %s: not its own peer", got)
	}
}
