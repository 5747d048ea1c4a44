package lifecycle

import (
	"slices"
	"testing"
	"time"
)

// TestStepsFor checks every plan: each operation kind has steps, every step
// on a host names an agent action, undos run where what they undo ran, and
// the points of no return are the ones an operator expects.
func TestStepsFor(t *testing.T) {
	// The steps of each kind that cannot be undone, by shape.
	irreversible := func(k OpKind, sh Shape) []string {
		switch k {
		case OpRestart:
			return []string{"reboot-guest"}
		case OpHardRestart:
			if sh.WasRunning {
				return []string{"reset-domain"} // off, it is booted: undone by a stop
			}
		case OpDelete:
			return []string{"delete-domain"}
		case OpPreempt:
			return []string{"evict-domain"}
		case OpMove:
			return []string{"switch-host", "remove-from-source"}
		case OpResize:
			if !sh.SameHost {
				return []string{"switch-host"}
			}
		case OpRebuild:
			return []string{"drop-old-disk"} // the new disk booted
		case OpConfirmResize:
			if sh.SameHost {
				return []string{"drop-original"}
			}
			return []string{"delete-original"}
		case OpRevertResize:
			if sh.SameHost {
				return []string{"unshape-domain"}
			}
			return []string{"switch-host", "remove-resized"}
		case OpUpgrade:
			return []string{"drop-snapshot"}
		case OpStart:
			if sh.Deallocated && !sh.SameHost {
				return []string{"switch-host", "remove-from-source"}
			}
		}
		return nil
	}
	for _, k := range AllOpKinds[1:] {
		for _, sh := range allShapes() {
			steps := StepsForShape(k, sh)
			if len(steps) == 0 {
				t.Fatalf("%s: no steps", k)
			}
			var noReturn []string
			names := map[string]bool{}
			for _, s := range steps {
				if names[s.Name] {
					t.Errorf("%s: step name %q twice", k, s.Name)
				}
				names[s.Name] = true
				if s.Action.OnHost() == (s.Where == OnCoordinator) {
					t.Errorf("%s/%s: action %s placed %v", k, s.Name, s.Action, s.Where)
				}
				if (s.Layer != LayerWhole) && s.Action != ActOfferDisk && s.Action != ActReceiveDisk {
					t.Errorf("%s/%s: a layer on a step that copies nothing", k, s.Name)
				}
				if !s.Reversible() {
					noReturn = append(noReturn, s.Name)
				}
				if s.Undo != nil {
					if s.Undo.Where != s.Where {
						t.Errorf("%s/%s: undo runs on %v, the step on %v", k, s.Name, s.Undo.Where, s.Where)
					}
					if !s.Undo.Action.OnHost() || s.Undo.Undo != nil {
						t.Errorf("%s/%s: bad undo %+v", k, s.Name, s.Undo)
					}
				}
			}
			if got, want := noReturn, irreversible(k, sh); !slices.Equal(got, want) {
				t.Errorf("%s %+v: irreversible steps %v, want %v", k, sh, got, want)
			}
		}
	}
}

func allShapes() []Shape {
	var out []Shape
	for _, r := range []bool{false, true} {
		for _, same := range []bool{false, true} {
			for _, after := range []bool{false, true} {
				for _, decom := range []time.Duration{0, 3 * time.Minute} {
					out = append(out, Shape{WasRunning: r, SameHost: same, StartAfter: after, Decommission: decom},
						Shape{WasRunning: r, SameHost: same, StartAfter: after, Decommission: decom, Deallocated: true})
				}
			}
		}
	}
	return out
}

