package api

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

type operations struct {
	*core
	pb.UnimplementedOperationServiceServer
}

func (s *operations) GetOperation(ctx context.Context, r *pb.GetOperationRequest) (*pb.Operation, error) {
	var v violations
	validateID(&v, "id", r.Id)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.waitRevision(ctx, r.MinRevision); err != nil {
		return nil, toStatus(err)
	}
	if err := s.checkOperation(ctx, r.Id); err != nil {
		return nil, toStatus(err)
	}
	op, err := s.operation(r.Id)
	return op, toStatus(err)
}

func (s *operations) ListOperations(ctx context.Context, r *pb.ListOperationsRequest) (*pb.ListOperationsResponse, error) {
	var v violations
	size := pageSize(&v, r.PageSize)
	if r.InstanceId != "" {
		validateID(&v, "instance_id", r.InstanceId)
	}
	// The token is the sequence number of the last operation returned.
	var after int64
	if r.PageToken != "" {
		n, err := strconv.ParseInt(r.PageToken, 10, 64)
		if err != nil || n <= 0 {
			v.add("page_token", "is not a token this server issued")
		}
		after = n
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	ops, rev := s.store.Operations(r.InstanceId)
	out := &pb.ListOperationsResponse{Revision: rev}
	for i := range ops {
		if after > 0 && ops[i].Seq >= after {
			continue // newest first: skip what earlier pages returned
		}
		if !s.seesOperation(ctx, &ops[i]) {
			continue
		}
		if len(out.Operations) == size {
			out.NextPageToken = strconv.FormatInt(ops[i-1].Seq, 10)
			break
		}
		out.Operations = append(out.Operations, convert.OperationToPB(&ops[i]))
	}
	return out, nil
}

func (s *operations) WaitOperation(ctx context.Context, r *pb.WaitOperationRequest) (*pb.Operation, error) {
	var v violations
	validateID(&v, "id", r.Id)
	timeout := time.Minute
	if r.Timeout != nil {
		timeout = r.Timeout.AsDuration()
		if timeout <= 0 || timeout > 10*time.Minute {
			v.add("timeout", "must be more than 0 and at most 10m")
		}
	}
	if len(v) > 0 {
		return nil, invalid(v)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.waitRevision(ctx, r.MinRevision); err != nil {
		return nil, toStatus(err)
	}
	for {
		changed := s.store.Changed()
		op, err := s.store.Operation(r.Id)
		if err != nil {
			return nil, toStatus(err)
		}
		if !s.seesOperation(ctx, &op) {
			return nil, toStatus(fmt.Errorf("operation %q: %w", r.Id, state.ErrNotFound))
		}
		if op.State.Done() {
			return convert.OperationToPB(&op), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			// Like google.longrunning: the wait ending is not an error; the
			// caller sees done=false and waits again.
			return convert.OperationToPB(&op), nil
		}
	}
}

func (s *operations) CancelOperation(ctx context.Context, r *pb.CancelOperationRequest) (*pb.Operation, error) {
	var v violations
	validateID(&v, "id", r.Id)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.checkOperation(ctx, r.Id); err != nil {
		return nil, toStatus(err)
	}
	op, err := s.svc.Cancel(ctx, r.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.OperationToPB(&op), nil
}
