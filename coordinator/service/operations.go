package service

import (
	"context"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Cancel asks for an operation to be canceled and returns it as committed.
func (s *Service) Cancel(ctx context.Context, opID string) (state.Operation, error) {
	if _, err := s.apply(ctx, fsm.TypeCancel, fsm.Cancel{OperationID: opID}); err != nil {
		return state.Operation{}, err
	}
	return s.store.Operation(opID)
}
