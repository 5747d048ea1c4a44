package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// fake is a tiny in-process Flotilla API for end-to-end tests of the CLI.
type fake struct {
	flotillav1.UnimplementedInstanceServiceServer
	flotillav1.UnimplementedOperationServiceServer
	flotillav1.UnimplementedHostServiceServer
	flotillav1.UnimplementedUsageServiceServer
	flotillav1.UnimplementedNetworkServiceServer

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

	cordonReqs   []*flotillav1.CordonHostRequest
	uncordonReqs []*flotillav1.UncordonHostRequest
	drainReqs    []*flotillav1.DrainHostRequest
	ops          []*flotillav1.Operation // served by GetOperation
	opGetReqs    []*flotillav1.GetOperationRequest
	cancelReqs   []*flotillav1.CancelOperationRequest
	cancelOp     *flotillav1.Operation // CancelOperation's answer; nil: Unimplemented
	cancelErr    error                 // CancelOperation's error, if set
	usageReqs    []*flotillav1.GetInstanceUsageRequest
	networks     []*flotillav1.Network
	passwordReqs []*flotillav1.SetPasswordRequest
}

func (f *fake) SetPassword(_ context.Context, r *flotillav1.SetPasswordRequest) (*flotillav1.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.passwordReqs = append(f.passwordReqs, r)
	return &flotillav1.Operation{Id: "op-pw", InstanceId: r.Id, Kind: flotillav1.OperationKind_OPERATION_KIND_SET_PASSWORD,
		State: flotillav1.OperationState_OPERATION_STATE_PENDING}, nil
}

func (f *fake) MarkOperational(_ context.Context, r *flotillav1.MarkOperationalRequest) (*flotillav1.Instance, error) {
	if r.Id != "i-1" {
		return nil, status.Errorf(codes.FailedPrecondition, "instance %q is operational: the instance is not stranded", r.Id)
	}
	return &flotillav1.Instance{Id: "i-1", Name: "web", Status: flotillav1.Status_STATUS_RUNNING, Readiness: flotillav1.Readiness_READINESS_OPERATIONAL}, nil
}

func (f *fake) CreateNetwork(_ context.Context, r *flotillav1.CreateNetworkRequest) (*flotillav1.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := &flotillav1.Network{Name: r.Name, Cidr: r.Cidr, Gateway: "10.20.0.1", Mode: r.Mode, Bridge: r.Bridge, AddressesTotal: 253, Hosts: []string{"h1", "h2"}}
	f.networks = append(f.networks, n)
	return n, nil
}

func (f *fake) ListNetworks(context.Context, *flotillav1.ListNetworksRequest) (*flotillav1.ListNetworksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &flotillav1.ListNetworksResponse{Networks: f.networks}, nil
}

func (f *fake) DeleteNetwork(_ context.Context, r *flotillav1.DeleteNetworkRequest) (*flotillav1.DeleteNetworkResponse, error) {
	return nil, status.Errorf(codes.FailedPrecondition, "network %q: 1 instance addresses are held on it", r.Name)
}

