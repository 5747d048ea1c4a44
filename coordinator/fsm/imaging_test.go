package fsm

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

// image asks for action a on instance i with image img, as op opID.
func (h *harness) image(opID string, a lifecycle.Action, img string) Result {
	h.t.Helper()
	return h.apply(TypeInstanceAction, InstanceAction{Action: a, Operation: state.Operation{ID: opID, InstanceID: "i",
		Deadline: h.now.Add(time.Hour), Image: img}})
}

func TestRebuildKeepsPlaceAndTakesTheNewImage(t *testing.T) {
	h := newResizeHarness(t)
	if r := h.image("op-rb", lifecycle.ActionRebuild, "other"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := h.word(vocabulary.Nova); got != "REBUILD" || h.status("i") != lifecycle.StatusRebuilding {
		t.Fatalf("while rebuilding: %s / %s", h.status("i"), got)
	}
	op := h.op("op-rb")
	if op.Resize == nil || op.Resize.From.Image != "img" || op.Resize.To.Image != "other" {
		t.Fatalf("rebuild's images: %+v", op.Resize)
	}
	h.stepHosts("op-rb", []string{"h1", "h1", "h1", "h1", "h1", "h1"}, nil)
	i := h.inst()
	if i.Status() != lifecycle.StatusRunning || i.HostID != "h1" || i.Spec.Image != "other" || i.Spec.VCPUs != small.VCPUs || i.Name != "i" {
		t.Fatalf("after the rebuild: %s %+v", i.Status(), i)
	}
}

func TestRebuildThatDoesNotBootRestoresTheOldDisk(t *testing.T) {
	h := newResizeHarness(t)
	h.image("op-rb", lifecycle.ActionRebuild, "broken")
	for range 3 { // preflight, stop-domain, rebuild-disk
		h.running("op-rb")
	}
	if h.inst().Spec.Image != "broken" {
		t.Fatalf("after rebuild-disk: %+v", h.inst().Spec)
	}
	h.mustReport(Finish{OperationID: "op-rb", Fault: fault("HYPERVISOR_ERROR")}) // start-domain
	var names []string
	for op := h.op("op-rb"); !op.State.Done(); op = h.op("op-rb") {
		names = append(names, op.Current().Name)
		h.running("op-rb")
	}
	// The failed boot left the domain off: the old disk comes back, and boots.
	if want := []string{"restore-old-disk", "start-domain"}; !slices.Equal(names, want) {
		t.Fatalf("rollback steps %v, want %v", names, want)
	}
	i := h.inst()
	if i.Status() != lifecycle.StatusRunning || i.Spec.Image != "img" || i.Result != lifecycle.ResultRolledBack {
		t.Fatalf("after the rollback: %s %+v", i.Status(), i)
	}
}

func TestRescueAndUnrescue(t *testing.T) {
	h := newResizeHarness(t)
	if r := h.image("op-rs", lifecycle.ActionRescue, "rescue-img"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if h.status("i") != lifecycle.StatusRescuing {
		t.Fatalf("while rescuing: %s", h.status("i"))
	}
	h.finishAll("op-rs")
	i := h.inst()
	if i.Status() != lifecycle.StatusRescued || i.RescueImage != "rescue-img" || h.word(vocabulary.Nova) != "RESCUED" {
		t.Fatalf("after the rescue: %s %q %s", i.Status(), i.RescueImage, h.word(vocabulary.Nova))
	}
	// Nothing but an unrescue or a delete makes sense now.
	var nae *lifecycle.NotAllowedError
	if r := h.image("op-again", lifecycle.ActionRescue, ""); !errors.As(r.Err, &nae) ||
		!slices.Equal(nae.Allowed, []lifecycle.Action{lifecycle.ActionUnrescue, lifecycle.ActionDelete}) {
		t.Fatalf("rescue of a rescued instance: %v", r.Err)
	}
	h.image("op-un", lifecycle.ActionUnrescue, "")
	if op := h.op("op-un"); op.Image != "rescue-img" || h.status("i") != lifecycle.StatusUnrescuing {
		t.Fatalf("unrescue: %q %s", op.Image, h.status("i"))
	}
	h.finishAll("op-un")
	if i := h.inst(); i.Status() != lifecycle.StatusRunning || i.RescueImage != "" {
		t.Fatalf("after the unrescue: %s %+v", i.Status(), i)
	}
}

func TestRescueThatDoesNotBootIsUndone(t *testing.T) {
	h := newResizeHarness(t)
	h.image("op-rs", lifecycle.ActionRescue, "")
	h.running("op-rs") // stop-domain
	h.running("op-rs") // rescue-domain
	if h.inst().RescueImage != "img" {
		t.Fatalf("rescue image: %q", h.inst().RescueImage)
	}
	h.mustReport(Finish{OperationID: "op-rs", Fault: fault("HYPERVISOR_ERROR")})
	h.finishAll("op-rs")
	if i := h.inst(); i.Status() != lifecycle.StatusRunning || i.RescueImage != "" || i.Result != lifecycle.ResultRolledBack {
		t.Fatalf("after the rollback: %s %+v", i.Status(), i)
	}
}

func TestBundleFromOfflineOnly(t *testing.T) {
	h := newResizeHarness(t)
	var nae *lifecycle.NotAllowedError
	if r := h.image("op-b0", lifecycle.ActionBundle, "snap"); !errors.As(r.Err, &nae) {
		t.Fatalf("bundle of a running instance: %v", r.Err)
	}
	h.act("op-stop", lifecycle.ActionStop)
	h.finishAll("op-stop")
	for _, bad := range []string{"", "img", "../x", "a/b"} {
		if r := h.image("op-bad", lifecycle.ActionBundle, bad); !errors.Is(r.Err, ErrInvalid) {
			t.Errorf("bundle into %q: %v", bad, r.Err)
		}
	}
	if r := h.image("op-b", lifecycle.ActionBundle, "snap"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if h.status("i") != lifecycle.StatusBundling || h.word(vocabulary.ManageInstance) != "bundling" {
		t.Fatalf("while bundling: %s / %s", h.status("i"), h.word(vocabulary.ManageInstance))
	}
	h.mustReport(Finish{OperationID: "op-b", Fault: fault("HYPERVISOR_ERROR")})
	// Writing an image out leaves the instance as it was.
	if i := h.inst(); i.Status() != lifecycle.StatusStopped || i.Result != lifecycle.ResultRolledBack {
		t.Fatalf("after a failed bundle: %s %+v", i.Status(), i)
	}
	h.image("op-b2", lifecycle.ActionBundle, "snap")
	h.finishAll("op-b2")
	if i := h.inst(); i.Status() != lifecycle.StatusStopped || i.Spec.Image != "img" {
		t.Fatalf("after the bundle: %s %+v", i.Status(), i)
	}
}

// A rebuilt disk whose guest boots but never becomes healthy is no
// success: the old disk comes back and boots.
func TestRebuildThatIsNotHealthyRestoresTheOldDisk(t *testing.T) {
	h := newResizeHarness(t)
	h.image("op-rb", lifecycle.ActionRebuild, "hangs")
	for range 4 { // preflight, stop-domain, rebuild-disk, start-domain
		h.running("op-rb")
	}
	if op := h.op("op-rb"); op.Current().Action != lifecycle.ActAwaitHealthy {
		t.Fatalf("after the boot: %s, want the health wait", op.Current().Name)
	}
	h.mustReport(Finish{OperationID: "op-rb", Fault: fault("DEADLINE_EXCEEDED")})
	var names []string
	for op := h.op("op-rb"); !op.State.Done(); op = h.op("op-rb") {
		names = append(names, op.Current().Name)
		h.running("op-rb")
	}
	if want := []string{"stop-domain", "restore-old-disk", "start-domain"}; !slices.Equal(names, want) {
		t.Fatalf("rollback steps %v, want %v", names, want)
	}
	if i := h.inst(); i.Spec.Image != "img" || i.Result != lifecycle.ResultRolledBack {
		t.Fatalf("after the rollback: %+v", i)
	}
}
