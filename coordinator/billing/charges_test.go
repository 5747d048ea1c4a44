package billing

import (
	"slices"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// Charges prices an hour of a running 2-vCPU instance of a billed project
// from the replicated meter, and nothing for an unbilled one.
func TestChargesFromTheMeter(t *testing.T) {
	s := state.New(0)
	err := s.Update(t0, func(tx *state.Tx) error {
		tx.StartMetering()
		tx.PutProject(state.Project{Name: "paid", Billed: true, BalanceMilli: 10_000, ChargedThrough: t0,
			PricesMilli: map[string]int64{"hardware-and-software": 1000}})
		tx.PutProject(state.Project{Name: "free", ChargedThrough: t0})
		for _, i := range []state.Instance{{ID: "a", Project: "paid"}, {ID: "b", Project: "free"}, {ID: "c"}} {
			i.Spec, i.Desired, i.Power = state.Spec{VCPUs: 2}, lifecycle.DesiredRunning, lifecycle.PowerRunning
			tx.PutInstance(&i)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := Charges(s, t0.Add(time.Hour))
	if len(got) != 1 || got[0].Name != "paid" || got[0].AmountMilli != 2000 || !got[0].Through.Equal(t0.Add(time.Hour)) {
		t.Fatalf("charges: %+v", got)
	}
}

// OutOfLine finds the projects whose idle instances do not show their
// frozen state yet.
func TestOutOfLine(t *testing.T) {
	s := state.New(0)
	err := s.Update(t0, func(tx *state.Tx) error {
		tx.PutProject(state.Project{Name: "frozen", Frozen: true})
		tx.PutProject(state.Project{Name: "thawed"})
		tx.PutProject(state.Project{Name: "fine", Frozen: true})
		tx.PutProject(state.Project{Name: "busy", Frozen: true})
		for _, i := range []state.Instance{
			{ID: "a", Project: "frozen", Frozen: true, Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning}, // still runs
			{ID: "b", Project: "thawed", ThawRun: true, Desired: lifecycle.DesiredPaused, Power: lifecycle.PowerPaused},
			{ID: "c", Project: "fine", Frozen: true, ThawRun: true, Desired: lifecycle.DesiredPaused, Power: lifecycle.PowerPaused},
			{ID: "d", Project: "busy", CurrentOp: "op", CurrentOpK: lifecycle.OpStart, Desired: lifecycle.DesiredRunning},
		} {
			tx.PutInstance(&i)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := OutOfLine(s)
	slices.Sort(got)
	if !slices.Equal(got, []string{"frozen", "thawed"}) {
		t.Fatalf("out of line: %v", got)
	}
}