// GetInstanceUsage answers for i-1 only: an hour in which it ran 40
// minutes and was stopped 20, at revision 12.
func (f *fake) GetInstanceUsage(_ context.Context, r *flotillav1.GetInstanceUsageRequest) (*flotillav1.InstanceUsage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.usageReqs = append(f.usageReqs, r)
	if r.GetInstanceId() != "i-1" {
		return nil, status.Errorf(codes.NotFound, "instance %q not found", r.GetInstanceId())
	}
	from, to := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	u := &flotillav1.InstanceUsage{InstanceId: "i-1", Vocabulary: r.GetVocabulary(), StartTime: timestamppb.New(from),
		EndTime: timestamppb.New(to), MeteredSince: timestamppb.New(from), Revision: 12, Unclassified: durationpb.New(0)}
	classes := map[flotillav1.Vocabulary][]string{
		flotillav1.Vocabulary_VOCABULARY_RIGHTSCALE: {"instance-usage", "storage-only", "not-charged"},
		flotillav1.Vocabulary_VOCABULARY_AZURE:      {"hardware-and-software", "hardware-only", "not-billed"},
	}[r.GetVocabulary()]
	for i, c := range classes {
		d := []time.Duration{40 * time.Minute, 20 * time.Minute, 0}[i]
		u.Classes = append(u.Classes, &flotillav1.BillingClassUsage{BillingClass: c, Duration: durationpb.New(d)})
	}
	return u, nil
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

func (f *fake) CordonHost(_ context.Context, r *flotillav1.CordonHostRequest) (*flotillav1.Host, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cordonReqs = append(f.cordonReqs, r)
	return &flotillav1.Host{Id: r.GetId(), Status: flotillav1.HostStatus_HOST_STATUS_CORDONED, Cordoned: true}, nil
}

func (f *fake) UncordonHost(_ context.Context, r *flotillav1.UncordonHostRequest) (*flotillav1.Host, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uncordonReqs = append(f.uncordonReqs, r)
	return &flotillav1.Host{Id: r.GetId(), Status: flotillav1.HostStatus_HOST_STATUS_READY}, nil
}

func (f *fake) DrainHost(_ context.Context, r *flotillav1.DrainHostRequest) (*flotillav1.Host, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drainReqs = append(f.drainReqs, r)
	if r.GetId() != "h1" {
		return nil, status.Errorf(codes.NotFound, "host %q not found", r.GetId())
	}
	return &flotillav1.Host{Id: r.GetId(), Status: flotillav1.HostStatus_HOST_STATUS_DRAINING, Cordoned: true, InstanceCount: 2}, nil
}

func (f *fake) GetOperation(_ context.Context, r *flotillav1.GetOperationRequest) (*flotillav1.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opGetReqs = append(f.opGetReqs, r)
	for _, op := range f.ops {
		if op.GetId() == r.GetId() {
			return op, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "operation %q not found", r.GetId())
}

func (f *fake) CancelOperation(_ context.Context, r *flotillav1.CancelOperationRequest) (*flotillav1.Operation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelReqs = append(f.cancelReqs, r)
	if f.cancelErr != nil {
		return nil, f.cancelErr
	}
	if f.cancelOp == nil {
		return nil, status.Error(codes.Unimplemented, "method CancelOperation not implemented")
	}
	return f.cancelOp, nil
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
	flotillav1.RegisterUsageServiceServer(s, f)
	flotillav1.RegisterNetworkServiceServer(s, f)
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
	if got := jsonDoc(t, out, func() *flotillav1.Instance { return new(flotillav1.Instance) }); len(got) != 5 {
		t.Errorf("%d instances, want 5:\n%s", len(got), out)
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
	if code != 3 || out != "" || errOut != "flotctl: NotFound: instance \"i-404\" not found (check the id: flotctl list)\n" {
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
		"operation op-1: STOP of instance i-1 (Ctrl-C stops waiting, not the operation)\n" +
		"ID    INSTANCE  KIND  STATE      STEP      CREATED  REQUESTED_BY  ERROR\n" +
		"op-1  i-1       STOP  SUCCEEDED  shutdown  -        -             -\n" +
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
	// The operation's id at once and its progress as plain lines on
	// stderr (not a terminal), so that stdout stays one document.
	wantErr := "operation op-1: STOP of instance i-1 (Ctrl-C stops waiting, not the operation)\n" +
		"op-1 STOP PENDING step dispatch\n" +
		"op-1 STOP RUNNING step shutdown\n" +
		"op-1 STOP FAILED: DEADLINE_EXCEEDED: guest did not power off\n" +
		"flotctl: operation op-1 FAILED: DEADLINE_EXCEEDED: guest did not power off\n"
	if errOut != wantErr {
		t.Errorf("stderr %q, want %q", errOut, wantErr)
	}
	var doc struct{ Operation, Instance json.RawMessage }
	if err := json.Unmarshal([]byte(out), &doc); err != nil || !strings.Contains(string(doc.Operation), "OPERATION_STATE_FAILED") ||
		!strings.Contains(string(doc.Instance), "STATUS_ERROR") {
		t.Errorf("stdout %q (%v): want one document with the operation and the instance", out, err)
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
	if code != 5 || !strings.Contains(errOut, "timed out waiting for operation op-1 (state RUNNING); it goes on: flotctl op wait op-1") {
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
	if code != 1 || errOut != "op-1 UNSPECIFIED CANCELED\nflotctl: operation op-1 CANCELED\n" {
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
	if code != 6 || errOut != "flotctl: Unavailable: leader changed (resume with --from-revision 12)\n" {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if n := strings.Count(out, "\n"); n != 3 || !strings.Contains(out, "STOPPED") {
		t.Errorf("stdout\n%s", out)
	}
	if !proto.Equal(f.watchReq, &flotillav1.WatchInstancesRequest{StartRevision: 10, InstanceId: "i-1"}) {
		t.Errorf("watch request = %v", f.watchReq)
	}

	// Ctrl-C (context canceled) ends the watch normally. It comes once
	// both events are printed, not after a fixed time a slow machine may
	// need just to connect.
	f.mu.Lock()
	f.watchHold = true
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"--addr", addr, "-o", "json", "watch"}, env(nil), &stdout, &stderr) }()
	deadline := time.After(15 * time.Second)
	for strings.Count(stdout.String(), "\n") < 2 {
		select {
		case code := <-exit:
			t.Fatalf("watch ended before Ctrl-C: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
		case <-deadline:
			t.Fatalf("events not printed: stdout %q, stderr %q", stdout.String(), stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if code := <-exit; code != 0 || strings.Count(stdout.String(), "\n") != 2 {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// lockedBuffer is a bytes.Buffer a test reads while the CLI writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestHostList(t *testing.T) {
	addr := serve(t, &fake{})
	code, out, _ := runCLI(context.Background(), addr, "host", "list")
	if code != 0 || !strings.Contains(out, "\nh1  READY  ") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
}

func TestHostCordonUncordon(t *testing.T) {
	f := &fake{}
	addr := serve(t, f)
	code, out, errOut := runCLI(context.Background(), addr, "host", "cordon", "h1")
	if code != 0 || !strings.HasPrefix(out, "ID  STATUS    HYPERVISOR") || !strings.Contains(out, "\nh1  CORDONED  ") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCLI(context.Background(), addr, "-o", "json", "host", "uncordon", "h1")
	if code != 0 || !strings.Contains(out, `"HOST_STATUS_READY"`) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if len(f.cordonReqs) != 1 || f.cordonReqs[0].GetId() != "h1" || len(f.uncordonReqs) != 1 || f.uncordonReqs[0].GetId() != "h1" {
		t.Errorf("cordon %v, uncordon %v", f.cordonReqs, f.uncordonReqs)
	}
	// No ID: a usage error before any RPC.
	code, _, errOut = runCLI(context.Background(), addr, "host", "uncordon")
	if code != 2 || errOut != "flotctl: missing ID (see: flotctl host uncordon --help)\n" {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if len(f.uncordonReqs) != 1 {
		t.Errorf("%d UncordonHost calls, want 1", len(f.uncordonReqs))
	}
}

func TestHostDrain(t *testing.T) {
	f := &fake{}
	addr := serve(t, f)
	tests := []struct {
		args     []string
		policy   flotillav1.DrainPolicy
		graceful time.Duration
	}{
		{[]string{"h1"}, flotillav1.DrainPolicy_DRAIN_POLICY_STOP, 10 * time.Minute},
		{[]string{"h1", "--policy", "move"}, flotillav1.DrainPolicy_DRAIN_POLICY_MOVE, 10 * time.Minute},
		{[]string{"--policy=MOVE", "--graceful", "90s", "h1"}, flotillav1.DrainPolicy_DRAIN_POLICY_MOVE, 90 * time.Second},
		{[]string{"h1", "--policy", "stop", "--graceful", "1m"}, flotillav1.DrainPolicy_DRAIN_POLICY_STOP, time.Minute},
	}
	for i, tt := range tests {
		code, out, errOut := runCLI(context.Background(), addr, append([]string{"host", "drain"}, tt.args...)...)
		if code != 0 || !strings.Contains(out, "\nh1  DRAINING  ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tt.args, code, out, errOut)
			continue
		}
		want := &flotillav1.DrainHostRequest{Id: "h1", Policy: tt.policy, GracefulTimeout: durationpb.New(tt.graceful)}
		if len(f.drainReqs) != i+1 || !proto.Equal(f.drainReqs[i], want) {
			t.Errorf("%q: request %v, want %v", tt.args, f.drainReqs[len(f.drainReqs)-1], want)
		}
	}
	// The server's refusal is an RPC failure: exit 1.
	code, _, errOut := runCLI(context.Background(), addr, "host", "drain", "h9", "--policy", "move")
	if code != 3 || errOut != "flotctl: NotFound: host \"h9\" not found (check the id: flotctl host list)\n" {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestHostDrainBadInput(t *testing.T) {
	f := &fake{}
	addr := serve(t, f)
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"h1", "--policy", "migrate"}, "flotctl: --policy must be stop or move, not \"migrate\" (see: flotctl host drain --help)\n"},
		{[]string{"h1", "--policy", ""}, "--policy must be stop or move"},
		{[]string{"h1", "--graceful", "0s"}, "--graceful must be positive"},
		{[]string{"h1", "--graceful", "soon"}, `invalid argument "soon" for "--graceful"`},
		{[]string{"--policy", "move"}, "missing ID"},
		{[]string{"h1", "h2"}, `unexpected argument "h2"`},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(context.Background(), addr, append([]string{"host", "drain"}, tt.args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.stderr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tt.args, code, out, errOut)
		}
	}
	if len(f.drainReqs) != 0 {
		t.Errorf("bad input reached the server: %v", f.drainReqs)
	}
}

// moveOp is a move of i-1 from h1 to h2 that is copying the disk.
func moveOp() *flotillav1.Operation {
	return &flotillav1.Operation{
		Id: "op-7", InstanceId: "i-1", Kind: flotillav1.OperationKind_OPERATION_KIND_MOVE,
		State: flotillav1.OperationState_OPERATION_STATE_RUNNING, Step: "copy-disk-to-target",
		HostId: "h1", TargetHostId: "h2", Cancellable: true,
		CreateTime:  timestamppb.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)),
		RequestedBy: &flotillav1.Caller{Name: "alice", Roles: []string{"operator"}, Authenticated: true, Address: "10.0.0.7:51234"},
		Steps: []*flotillav1.OperationStep{
			{Name: "stop-on-source", State: flotillav1.StepState_STEP_STATE_SUCCEEDED, HostId: "h1", Attempt: 1, MaxAttempts: 3,
				Compensation: "start-on-source", StartTime: timestamppb.New(time.Date(2026, 12, 1, 9, 0, 1, 0, time.UTC)),
				EndTime: timestamppb.New(time.Date(2026, 12, 1, 9, 0, 9, 500, time.UTC))},
			{Name: "offer-disk", State: flotillav1.StepState_STEP_STATE_SUCCEEDED, HostId: "h1", Attempt: 1, MaxAttempts: 3},
			{Name: "copy-disk-to-target", State: flotillav1.StepState_STEP_STATE_RUNNING, HostId: "h2", Attempt: 2, MaxAttempts: 3,
				StartTime:    timestamppb.New(time.Date(2026, 12, 1, 9, 0, 10, 0, time.UTC)),
				Compensation: "remove-from-target", Error: &flotillav1.Fault{Code: "PEER_UNAVAILABLE", Message: "connection refused"}},
			{Name: "start-on-target", State: flotillav1.StepState_STEP_STATE_PENDING, HostId: "h2", MaxAttempts: 3,
				Compensation: "stop-on-target"},
			{Name: "switch-host", State: flotillav1.StepState_STEP_STATE_PENDING, MaxAttempts: 3},
			{Name: "remove-from-source", State: flotillav1.StepState_STEP_STATE_PENDING, HostId: "h1", MaxAttempts: 3},
		},
	}
}

func TestOpGetSteps(t *testing.T) {
	f := &fake{ops: []*flotillav1.Operation{moveOp()}}
	addr := serve(t, f)
	code, out, errOut := runCLI(context.Background(), addr, "op", "get", "op-7")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "" +
		"ID    INSTANCE  KIND  STATE    STEP                 CREATED               REQUESTED_BY      ERROR\n" +
		"op-7  i-1       MOVE  RUNNING  copy-disk-to-target  2026-12-01T09:00:00Z  alice (operator)  -\n" +
		"\n" +
		"REQUESTED_FROM  10.0.0.7:51234\n" +
		"TARGET          h2\n" +
		"CANCELLABLE     yes\n" +
		"\n" +
		"STEP                 STATE      HOST  ATTEMPT  STARTED               ENDED                 UNDO                ERROR\n" +
		"stop-on-source       SUCCEEDED  h1    1/3      2026-12-01T09:00:01Z  2026-12-01T09:00:09Z  start-on-source     -\n" +
		"offer-disk           SUCCEEDED  h1    1/3      -                     -                     -                   -\n" +
		"copy-disk-to-target  RUNNING    h2    2/3      2026-12-01T09:00:10Z  -                     remove-from-target  PEER_UNAVAILABLE: connection refused\n" +
		"start-on-target      PENDING    h2    -        -                     -                     stop-on-target      -\n" +
		"switch-host          PENDING    -     -        -                     -                     -                   -\n" +
		"remove-from-source   PENDING    h1    -        -                     -                     -                   -\n"
	if out != want {
		t.Errorf("stdout\n%s\nwant\n%s", out, want)
	}

	// JSON is the message as the server sent it, one line.
	code, out, errOut = runCLI(context.Background(), addr, "-o", "json", "op", "get", "op-7")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := jsonDoc(t, out, func() *flotillav1.Operation { return new(flotillav1.Operation) })
	if len(got) != 1 || !proto.Equal(got[0], moveOp()) {
		t.Errorf("json = %s", out)
	}

	code, _, errOut = runCLI(context.Background(), addr, "op", "get", "op-404")
	if code != 3 || errOut != "flotctl: NotFound: operation \"op-404\" not found (check the id: flotctl op list)\n" {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if len(f.opGetReqs) != 3 || f.opGetReqs[0].GetId() != "op-7" {
		t.Errorf("GetOperation requests %v", f.opGetReqs)
	}
}

func TestOpCancelRunning(t *testing.T) {
	op := moveOp()
	op.Cancellable, op.CancelRequested = false, true
	f := &fake{cancelOp: op}
	addr := serve(t, f)
	code, out, errOut := runCLI(context.Background(), addr, "op", "cancel", "op-7")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if len(f.cancelReqs) != 1 || f.cancelReqs[0].GetId() != "op-7" {
		t.Errorf("CancelOperation requests %v", f.cancelReqs)
	}
	if !strings.HasPrefix(out, "ID    INSTANCE  KIND  STATE    STEP") ||
		!strings.Contains(out, "\nCANCELLABLE       no\nCANCEL_REQUESTED  yes\n") {
		t.Errorf("stdout\n%s", out)
	}
	wantErr := "flotctl: cancel requested: operation op-7 rolls back once its step copy-disk-to-target ends (see: flotctl op wait op-7)\n"
	if errOut != wantErr {
		t.Errorf("stderr %q, want %q", errOut, wantErr)
	}
}

func TestOpCancelPending(t *testing.T) {
	f := &fake{cancelOp: &flotillav1.Operation{Id: "op-3", InstanceId: "i-3", Kind: flotillav1.OperationKind_OPERATION_KIND_CREATE,
		State: flotillav1.OperationState_OPERATION_STATE_CANCELED, Done: true, Step: "canceled",
		Error: &flotillav1.Fault{Code: "CANCELED", Message: "canceled by the user before it reached the host"},
		Steps: []*flotillav1.OperationStep{{Name: "create-domain", State: flotillav1.StepState_STEP_STATE_SKIPPED,
			MaxAttempts: 3, Compensation: "delete-domain"}}}}
	addr := serve(t, f)
	code, out, errOut := runCLI(context.Background(), addr, "op", "cancel", "op-3")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	want := "" +
		"ID    INSTANCE  KIND    STATE     STEP      CREATED  REQUESTED_BY  ERROR\n" +
		"op-3  i-3       CREATE  CANCELED  canceled  -        -             CANCELED: canceled by the user before it reached the host\n" +
		"\n" +
		"STEP           STATE    HOST  ATTEMPT  STARTED  ENDED  UNDO           ERROR\n" +
		"create-domain  SKIPPED  -     -        -        -      delete-domain  -\n"
	if out != want {
		t.Errorf("stdout\n%s\nwant\n%s", out, want)
	}

	// JSON mode still says on stderr that the rollback is yet to come.
	op := moveOp()
	op.CancelRequested = true
	f.mu.Lock()
	f.cancelOp = op
	f.mu.Unlock()
	code, out, errOut = runCLI(context.Background(), addr, "-o", "json", "op", "cancel", "op-7")
	if code != 0 || len(jsonDoc(t, out, func() *flotillav1.Operation { return new(flotillav1.Operation) })) != 1 ||
		!strings.Contains(errOut, "rolls back once its step copy-disk-to-target ends") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestCancelNote(t *testing.T) {
	op := moveOp()
	if got := cancelNote(op); got != "operation op-7 rolls back once its step copy-disk-to-target ends" {
		t.Errorf("running: %q", got)
	}
	op.Steps = nil
	if got := cancelNote(op); got != "operation op-7 rolls back once its step copy-disk-to-target ends" {
		t.Errorf("no steps: %q", got)
	}
	op.Step = ""
	if got := cancelNote(op); got != "operation op-7 rolls back once its current step ends" {
		t.Errorf("no step: %q", got)
	}
	op.State = flotillav1.OperationState_OPERATION_STATE_ROLLING_BACK
	if got := cancelNote(op); got != "operation op-7 is rolling back" {
		t.Errorf("rolling back: %q", got)
	}
}

func TestOpCancelRefused(t *testing.T) {
	f := &fake{cancelErr: status.Error(codes.FailedPrecondition,
		`operation "op-7" cannot be canceled now: step switch-host cannot be undone`)}
	addr := serve(t, f)
	code, out, errOut := runCLI(context.Background(), addr, "op", "cancel", "op-7")
	if code != 4 || out != "" ||
		errOut != "flotctl: FailedPrecondition: operation \"op-7\" cannot be canceled now: step switch-host cannot be undone (see its state: flotctl op get op-7)\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// No ID: a usage error, nothing sent.
	code, out, _ = runCLI(context.Background(), addr, "op", "cancel")
	if code != 2 || out != "" || len(f.cancelReqs) != 1 {
		t.Errorf("exit %d, stdout %q, %d calls", code, out, len(f.cancelReqs))
	}
}

func TestUsage(t *testing.T) {
	f := &fake{}
	addr := serve(t, f)
	code, out, errOut := runCLI(context.Background(), addr, "usage", "i-1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "" +
		"VOCABULARY  BILLING_CLASS          SECONDS  TIME\n" +
		"rightscale  instance-usage         2400     40m0s\n" +
		"rightscale  storage-only           1200     20m0s\n" +
		"rightscale  not-charged            0        0s\n" +
		"rightscale  unclassified           0        0s\n" +
		"azure       hardware-and-software  2400     40m0s\n" +
		"azure       hardware-only          1200     20m0s\n" +
		"azure       not-billed             0        0s\n" +
		"azure       unclassified           0        0s\n" +
		"\n" +
		"INSTANCE       i-1\n" +
		"FROM           2026-12-01T09:00:00Z\n" +
		"TO             2026-12-01T10:00:00Z\n" +
		"METERED_SINCE  2026-12-01T09:00:00Z\n" +
		"REVISION       12\n"
	if out != want {
		t.Errorf("stdout\n%s\nwant\n%s", out, want)
	}
	// Both vocabularies were asked, the second at least at the first's revision.
	if len(f.usageReqs) != 2 || f.usageReqs[0].GetVocabulary() != flotillav1.Vocabulary_VOCABULARY_RIGHTSCALE ||
		f.usageReqs[1].GetMinRevision() != 12 || f.usageReqs[0].GetStartTime() != nil {
		t.Errorf("requests %v", f.usageReqs)
	}

	code, out, errOut = runCLI(context.Background(), addr, "-o", "json", "usage", "i-1", "--vocabulary", "azure", "--from", "2026-12-01", "--to", "2026-12-01T10:00:00Z")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := jsonDoc(t, out, func() *flotillav1.InstanceUsage { return new(flotillav1.InstanceUsage) })
	if len(got) != 1 || got[0].GetVocabulary() != flotillav1.Vocabulary_VOCABULARY_AZURE || len(got[0].GetClasses()) != 3 {
		t.Errorf("json = %s", out)
	}
	r := f.usageReqs[2]
	if !r.GetStartTime().AsTime().Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) || !r.GetEndTime().AsTime().Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("range %v..%v", r.GetStartTime().AsTime(), r.GetEndTime().AsTime())
	}

	code, _, errOut = runCLI(context.Background(), addr, "usage", "i-404")
	if code != 3 || errOut != "flotctl: NotFound: instance \"i-404\" not found (check the id: flotctl list)\n" {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestNetworkCommands(t *testing.T) {
	f := &fake{instances: []*flotillav1.Instance{{Id: "i-1", Name: "web", Status: flotillav1.Status_STATUS_RUNNING,
		Interfaces: []*flotillav1.NetworkInterface{{Network: "lan", Ipv4Address: "10.20.0.2", DnsName: "web.lan"}}}}}
	addr := serve(t, f)
	ctx := context.Background()
	code, out, errOut := runCLI(ctx, addr, "network", "create", "lan", "--cidr", "10.20.0.0/24")
	if code != 0 || !strings.Contains(out, "lan   nat   10.20.0.0/24  10.20.0.1  -       0/253      h1,h2") {
		t.Fatalf("network create: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(ctx, addr, "network", "list")
	if code != 0 || !strings.Contains(out, "NAME  MODE  CIDR") || !strings.Contains(out, "lan") {
		t.Fatalf("network list: exit %d\n%s", code, out)
	}
	code, _, errOut = runCLI(ctx, addr, "network", "delete", "lan")
	if code == 0 || !strings.Contains(errOut, "held on it") {
		t.Fatalf("network delete of a network in use: exit %d: %s", code, errOut)
	}
	code, out, _ = runCLI(ctx, addr, "get", "i-1")
	if code != 0 || !strings.Contains(out, "ADDRESSES") || !strings.Contains(out, "10.20.0.2 (web.lan)") {
		t.Fatalf("get: exit %d\n%s", code, out)
	}
}

func TestMarkOperational(t *testing.T) {
	addr := serve(t, &fake{})
	code, out, errOut := runCLI(context.Background(), addr, "mark-operational", "i-1")
	if code != 0 || !strings.Contains(out, "READINESS") || !strings.Contains(out, "operational") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut = runCLI(context.Background(), addr, "mark-operational", "i-2"); code == 0 || !strings.Contains(errOut, "not stranded") {
		t.Fatalf("a refused mark: exit %d: %s", code, errOut)
	}
}

// set-password reads the password from a file, never from the command line.
func TestSetPasswordCommand(t *testing.T) {
	f := &fake{}
	addr := serve(t, f)
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("correct horse battery\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(context.Background(), addr, "set-password", "i-1", "--user", "ops", "--password-file", file)
	if code != 0 || !strings.Contains(out, "op-pw") || strings.Contains(out+errOut, "horse") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if len(f.passwordReqs) != 1 || f.passwordReqs[0].Password != "correct horse battery" || f.passwordReqs[0].User != "ops" {
		t.Fatalf("requests %v", f.passwordReqs)
	}
	if code, _, errOut = runCLI(context.Background(), addr, "set-password", "i-1"); code != 2 || !strings.Contains(errOut, "--password-file is required") {
		t.Fatalf("without a password file: exit %d: %s", code, errOut)
	}
}

// On a terminal the progress is one line rewritten in place, with the
// disk copy's bytes and rate; it is left in place when the wait ends.
func TestWaitProgressOnTerminal(t *testing.T) {
	running := &flotillav1.Operation{Id: "op-1", InstanceId: "i-1", Kind: flotillav1.OperationKind_OPERATION_KIND_STOP,
		State: flotillav1.OperationState_OPERATION_STATE_RUNNING, Step: "copy\x1b[2J",
		Copy: &flotillav1.CopyProgress{BytesDone: 412 << 20, BytesTotal: 2 << 30, BytesPerSecond: 180 << 20}}
	done := &flotillav1.Operation{Id: "op-1", InstanceId: "i-1", Kind: flotillav1.OperationKind_OPERATION_KIND_STOP,
		State: flotillav1.OperationState_OPERATION_STATE_SUCCEEDED, Done: true}
	f := &fake{
		instances: []*flotillav1.Instance{{Id: "i-1", Name: "web", Status: flotillav1.Status_STATUS_STOPPED}},
		waitOps:   []*flotillav1.Operation{running, done},
	}
	addr := serve(t, f)
	terminalCheck = func(io.Writer) bool { return true }
	defer func() { terminalCheck = isTerminal }()
	code, out, errOut := runCLI(context.Background(), addr, "stop", "i-1", "--wait")
	if code != 0 || !strings.HasPrefix(out, "operation op-1: STOP of instance i-1") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, want := range []string{
		"\r\x1b[Kop-1 STOP PENDING step dispatch (0s)",
		"\r\x1b[Kop-1 STOP RUNNING step copy\\x1b[2J: 412 MiB / 2.0 GiB at 180 MiB/s (",
		"\r\x1b[Kop-1 STOP SUCCEEDED (",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q lacks %q", errOut, want)
		}
	}
	if !strings.HasSuffix(errOut, ")\n") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("stderr %q: want one live line, ended by a newline", errOut)
	}
}