// TestResizePlans: a running guest's disk crosses in two passes, the
// guest down only for the second; a stopped one's in one, and it stays off.
func TestResizePlans(t *testing.T) {
	names := func(k OpKind, sh Shape) (out []string) {
		for _, s := range StepsForShape(k, sh) {
			out = append(out, s.Name)
		}
		return out
	}
	cases := []struct {
		k    OpKind
		sh   Shape
		want []string
	}{
		{OpResize, Shape{WasRunning: true, StartAfter: true}, []string{"preflight", "freeze-disk", "offer-base", "copy-base-to-target",
			"refreeze-disk", "offer-mid", "copy-mid-to-target", "stop-on-source", "offer-top", "copy-top-to-target", "define-on-target", "start-on-target", "switch-host"}},
		{OpResize, Shape{}, []string{"preflight", "offer-disk", "copy-disk-to-target", "define-on-target", "switch-host"}},
		{OpResize, Shape{WasRunning: true, SameHost: true, StartAfter: true}, []string{"preflight", "stop-domain", "reshape-domain", "start-domain"}},
		{OpResize, Shape{SameHost: true}, []string{"preflight", "reshape-domain"}},
		{OpRevertResize, Shape{WasRunning: true, StartAfter: true}, []string{"stop-resized", "thaw-original", "start-original", "switch-host", "remove-resized"}},
		{OpRevertResize, Shape{SameHost: true}, []string{"unshape-domain"}},
		{OpConfirmResize, Shape{}, []string{"delete-original"}},
		{OpExtend, Shape{WasRunning: true}, []string{"grow-disk"}},
		{OpRebuild, Shape{WasRunning: true}, []string{"preflight", "stop-domain", "rebuild-disk", "start-domain", "await-healthy", "drop-old-disk"}},
		{OpRebuild, Shape{}, []string{"preflight", "rebuild-disk", "start-domain", "await-healthy", "drop-old-disk"}},
		{OpCreate, Shape{FetchImage: true}, []string{"fetch-image", "preflight", "create-domain"}},
		{OpRescue, Shape{WasRunning: true}, []string{"stop-domain", "rescue-domain", "start-domain"}},
		{OpRescue, Shape{}, []string{"rescue-domain", "start-domain"}},
		{OpUnrescue, Shape{WasRunning: true}, []string{"stop-domain", "unrescue-domain", "start-domain"}},
		{OpBundle, Shape{}, []string{"bundle-disk"}},
	}
	for _, c := range cases {
		if got := names(c.k, c.sh); !slices.Equal(got, c.want) {
			t.Errorf("%s %+v: %v, want %v", c.k, c.sh, got, c.want)
		}
	}
	for _, s := range StepsForShape(OpResize, Shape{WasRunning: true, StartAfter: true}) {
		if s.Where == OnTarget && s.Action == ActPreflight {
			return
		}
	}
	t.Error("a resize to another host does not check the target first")
}

// TestPreflightFirst: every operation that makes or boots a domain checks
// the host first, and only those: the check is what fails fast, before
// anything exists to undo.
func TestPreflightFirst(t *testing.T) {
	boots := map[OpKind]map[bool]bool{
		OpCreate:      {false: true, true: true},
		OpStart:       {false: true, true: true},
		OpHardRestart: {false: true}, // booting one that is off; a reset of a running one is not a boot
		OpResize:      {false: true, true: true},
		OpRebuild:     {false: true, true: true}, // the new image is checked before the old disk is touched
		OpRestore:     {false: true, true: true},
		OpUpgrade:     {false: true, true: true},
	}
	for _, k := range AllOpKinds[1:] {
		for _, running := range []bool{false, true} {
			steps := StepsFor(k, running)
			first := steps[0]
			want := boots[k][running]
			if got := first.Action == ActPreflight; got != want {
				t.Errorf("%s (running %v): first step %s, preflight wanted: %v", k, running, first.Name, want)
			}
			for i, s := range steps {
				if s.Action == ActPreflight && (i != 0 || s.Name != "preflight" || !s.NothingToUndo || s.Timeout <= 0 || s.Action.Expect() != PowerNone) {
					t.Errorf("%s (running %v): preflight step %d: %+v", k, running, i, s)
				}
			}
		}
	}
}

// TestDecommissionPlans: a stop or delete of a running guest asked to
// decommission it runs the decommission first, bounded by the time asked,
// undoing nothing and failing nothing; no other plan has one.
func TestDecommissionPlans(t *testing.T) {
	const d = 90 * time.Second
	cases := []struct {
		k    OpKind
		sh   Shape
		want []string
	}{
		{OpStop, Shape{WasRunning: true, Decommission: d}, []string{"decommission", "stop-domain"}},
		{OpDelete, Shape{WasRunning: true, Decommission: d}, []string{"decommission", "delete-domain"}},
		{OpStop, Shape{WasRunning: true}, []string{"stop-domain"}},
		{OpDelete, Shape{WasRunning: true}, []string{"delete-domain"}},
		// No guest runs: nothing to decommission.
		{OpStop, Shape{Decommission: d}, []string{"stop-domain"}},
		{OpDelete, Shape{Decommission: d}, []string{"delete-domain"}},
		// Only a stop or a delete decommissions.
		{OpRestart, Shape{WasRunning: true, Decommission: d}, []string{"reboot-guest"}},
		{OpPreempt, Shape{WasRunning: true, Decommission: d}, []string{"evict-domain"}},
		{OpMove, Shape{WasRunning: true, StartAfter: true, Decommission: d},
			[]string{"stop-on-source", "offer-disk", "copy-disk-to-target", "start-on-target", "switch-host", "remove-from-source"}},
	}
	for _, c := range cases {
		steps := StepsForShape(c.k, c.sh)
		var got []string
		for _, s := range steps {
			got = append(got, s.Name)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s %+v: %v, want %v", c.k, c.sh, got, c.want)
			continue
		}
		if got[0] != "decommission" {
			continue
		}
		s := steps[0]
		if s.Action != ActDecommission || s.Timeout != d || !s.NothingToUndo || s.Undo != nil || s.Where != OnSource ||
			!s.Action.BestEffort() || s.Action.Expect() != PowerNone {
			t.Errorf("%s: decommission step %+v", c.k, s)
		}
	}
	for _, a := range AllStepActions {
		if a.BestEffort() != (a == ActDecommission) {
			t.Errorf("%s: best effort %v", a, a.BestEffort())
		}
	}
}

