package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// These tests run coordinators as processes with an agent on the fake
// hypervisor: they are about what the coordinators record.

var metered = []pb.Vocabulary{pb.Vocabulary_VOCABULARY_RIGHTSCALE, pb.Vocabulary_VOCABULARY_AZURE}

// startFakeSingle starts one coordinator with extra flags and an agent on
// the fake hypervisor, and returns them with a client.
func startFakeSingle(t *testing.T, extra ...string) (*testenv.Coordinator, *clients) {
	t.Helper()
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	dir := t.TempDir()
	coord := testenv.StartCoordinator(t, dir, extra...)
	g := testenv.NewGrpcurl(t, coord.Addr)
	coord.WaitReady(t, g)
	testenv.StartAgent(t, dir, coord.Addr, "fake-1", "fake")
	testenv.WaitHost(t, g, "fake-1", 0)
	return coord, dialAll(t, []*testenv.Coordinator{coord})
}

// doer returns a function that waits for the operation a write returned
// and requires it to succeed: do(cl.inst(0).StopInstance(...)).
func doer(t *testing.T, cl *clients) func(*pb.Operation, error) *pb.Operation {
	return func(op *pb.Operation, err error) *pb.Operation {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if op = waitDone(t, cl, op.Id); op.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
			t.Fatalf("operation %s %s ended %s: %v", op.Id, op.Kind, op.State, op.Error)
		}
		return op
	}
}

// waitVia waits, through member i, for op to succeed.
func waitVia(t *testing.T, cl *clients, i int, op *pb.Operation) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for !op.Done {
		var err error
		if op, err = cl.ops(i).WaitOperation(ctx, &pb.WaitOperationRequest{Id: op.Id, MinRevision: op.Revision}); err != nil {
			t.Fatalf("wait %s: %v", op.GetId(), err)
		}
	}
	if op.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("operation %s %s ended %s: %v", op.Id, op.Kind, op.State, op.Error)
	}
}

// usageAt asks member i for an instance's usage in every metered
// vocabulary up to end, at revision rev or later.
func usageAt(t *testing.T, cl *clients, i int, id string, end time.Time, rev int64) []*pb.InstanceUsage {
	t.Helper()
	var out []*pb.InstanceUsage
	for _, v := range metered {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		u, err := pb.NewUsageServiceClient(cl.conns[i]).GetInstanceUsage(ctx, &pb.GetInstanceUsageRequest{
			InstanceId: id, Vocabulary: v, EndTime: timestamppb.New(end), MinRevision: rev})
		cancel()
		if err != nil {
			t.Fatalf("usage of %s in %s from %s: %v", id, v, cl.addrs[i], err)
		}
		out = append(out, u)
	}
	return out
}

// withoutRevision is an answer with its revision cleared, to compare what
// it says about a range with an answer at another revision.
func withoutRevision(us []*pb.InstanceUsage) []*pb.InstanceUsage {
	out := make([]*pb.InstanceUsage, len(us))
	for i, u := range us {
		out[i] = proto.CloneOf(u)
		out[i].Revision = 0
	}
	return out
}

func equalAnswers(a, b []*pb.InstanceUsage) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// seconds returns the whole seconds per billing class ("" unclassified).
func seconds(u *pb.InstanceUsage) map[string]float64 {
	out := map[string]float64{"": u.Unclassified.AsDuration().Seconds()}
	for _, c := range u.Classes {
		out[c.BillingClass] = c.Duration.AsDuration().Seconds()
	}
	return out
}

// checkWhole requires an answer to account for the whole metered range.
func checkWhole(t *testing.T, u *pb.InstanceUsage) {
	t.Helper()
	var sum time.Duration
	for _, c := range u.Classes {
		sum += c.Duration.AsDuration()
	}
	sum += u.Unclassified.AsDuration()
	if want := u.EndTime.AsTime().Sub(u.MeteredSince.AsTime()); sum != want || want <= 0 {
		t.Fatalf("%s usage of %s adds up to %s over a metered %s: %v", u.Vocabulary, u.InstanceId, sum, want, u)
	}
}

