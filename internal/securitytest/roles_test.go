package securitytest

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// tlsCluster is one coordinator under mutual TLS with a certificate per
// role, issued by scripts/issue-certs.sh, and one agent (host hv-1).
type tlsCluster struct {
	coord *testenv.Coordinator
	certs map[string]mtls.Files
}

func startTLS(t *testing.T) *tlsCluster {
	t.Helper()
	dir := t.TempDir()
	certs := issueCerts(t, dir+"/pki", "c1:coordinator", "hv-1:agent", "root:admin", "alice:operator", "bob:operator",
		"carol:viewer", "mallory:ops", "multi:viewer+operator")
	coord := testenv.StartCoordinator(t, dir, tlsFlags(certs["c1"])...)
	g := testenv.NewGrpcurlTLS(t, coord.Addr, certs["root"])
	coord.WaitReady(t, g)
	testenv.StartAgent(t, dir, coord.Addr, "hv-1", "fake", tlsFlags(certs["hv-1"])...)
	testenv.WaitHost(t, g, "hv-1", 0)
	return &tlsCluster{coord: coord, certs: certs}
}

// authzDenied reports whether err is the authorization interceptor's refusal.
func authzDenied(err error) bool {
	return status.Code(err) == codes.PermissionDenied && strings.Contains(status.Convert(err).Message(), "authz:")
}

// Each role's certificate against the methods that matter most: before
// roles, any certificate of the CA (an agent's, or one with any OU) could
// delete instances, drain hosts, change membership and take snapshots.
// The exhaustive method × role table is coordinator/node's
// TestEveryMethodEveryRole; this is the built binaries.
func TestRolesUnderMutualTLS(t *testing.T) {
	t.Parallel()
	c := startTLS(t)
	const (
		create   = "/flotilla.v1.InstanceService/CreateInstance"
		list     = "/flotilla.v1.InstanceService/ListInstances"
		del      = "/flotilla.v1.InstanceService/DeleteInstance"
		drain    = "/flotilla.v1.HostService/DrainHost"
		remove   = "/flotilla.v1.HostService/RemoveHost"
		addSrv   = "/flotilla.v1.ClusterService/AddServer"
		snapshot = "/flotilla.v1.ClusterService/TakeSnapshot"
		mkNet    = "/flotilla.v1.NetworkService/CreateNetwork"
	)
	// The requests are refused by the handlers when allowed (bad or
	// unknown ids): only whether the interceptor let them through counts.
	reqs := map[string]any{
		create:   &pb.CreateInstanceRequest{Name: "Not Valid"},
		list:     &pb.ListInstancesRequest{},
		del:      &pb.DeleteInstanceRequest{Id: "i-none"},
		drain:    &pb.DrainHostRequest{Id: "no-such-host"},
		remove:   &pb.RemoveHostRequest{Id: "no-such-host"},
		addSrv:   &pb.AddServerRequest{},
		snapshot: &pb.TakeSnapshotRequest{},
		mkNet:    &pb.CreateNetworkRequest{},
	}
	allowed := map[string][]string{
		"root":    {create, list, del, drain, remove, addSrv, snapshot, mkNet},
		"alice":   {create, list, del},
		"carol":   {list},
		"multi":   {create, list, del},
		"hv-1":    {},
		"c1":      {addSrv},
		"mallory": {},
	}
	for who, ok := range allowed {
		conn := dial(t, c.coord.Addr, c.certs[who])
		for method, req := range reqs {
			want := false
			for _, m := range ok {
				want = want || m == method
			}
			err := invoke(t, conn, method, req, nil)
			if authzDenied(err) == want {
				t.Errorf("%s calling %s: allowed=%v, got %v", who, method, want, err)
			}
		}
	}

	// And through the real grpcurl: a viewer lists, an operator creates;
	// the viewer may not create.
	carol := testenv.NewGrpcurlTLS(t, c.coord.Addr, c.certs["carol"])
	carol.MustCall("flotilla.v1.InstanceService/ListInstances", map[string]any{})
	spec := map[string]any{"name": "web", "spec": map[string]any{"vcpus": 1, "memoryMib": 64, "image": "flotilla-test"}}
	if _, err := carol.Call("flotilla.v1.InstanceService/CreateInstance", spec); err == nil || err.(*testenv.CallError).Code != codes.PermissionDenied {
		t.Fatalf("a viewer created an instance: %v", err)
	}
	testenv.NewGrpcurlTLS(t, c.coord.Addr, c.certs["alice"]).MustCall("flotilla.v1.InstanceService/CreateInstance", spec)
}

