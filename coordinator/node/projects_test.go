package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// Project scope under mutual TLS: an operator of project A can neither see
// nor touch project B's instances (NOT_FOUND, left out of lists and
// watches), may not create in B, and a create past A's quota or in a
// frozen project is refused; an admin sees both.
func TestProjectScope(t *testing.T) {
	dir := t.TempDir()
	ca, err := mtls.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := ca.Issue("c1", mtls.RoleCoordinator)
	if err != nil {
		t.Fatal(err)
	}
	n := start(t, Config{NodeID: "c1", DataDir: t.TempDir(), RaftAddr: testenv.FreeAddr(t), APIAddr: testenv.FreeAddr(t), Bootstrap: true, TLS: c1})
	testenv.Eventually(t, bound, "c1 to lead at log version 7", func() bool { return n.IsLeader() && n.Store.LogVersion() >= fsm.LogVersion7 })

	dial := func(name string, ous ...string) (pb.InstanceServiceClient, pb.OperationServiceClient, pb.ProjectServiceClient) {
		t.Helper()
		f, err := ca.IssueOUs(name, ous)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := mtls.Client(f)
		if err != nil {
			t.Fatal(err)
		}
		conn := dialTLS(t, n.Addr(), cfg)
		return pb.NewInstanceServiceClient(conn), pb.NewOperationServiceClient(conn), pb.NewProjectServiceClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	adminI, _, adminP := dial("root", "admin")
	opA, _, projA := dial("alice", "operator", "project:a")
	opB, opsB, _ := dial("bob", "operator", "project:b")
	viewA, _, _ := dial("vera", "viewer", "project:a")

	for _, p := range []*pb.Project{{Name: "a", Quota: &pb.ProjectQuota{Instances: 2, Vcpus: 3}}, {Name: "b"}} {
		if _, err := adminP.CreateProject(ctx, &pb.CreateProjectRequest{Project: p}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := projA.CreateProject(ctx, &pb.CreateProjectRequest{Project: &pb.Project{Name: "c"}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("an operator created a project: %v", err)
	}
	spec := func(vcpus int32) *pb.InstanceSpec {
		return &pb.InstanceSpec{Vcpus: vcpus, MemoryMib: 64, DiskGib: 1, Image: "img"}
	}
	// Bob watches every instance from the start: he must see only his.
	watch, err := opB.WatchInstances(ctx, &pb.WatchInstancesRequest{StartRevision: 1})
	if err != nil {
		t.Fatal(err)
	}
	createA, err := opA.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "web", Project: "a", Spec: spec(2)})
	if err != nil {
		t.Fatal(err)
	}
	idA := createA.InstanceId
	if _, err := opB.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "evil", Project: "a", Spec: spec(1)}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("bob created in a: %v", err)
	}
	createB, err := opB.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "db", Project: "b", Spec: spec(1)})
	if err != nil {
		t.Fatal(err)
	}

	// Bob cannot see A's instance or its operation, nor act on them.
	notFound := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.NotFound {
			t.Fatalf("%s: %v, want NOT_FOUND", what, err)
		}
	}
	_, err = opB.GetInstance(ctx, &pb.GetInstanceRequest{Id: idA})
	notFound("bob gets a's instance", err)
	_, err = opB.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: idA})
	notFound("bob deletes a's instance", err)
	_, err = opB.StopInstance(ctx, &pb.StopInstanceRequest{Id: idA})
	notFound("bob stops a's instance", err)
	_, err = opsB.GetOperation(ctx, &pb.GetOperationRequest{Id: createA.Id})
	notFound("bob gets a's operation", err)
	_, err = opsB.CancelOperation(ctx, &pb.CancelOperationRequest{Id: createA.Id})
	notFound("bob cancels a's operation", err)
	list, err := opB.ListInstances(ctx, &pb.ListInstancesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Instances) != 1 || list.Instances[0].Id != createB.InstanceId || list.Instances[0].Project != "b" {
		t.Fatalf("bob lists %v", list.Instances)
	}
	ops, err := opsB.ListOperations(ctx, &pb.ListOperationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops.Operations {
		if o.InstanceId == idA {
			t.Fatalf("bob lists a's operation %s", o.Id)
		}
	}
	msg, err := watch.Recv()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range msg.Instances {
		if i.Id != createB.InstanceId {
			t.Fatalf("bob's watch shows %s of project %s", i.Id, i.Project)
		}
	}
	// The viewer of a sees a's instance, and may not touch it; alice and
	// the admin see it.
	if _, err := viewA.GetInstance(ctx, &pb.GetInstanceRequest{Id: idA}); err != nil {
		t.Fatalf("a's viewer: %v", err)
	}
	if _, err := viewA.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: idA}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a's viewer deleted: %v", err)
	}
	all, err := adminI.ListInstances(ctx, &pb.ListInstancesRequest{})
	if err != nil || len(all.Instances) != 2 {
		t.Fatalf("admin lists %v, %v", all.GetInstances(), err)
	}
	if got, err := adminI.ListInstances(ctx, &pb.ListInstancesRequest{Project: "a"}); err != nil || len(got.Instances) != 1 || got.Instances[0].Id != idA {
		t.Fatalf("admin lists project a: %v, %v", got.GetInstances(), err)
	}
	// a's quota: 3 vCPUs; 2 are taken.
	_, err = opA.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "big", Project: "a", Spec: spec(2)})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "vcpus") {
		t.Fatalf("create past a's vcpus quota: %v", err)
	}
	// Frozen: no create, and the status says why.
	if p, err := adminP.FreezeProject(ctx, &pb.FreezeProjectRequest{Name: "a"}); err != nil || !p.Frozen {
		t.Fatalf("freeze: %v %v", p, err)
	}
	_, err = opA.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "small", Project: "a", Spec: spec(1)})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "frozen") {
		t.Fatalf("create in a frozen project: %v", err)
	}
	if got, err := projA.ListProjects(ctx, &pb.ListProjectsRequest{}); err != nil || len(got.Projects) != 1 || got.Projects[0].Name != "a" {
		t.Fatalf("alice lists projects %v, %v", got.GetProjects(), err)
	}
}

