package api

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/usage"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

var u0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func sec(n int) time.Time { return u0.Add(time.Duration(n) * time.Second) }

// usageServer serves usage from a store whose instance "i-1" ran from 0,
// stopped at 100, and was started again at 400; now is 1000.
func usageServer(t *testing.T) *usageService {
	t.Helper()
	s := state.New(0)
	put := func(at int, d lifecycle.Desired, p lifecycle.Power) {
		if err := s.Update(sec(at), func(tx *state.Tx) error {
			tx.PutInstance(&state.Instance{ID: "i-1", HostID: "h1", Desired: d, Power: p})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Update(sec(0), func(tx *state.Tx) error { tx.StartMetering(); return nil }); err != nil {
		t.Fatal(err)
	}
	put(0, lifecycle.DesiredRunning, lifecycle.PowerRunning)
	put(100, lifecycle.DesiredStopped, lifecycle.PowerShutOff)
	put(400, lifecycle.DesiredRunning, lifecycle.PowerRunning)
	return &usageService{core: &core{store: s, log: slog.Default(), now: func() time.Time { return sec(1000) }}}
}

func classSeconds(u *pb.InstanceUsage) map[string]int {
	out := map[string]int{"": int(u.Unclassified.AsDuration() / time.Second)}
	for _, c := range u.Classes {
		out[c.BillingClass] = int(c.Duration.AsDuration() / time.Second)
	}
	return out
}

func TestGetInstanceUsage(t *testing.T) {
	s := usageServer(t)
	ctx := context.Background()
	// Whole life: the running class counts up to now (1000).
	u, err := s.GetInstanceUsage(ctx, &pb.GetInstanceUsageRequest{InstanceId: "i-1", Vocabulary: pb.Vocabulary_VOCABULARY_AZURE})
	if err != nil {
		t.Fatal(err)
	}
	if got := classSeconds(u); got["hardware-and-software"] != 700 || got["hardware-only"] != 300 || got["not-billed"] != 0 || got[""] != 0 || len(u.Classes) != 3 {
		t.Fatalf("azure usage %v (%v)", got, u)
	}
	if !u.StartTime.AsTime().Equal(sec(0)) || !u.EndTime.AsTime().Equal(sec(1000)) || !u.MeteredSince.AsTime().Equal(sec(0)) || u.Revision != 4 {
		t.Fatalf("range %v..%v since %v rev %d", u.StartTime.AsTime(), u.EndTime.AsTime(), u.MeteredSince.AsTime(), u.Revision)
	}
	// A range ending after now counts up to now; classes come in the seed's order.
	u, err = s.GetInstanceUsage(ctx, &pb.GetInstanceUsageRequest{InstanceId: "i-1", Vocabulary: pb.Vocabulary_VOCABULARY_RIGHTSCALE,
		StartTime: timestamppb.New(sec(50)), EndTime: timestamppb.New(sec(5000))})
	if err != nil {
		t.Fatal(err)
	}
	if got := classSeconds(u); got["instance-usage"] != 650 || got["storage-only"] != 300 || u.Classes[0].BillingClass != "instance-usage" || !u.EndTime.AsTime().Equal(sec(1000)) {
		t.Fatalf("rightscale usage %v (%v)", got, u)
	}

	for name, c := range map[string]struct {
		req  *pb.GetInstanceUsageRequest
		code codes.Code
	}{
		"no vocabulary":      {&pb.GetInstanceUsageRequest{InstanceId: "i-1"}, codes.InvalidArgument},
		"no billing classes": {&pb.GetInstanceUsageRequest{InstanceId: "i-1", Vocabulary: pb.Vocabulary_VOCABULARY_NOVA}, codes.InvalidArgument},
		"unknown vocabulary": {&pb.GetInstanceUsageRequest{InstanceId: "i-1", Vocabulary: 42}, codes.InvalidArgument},
		"no instance id":     {&pb.GetInstanceUsageRequest{Vocabulary: pb.Vocabulary_VOCABULARY_AZURE}, codes.InvalidArgument},
		"end before start": {&pb.GetInstanceUsageRequest{InstanceId: "i-1", Vocabulary: pb.Vocabulary_VOCABULARY_AZURE,
			StartTime: timestamppb.New(sec(10)), EndTime: timestamppb.New(sec(10))}, codes.InvalidArgument},
		"bad timestamp": {&pb.GetInstanceUsageRequest{InstanceId: "i-1", Vocabulary: pb.Vocabulary_VOCABULARY_AZURE,
			StartTime: &timestamppb.Timestamp{Nanos: -1}}, codes.InvalidArgument},
		"unknown instance": {&pb.GetInstanceUsageRequest{InstanceId: "i-404", Vocabulary: pb.Vocabulary_VOCABULARY_AZURE}, codes.NotFound},
	} {
		if _, err := s.GetInstanceUsage(ctx, c.req); status.Code(err) != c.code {
			t.Errorf("%s: %v, want %s", name, err, c.code)
		}
	}
}

// A range through the span kept only as totals is OUT_OF_RANGE, naming it.
func TestGetInstanceUsageCompacted(t *testing.T) {
	s := usageServer(t)
	for n := range usage.MaxChanges + 10 {
		power, desired := lifecycle.PowerRunning, lifecycle.DesiredRunning
		if n%2 == 0 {
			power, desired = lifecycle.PowerShutOff, lifecycle.DesiredStopped
		}
		if err := s.store.Update(sec(500+n), func(tx *state.Tx) error {
			tx.PutInstance(&state.Instance{ID: "i-1", HostID: "h1", Desired: desired, Power: power})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.GetInstanceUsage(context.Background(), &pb.GetInstanceUsageRequest{InstanceId: "i-1", Vocabulary: pb.Vocabulary_VOCABULARY_AZURE,
		StartTime: timestamppb.New(sec(50))})
	st := status.Convert(err)
	if st.Code() != codes.OutOfRange || len(st.Details()) != 1 {
		t.Fatalf("%v", err)
	}
	info := st.Details()[0].(*errdetails.ErrorInfo)
	if info.Reason != "USAGE_COMPACTED" || info.Metadata["compacted_from"] != sec(0).Format(time.RFC3339Nano) {
		t.Fatalf("details %v", info)
	}
	// The whole history is still exact.
	if _, err := s.GetInstanceUsage(context.Background(), &pb.GetInstanceUsageRequest{InstanceId: "i-1", Vocabulary: pb.Vocabulary_VOCABULARY_AZURE}); err != nil {
		t.Fatal(err)
	}
}

func TestOperationShowsItsRequester(t *testing.T) {
	op := convert.OperationToPB(&state.Operation{ID: "op-1", RequestedBy: &state.Caller{Name: "alice", Roles: []string{"operator"}, Authenticated: true, Address: "10.0.0.1:5"}})
	if by := op.RequestedBy; by.GetName() != "alice" || !by.GetAuthenticated() || by.GetRoles()[0] != "operator" || by.GetAddress() != "10.0.0.1:5" {
		t.Fatalf("requested_by %v", by)
	}
	if convert.OperationToPB(&state.Operation{ID: "op-2"}).RequestedBy != nil {
		t.Fatal("a requester for an operation the coordinator started")
	}
}
