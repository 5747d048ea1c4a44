package api

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/raftstore"
	"github.com/flotilla-vm/flotilla/coordinator/service"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/upgrade"
	"github.com/flotilla-vm/flotilla/coordinator/usage"
)

const errorDomain = "flotilla.dev"

// toStatus is the one place domain errors become gRPC status codes.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a gRPC status
	}
	var nae *lifecycle.NotAllowedError
	var compacted *usage.CompactedError
	var field *service.FieldError
	switch {
	case errors.As(err, &field):
		return invalid(violations{{field.Field, field.Reason}})
	case errors.As(err, &nae):
		allowed := make([]string, len(nae.Allowed))
		for i, a := range nae.Allowed {
			allowed[i] = string(a)
		}
		st := status.New(codes.FailedPrecondition, err.Error())
		st, _ = st.WithDetails(
			&errdetails.ErrorInfo{Reason: "ACTION_NOT_ALLOWED", Domain: errorDomain, Metadata: map[string]string{
				"status": string(nae.Status), "action": string(nae.Action), "allowed_actions": strings.Join(allowed, ","),
			}},
			&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
				Type: "STATUS", Subject: string(nae.Status), Description: err.Error(),
			}}},
		)
		return st.Err()
	case errors.As(err, &compacted):
		st := status.New(codes.OutOfRange, err.Error())
		st, _ = st.WithDetails(&errdetails.ErrorInfo{Reason: "USAGE_COMPACTED", Domain: errorDomain, Metadata: map[string]string{
			"compacted_from": compacted.From.Format(time.RFC3339Nano), "compacted_until": compacted.To.Format(time.RFC3339Nano),
		}})
		return st.Err()
	case errors.Is(err, state.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, fsm.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, fsm.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, fsm.ErrQuotaExceeded):
		st := status.New(codes.ResourceExhausted, err.Error())
		st, _ = st.WithDetails(&errdetails.ErrorInfo{Reason: "QUOTA_EXCEEDED", Domain: errorDomain})
		return st.Err()
	case errors.Is(err, fsm.ErrFrozen):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, fsm.ErrNoCapacity), errors.Is(err, fsm.ErrNoAddress):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, fsm.ErrConflict), errors.Is(err, fsm.ErrInUse), errors.Is(err, service.ErrNotServed), errors.Is(err, fsm.ErrNotStranded),
		errors.Is(err, service.ErrGuestUnsupported):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, fsm.ErrHostUnavailable):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, fsm.ErrOperationDone), errors.Is(err, fsm.ErrNotCancellable), errors.Is(err, fsm.ErrUnsupported),
		errors.Is(err, upgrade.ErrTooOld):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, state.ErrCompacted):
		return status.Error(codes.OutOfRange, err.Error())
	case errors.Is(err, raftstore.ErrConfigurationChanged):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, raftstore.ErrNotLeader):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// invalid turns field violations into INVALID_ARGUMENT with a BadRequest detail.
func invalid(v violations) error {
	br := &errdetails.BadRequest{}
	msgs := make([]string, len(v))
	for i, x := range v {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: x.field, Description: x.desc})
		msgs[i] = x.field + " " + x.desc
	}
	st := status.New(codes.InvalidArgument, strings.Join(msgs, "; "))
	st, _ = st.WithDetails(br)
	return st.Err()
}
