package fsm

import (
	"errors"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/fieldfill"
)

func init() {
	bodies[TypePutProject] = func(t testing.TB) any { return fieldfill.New[PutProject](t) }
	bodies[TypeTopUpProject] = func(t testing.TB) any { return fieldfill.New[TopUpProject](t) }
	bodies[TypeFreezeProject] = func(t testing.TB) any { return fieldfill.New[FreezeProject](t) }
	bodies[TypeChargeProjects] = func(t testing.TB) any { return fieldfill.New[ChargeProjects](t) }
}

func (h *harness) createIn(id, project, host string, vcpus uint32) Result {
	h.t.Helper()
	return h.apply(TypeCreateInstance, CreateInstance{
		Instance:  state.Instance{ID: id, Name: id, Project: project, HostID: host, Spec: state.Spec{VCPUs: vcpus, MemoryMiB: 64, DiskGiB: 1, Image: "img"}},
		Operation: state.Operation{ID: "op-" + id, InstanceID: id, Deadline: h.now.Add(time.Minute)},
	})
}

// finishRunning runs an operation's steps to success, the domain reported as p.
func (h *harness) finishAs(opID, id string, p lifecycle.Power) {
	h.t.Helper()
	for k := 0; k < 10; k++ {
		op, err := h.store.Operation(opID)
		if err != nil {
			h.t.Fatal(err)
		}
		if op.State.Done() {
			return
		}
		h.mustReport(Finish{OperationID: opID, Succeeded: true, Observed: &Observation{InstanceID: id, Power: p, Time: h.now}})
	}
	h.t.Fatalf("operation %s did not end", opID)
}

func TestProjectCommandsNeedLogVersion7(t *testing.T) {
	cmd, err := Encode(TypePutProject, t0, PutProject{Project: state.Project{Name: "a"}, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Downgrade(cmd, LogVersion6); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("at version 6: %v", err)
	}
	if _, err := Downgrade(cmd, LogVersion7); err != nil {
		t.Fatalf("at version 7: %v", err)
	}
}

// Quotas hold at commit time; a frozen project accepts no create; the
// default project needs no record.
func TestProjectQuotaAtCommit(t *testing.T) {
	h := newHarness(t)
	h.mustApply(TypeSetLogVersion, SetLogVersion{Version: LogVersion7})
	h.register("h1", 64, 65536)
	h.mustApply(TypePutProject, PutProject{Create: true, Project: state.Project{Name: "a", Quota: state.Quota{Instances: 2, VCPUs: 3}}})
	if r := h.apply(TypePutProject, PutProject{Create: true, Project: state.Project{Name: "a"}}); !errors.Is(r.Err, ErrAlreadyExists) {
		t.Fatalf("second create: %v", r.Err)
	}
	cases := []struct {
		id, project string
		vcpus       uint32
		want        error
	}{
		{"i1", "a", 2, nil},
		{"i2", "a", 2, ErrQuotaExceeded}, // vcpus 4 of 3
		{"i3", "a", 1, nil},
		{"i4", "a", 1, ErrQuotaExceeded}, // instances 3 of 2
		{"i5", "", 8, nil},               // default project: no record, no quota
		{"i6", "nope", 1, ErrNotFound},
	}
	for _, c := range cases {
		host := "h1"
		if c.id == "i1" {
			host = "" // pending: a delete withdraws it at once
		}
		if r := h.createIn(c.id, c.project, host, c.vcpus); !errors.Is(r.Err, c.want) {
			t.Fatalf("create %s in %q: %v, want %v", c.id, c.project, r.Err, c.want)
		}
	}
	if u := h.store.ProjectUse("a"); u.Instances != 2 || u.VCPUs != 3 {
		t.Fatalf("use of a: %+v", u)
	}
	// A delete gives the room back at once.
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionDelete, Operation: state.Operation{ID: "del-i1", InstanceID: "i1", Deadline: h.now.Add(time.Minute)}})
	if r := h.createIn("i7", "a", "h1", 2); r.Err != nil {
		t.Fatalf("create after a delete: %v", r.Err)
	}
	h.mustApply(TypeFreezeProject, FreezeProject{Name: "a", Freeze: true, Admin: true})
	if r := h.createIn("i8", "a", "h1", 0); !errors.Is(r.Err, ErrFrozen) {
		t.Fatalf("create in a frozen project: %v", r.Err)
	}
}

