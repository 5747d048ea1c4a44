// Package billing charges projects for their instances' usage, on the
// leader: every interval it sums, from the replicated usage meter
// (coordinator/usage), the time each instance of a billed project spent in
// each billing class since the project was last charged, prices it
// (Price), and commits the charges (fsm.ChargeProjects), which take the
// balances down and freeze a project whose balance runs out. It then
// brings the instances of any project whose frozen state they do not show
// yet in line (pausing them, or resuming what a freeze paused), through
// Sync.
//
// The amounts are computed on the leader, from replicated state, and
// carried in the entry with the time they run to; a charge up to a time
// already charged is ignored at commit, so a new leader's repeat costs
// nothing.
package billing

import (
	"context"
	"log/slog"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

// Price is what usage costs, in thousandths of a unit: for each class,
// its price per vCPU-hour times the vCPUs times the hours spent in it.
// prices are keyed by class name (vocabulary.Billing); a class without a
// price is free, and so is time in no class.
func Price(spent map[vocabulary.Billing]time.Duration, vcpus uint32, prices map[string]int64) int64 {
	var total int64
	for class, d := range spent {
		p := prices[string(class)]
		if p <= 0 || d <= 0 {
			continue
		}
		// In milliseconds, so a year at a high price still fits in int64.
		total += p * int64(vcpus) * d.Milliseconds() / int64(time.Hour/time.Millisecond)
	}
	return total
}

// Applier commits an encoded command.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
}

// Syncer brings a project's instances in line with its frozen state.
type Syncer func(ctx context.Context, project string) error

// Run charges and syncs every interval until ctx ends; call it only while
// leader.
func Run(ctx context.Context, store *state.Store, applier Applier, sync Syncer, interval time.Duration, log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if store.LogVersion() < fsm.LogVersion7 {
			continue
		}
		now := time.Now()
		if charges := Charges(store, now); len(charges) > 0 {
			if _, err := fsm.Propose(ctx, applier, fsm.TypeChargeProjects, now, fsm.ChargeProjects{Charges: charges}); err != nil {
				log.Warn("charging projects failed", "err", err)
				continue
			}
		}
		for _, name := range OutOfLine(store) {
			if err := sync(ctx, name); err != nil {
				log.Warn("syncing a project's frozen state failed", "project", name, "err", err)
			}
		}
	}
}

// Charges prices every billed project's usage from its last charge up to now.
func Charges(store *state.Store, now time.Time) []fsm.ProjectCharge {
	projects, _ := store.Projects()
	byName := map[string]*state.Project{}
	amounts := map[string]int64{}
	for k := range projects {
		if p := &projects[k]; p.Billed && now.After(p.ChargedThrough) {
			byName[p.Name] = p
		}
	}
	if len(byName) == 0 {
		return nil
	}
	// Read with Instances, not EachInstance: Usage takes the store's lock too.
	instances, _ := store.Instances()
	for k := range instances {
		i := &instances[k]
		p := byName[state.ProjectOf(i)]
		if p == nil {
			continue
		}
		h, _, err := store.Usage(i.ID)
		if err != nil {
			continue
		}
		for _, v := range vocabulary.Metered() {
			m := h.MeterOf(v)
			spent, err := m.Sum(p.ChargedThrough, now)
			if err != nil {
				continue // compacted: that span cannot be priced exactly; left uncharged
			}
			amounts[p.Name] += Price(spent, i.Spec.VCPUs, p.PricesMilli)
		}
	}
	var out []fsm.ProjectCharge
	for k := range projects {
		if p := &projects[k]; byName[p.Name] != nil {
			out = append(out, fsm.ProjectCharge{Name: p.Name, AmountMilli: amounts[p.Name], Through: now})
		}
	}
	return out
}

// OutOfLine names the projects with an idle instance that does not show
// the project's frozen state yet: not marked, running while frozen, or
// paused by a freeze that was lifted.
func OutOfLine(store *state.Store) []string {
	projects, _ := store.Projects()
	if len(projects) == 0 {
		return nil
	}
	frozen := map[string]bool{}
	for _, p := range projects {
		frozen[p.Name] = p.Frozen
	}
	seen := map[string]bool{}
	var out []string
	store.EachInstance(func(i *state.Instance) {
		name := state.ProjectOf(i)
		f, ok := frozen[name]
		if !ok || seen[name] || i.Desired == lifecycle.DesiredDeleted || i.CurrentOp != "" {
			return
		}
		if i.Frozen != f || f && i.Desired == lifecycle.DesiredRunning && i.Power == lifecycle.PowerRunning && i.Result != lifecycle.ResultFailed || !f && i.ThawRun {
			seen[name] = true
			out = append(out, name)
		}
	})
	return out
}
