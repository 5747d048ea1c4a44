package executor

import (
	"context"
	"fmt"
	"time"

	"github.com/flotilla-vm/flotilla/agent/guestchan"
	"github.com/flotilla-vm/flotilla/hypervisor"
)

// GuestReports gives what each guest last said on its guest channel
// (agent/guestchan.Watcher); the health wait of an upgrade or a rebuild reads it.
type GuestReports interface {
	Report(instanceID string) (guestchan.Report, bool)
}

// SettleTime is how long a guest that has no guest side must keep running
// before an upgrade counts it healthy.
const SettleTime = 20 * time.Second

// healthPoll is how often the health wait looks again.
const healthPoll = 250 * time.Millisecond

// errUnhealthy fails an upgrade's health wait: the guest said its boot
// failed, or its domain stopped.
type errUnhealthy struct{ why string }

func (e errUnhealthy) Error() string { return e.why }

// awaitHealthy waits, until the step's deadline, for the guest booted by
// the step before (at or after since) to become healthy: its guest side
// says READY (a FAILED, or the domain going down, fails at once); a guest
// that never speaks counts as healthy once its domain has run for
// SettleTime from since (or half the step's time, if less).
func (e *Executor) awaitHealthy(ctx context.Context, id string, since time.Time) error {
	settle := SettleTime
	if dl, ok := ctx.Deadline(); ok {
		settle = min(settle, time.Until(dl)/2)
	}
	reports, _ := e.cfg.Guests.(GuestReports)
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for {
		st, err := e.cfg.Driver.Status(ctx, id)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil && st.State != hypervisor.PowerRunning {
			return errUnhealthy{fmt.Sprintf("the booted guest is %s, not running", st.State)}
		}
		heard := false
		if reports != nil {
			// The watcher forgets a guest's report when its domain stops:
			// what it holds now is the upgraded boot's.
			if r, ok := reports.Report(id); ok {
				heard = r.State != guestchan.Unknown
				switch r.State {
				case guestchan.Ready:
					return nil
				case guestchan.Failed:
					return errUnhealthy{fmt.Sprintf("the booted guest's boot failed: %s", r.Reason)}
				}
			}
		}
		if !heard && time.Since(since) >= settle {
			return skipped{fmt.Sprintf("healthy: the guest has no guest side and ran for %s", settle.Round(time.Second))}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the booted guest did not become healthy in time: %w", context.DeadlineExceeded)
		case <-tick.C:
		}
	}
}
