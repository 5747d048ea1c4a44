package executor_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
)

// lostAnswers is a fake hypervisor whose Create loses its
// answer, as a libvirtd restarted under it does: with work set, after
// doing its work; without, before.
type lostAnswers struct {
	*fake.Driver
	work bool
}

var errGone = fmt.Errorf("procedure interrupted while awaiting response: %w", hypervisor.ErrUnavailable)

func (d *lostAnswers) Create(ctx context.Context, spec hypervisor.DomainSpec) error {
	if d.work {
		if err := d.Driver.Create(ctx, spec); err != nil {
			return err
		}
	}
	return errGone
}

// TestLostHypervisorAnswer: a step whose hypervisor went away under it is
// decided from what the hypervisor shows once it answers: a create that
// took effect succeeds (not a failed create over a running guest); one
// that did not reports the transient fault, for the coordinator's next
// attempt.
func TestLostHypervisorAnswer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		work      bool
		succeeded bool
	}{
		{"effect present", true, true},
		{"effect absent", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drv := &lostAnswers{Driver: newFake(), work: tc.work}
			e, _ := newExecutor(t, drv, "")
			r := e.Execute(create("op-1", "vm-1"), epoch)
			if tc.succeeded {
				mustSucceed(t, r)
				if !strings.Contains(r.GetNote(), "answer was lost") {
					t.Errorf("note %q does not say the answer was lost", r.GetNote())
				}
				return
			}
			wantFault(t, r, executor.FaultHypervisorUnavailable)
		})
	}
}
