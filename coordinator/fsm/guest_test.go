package fsm

import (
	"errors"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// runningOn creates instance id on host, running, and returns the host's epoch.
func (h *harness) runningOn(id, host string) uint64 {
	h.t.Helper()
	epoch := h.register(host, 8, 8192)
	h.mustApply(TypeCreateInstance, CreateInstance{
		Instance:  state.Instance{ID: id, Name: id, HostID: host, Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}, ReadyTimeout: time.Minute},
		Operation: state.Operation{ID: "op-" + id, InstanceID: id, Deadline: h.now.Add(time.Minute)},
	})
	h.preflighted("op-" + id)
	h.mustReport(Finish{OperationID: "op-" + id, Succeeded: true, HostID: host, Observed: &Observation{InstanceID: id, Power: lifecycle.PowerRunning, Time: h.now}})
	return epoch
}

func (h *harness) guest(id string) (state.GuestFacts, lifecycle.Readiness) {
	h.t.Helper()
	i, err := h.store.Instance(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return i.Guest, i.Readiness()
}

func TestGuestReports(t *testing.T) {
	h := newHarness(t)
	epoch := h.runningOn("i1", "h1")
	h.register("h2", 8, 8192)
	if _, r := h.guest("i1"); r != lifecycle.ReadinessUnknown {
		t.Fatalf("before the guest spoke: %s", r)
	}
	report := func(host string, epoch uint64, st lifecycle.Guest, stage string, at time.Time) Result {
		return h.apply(TypeGuestReport, GuestReport{HostID: host, Epoch: epoch, InstanceID: "i1", State: st, Stage: stage, Version: "test-5", Time: at})
	}
	booted := h.now.Add(time.Second)
	if r := report("h1", epoch, lifecycle.GuestBooting, "network", booted); r.Err != nil {
		t.Fatal(r.Err)
	}
	g, r := h.guest("i1")
	if r != lifecycle.ReadinessBooting || g.Stage != "network" || !g.Since.Equal(booted) || g.Version != "test-5" {
		t.Fatalf("booting: %s %+v", r, g)
	}
	// Another host, a stale session, an unknown state: refused, nothing changes.
	rev := h.store.Revision()
	for what, res := range map[string]Result{
		"another host":   report("h2", 1, lifecycle.GuestReady, "", h.now.Add(2*time.Second)),
		"a stale epoch":  report("h1", epoch-1, lifecycle.GuestReady, "", h.now.Add(2*time.Second)),
		"an odd state":   report("h1", epoch, lifecycle.GuestStranded, "", h.now.Add(2*time.Second)),
		"an older word":  report("h1", epoch, lifecycle.GuestReady, "", booted.Add(-time.Millisecond)),
		"the same again": report("h1", epoch, lifecycle.GuestBooting, "network", booted),
	} {
		if what == "an older word" || what == "the same again" {
			if res.Err != nil {
				t.Errorf("%s: %v", what, res.Err)
			}
			continue
		}
		if res.Err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
	if h.store.Revision() != rev {
		t.Fatal("a refused or stale report changed the state")
	}
	// A strand for another boot changes nothing; for this one, it strands.
	h.mustApply(TypeStrand, Strand{InstanceID: "i1", Since: booted.Add(-time.Hour)})
	if _, r := h.guest("i1"); r != lifecycle.ReadinessBooting {
		t.Fatalf("a strand of another boot: %s", r)
	}
	h.mustApply(TypeStrand, Strand{InstanceID: "i1", Since: booted})
	g, r = h.guest("i1")
	if r != lifecycle.ReadinessStranded || g.State != lifecycle.GuestStranded || g.Reason == "" {
		t.Fatalf("stranded: %s %+v", r, g)
	}
	// Still booting: it stays stranded; ready at last: operational.
	report("h1", epoch, lifecycle.GuestBooting, "http", h.now.Add(time.Second))
	if g, r := h.guest("i1"); r != lifecycle.ReadinessStranded || g.Stage != "http" {
		t.Fatalf("booting after the deadline: %s %+v", r, g)
	}
	report("h1", epoch, lifecycle.GuestReady, "", h.now.Add(2*time.Second))
	if _, r := h.guest("i1"); r != lifecycle.ReadinessOperational {
		t.Fatalf("ready: %s", r)
	}
	// The domain goes down: the report is forgotten, and a report from
	// before it came back is of the old boot.
	h.mustApply(TypeObserve, Observe{HostID: "h1", Epoch: epoch, Observations: []Observation{{InstanceID: "i1", Power: lifecycle.PowerShutOff, Reason: "shutdown", Time: h.now.Add(3 * time.Second)}}})
	if g, r := h.guest("i1"); r != lifecycle.ReadinessNone || g != (state.GuestFacts{}) {
		t.Fatalf("after a shut-off: %s %+v", r, g)
	}
	up := h.now.Add(5 * time.Second)
	h.mustApply(TypeObserve, Observe{HostID: "h1", Epoch: epoch, Observations: []Observation{{InstanceID: "i1", Power: lifecycle.PowerRunning, Reason: "booted", Time: up}}})
	report("h1", epoch, lifecycle.GuestReady, "", up.Add(-time.Second))
	if _, r := h.guest("i1"); r != lifecycle.ReadinessUnknown {
		t.Fatalf("a report of the previous boot counted: %s", r)
	}
	if r := report("h1", epoch, lifecycle.GuestFailed, "", up.Add(time.Second)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if _, r := h.guest("i1"); r != lifecycle.ReadinessStranded {
		t.Fatalf("failed boot: %s", r)
	}
	// An operator's word: operational, once; not for a guest that is not stranded.
	h.mustApply(TypeStrand, Strand{InstanceID: "i1", Operational: true, By: "alice (operator)"})
	if g, r := h.guest("i1"); r != lifecycle.ReadinessOperational || g.Reason != "marked operational by alice (operator)" {
		t.Fatalf("marked operational: %s %+v", r, g)
	}
	if r := h.apply(TypeStrand, Strand{InstanceID: "i1", Operational: true, By: "bob"}); !errors.Is(r.Err, ErrNotStranded) {
		t.Fatalf("marking an operational guest operational: %v", r.Err)
	}
	if r := h.apply(TypeGuestReport, GuestReport{HostID: "h1", Epoch: epoch, InstanceID: "nope", State: lifecycle.GuestReady, Time: up}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("report for an unknown instance: %v", r.Err)
	}
}

// A v2 guest side's HELLO said again for its boot (to a restarted agent)
// changes nothing of the boot; a new boot id is a new boot. What it says of
// itself (protocol, OS, heartbeat) is kept, and an agent that has not asked
// the OS yet does not erase it.
func TestGuestBootIDs(t *testing.T) {
	h := newHarness(t)
	epoch := h.runningOn("i1", "h1")
	at := h.now
	report := func(st lifecycle.Guest, stage string, side state.GuestSide) {
		t.Helper()
		at = at.Add(time.Second)
		h.mustApply(TypeGuestReport, GuestReport{HostID: "h1", Epoch: epoch, InstanceID: "i1", State: st, Stage: stage, Version: "test-6", Time: at, Side: side})
	}
	boot1 := state.GuestSide{Protocol: 2, Boot: "boot-1"}
	withOS := boot1
	withOS.OS, withOS.OSVersion, withOS.Kernel = "debian", "12", "6.1.0"
	report(lifecycle.GuestBooting, "", boot1)
	report(lifecycle.GuestReady, "", withOS)
	g, r := h.guest("i1")
	if r != lifecycle.ReadinessOperational || g.Side != withOS {
		t.Fatalf("ready: %s %+v", r, g)
	}
	report(lifecycle.GuestBooting, "", boot1) // the HELLO again, to an agent that knows nothing
	if g, r = h.guest("i1"); r != lifecycle.ReadinessOperational || g.Side != withOS {
		t.Fatalf("after the same boot's HELLO: %s %+v", r, g)
	}
	unresponsive := withOS
	unresponsive.Unresponsive = true
	report(lifecycle.GuestReady, "", unresponsive)
	if g, _ = h.guest("i1"); !g.Side.Unresponsive {
		t.Fatalf("unresponsive not recorded: %+v", g)
	}
	report(lifecycle.GuestBooting, "", state.GuestSide{Protocol: 2, Boot: "boot-2"}) // rebooted in place
	if g, r = h.guest("i1"); r != lifecycle.ReadinessBooting || g.Side.OS != "" || g.Side.Unresponsive {
		t.Fatalf("a new boot: %s %+v", r, g)
	}
}
