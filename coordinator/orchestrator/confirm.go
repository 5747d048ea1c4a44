package orchestrator

import (
	"context"
	"errors"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/ids"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// confirmEvery is how often resizes past their confirm window are looked
// for: a window is minutes to days, a second late is nothing.
const confirmEvery = time.Second

// confirmDue confirms the resizes whose window has passed, as the user
// would have. The FSM checks again at commit time that the instance still
// waits in VERIFY_RESIZE, so a user's confirm or revert that came first
// wins, and a repeated proposal changes nothing.
func (o *Orchestrator) confirmDue(ctx context.Context, now time.Time) {
	var due []string
	o.cfg.Store.EachConfirmable(func(i *state.Instance) {
		if r := i.Resize; r != nil && !r.ConfirmBy.IsZero() && now.After(r.ConfirmBy) && i.Status() == lifecycle.StatusVerifyResize {
			due = append(due, i.ID)
		}
	})
	for _, id := range due {
		cmd := fsm.InstanceAction{Action: lifecycle.ActionConfirmResize, Operation: state.Operation{
			ID: ids.New("op-"), InstanceID: id, Deadline: now.Add(lifecycle.DefaultDeadlines[lifecycle.OpConfirmResize])}}
		v, err := o.applyValue(ctx, fsm.TypeInstanceAction, cmd)
		log := o.log.With("instance", id)
		if err != nil {
			if !errors.Is(err, lifecycle.ErrNotAllowed) {
				log.Warn("confirming a resize past its window failed; will retry", "err", err)
			}
			continue
		}
		log.Info("resize confirmed: its confirm window passed", "operation", v)
	}
}
