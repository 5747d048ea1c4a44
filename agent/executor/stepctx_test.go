package executor_test

import (
	"context"
	"testing"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/hypervisor"
)

// ctxMover records the step identity in the context of its Import.
type ctxMover struct {
	fakeMover
	got executor.StepIdentity
	ok  bool
}

func (m *ctxMover) Import(ctx context.Context, spec hypervisor.DomainSpec, fromHostID, fromAddr, token string) error {
	m.got, m.ok = executor.StepFromContext(ctx)
	return nil
}

// The Mover's context names the step it runs for, so that what it reports
// while it runs (a copy's progress) can say which step.
func TestMoverContextNamesTheStep(t *testing.T) {
	mv := &ctxMover{}
	e := newMoverExecutor(t, mv)
	mustSucceed(t, e.Execute(importStep("op-3"), epoch))
	if want := (executor.StepIdentity{OperationID: "op-3", StepID: "op-3/import/1", InstanceID: "vm-1"}); !mv.ok || mv.got != want {
		t.Fatalf("StepFromContext = %+v, %v; want %+v", mv.got, mv.ok, want)
	}
	if _, ok := executor.StepFromContext(context.Background()); ok {
		t.Fatal("a step identity in a context without one")
	}
}
