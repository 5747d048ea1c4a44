// Package readiness strands, on the leader, instances whose guest is still
// booting at its readiness deadline (RightScale's "stranded", Azure's OS
// provisioning failed). Guests report their boot over their guest channel
// (booting, ready, failed); a boot that never finishes says nothing, so
// the deadline is the coordinator's. The decision is a pure function; the
// loop only proposes Strand commands, which the FSM re-checks (the boot
// may have ended meanwhile).
package readiness

import (
	"context"
	"log/slog"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// DefaultTimeout is how long a guest may boot when its create said nothing
// and the operator set no default.
const DefaultTimeout = 10 * time.Minute

// Due is when inst's booting guest is stranded, and whether it ever is
// (not booting, or no deadline).
func Due(inst *state.Instance) (time.Time, bool) {
	if inst.Guest.State != lifecycle.GuestBooting || inst.ReadyTimeout <= 0 || !inst.Power.Up() {
		return time.Time{}, false
	}
	return inst.Guest.Since.Add(inst.ReadyTimeout), true
}

// Applier commits an encoded command.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
}

// coalesce is the least time between two scans triggered by commits.
const coalesce = 200 * time.Millisecond

// Run strands overdue boots until ctx ends. Call it only while leader.
func Run(ctx context.Context, store *state.Store, applier Applier, log *slog.Logger) {
	store.EachChange(ctx, coalesce, func(now time.Time) time.Duration {
		next := time.Minute
		var todo []fsm.Strand
		store.EachBooting(func(i *state.Instance) {
			due, ok := Due(i)
			switch {
			case !ok:
			case !now.Before(due):
				todo = append(todo, fsm.Strand{InstanceID: i.ID, Since: i.Guest.Since})
			case due.Sub(now) < next:
				next = due.Sub(now)
			}
		})
		for _, c := range todo {
			if ctx.Err() != nil {
				break
			}
			if _, err := fsm.Propose(ctx, applier, fsm.TypeStrand, now, c); err != nil {
				log.Warn("stranding an overdue boot failed", "instance", c.InstanceID, "err", err)
				continue
			}
			log.Warn("guest not ready by its deadline: stranded", "instance", c.InstanceID, "booting_since", c.Since)
		}
		return next
	})
}
