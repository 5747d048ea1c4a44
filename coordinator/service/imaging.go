package service

import (
	"context"
	"fmt"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Imaging is a validated rebuild, rescue, unrescue or bundle request.
type Imaging struct {
	InstanceID, RequestID string
	Action                lifecycle.Action // rebuild, rescue, unrescue or bundle
	// Image: a rebuild's new image, a rescue's rescue image ("" for both:
	// the instance's own), a bundle's new image.
	Image string
}

// Image runs a rebuild, rescue, unrescue or bundle of an instance.
func (s *Service) Image(ctx context.Context, r Imaging) (state.Operation, error) {
	if v := s.store.LogVersion(); v < fsm.LogVersion8 {
		return state.Operation{}, fmt.Errorf("%s: %w (needs log version %d, the cluster is at %d)",
			r.Action, fsm.ErrUnsupported, fsm.LogVersion8, v)
	}
	if r.Action == lifecycle.ActionBundle && r.Image == "" {
		return state.Operation{}, &FieldError{"image", "is required: the new image's name"}
	}
	return s.Act(ctx, Action{InstanceID: r.InstanceID, RequestID: r.RequestID, Action: r.Action, Image: r.Image, Force: true})
}
