package caller

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Without mutual TLS nothing is authenticated: a header claiming a name
// yields an unauthenticated caller with the address it names.
func TestPlaintextIsNeverAuthenticated(t *testing.T) {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 4000}})
	if got := Of(ctx); got.Authenticated || got.Name != "" || got.Address != "10.0.0.2:4000" {
		t.Fatalf("direct plaintext call: %+v", got)
	}
	relayed := metadata.NewIncomingContext(ctx, metadata.Pairs(Header, Encode(&state.Caller{Name: "root", Roles: []string{"coordinator"}, Authenticated: true, Address: "10.0.0.9:5000"})))
	if got := Of(relayed); got.Authenticated || got.Name != "" || len(got.Roles) != 0 || got.Address != "10.0.0.9:5000" {
		t.Fatalf("relayed plaintext call: %+v", got)
	}
	garbled := metadata.NewIncomingContext(ctx, metadata.Pairs(Header, `{"address":"6.6.6.6:1"}`))
	if got := Of(garbled); got.Address != "10.0.0.2:4000" {
		t.Fatalf("a garbled header: %+v", got)
	}
	if got, err := decode(Relayed(relayed)); err != nil || got.Address != "10.0.0.2:4000" || got.Name != "" || got.Authenticated || len(got.Roles) != 0 {
		t.Fatalf("a follower relays %+v (%v): not its own peer", got, err)
	}
}

// The header round-trips every caller, names in any script included, and
// anything cut short or padded is refused.
func TestHeaderRoundTrip(t *testing.T) {
	for _, c := range []state.Caller{
		{},
		{Address: "[::1]:7443"},
		{Name: "ålice \"ops\"", Roles: []string{"operator", "admin"}, Authenticated: true, Address: "10.0.0.7:51234"},
		{Name: strings.Repeat("x", 300), Roles: []string{""}, Authenticated: true},
	} {
		enc := Encode(&c)
		got, err := decode(enc)
		if err != nil || got.Name != c.Name || got.Address != c.Address || got.Authenticated != c.Authenticated || !slices.Equal(got.Roles, c.Roles) {
			t.Fatalf("%+v came back as %+v, %v", c, got, err)
		}
		for i := range len(enc) {
			if _, err := decode(enc[:i]); err == nil {
				t.Fatalf("%+v cut to %d bytes decoded", c, i)
			}
		}
		if _, err := decode(enc + "x"); err == nil {
			t.Fatalf("%+v with a byte more decoded", c)
		}
	}
}
