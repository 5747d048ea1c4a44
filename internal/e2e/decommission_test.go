package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// decommissionStep is the decommission step of a finished operation, as
// grpcurl shows it.
func decommissionStep(t *testing.T, op map[string]any) map[string]any {
	t.Helper()
	return stepNamed(t, op, "decommission")
}

// stepNamed is the step of a finished operation with that name.
func stepNamed(t *testing.T, op map[string]any, name string) map[string]any {
	t.Helper()
	steps, _ := op["steps"].([]any)
	for _, raw := range steps {
		if s, _ := raw.(map[string]any); testenv.Str(s, "name") == name {
			return s
		}
	}
	t.Fatalf("operation %s has no step %s: %v", testenv.Str(op, "id"), name, op["steps"])
	return nil
}

// stamp is a timestamp field of a step.
func stamp(t *testing.T, step map[string]any, field string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, testenv.Str(step, field))
	if err != nil {
		t.Fatalf("step %v: %s: %v", step, field, err)
	}
	return ts
}

// rightScale is RightScale's word for a seed state of its own.
func rightScale(word string) vocabulary.SeedState {
	return vocabulary.SeedState{Vocabulary: vocabulary.RightScale, Word: word, Value: word}
}

// consoleWatch polls a guest's console log for a line and notes the
// domain's state the moment the line first shows (the log goes with the
// domain, so it is read while the domain is still there).
type consoleWatch struct {
	mu    sync.Mutex
	state string // "" until the line shows
	done  chan struct{}
}