// TestUsageSurvivesCoordinatorRestart meters an instance through create,
// stop and start (a snapshot taken between, so the restart both restores
// it and replays the log after it), kills the coordinator and restarts
// it: the usage up to a time before the kill is the same afterwards.
func TestUsageSurvivesCoordinatorRestart(t *testing.T) {
	coord, cl := startFakeSingle(t)
	ctx, do := context.Background(), doer(t, cl)
	spec := &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}
	created := do(cl.inst(0).CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "metered", Spec: spec}))
	id := created.InstanceId
	do(cl.inst(0).StopInstance(ctx, &pb.StopInstanceRequest{Id: id}))
	if _, err := cl.cluster(0).TakeSnapshot(ctx, &pb.TakeSnapshotRequest{}); err != nil {
		t.Fatal(err)
	}
	last := do(cl.inst(0).StartInstance(ctx, &pb.StartInstanceRequest{Id: id}))
	end := time.Now()
	before := usageAt(t, cl, 0, id, end, last.Revision)
	for _, u := range before {
		checkWhole(t, u)
	}
	// (Not-billed time, while creating, is there only if recording had
	// started before the create: the leader starts it once elected.)
	if az := seconds(before[1]); az["hardware-and-software"] <= 0 || az["hardware-only"] <= 0 {
		t.Fatalf("azure usage %v: running and stopped time should count", az)
	}

	coord.Kill()
	coord.Restart()
	coord.WaitReady(t, testenv.NewGrpcurl(t, coord.Addr))
	after := usageAt(t, cl, 0, id, end, last.Revision)
	if !equalAnswers(withoutRevision(before), withoutRevision(after)) {
		t.Fatalf("usage changed across a restart:\nbefore %v\nafter  %v", before, after)
	}
}

// TestUsageAgreesOnEveryReplica drives instances through every member of
// a three-coordinator cluster, kills the leader and goes on through a new
// one, restarts the old leader, and requires every member to give the same
// usage at the same revision, and the same as before the leader changed
// for the time before it.
func TestUsageAgreesOnEveryReplica(t *testing.T) {
	cs, cl, _ := startFakeCluster(t, 3)
	ctx, do := context.Background(), doer(t, cl)
	spec := &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}
	var ids []string
	for i := range cs {
		op := do(cl.inst(i).CreateInstance(ctx, &pb.CreateInstanceRequest{Name: fmt.Sprint("replica-", i), Spec: spec}))
		ids = append(ids, op.InstanceId)
	}
	do(cl.inst(1).StopInstance(ctx, &pb.StopInstanceRequest{Id: ids[0]}))
	do(cl.inst(2).PauseInstance(ctx, &pb.PauseInstanceRequest{Id: ids[1]})) // unclassified in both seeds

	// agree waits until every member answers for every instance at one
	// revision, and returns the answers (per instance) and that revision.
	agree := func(members []int, end time.Time) (map[string][]*pb.InstanceUsage, int64) {
		t.Helper()
		rev := converged(t, cl)
		var got map[string][]*pb.InstanceUsage
		var at int64
		testenv.Eventually(t, 30*time.Second, "every member to give the same usage at one revision", func() bool {
			got, at = map[string][]*pb.InstanceUsage{}, 0
			for _, id := range ids {
				var first []*pb.InstanceUsage
				for _, m := range members {
					us := usageAt(t, cl, m, id, end, rev)
					if first == nil {
						first = us
					}
					if !equalAnswers(us, first) { // revision included: the same state
						return false
					}
				}
				got[id] = first
				if at = first[0].Revision; at != got[ids[0]][0].Revision {
					return false
				}
			}
			return true
		})
		return got, at
	}
	all := []int{0, 1, 2}
	end := time.Now()
	first, rev := agree(all, end)
	for _, id := range ids {
		for _, u := range first[id] {
			checkWhole(t, u)
		}
	}
	if paused := seconds(first[ids[1]][1]); paused[""] <= 0 {
		t.Fatalf("a paused instance's azure usage has no unclassified time: %v", paused)
	}

	leader := leaderIndex(t, cs, cl)
	t.Logf("killing leader %s at revision %d", cs[leader].Name, rev)
	cs[leader].Kill()
	survivors := []int{(leader + 1) % 3, (leader + 2) % 3}
	// Retried with one request id while the survivors elect a leader.
	var stop *pb.Operation
	testenv.Eventually(t, 30*time.Second, "the survivors to take a write", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		op, err := cl.inst(survivors[0]).StopInstance(cctx, &pb.StopInstanceRequest{Id: ids[2], RequestId: "stop-after-failover"})
		if c := status.Code(err); err != nil && c != codes.Unavailable && c != codes.DeadlineExceeded {
			t.Fatalf("stop through a survivor: %v", err)
		}
		stop = op
		return err == nil
	})
	waitVia(t, cl, survivors[0], stop)
	cs[leader].Restart()
	later := time.Now()
	second, _ := agree(all, later)
	// The time before the first answer's end is told the same by the new
	// leader's state, the restarted member included.
	for _, m := range all {
		for _, id := range ids {
			if again := usageAt(t, cl, m, id, end, rev); !equalAnswers(withoutRevision(again), withoutRevision(first[id])) {
				t.Errorf("%s: usage of %s up to %s changed after the leader change:\nbefore %v\nafter  %v", cs[m].Name, id, end, first[id], again)
			}
		}
	}
	if s := seconds(second[ids[2]][0]); s["storage-only"] <= 0 {
		t.Errorf("the instance stopped through the new leader has no storage-only time: %v", s)
	}
}

