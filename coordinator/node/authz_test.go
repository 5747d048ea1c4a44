package node

import (
	"context"
	"crypto/tls"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/flotilla-vm/flotilla/internal/authz"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// agentServed are the table's methods that agents serve, not coordinators.
var agentServed = []string{agentv1.AgentPeerService_PullDisk_FullMethodName}

// Every method a coordinator serves, called with every role's certificate
// (and one with no role): the interceptor refuses exactly what the table
// does not allow, and the table names exactly the methods served.
func TestEveryMethodEveryRole(t *testing.T) {
	dir := t.TempDir()
	ca, err := mtls.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name, role string) mtls.Files {
		f, err := ca.Issue(name, role)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	n := start(t, Config{NodeID: "c1", DataDir: t.TempDir(), RaftAddr: testenv.FreeAddr(t), APIAddr: testenv.FreeAddr(t), Bootstrap: true,
		TLS: issue("c1", mtls.RoleCoordinator)})
	testenv.Eventually(t, bound, "c1 to lead", n.IsLeader)

	type method struct {
		name   string
		stream bool
	}
	var methods []method
	served := map[string]bool{}
	for svc, info := range n.grpc.GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			methods = append(methods, method{full, m.IsClientStream || m.IsServerStream})
			served[full] = true
		}
	}
	for _, m := range agentServed {
		served[m] = true
	}
	for m := range authz.Table {
		if !served[m] {
			t.Errorf("the table names %s, which no server serves", m)
		}
	}
	for m := range served {
		if _, ok := authz.Table[m]; !ok {
			t.Errorf("%s is served but not in authz.Table", m)
		}
	}
	sort.Slice(methods, func(i, j int) bool { return methods[i].name < methods[j].name })

	callers := map[string][]authz.Role{"nobody": nil}
	for _, r := range authz.Roles {
		callers[string(r)] = []authz.Role{r}
	}
	var wg sync.WaitGroup
	for name, roles := range callers {
		ou := name
		if name == "nobody" {
			ou = "ops" // an OU that names no role
		}
		f := issue("u-"+name, ou)
		cfg, err := mtls.Client(f)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		for _, m := range methods {
			want := slices.ContainsFunc(roles, func(r authz.Role) bool { return slices.Contains(authz.Table[m.name], r) })
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := call(conn, m.name, m.stream)
				denied := status.Code(err) == codes.PermissionDenied && strings.Contains(status.Convert(err).Message(), "authz:")
				if denied == want {
					t.Errorf("%s as %s: allowed=%v, got %v", m.name, name, want, err)
				}
			}()
		}
	}
	wg.Wait()
}

// dialTLS connects to addr with cfg.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// call makes one call with an empty request; a stream is read once.
func call(conn *grpc.ClientConn, method string, stream bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !stream {
		return conn.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
	if err != nil {
		return err
	}
	if err := s.SendMsg(&emptypb.Empty{}); err != nil {
		return s.RecvMsg(&emptypb.Empty{})
	}
	return s.RecvMsg(&emptypb.Empty{})
}
