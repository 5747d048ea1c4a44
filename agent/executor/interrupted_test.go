package executor_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/agent/stepstore"
	"github.com/flotilla-vm/flotilla/hypervisor"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// begun records, as a previous agent process would have, that the step began.
func begun(t *testing.T, db string, s *agentv1.RunStep) {
	t.Helper()
	store, err := stepstore.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, _, err := store.Begin(s.GetOperationId(), stepstore.Step{OperationID: s.GetOperationId(), Kind: s.GetKind(),
		Action: s.GetAction(), InstanceID: s.GetInstanceId(), HostEpoch: s.GetHostEpoch()}); err != nil {
		t.Fatal(err)
	}
}

// An interrupted create is settled by what the hypervisor shows: booted is
// done (not created again); defined but not booted is undone and created
// again; nothing at all is created again.
func TestInterruptedCreate(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		before      func(d hypervisor.Driver) error // what the killed agent left
		wantCreates int                             // by the new process
		wantDeletes int
	}{
		{"booted", func(d hypervisor.Driver) error {
			return d.Create(ctx, hypervisor.DomainSpec{ID: "vm-1", VCPUs: 1, MemoryMiB: 512, Image: "flotilla-test"})
		}, 0, 0},
		{"defined, not booted", func(d hypervisor.Driver) error {
			if err := d.Create(ctx, hypervisor.DomainSpec{ID: "vm-1", VCPUs: 1, MemoryMiB: 512, Image: "flotilla-test"}); err != nil {
				return err
			}
			return d.Destroy(ctx, "vm-1")
		}, 1, 1},
		{"nothing", func(hypervisor.Driver) error { return nil }, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drv := newFake()
			if err := tc.before(drv); err != nil {
				t.Fatal(err)
			}
			creates, deletes := drv.Calls("Create"), drv.Calls("Delete")
			db := filepath.Join(t.TempDir(), "agent.db")
			s := create("op-1", "vm-1")
			begun(t, db, s)
			e, _ := newExecutor(t, drv, db)
			r := e.Execute(s, epoch)
			mustSucceed(t, r)
			if r.GetState().GetState() != flotillav1.PowerState_POWER_STATE_RUNNING {
				t.Errorf("state %v, want running", r.GetState())
			}
			if n := drv.Calls("Create") - creates; n != tc.wantCreates {
				t.Errorf("Create called %d times, want %d", n, tc.wantCreates)
			}
			// The fake knows no leftovers: a missing domain is undone too.
			if n := drv.Calls("Delete") - deletes; n != tc.wantDeletes {
				t.Errorf("Delete called %d times, want %d", n, tc.wantDeletes)
			}
			if again := e.Execute(s, epoch); !again.GetSucceeded() || drv.Calls("Create")-creates != tc.wantCreates {
				t.Errorf("re-sent: %v; Create calls %d", again, drv.Calls("Create")-creates)
			}
		})
	}
}

// A rerun that is itself interrupted is not run a third time.
func TestInterruptedRerunIsNotRunAgain(t *testing.T) {
	drv := newFake()
	mustCreateDomain(t, drv)
	db := filepath.Join(t.TempDir(), "agent.db")
	s := step("op-1", "vm-1", flotillav1.OperationKind_OPERATION_KIND_PAUSE)
	begun(t, db, s)
	store, err := stepstore.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Rerun("op-1", 1); err != nil { // the previous process reran it, and died
		t.Fatal(err)
	}
	store.Close()
	e, _ := newExecutor(t, drv, db)
	r := e.Execute(s, epoch)
	wantFault(t, r, executor.FaultAgentRestarted)
	if drv.Calls("Pause") != 0 {
		t.Errorf("Pause called %d times", drv.Calls("Pause"))
	}
	if r.GetState().GetState() != flotillav1.PowerState_POWER_STATE_RUNNING {
		t.Errorf("state %v: the observed truth is attached", r.GetState())
	}
}

func mustCreateDomain(t *testing.T, d hypervisor.Driver) {
	t.Helper()
	if err := d.Create(context.Background(), hypervisor.DomainSpec{ID: "vm-1", VCPUs: 1, MemoryMiB: 512, Image: "flotilla-test"}); err != nil {
		t.Fatal(err)
	}
}

// A start cut off after QEMU began the domain paused and before libvirt
// resumed it is finished by resuming the vCPUs; the start then finds the
// domain running.
func TestInterruptedStartLeftPaused(t *testing.T) {
	drv := newFake()
	mustCreateDomain(t, drv)
	if err := drv.Pause(context.Background(), "vm-1"); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "agent.db")
	s := step("op-1", "vm-1", flotillav1.OperationKind_OPERATION_KIND_START)
	begun(t, db, s)
	e, _ := newExecutor(t, drv, db)
	r := e.Execute(s, epoch)
	mustSucceed(t, r)
	if r.GetState().GetState() != flotillav1.PowerState_POWER_STATE_RUNNING || drv.Calls("Resume") != 1 {
		t.Errorf("result %v; Resume called %d times", r, drv.Calls("Resume"))
	}
}