// TestHistoryRetention: a deleted instance's operations, with who asked
// and each step's times, stay listable until the retention has passed
// since its deletion, then are removed (through the log), while a live
// instance's stay.
func TestHistoryRetention(t *testing.T) {
	// Long enough that the reads right after the delete always come before
	// it passes; a run where they did not fails rather than skips.
	const retention = 15 * time.Second
	_, cl := startFakeSingle(t, fmt.Sprintf("--history-retention=%s", retention))
	ctx, do := context.Background(), doer(t, cl)
	spec := &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}
	keeper := do(cl.inst(0).CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "keeper", Spec: spec})).InstanceId
	id := do(cl.inst(0).CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "short-lived", Spec: spec})).InstanceId
	del := do(cl.inst(0).DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: id}))
	deleted := del.EndTime.AsTime()

	inst, ierr := cl.inst(0).GetInstance(ctx, &pb.GetInstanceRequest{Id: id, MinRevision: del.Revision})
	ops, err := cl.ops(0).ListOperations(ctx, &pb.ListOperationsRequest{InstanceId: id})
	if time.Since(deleted) >= retention {
		t.Fatalf("the reads after the delete took %s, past the %s retention: the history before it cannot be checked", time.Since(deleted), retention)
	}
	if ierr != nil || inst.Status != pb.Status_STATUS_DELETED {
		t.Fatalf("right after the delete: %v %v", inst, ierr)
	}
	if err != nil || len(ops.Operations) != 2 {
		t.Fatalf("a deleted instance's history before the retention passed: %v %v", ops, err)
	}
	for _, op := range ops.Operations {
		by := op.RequestedBy
		if by == nil || by.Authenticated || by.Address == "" || by.Name != "" {
			t.Errorf("operation %s %s: requested_by %v, want an unauthenticated address", op.Id, op.Kind, by)
		}
		for _, st := range op.Steps {
			if st.StartTime == nil || st.EndTime == nil || st.State != pb.StepState_STEP_STATE_SUCCEEDED {
				t.Errorf("operation %s step %s: %v", op.Id, st.Name, st)
			}
		}
	}

	testenv.Eventually(t, retention+30*time.Second, "the deleted instance's records to be removed", func() bool {
		_, err := cl.inst(0).GetInstance(ctx, &pb.GetInstanceRequest{Id: id})
		return status.Code(err) == codes.NotFound
	})
	if gone := time.Since(deleted); gone < retention {
		t.Fatalf("removed %s after the deletion, before the %s retention", gone, retention)
	}
	ops, err = cl.ops(0).ListOperations(ctx, &pb.ListOperationsRequest{InstanceId: id})
	if err != nil || len(ops.Operations) != 0 {
		t.Fatalf("operations left after the removal: %v %v", ops, err)
	}
	if _, err := pb.NewUsageServiceClient(cl.conns[0]).GetInstanceUsage(ctx, &pb.GetInstanceUsageRequest{
		InstanceId: id, Vocabulary: pb.Vocabulary_VOCABULARY_AZURE}); status.Code(err) != codes.NotFound {
		t.Fatalf("usage of a removed instance: %v", err)
	}
	ops, err = cl.ops(0).ListOperations(ctx, &pb.ListOperationsRequest{InstanceId: keeper})
	if err != nil || len(ops.Operations) != 1 {
		t.Fatalf("the live instance's history: %v %v", ops, err)
	}
}