// A balance charged dry freezes the project: its running instance is
// paused and refuses user actions (FROZEN); a top-up unfreezes it and
// unpauses what the freeze paused, and only that.
func TestProjectBalanceFreezesAndTopUpThaws(t *testing.T) {
	h := newHarness(t)
	h.mustApply(TypeSetLogVersion, SetLogVersion{Version: LogVersion7})
	h.register("h1", 64, 65536)
	h.mustApply(TypePutProject, PutProject{Create: true, Project: state.Project{Name: "a", Billed: true, BalanceMilli: 1000}})
	for _, id := range []string{"run", "off"} {
		if r := h.createIn(id, "a", "h1", 1); r.Err != nil {
			t.Fatal(r.Err)
		}
		h.preflighted("op-" + id)
		h.finishAs("op-"+id, id, lifecycle.PowerRunning)
	}
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "stop-off", InstanceID: "off", Deadline: h.now.Add(time.Minute)}})
	h.finishAs("stop-off", "off", lifecycle.PowerShutOff)

	h.mustApply(TypeChargeProjects, ChargeProjects{Charges: []ProjectCharge{{Name: "a", AmountMilli: 400, Through: h.now}}})
	if p, _ := h.store.Project("a"); p.Frozen || p.BalanceMilli != 600 {
		t.Fatalf("after a charge within the balance: %+v", p)
	}
	// The same charge again (a repeated proposal) is not taken twice.
	h.mustApply(TypeChargeProjects, ChargeProjects{Charges: []ProjectCharge{{Name: "a", AmountMilli: 400, Through: h.now.Add(-time.Second)}}})
	h.mustApply(TypeChargeProjects, ChargeProjects{Charges: []ProjectCharge{{Name: "a", AmountMilli: 700, Through: h.now}}})
	if p, _ := h.store.Project("a"); !p.Frozen || p.BalanceMilli != -100 {
		t.Fatalf("after the balance ran out: %+v", p)
	}
	// The leader's sync pauses what runs.
	h.mustApply(TypeFreezeProject, FreezeProject{Name: "a", Freeze: true, Ops: []state.Operation{
		{ID: "fz-run", InstanceID: "run", Deadline: h.now.Add(time.Minute)}, {ID: "fz-off", InstanceID: "off", Deadline: h.now.Add(time.Minute)}}})
	if _, err := h.store.Operation("fz-off"); err == nil {
		t.Fatal("a stopped instance got a pause")
	}
	if s := h.status("run"); s != lifecycle.StatusPausing {
		t.Fatalf("while its freeze pauses it: %s", s)
	}
	h.finishAs("fz-run", "run", lifecycle.PowerPaused)
	for _, id := range []string{"run", "off"} {
		if s := h.status(id); s != lifecycle.StatusFrozen {
			t.Fatalf("%s: %s, want FROZEN", id, s)
		}
		for _, a := range []lifecycle.Action{lifecycle.ActionStart, lifecycle.ActionUnpause, lifecycle.ActionDelete} {
			r := h.apply(TypeInstanceAction, InstanceAction{Action: a, Operation: state.Operation{ID: "x-" + id + string(a), InstanceID: id, Deadline: h.now.Add(time.Minute)}})
			if !errors.Is(r.Err, ErrNotAllowed) {
				t.Fatalf("%s of frozen %s: %v", a, id, r.Err)
			}
		}
	}
	// A top-up that leaves the balance negative thaws nothing.
	if frozen := h.mustApply(TypeTopUpProject, TopUpProject{Name: "a", AmountMilli: 50}); frozen != true {
		t.Fatalf("a top-up to -50 unfroze: %v", frozen)
	}
	h.mustApply(TypeTopUpProject, TopUpProject{Name: "a", AmountMilli: 5000})
	h.mustApply(TypeFreezeProject, FreezeProject{Name: "a", Ops: []state.Operation{
		{ID: "th-run", InstanceID: "run", Deadline: h.now.Add(time.Minute)}, {ID: "th-off", InstanceID: "off", Deadline: h.now.Add(time.Minute)}}})
	h.finishAs("th-run", "run", lifecycle.PowerRunning)
	if s := h.status("run"); s != lifecycle.StatusRunning {
		t.Fatalf("run after the top-up: %s", s)
	}
	if s := h.status("off"); s != lifecycle.StatusStopped {
		t.Fatalf("off after the top-up: %s", s)
	}
	if _, err := h.store.Operation("th-off"); err == nil {
		t.Fatal("the unfreeze started a stopped instance")
	}
}

