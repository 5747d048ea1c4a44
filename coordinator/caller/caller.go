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
	"encoding/binary"
	"errors"
	"slices"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/authz"
	"github.com/flotilla-vm/flotilla/internal/mtls"
)

// Header carries the original caller of a relayed write. A binary header
// (gRPC base64-encodes it on the wire), so a name in any script travels
// intact.
const Header = "x-flotilla-caller-bin"

// Of returns who made the call ctx belongs to.
func Of(ctx context.Context) *state.Caller {
	direct := peerCaller(ctx)
	vals := metadata.ValueFromIncomingContext(ctx, Header) // no copy of the whole metadata
	if len(vals) == 0 {
		return direct
	}
	relayed, err := decode(vals[0])
	if err != nil {
		return direct
	}
	switch {
	case direct.Authenticated && slices.Contains(direct.Roles, mtls.RoleCoordinator):
		return relayed // a coordinator of the cluster relayed it
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
func Relayed(ctx context.Context) string { return Encode(peerCaller(ctx)) }

// Every relayed write carries a caller and the leader decodes it, so the
// header is a small binary form, not JSON (which cost the leader about 5%
// of its CPU under write load): a version byte, a flags byte
// (authenticated), then the address, the name and the roles, each string
// preceded by its length as a uvarint, the roles by their count.
const (
	encVersion = 1
	flagAuth   = 1
)

var errBadHeader = errors.New("caller: malformed caller header")

// Encode is c's header value.
func Encode(c *state.Caller) string {
	n := 2 + 3*binary.MaxVarintLen64 + len(c.Address) + len(c.Name)
	for _, r := range c.Roles {
		n += binary.MaxVarintLen64 + len(r)
	}
	b := make([]byte, 2, n)
	b[0] = encVersion
	if c.Authenticated {
		b[1] = flagAuth
	}
	str := func(s string) { b = append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	str(c.Address)
	str(c.Name)
	b = binary.AppendUvarint(b, uint64(len(c.Roles)))
	for _, r := range c.Roles {
		str(r)
	}
	return string(b)
}

// decode reads a header value written by Encode.
func decode(v string) (*state.Caller, error) {
	if len(v) < 2 || v[0] != encVersion || v[1]&^flagAuth != 0 {
		return nil, errBadHeader
	}
	c := &state.Caller{Authenticated: v[1] == flagAuth}
	rest := v[2:]
	num := func() (uint64, bool) {
		n, k := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
		if k <= 0 {
			return 0, false
		}
		rest = rest[k:]
		return n, true
	}
	str := func() (string, bool) {
		n, ok := num()
		if !ok || n > uint64(len(rest)) {
			return "", false
		}
		s := rest[:n]
		rest = rest[n:]
		return s, true
	}
	var ok bool
	if c.Address, ok = str(); !ok {
		return nil, errBadHeader
	}
	if c.Name, ok = str(); !ok {
		return nil, errBadHeader
	}
	roles, ok := num()
	if !ok || roles > uint64(len(rest)) {
		return nil, errBadHeader
	}
	for range roles {
		r, ok := str()
		if !ok {
			return nil, errBadHeader
		}
		c.Roles = append(c.Roles, r)
	}
	if rest != "" {
		return nil, errBadHeader
	}
	return c, nil
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

// Principal is who the call is authorized as: in plaintext, anyone with
// every role; under mutual TLS the roles of the certificate, or, for a
// call a coordinator relayed, of the client it relayed for.
func Principal(ctx context.Context) authz.Principal {
	if _, ok := mtls.PeerIdentity(ctx); !ok {
		return authz.Plaintext()
	}
	c := Of(ctx)
	return authz.Principal{Name: c.Name, Roles: authz.RolesOf(c.Roles), Projects: authz.ProjectsOf(c.Roles), Verified: c.Authenticated}
}
