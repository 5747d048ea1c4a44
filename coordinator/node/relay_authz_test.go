package node

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// A write sent to a follower is authorized there, against its caller,
// before it is relayed: a viewer's is refused, an operator's is relayed
// and recorded as the operator's.
func TestFollowerAuthorizesBeforeRelaying(t *testing.T) {
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
	a := Config{NodeID: "c1", DataDir: t.TempDir(), RaftAddr: testenv.FreeAddr(t), APIAddr: testenv.FreeAddr(t), Bootstrap: true, TLS: issue("c1", mtls.RoleCoordinator)}
	b := Config{NodeID: "c2", DataDir: t.TempDir(), RaftAddr: testenv.FreeAddr(t), APIAddr: testenv.FreeAddr(t), Join: a.APIAddr, TLS: issue("c2", mtls.RoleCoordinator)}
	n1 := start(t, a)
	testenv.Eventually(t, bound, "c1 to lead", n1.IsLeader)
	n2 := start(t, b)
	testenv.Eventually(t, bound, "c2 to follow with the leader's address", func() bool {
		_, ok := n2.LeaderAPIAddr()
		return ok && !n2.IsLeader()
	})
	client := func(name, role string) pb.InstanceServiceClient {
		cfg, err := mtls.Client(issue(name, role))
		if err != nil {
			t.Fatal(err)
		}
		return pb.NewInstanceServiceClient(dialTLS(t, n2.Addr(), cfg))
	}
	req := &pb.CreateInstanceRequest{Name: "web", Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "img"}}
	_, err = client("carol", "viewer").CreateInstance(t.Context(), req)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a viewer's create through a follower: %v", err)
	}
	var op *pb.Operation
	testenv.Eventually(t, bound, "an operator's create relayed", func() bool {
		op, err = client("alice", "operator").CreateInstance(t.Context(), req)
		return err == nil
	})
	if by := op.GetRequestedBy(); by.GetName() != "alice" || len(by.GetRoles()) != 1 || by.GetRoles()[0] != "operator" {
		t.Fatalf("recorded as asked by %v", by)
	}
}