// An agent speaks only for the host its certificate names, and only an
// agent's certificate opens the agent stream; a registration with a label
// flood or terminal escapes is refused.
func TestForgedAgentsRefused(t *testing.T) {
	t.Parallel()
	c := startTLS(t)
	register := func(who, host string, mod func(*agentv1.Register)) error {
		conn := dial(t, c.coord.Addr, c.certs[who])
		stream, err := agentv1.NewAgentServiceClient(conn).Connect(ctx(t))
		if err != nil {
			return err
		}
		r := &agentv1.Register{HostId: host, HypervisorKind: "fake", AgentVersion: "evil 1.0", Capacity: &pb.Resources{Vcpus: 4, MemoryMib: 4096, DiskGib: 10}}
		if mod != nil {
			mod(r)
		}
		// A stream the server refused at once ends the Send with io.EOF;
		// its status is what Recv returns (grpc-go's rule for streams).
		if err := stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Register{Register: r}}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		_, err = stream.Recv()
		stream.CloseSend()
		return err
	}
	flood := map[string]string{}
	for i := range 30000 {
		flood[fmt.Sprint("k", i)] = "v"
	}
	cases := []struct {
		name, who, host string
		mod             func(*agentv1.Register)
		want            codes.Code
	}{
		{"another host's certificate", "hv-1", "hv-2", nil, codes.PermissionDenied},
		{"an operator's certificate", "alice", "alice", nil, codes.PermissionDenied},
		{"a viewer's certificate", "carol", "carol", nil, codes.PermissionDenied},
		{"an admin's certificate", "root", "root", nil, codes.PermissionDenied},
		{"a coordinator's certificate", "c1", "c1", nil, codes.PermissionDenied},
		{"label flood", "hv-1", "hv-1", func(r *agentv1.Register) { r.Labels = flood }, codes.InvalidArgument},
		{"escapes in agent_version", "hv-1", "hv-1", func(r *agentv1.Register) { r.AgentVersion = "1.0\x1b[2J\nh9 READY" }, codes.InvalidArgument},
		{"absurd capacity", "hv-1", "hv-1", func(r *agentv1.Register) { r.Capacity.MemoryMib = 1 << 50 }, codes.InvalidArgument},
	}
	for _, tc := range cases {
		if err := register(tc.who, tc.host, tc.mod); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	root := dial(t, c.coord.Addr, c.certs["root"])
	hosts := pb.NewHostServiceClient(root)
	for _, h := range []string{"hv-2", "alice", "carol", "root", "c1"} {
		if _, err := hosts.GetHost(ctx(t), &pb.GetHostRequest{Id: h}); status.Code(err) != codes.NotFound {
			t.Errorf("host %s was registered: %v", h, err)
		}
	}
	// hv-1's real agent kept its session, and its record is as it sent it.
	testenv.Eventually(t, 30*time.Second, "hv-1 ready with its own version", func() bool {
		h, err := hosts.GetHost(ctx(t), &pb.GetHostRequest{Id: "hv-1"})
		return err == nil && h.Status == pb.HostStatus_HOST_STATUS_READY && !strings.Contains(h.AgentVersion, "evil")
	})
}

// A request id belongs to its caller and binds its content.
func TestRequestIDsPerCallerAndContent(t *testing.T) {
	t.Parallel()
	c := startTLS(t)
	root := pb.NewClusterServiceClient(dial(t, c.coord.Addr, c.certs["root"]))
	testenv.Eventually(t, 30*time.Second, "log version 6", func() bool {
		st, err := root.GetNodeStatus(ctx(t), &pb.GetNodeStatusRequest{})
		return err == nil && st.LogVersion >= 6
	})
	alice := pb.NewInstanceServiceClient(dial(t, c.coord.Addr, c.certs["alice"]))
	bob := pb.NewInstanceServiceClient(dial(t, c.coord.Addr, c.certs["bob"]))
	spec := &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}
	first, err := alice.CreateInstance(ctx(t), &pb.CreateInstanceRequest{Name: "a", RequestId: "deploy-1", Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := alice.CreateInstance(ctx(t), &pb.CreateInstanceRequest{Name: "a", RequestId: "deploy-1", Spec: spec}); err != nil || again.Id != first.Id {
		t.Fatalf("alice's retry: %v %v, want %s", again.GetId(), err, first.Id)
	}
	_, err = alice.CreateInstance(ctx(t), &pb.CreateInstanceRequest{Name: "other", RequestId: "deploy-1", Spec: spec})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), first.Id) {
		t.Fatalf("alice reusing her id with other content: %v; want INVALID_ARGUMENT naming %s", err, first.Id)
	}
	// Bob's deploy-1 is his own request, not alice's operation.
	his, err := bob.CreateInstance(ctx(t), &pb.CreateInstanceRequest{Name: "b", RequestId: "deploy-1", Spec: spec})
	if err != nil || his.Id == first.Id {
		t.Fatalf("bob's deploy-1: %v %v (alice's is %s)", his.GetId(), err, first.Id)
	}
}
