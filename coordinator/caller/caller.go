// Package caller says who made an API call, for the record each operation
// keeps of who asked for it.
//
// Under mutual TLS the caller is its verified client certificate: the
// Common Name and the Organizational Units (roles). In plaintext mode
// nothing is verified, and the caller is only the address the call came
// from. A write that reaches a follower is relayed to the leader, whose
// own peer is then the follower: the follower sends the caller it saw in
// a header, and the leader takes it from there only when the relaying peer
// holds a coordinator certificate (or, in plaintext, as an unverified
// address), never from a client speaking for someone else.
package caller

import (
	"context"
	"encoding/json"
	"slices"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/mtls"
)

// Header carries the original caller of a relayed write. A binary header
// (gRPC base64-encodes it on the wire), so a name in any script travels
// intact.
const Header = "x-flotilla-caller-bin"

// Of returns who made the call ctx belongs to.
func Of(ctx context.Context) *state.Caller {
	direct := peerCaller(ctx)
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(Header)
	if len(vals) == 0 {
		return direct
	}
	var relayed state.Caller
	if err := json.Unmarshal([]byte(vals[0]), &relayed); err != nil {
		return direct
	}
	switch {
	case direct.Authenticated && slices.Contains(direct.Roles, mtls.RoleCoordinator):
		return &relayed // a coordinator of the cluster relayed it
	case !direct.Authenticated:
		// Plaintext: nothing is verified either way; the address the
		// relaying server saw is the more useful one.
		return &state.Caller{Address: relayed.Address}
	}
	return direct // an authenticated client may not speak for another
}

// Relayed returns the header value a follower sends with a write it
// relays: its own peer, the client. (A follower is the first server a
// write reaches, so a caller header it received came from the client
// itself, and is not passed on.)
func Relayed(ctx context.Context) string {
	b, _ := json.Marshal(peerCaller(ctx)) // cannot fail: strings and a bool
	return string(b)
}

// peerCaller is the caller the connection itself shows.
func peerCaller(ctx context.Context) *state.Caller {
	c := &state.Caller{}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.Address = p.Addr.String()
	}
	if id, ok := mtls.PeerIdentity(ctx); ok {
		c.Name, c.Roles, c.Authenticated = id.Name, id.Roles, true
	}
	return c
}