// Several clients create at once in a project with room for five: through
// the replicated log, exactly five are accepted and every other create is
// RESOURCE_EXHAUSTED naming the quota.
func TestProjectQuotaUnderConcurrentCreates(t *testing.T) {
	n := start(t, Config{NodeID: "c1", DataDir: t.TempDir(), RaftAddr: testenv.FreeAddr(t), APIAddr: testenv.FreeAddr(t), Bootstrap: true})
	testenv.Eventually(t, bound, "c1 to lead at log version 7", func() bool { return n.IsLeader() && n.Store.LogVersion() >= fsm.LogVersion7 })
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	conn := dialPlain(t, n.Addr())
	if _, err := pb.NewProjectServiceClient(conn).CreateProject(ctx, &pb.CreateProjectRequest{Project: &pb.Project{Name: "q",
		Quota: &pb.ProjectQuota{Instances: 5}}}); err != nil {
		t.Fatal(err)
	}
	const clients, each = 6, 3
	var (
		mu             sync.Mutex
		accepted, full int
		unexpected     []error
		wg             sync.WaitGroup
	)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := pb.NewInstanceServiceClient(dialPlain(t, n.Addr()))
			for k := range each {
				_, err := cl.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: fmt.Sprintf("c%d-%d", c, k), Project: "q",
					Spec: &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "img"}})
				mu.Lock()
				switch {
				case err == nil:
					accepted++
				case status.Code(err) == codes.ResourceExhausted && strings.Contains(status.Convert(err).Message(), "quota instances"):
					full++
				default:
					unexpected = append(unexpected, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(unexpected) > 0 || accepted != 5 || full != clients*each-5 {
		t.Fatalf("accepted %d, refused for the quota %d, other errors %v", accepted, full, unexpected)
	}
	if u := n.Store.ProjectUse("q"); u.Instances != 5 {
		t.Fatalf("project q takes %+v", u)
	}
}

func dialPlain(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
