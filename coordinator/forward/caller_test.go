package forward

import (
	"context"
	"net"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/flotilla-vm/flotilla/coordinator/caller"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// dialRecording connects to addr with opts and reports the local address
// of each connection made (the address the server sees as the caller).
func dialRecording(t *testing.T, addr string, local chan<- string, opts ...grpc.DialOption) pb.InstanceServiceClient {
	t.Helper()
	opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
		if err == nil {
			local <- c.LocalAddr().String()
		}
		return c, err
	}))
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewInstanceServiceClient(conn)
}

// A relayed write runs on the leader as the client's, not the follower's:
// over the relay stream and over the unary fallback, and a caller header
// the client sent itself is not passed on.
func TestRelayedWritesKeepTheCaller(t *testing.T) {
	leader, follower := startServer(t, "leader"), startServer(t, "follower")
	leader.leads.leads.Store(true)
	follower.leads.addr.Store(leader.addr)
	local := make(chan string, 1)
	cl := dialRecording(t, follower.addr, local, grpc.WithTransportCredentials(insecure.NewCredentials()))
	forged := metadata.AppendToOutgoingContext(testCtx(t), caller.Header, caller.Encode(&state.Caller{Address: "6.6.6.6:666"}))
	if _, err := cl.CreateInstance(forged, &pb.CreateInstanceRequest{Name: "relayed"}); err != nil {
		t.Fatal(err)
	}
	client := <-local
	if got := leader.impl.caller.Load(); got.Address != client || got.Authenticated {
		t.Fatalf("relayed write recorded as %+v, want unauthenticated %s", got, client)
	}

	// A leader with no relay stream gets one unary call per write, with the caller too.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	impl := &instances{name: "old"}
	gs := grpc.NewServer()
	pb.RegisterInstanceServiceServer(gs, impl)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	follower.leads.addr.Store(lis.Addr().String())
	if _, err := cl.CreateInstance(forged, &pb.CreateInstanceRequest{Name: "unary"}); err != nil {
		t.Fatal(err)
	}
	if got := impl.caller.Load(); got.Address != client || got.Authenticated {
		t.Fatalf("unary-forwarded write recorded as %+v, want unauthenticated %s", got, client)
	}
}

// Under mutual TLS the leader records the client's certificate, which a
// coordinator relayed; a client cannot name someone else.
func TestRelayedWritesKeepTheCallerMutualTLS(t *testing.T) {
	ca, err := mtls.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	creds := func(name, role string) (grpc.ServerOption, grpc.DialOption) {
		f, err := ca.Issue(name, role)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := mtls.Server(f)
		if err != nil {
			t.Fatal(err)
		}
		cli, err := mtls.Client(f)
		if err != nil {
			t.Fatal(err)
		}
		return grpc.Creds(credentials.NewTLS(srv)), grpc.WithTransportCredentials(credentials.NewTLS(cli))
	}
	leaderSrv, _ := creds("c1", mtls.RoleCoordinator)
	followerSrv, followerDial := creds("c2", mtls.RoleCoordinator)
	_, aliceDial := creds("alice", "operator")
	leader := startServerWith(t, "leader", serverConfig{opts: []grpc.ServerOption{leaderSrv}})
	leader.leads.leads.Store(true)
	follower := startServerWith(t, "follower", serverConfig{opts: []grpc.ServerOption{followerSrv}, dial: []grpc.DialOption{followerDial}})
	follower.leads.addr.Store(leader.addr)

	local := make(chan string, 2)
	forged := metadata.AppendToOutgoingContext(testCtx(t), caller.Header, caller.Encode(&state.Caller{Name: "mallory", Roles: []string{"admin"}, Authenticated: true}))
	viaFollower := dialRecording(t, follower.addr, local, aliceDial)
	if _, err := viaFollower.CreateInstance(forged, &pb.CreateInstanceRequest{Name: "relayed"}); err != nil {
		t.Fatal(err)
	}
	addr := <-local
	got := leader.impl.caller.Load()
	if got.Name != "alice" || !slices.Equal(got.Roles, []string{"operator"}) || !got.Authenticated || got.Address != addr {
		t.Fatalf("relayed write recorded as %+v, want alice (operator) from %s", got, addr)
	}
	direct := dialRecording(t, leader.addr, local, aliceDial)
	if _, err := direct.CreateInstance(forged, &pb.CreateInstanceRequest{Name: "direct"}); err != nil {
		t.Fatal(err)
	}
	addr = <-local
	if got := leader.impl.caller.Load(); got.Name != "alice" || !got.Authenticated || got.Address != addr {
		t.Fatalf("a client naming another caller was recorded as %+v, want alice from %s", got, addr)
	}
}