func watchConsole(t *testing.T, e *env, id, line string) *consoleWatch {
	w := &consoleWatch{done: make(chan struct{})}
	log := filepath.Join(e.agent.RunDir, id+".console.log")
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); <-w.done })
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if b, err := os.ReadFile(log); err == nil && strings.Contains(string(b), line) {
				st := domstate(t, id)
				w.mu.Lock()
				w.state = st
				w.mu.Unlock()
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// seenWhile reports the domain's state when the line showed ("" if never).
func (w *consoleWatch) seenWhile() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// waitOperational waits until the guest's guest side said it is ready, so
// that it can take a command on its channel.
func (e *env) waitOperational(id string) {
	e.t.Helper()
	testenv.Eventually(e.t, 90*time.Second, id+" to be operational", func() bool {
		return testenv.Str(e.instance(id), "readiness") == "READINESS_OPERATIONAL"
	})
}

// TestDecommissionOnRealLibvirt: real test guests on the real libvirtd run
// their decommission work when a stop or delete asks for it. A delete
// waits for the guest's shutdown work (decommissioning, in RightScale's
// words on a watch; the console shows it done while the domain still
// runs), then terminates it; a guest whose work fails is stranded in
// decommissioning, then terminated all the same; one that hangs is
// terminated at its deadline, within a bounded time; a stop with
// decommissioning ends STOPPED; a guest without a guest side is deleted at
// once, the decommission skipped.
func TestDecommissionOnRealLibvirt(t *testing.T) {
	e := newEnv(t, nil, []string{"--vcpus=8"})
	list := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", nil)
	var h history
	w := e.g.Stream("flotilla.v1.InstanceService/WatchInstances", map[string]any{"startRevision": testenv.Str(list, "revision"),
		"vocabularies": []string{"VOCABULARY_RIGHTSCALE", "VOCABULARY_NOVA"}})
	go h.record(w)
	t.Cleanup(w.Close)

	ok := e.createWith("decom-ok", "", "")
	fail := e.createWith("decom-fail", "flotilla-test: decommission=fail", "")
	hang := e.createWith("decom-hang", "flotilla-test: decommission=hang", "")
	stop := e.createWith("decom-stop", "flotilla-test: decommission=slow=3", "")
	silent := e.createWith("decom-silent", "flotilla-test: silent", "")
	for _, id := range []string{ok, fail, hang, stop} {
		e.waitOperational(id)
	}
	e.waitGuestReady(silent, 1)

	console := watchConsole(t, e, ok, "FLOTILLA-GUEST-DECOMMISSIONED")
	const hangFor = 10 * time.Second
	ops := map[string]string{}
	call := func(id, method string, req map[string]any) {
		req["id"] = id
		ops[id] = testenv.Str(e.g.MustCall("flotilla.v1.InstanceService/"+method, req), "id")
	}
	start := time.Now()
	call(ok, "DeleteInstance", map[string]any{"decommissionTimeout": "60s"})
	call(fail, "DeleteInstance", map[string]any{"decommissionTimeout": "60s"})
	call(hang, "DeleteInstance", map[string]any{"decommissionTimeout": hangFor.String()})
	call(stop, "StopInstance", map[string]any{"decommissionTimeout": "60s", "gracefulTimeout": "60s"})
	call(silent, "DeleteInstance", map[string]any{"decommissionTimeout": "60s"})

	// The guest without a guest side: skipped, deleted at once.
	op := e.waitOp(ops[silent])
	e.mustSucceed(op)
	if d := decommissionStep(t, op); testenv.Str(d, "state") != "STEP_STATE_SUCCEEDED" || !strings.Contains(testenv.Str(d, "note"), "skipped") {
		t.Errorf("bare guest's decommission step: %v", d)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("deleting a guest without a guest side took %s", took)
	}

	// The guest whose work succeeds: decommissioning, then terminated, its
	// console showing the work done while the domain still ran.
	op = e.waitOp(ops[ok])
	e.mustSucceed(op)
	if d := decommissionStep(t, op); testenv.Str(d, "state") != "STEP_STATE_SUCCEEDED" || testenv.Str(d, "note") != "" {
		t.Errorf("decommission step: %v", d)
	}
	// The guest prints the line before it answers DONE, and the domain is
	// only touched once the decommission step has succeeded.
	if got := console.seenWhile(); got == "" {
		t.Errorf("FLOTILLA-GUEST-DECOMMISSIONED never showed on the console")
	} else {
		t.Logf("FLOTILLA-GUEST-DECOMMISSIONED showed while the domain was %s", got)
	}
	if del := stepNamed(t, op, "delete-domain"); stamp(t, decommissionStep(t, op), "endTime").After(stamp(t, del, "startTime")) {
		t.Errorf("the domain was deleted before the decommission ended: %v", op["steps"])
	}
	h.waitSeen(t, ok, "STATUS_DELETED")
	if !h.shown(ok, "STATUS_DECOMMISSIONING", rightScale("decommissioning")) ||
		!h.shown(ok, "STATUS_DELETED", rightScale("terminated")) {
		t.Errorf("the watch showed %s as:\n%s", ok, h.of(ok))
	}
	if h.shown(ok, "STATUS_STRANDED_DECOMMISSIONING", rightScale("stranded in decommissioning")) {
		t.Errorf("a guest whose work succeeded was stranded:\n%s", h.of(ok))
	}

	// The guest whose work fails: stranded in decommissioning, terminated.
	op = e.waitOp(ops[fail])
	e.mustSucceed(op)
	if d := decommissionStep(t, op); testenv.Str(d, "state") != "STEP_STATE_FAILED" || !strings.Contains(testenv.Str(d, "error"), "decommission-script") {
		t.Errorf("failed decommission step: %v", d)
	}
	h.waitSeen(t, fail, "STATUS_DELETED")
	if !h.shown(fail, "STATUS_STRANDED_DECOMMISSIONING", rightScale("stranded in decommissioning")) {
		t.Errorf("the watch showed %s as:\n%s", fail, h.of(fail))
	}

	// The guest that hangs: stranded at its deadline, terminated within a
	// bounded time after it.
	op = e.waitOp(ops[hang])
	e.mustSucceed(op)
	if d := decommissionStep(t, op); testenv.Str(d, "state") != "STEP_STATE_FAILED" || !strings.Contains(testenv.Str(d, "error"), "DEADLINE_EXCEEDED") {
		t.Errorf("hung decommission step: %v", d)
	}
	if took := time.Since(start); took < hangFor || took > hangFor+lifecycle.StrandedWithin+30*time.Second {
		t.Errorf("the hung guest was terminated after %s (deadline %s)", took, hangFor)
	}
	h.waitSeen(t, hang, "STATUS_DELETED")
	if !h.shown(hang, "STATUS_STRANDED_DECOMMISSIONING", rightScale("stranded in decommissioning")) {
		t.Errorf("the watch showed %s as:\n%s", hang, h.of(hang))
	}
	if got := domstate(t, hang); got != "missing" {
		t.Errorf("the hung guest's domain is %s", got)
	}

	// The stop: decommissioning, then STOPPED, the domain kept.
	op = e.waitOp(ops[stop])
	e.mustSucceed(op)
	if d := decommissionStep(t, op); testenv.Str(d, "state") != "STEP_STATE_SUCCEEDED" {
		t.Errorf("stop's decommission step: %v", d)
	}
	e.waitStatus(stop, "STATUS_STOPPED", eventBound)
	if !h.shown(stop, "STATUS_DECOMMISSIONING", rightScale("decommissioning")) {
		t.Errorf("the watch showed %s as:\n%s", stop, h.of(stop))
	}
	if got := domstate(t, stop); got != "shut off" {
		t.Errorf("the stopped guest's domain is %s", got)
	}
}
