package executor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/flotilla-vm/flotilla/agent/guestchan"
)

// skipped is a step that succeeded without doing its work, and says why:
// the result's note.
type skipped struct{ note string }

func (s skipped) Error() string { return s.note }

// noGuestSide is the note of a decommission the guest could not be asked for.
const noGuestSide = "decommissioning skipped: the guest has no guest side"

// answerMargin is what a decommission keeps of its step's time for the
// guest's answer to arrive.
const answerMargin = time.Second

// decommission asks the guest, on its channel, to run its decommission work
// within the step's time ("CMD <n> decommission <seconds>"), and waits for
// its answer until the step's deadline. A guest without a guest side
// (RightScale's bare instance) skips it; a FAIL (GUEST_FAILED) or no
// answer in time (DEADLINE_EXCEEDED) fails the step.
func (e *Executor) decommission(ctx context.Context, id string, deadline time.Time) error {
	if e.cfg.Guests == nil {
		return skipped{noGuestSide + " (this agent runs no guest channels)"}
	}
	secs := int64((time.Until(deadline) - answerMargin) / time.Second)
	if secs < 1 {
		return fmt.Errorf("no time left to decommission: %w", context.DeadlineExceeded)
	}
	_, err := e.cfg.Guests.Command(ctx, id, "decommission", strconv.FormatInt(secs, 10))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, guestchan.ErrNoGuestSide):
		return skipped{noGuestSide}
	case ctx.Err() != nil && !errors.As(err, new(*guestchan.CommandError)):
		return fmt.Errorf("the guest did not finish its decommission work in %ds: %w", secs, context.DeadlineExceeded)
	}
	return fmt.Errorf("decommission: %w", err)
}