// An admin's freeze outlasts a top-up; only the admin's unfreeze lifts it.
func TestProjectAdminFreeze(t *testing.T) {
	h := newHarness(t)
	h.mustApply(TypeSetLogVersion, SetLogVersion{Version: LogVersion7})
	h.mustApply(TypePutProject, PutProject{Create: true, Project: state.Project{Name: "a", Billed: true, BalanceMilli: 10}})
	cases := []struct {
		typ        string
		body       any
		wantFrozen bool
	}{
		{TypeFreezeProject, FreezeProject{Name: "a", Freeze: true, Admin: true}, true},
		{TypeTopUpProject, TopUpProject{Name: "a", AmountMilli: 100}, true},
		{TypeFreezeProject, FreezeProject{Name: "a"}, true}, // a sync does not lift it
		{TypeFreezeProject, FreezeProject{Name: "a", Admin: true}, false},
		{TypeChargeProjects, ChargeProjects{Charges: []ProjectCharge{{Name: "a", AmountMilli: 110, Through: t0.Add(time.Hour)}}}, true},
		{TypeFreezeProject, FreezeProject{Name: "a", Admin: true}, true}, // the balance still says so
		{TypePutProject, PutProject{Project: state.Project{Name: "a", Billed: false}}, false},
	}
	for k, c := range cases {
		h.mustApply(c.typ, c.body)
		if p, _ := h.store.Project("a"); p.Frozen != c.wantFrozen {
			t.Fatalf("step %d %s: frozen %v, want %v (%+v)", k, c.typ, p.Frozen, c.wantFrozen, p)
		}
	}
}

// A resize or an extend is held to the project's quotas too.
func TestProjectQuotaHoldsResizes(t *testing.T) {
	h := newResizeHarness(t)
	h.mustApply(TypeSetLogVersion, SetLogVersion{Version: LogVersion7})
	h.mustApply(TypePutProject, PutProject{Create: true, Project: state.Project{Name: state.DefaultProject, Quota: state.Quota{VCPUs: 1, DiskGiB: 1}}})
	if r := h.resize("op-rs", "", large, 0); !errors.Is(r.Err, ErrQuotaExceeded) {
		t.Fatalf("a resize past the vcpus quota: %v", r.Err)
	}
	if r := h.apply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionExtend, Operation: state.Operation{ID: "op-ex", InstanceID: "i",
		Deadline: h.now.Add(time.Hour), Resize: &state.Resize{To: state.Spec{VCPUs: 1, MemoryMiB: 512, DiskGiB: 5, Image: "img"}}}}); !errors.Is(r.Err, ErrQuotaExceeded) {
		t.Fatalf("an extend past the disk quota: %v", r.Err)
	}
	h.mustApply(TypePutProject, PutProject{Project: state.Project{Name: state.DefaultProject}})
	if r := h.resize("op-rs2", "", large, 0); r.Err != nil {
		t.Fatalf("a resize within the quota: %v", r.Err)
	}
}