func TestMovePlans(t *testing.T) {
	names := func(running bool) (out []string) {
		for _, s := range StepsFor(OpMove, running) {
			out = append(out, s.Name)
		}
		return out
	}
	if got, want := names(true), []string{"stop-on-source", "offer-disk", "copy-disk-to-target", "start-on-target", "switch-host", "remove-from-source"}; !slices.Equal(got, want) {
		t.Errorf("running move: %v, want %v", got, want)
	}
	if got, want := names(false), []string{"offer-disk", "copy-disk-to-target", "switch-host", "remove-from-source"}; !slices.Equal(got, want) {
		t.Errorf("stopped move: %v, want %v", got, want)
	}
}

func TestRetryPolicy(t *testing.T) {
	for code, want := range map[string]bool{
		"HYPERVISOR_UNAVAILABLE": true, "PEER_UNAVAILABLE": true, "DISK_CORRUPT": true,
		"AGENT_RESTARTED": false, "IMAGE_NOT_FOUND": false, "INSUFFICIENT_DISK": false, "DEADLINE_EXCEEDED": false, "INVALID_SPEC": false, "": false,
	} {
		if Transient(code) != want {
			t.Errorf("Transient(%q) = %v", code, !want)
		}
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}
	for i, w := range want {
		if got := Backoff(int32(i + 1)); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if MaxAttempts < 2 {
		t.Errorf("MaxAttempts %d leaves no retry", MaxAttempts)
	}
}

// TestLifecycle2Plans: the plans of deallocate, a start after it, soft
// delete, restore and upgrade, step by step.
func TestLifecycle2Plans(t *testing.T) {
	cases := []struct {
		k     OpKind
		sh    Shape
		steps []string
	}{
		{OpDeallocate, Shape{}, []string{"release-domain"}},
		{OpStart, Shape{Deallocated: true, SameHost: true}, []string{"preflight", "define-domain", "start-domain"}},
		{OpStart, Shape{Deallocated: true}, []string{"preflight", "offer-disk", "copy-disk-to-target", "start-on-target", "switch-host", "remove-from-source"}},
		{OpSoftDelete, Shape{WasRunning: true}, []string{"stop-domain"}},
		{OpSoftDelete, Shape{WasRunning: true, Decommission: time.Minute}, []string{"decommission", "stop-domain"}},
		{OpRestore, Shape{StartAfter: true}, []string{"preflight", "start-domain"}},
		{OpRestore, Shape{}, []string{"preflight"}},
		{OpUpgrade, Shape{WasRunning: true, StartAfter: true}, []string{"preflight", "stop-domain", "upgrade-disk", "boot-upgraded", "await-healthy", "drop-snapshot"}},
		{OpUpgrade, Shape{}, []string{"preflight", "upgrade-disk", "boot-upgraded", "await-healthy", "stop-upgraded", "drop-snapshot"}},
	}
	for _, c := range cases {
		var names []string
		for _, s := range StepsForShape(c.k, c.sh) {
			names = append(names, s.Name)
		}
		if !slices.Equal(names, c.steps) {
			t.Errorf("%s %+v: %v, want %v", c.k, c.sh, names, c.steps)
		}
	}
	// The health wait is the shape's, else the default.
	for _, h := range []time.Duration{0, 40 * time.Second} {
		want := h
		if h == 0 {
			want = DefaultHealthTimeout
		}
		for _, s := range StepsForShape(OpUpgrade, Shape{Health: h}) {
			if s.Action == ActAwaitHealthy && s.Timeout != want {
				t.Errorf("health %v: await timeout %v", h, s.Timeout)
			}
		}
	}
	// Every upgrade step before the drop can be undone: a failure anywhere
	// there rolls back to the previous disk and model.
	for _, s := range StepsForShape(OpUpgrade, Shape{WasRunning: true, StartAfter: true}) {
		if s.Action == ActUpgradeDisk && (s.Undo == nil || s.Undo.Action != ActRollbackDisk) {
			t.Errorf("upgrade-disk undo %+v", s.Undo)
		}
	}
}
