package fsm

import (
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// TestMain checks, once every test of the package has run, that none of
// them changed a shared plan: every path that changes a step (dispatch,
// result, retry, rollback, cancel, abort, a move's own steps) is exercised
// here, and one that forgot ownSteps would have written into the plan.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := plansIntact(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// plansIntact reports a plan that differs from a fresh build of its kind's
// steps: some path changed a step without taking its own copy first.
func plansIntact() error {
	var err error
	stepPlans.Range(func(k, v any) bool {
		key := k.(planKey)
		defs := lifecycle.StepsForShape(key.kind, key.shape)
		fresh := make([]state.Step, len(defs))
		for i, d := range defs {
			fresh[i] = newStep(d)
		}
		if !reflect.DeepEqual(v.([]state.Step), fresh) {
			err = fmt.Errorf("the shared plan of %s (%+v) was changed: %+v", key.kind, key.shape, v)
			return false
		}
		return true
	})
	return err
}
