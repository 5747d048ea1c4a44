package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// fake is a tiny in-process Flotilla API for end-to-end tests of the CLI.
type fake struct {
	flotillav1.UnimplementedInstanceServiceServer
	flotillav1.UnimplementedOperationServiceServer
	flotillav1.UnimplementedHostServiceServer

	mu        sync.Mutex
	instances []*flotillav1.Instance // served two per page
	listReqs  []*flotillav1.ListInstancesRequest
	getReqs   []*flotillav1.GetInstanceRequest
	stopReqs  []*flotillav1.StopInstanceRequest
	waitReqs  []*flotillav1.WaitOperationRequest
	waitDeads []time.Duration // client deadline seen by each WaitOperation
	waitOps   []*flotillav1.Operation
	events    []*flotillav1.WatchInstancesResponse
	watchReq  *flotillav1.WatchInstancesRequest
	watchHold bool // keep the watch stream open after the events
}

func (f *fake) GetInstance(_ context.Context, r *flotillav1.GetInstanceRequest) (*flotillav1.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.getReqs = append(f.getReqs, r)
	for _, in := range f.instances {
		if in.GetId() == r.GetId() {
			return in, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "instance %q not found", r.GetId())
}

func (f *fake) ListInstances(_ context.Context, r *flotillav1.ListInstancesRequest) (*flotillav1.ListInstancesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listReqs = append(f.listReqs, r)
	start := 0
	if r.GetPageToken() != "" {
		fmt.Sscanf(r.GetPageToken(), "p%d", &start)
	}
	end := min(start+2, len(f.instances))
	resp := &flotillav1.ListInstancesResponse{Instances: f.instances[start:end], Revision: 100}
	if end < len(f.instances) {
		resp.NextPageToken = fmt.Sprintf("p%d", end)
	}
	return resp, nil
}

func (f *fake) StopInstance(_ context.Context, r *flotillav1.StopInstanceRequest) (*flotillav1.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopReqs = append(f.stopReqs, r)
	return &flotillav1.Operation{Id: "op-1", InstanceId: r.GetId(), Kind: flotillav1.OperationKind_OPERATION_KIND_STOP,
		State: flotillav1.OperationState_OPERATION_STATE_PENDING, Step: "dispatch"}, nil
}

func (f *fake) WaitOperation(ctx context.Context, r *flotillav1.WaitOperationRequest) (*flotillav1.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waitReqs = append(f.waitReqs, r)
	if d, ok := ctx.Deadline(); ok {
		f.waitDeads = append(f.waitDeads, time.Until(d))
	}
	if len(f.waitOps) == 0 {
		return nil, status.Error(codes.NotFound, "no such operation")
	}
	op := f.waitOps[0]
	if len(f.waitOps) > 1 {
		f.waitOps = f.waitOps[1:]
	}
	return op, nil
}

func (f *fake) WatchInstances(r *flotillav1.WatchInstancesRequest, s grpc.ServerStreamingServer[flotillav1.WatchInstancesResponse]) error {
	f.mu.Lock()
	f.watchReq = r
	events, hold := f.events, f.watchHold
	f.mu.Unlock()
	for _, ev := range events {
		if err := s.Send(ev); err != nil {
			return err
		}
	}
	if hold {
		<-s.Context().Done()
		return s.Context().Err()
	}
	return status.Error(codes.Unavailable, "leader changed")
}

func (f *fake) ListHosts(context.Context, *flotillav1.ListHostsRequest) (*flotillav1.ListHostsResponse, error) {
	return &flotillav1.ListHostsResponse{Hosts: []*flotillav1.Host{{Id: "h1", Status: flotillav1.HostStatus_HOST_STATUS_READY}}}, nil
}

// serve starts f on 127.0.0.1:0 and returns its address.
func serve(t *testing.T, f *fake) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	flotillav1.RegisterInstanceServiceServer(s, f)
	flotillav1.RegisterOperationServiceServer(s, f)
	flotillav1.RegisterHostServiceServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func runCLI(ctx context.Context, addr string, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(ctx, append([]string{"--addr", addr}, args...), env(nil), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestListFollowsPages(t *testing.T) {
	f := &fake{}
	for i := range 5 {
		f.instances = append(f.instances, &flotillav1.Instance{Id: fmt.Sprintf("i-%d", i), Name: fmt.Sprintf("vm-%d", i),
			Status: flotillav1.Status_STATUS_RUNNING})
	}
	addr := serve(t, f)
	code, out, errOut := runCLI(context.Background(), addr, "-o", "json", "list", "--status", "running", "--all")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if n := strings.Count(out, "\n"); n != 5 {
		t.Errorf("%d lines, want 5:\n%s", n, out)
	}
	if len(f.listReqs) != 3 {
		t.Fatalf("%d ListInstances calls, want 3", len(f.listReqs))
	}
	for i, r := range f.listReqs {
		if !r.GetShowDeleted() || len(r.GetStatusFilter()) != 1 || r.GetStatusFilter()[0] != flotillav1.Status_STATUS_RUNNING {
			t.Errorf("request %d lost its filters: %v", i, r)
		}
		if i > 0 && r.GetMinRevision() != 100 {
			t.Errorf("request %d min_revision = %d, want 100", i, r.GetMinRevision())
		}
	}
}

func TestGRPCErrorExit(t *testing.T) {
	addr := serve(t, &fake{})
	code, out, errOut := runCLI(context.Background(), addr, "get", "i-404")
	if code != 1 || out != "" || errOut != "flotctl: NotFound: instance \"i-404\" not found\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runCLI(context.Background(), addr, "op", "cancel", "op-1")
	if code != 1 || !strings.HasPrefix(errOut, "flotctl: Unimplemented: ") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func stopOps(final *flotillav1.Operation) []*flotillav1.Operation {
	return []*flotillav1.Operation{
		{Id: "op-1", InstanceId: "i-1", Kind: flotillav1.OperationKind_OPERATION_KIND_STOP,
			State: flotillav1.OperationState_OPERATION_STATE_RUNNING, Step: "shutdown"},
		final,
	}
}

func TestStopWaitSucceeded(t *testing.T) {
	f := &fake{
		instances: []*flotillav1.Instance{{Id: "i-1", Name: "web", Status: flotillav1.Status_STATUS_STOPPED,
			PowerState: flotillav1.PowerState_POWER_STATE_SHUT_OFF, HostId: "h1"}},
		waitOps: stopOps(&flotillav1.Operation{Id: "op-1", InstanceId: "i-1", Kind: flotillav1.OperationKind_OPERATION_KIND_STOP,
			State: flotillav1.OperationState_OPERATION_STATE_SUCCEEDED, Done: true, Step: "shutdown", Revision: 77}),
	}
	addr := serve(t, f)
	code, out, errOut := runCLI(context.Background(), addr, "stop", "i-1", "--graceful", "2m", "--force", "--wait")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "" +
		"ID    INSTANCE  KIND  STATE      STEP      ERROR\n" +
		"op-1  i-1       STOP  SUCCEEDED  shutdown  -\n" +
		"\n" +
		"ID   NAME  STATUS   POWER     HOST  OPERATION\n" +
		"i-1  web   STOPPED  SHUT_OFF  h1    -\n"
	if out != want {
		t.Errorf("stdout\n%s\nwant\n%s", out, want)
	}
	if r := f.stopReqs[0]; r.GetGracefulTimeout().AsDuration() != 2*time.Minute || !r.GetForce() {
		t.Errorf("stop request = %v", r)
	}
	if len(f.waitReqs) != 2 {
		t.Errorf("%d WaitOperation calls, want 2", len(f.waitReqs))
	}
	for i, r := range f.waitReqs {
		if r.GetId() != "op-1" || r.GetTimeout().AsDuration() > 60*time.Second || r.GetTimeout().AsDuration() <= 0 {
			t.Errorf("wait request %d = %v", i, r)
		}
	}
	for i, d := range f.waitDeads {
		if d > 60*time.Second {
			t.Errorf("wait call %d had a %v deadline, want ≤ 60s", i, d)
		}
	}
	if len(f.waitDeads) != len(f.waitReqs) {
		t.Errorf("some WaitOperation calls had no deadline")
	}
	if g := f.getReqs[0]; g.GetId() != "i-1" || g.GetMinRevision() != 77 {
		t.Errorf("GetInstance request = %v", g)
	}
}

func TestStopWaitFailed(t *testing.T) {
	f := &fake{
		instances: []*flotillav1.Instance{{Id: "i-1", Name: "web", Status: flotillav1.Status_STATUS_ERROR}},
		waitOps: stopOps(&flotillav1.Operation{Id: "op-1", InstanceId: "i-1", Kind: flotillav1.OperationKind_OPERATION_KIND_STOP,
			State: flotillav1.OperationState_OPERATION_STATE_FAILED, Done: true,
			Error: &flotillav1.Fault{Code: "DEADLINE_EXCEEDED", Message: "guest did not power off"}}),
	}
	addr := serve(t, f)
	code, out, errOut := runCLI(context.Background(), addr, "-o", "json", "stop", "i-1", "--wait")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if errOut != "flotctl: operation op-1 FAILED: DEADLINE_EXCEEDED: guest did not power off\n" {
		t.Errorf("stderr %q", errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "OPERATION_STATE_FAILED") || !strings.Contains(lines[1], "STATUS_ERROR") {
		t.Errorf("stdout %q: want the operation then the instance", out)
	}
}

func TestStopWithoutWait(t *testing.T) {
	f := &fake{}
	addr := serve(t, f)
	code, out, errOut := runCLI(context.Background(), addr, "stop", "i-1", "--request-id", "r1")
	if code != 0 || !strings.Contains(out, "op-1  i-1       STOP  PENDING  dispatch") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	if len(f.waitReqs) != 0 || f.stopReqs[0].GetRequestId() != "r1" {
		t.Errorf("wait calls %d, stop %v", len(f.waitReqs), f.stopReqs[0])
	}
}

func TestOpWaitTimeout(t *testing.T) {
	f := &fake{waitOps: []*flotillav1.Operation{{Id: "op-1", State: flotillav1.OperationState_OPERATION_STATE_RUNNING}}}
	addr := serve(t, f)
	code, out, errOut := runCLI(context.Background(), addr, "op", "wait", "op-1", "--timeout", "300ms")
	if code != 1 || !strings.Contains(errOut, "timed out waiting for operation op-1 (state RUNNING)") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "op-1") {
		t.Errorf("stdout %q should show the operation as last seen", out)
	}
	for _, r := range f.waitReqs {
		if r.GetTimeout().AsDuration() > 300*time.Millisecond {
			t.Errorf("wait timeout %v exceeds the remaining time", r.GetTimeout().AsDuration())
		}
	}
}

func TestOpWaitCanceled(t *testing.T) {
	f := &fake{waitOps: []*flotillav1.Operation{{Id: "op-1", State: flotillav1.OperationState_OPERATION_STATE_CANCELED, Done: true}}}
	addr := serve(t, f)
	code, _, errOut := runCLI(context.Background(), addr, "op", "wait", "op-1")
	if code != 1 || errOut != "flotctl: operation op-1 CANCELED\n" {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestWatch(t *testing.T) {
	ev := func(rev int64, st flotillav1.Status) *flotillav1.WatchInstancesResponse {
		return &flotillav1.WatchInstancesResponse{Revision: rev, Instances: []*flotillav1.Instance{{Id: "i-1", Name: "web", Status: st}}}
	}
	f := &fake{events: []*flotillav1.WatchInstancesResponse{ev(11, flotillav1.Status_STATUS_STOPPING), ev(12, flotillav1.Status_STATUS_STOPPED)}}
	addr := serve(t, f)

	// The stream breaks: the error names the revision to resume from.
	code, out, errOut := runCLI(context.Background(), addr, "watch", "--from-revision", "10", "--id", "i-1")
	if code != 1 || errOut != "flotctl: Unavailable: leader changed (resume with --from-revision 12)\n" {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if n := strings.Count(out, "\n"); n != 3 || !strings.Contains(out, "STOPPED") {
		t.Errorf("stdout\n%s", out)
	}
	if !proto.Equal(f.watchReq, &flotillav1.WatchInstancesRequest{StartRevision: 10, InstanceId: "i-1"}) {
		t.Errorf("watch request = %v", f.watchReq)
	}

	// Ctrl-C (context canceled) ends the watch normally.
	f.mu.Lock()
	f.watchHold = true
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	code, out, errOut = runCLI(ctx, addr, "-o", "json", "watch")
	if code != 0 || strings.Count(out, "\n") != 2 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestHostList(t *testing.T) {
	addr := serve(t, &fake{})
	code, out, _ := runCLI(context.Background(), addr, "host", "list")
	if code != 0 || !strings.Contains(out, "\nh1  READY  ") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
}
