package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// readinessSeen waits until the watch showed instance id with readiness
// want (and, if given, RightScale's word rs and Azure's os_provisioning os).
func readinessSeen(t *testing.T, w *testenv.Stream, seen map[string][]string, id, want string, timeout time.Duration) {
	t.Helper()
	watchSeen(t, w, seen, id, want, func(r string) bool { return r == want }, timeout)
}

// watchSeen waits until the watch showed instance id in a state for which
// match holds, of the strings readinessSeen records ("READINESS_X" and
// "READINESS_X <views as JSON>").
func watchSeen(t *testing.T, w *testenv.Stream, seen map[string][]string, id, want string, match func(string) bool, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, r := range seen[id] {
			if match(r) {
				return
			}
		}
		select {
		case m, ok := <-w.C:
			if !ok {
				t.Fatal("watch ended")
			}
			insts, _ := m["instances"].([]any)
			for _, raw := range insts {
				in, _ := raw.(map[string]any)
				iid := testenv.Str(in, "id")
				r := testenv.Str(in, "readiness")
				if r == "" {
					r = "READINESS_UNSPECIFIED"
				}
				views := testenv.Str(in, "views")
				seen[iid] = append(seen[iid], r, r+" "+views)
			}
		case <-deadline:
			t.Fatalf("%s never showed %s; it showed %v", id, want, seen[id])
		}
	}
}

// TestGuestReadinessOnRealLibvirt: real test guests on the real libvirtd
// say how their boot goes over the guest channel. One boots and becomes
// operational (RightScale booting then operational, Azure's OS
// provisioning in progress then complete); one fails its boot scripts and
// is stranded; one boots too slowly, is stranded at its deadline, and is
// operational once it finishes after all; one without the guest side stays
// RUNNING with readiness unknown; one floods the channel with garbage and
// still becomes operational, the agent unharmed.
func TestGuestReadinessOnRealLibvirt(t *testing.T) {
	e := newEnv(t, nil, []string{"--vcpus=8"})
	list := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", nil)
	w := e.g.Stream("flotilla.v1.InstanceService/WatchInstances", map[string]any{"startRevision": testenv.Str(list, "revision"),
		"vocabularies": []string{"VOCABULARY_RIGHTSCALE", "VOCABULARY_AZURE"}})
	t.Cleanup(w.Close)
	seen := map[string][]string{}

	ok := e.createWith("ready", "", "")
	fail := e.createWith("fails", "flotilla-test: fail", "")
	slow := e.createWith("slow", "flotilla-test: slow=25", "8s")
	silent := e.createWith("silent", "flotilla-test: silent", "")
	flood := e.createWith("flood", "flotilla-test: flood", "")

	readinessSeen(t, w, seen, ok, "READINESS_BOOTING", 90*time.Second)
	readinessSeen(t, w, seen, ok, "READINESS_OPERATIONAL", 90*time.Second)
	inst := e.instance(ok)
	if testenv.Str(inst, "guest", "guestVersion") == "" || testenv.Str(inst, "status") != "STATUS_RUNNING" {
		t.Fatalf("operational guest: %v", inst)
	}
	readinessSeen(t, w, seen, fail, "READINESS_STRANDED", 90*time.Second)
	if r := testenv.Str(e.instance(fail), "guest", "reason"); r != "boot-script" {
		t.Fatalf("stranded guest's reason %q", r)
	}
	// An operator who checked it by hand marks it operational; an instance
	// that is not stranded cannot be.
	if got := e.g.MustCall("flotilla.v1.InstanceService/MarkOperational", map[string]any{"id": fail}); testenv.Str(got, "readiness") != "READINESS_OPERATIONAL" {
		t.Fatalf("marked operational: %v", got)
	}
	if _, err := e.g.Call("flotilla.v1.InstanceService/MarkOperational", map[string]any{"id": ok}); err == nil || !strings.Contains(err.Error(), "FailedPrecondition") {
		t.Fatalf("marking an operational instance operational: %v", err)
	}
	readinessSeen(t, w, seen, slow, "READINESS_BOOTING", 90*time.Second)
	readinessSeen(t, w, seen, slow, "READINESS_STRANDED", 60*time.Second)    // its 8 s deadline
	readinessSeen(t, w, seen, slow, "READINESS_OPERATIONAL", 90*time.Second) // it finished after all
	readinessSeen(t, w, seen, flood, "READINESS_OPERATIONAL", 90*time.Second)

	// The views, in the seeds' words.
	for _, c := range []struct{ id, readiness, words string }{
		{ok, "READINESS_BOOTING", `"status":"booting"`},
		{ok, "READINESS_BOOTING", `"os_provisioning":"ProvisioningState/OSProvisioningInprogress"`},
		{ok, "READINESS_OPERATIONAL", `"status":"operational"`},
		{ok, "READINESS_OPERATIONAL", `"os_provisioning":"ProvisioningState/OSProvisioningComplete"`},
		{fail, "READINESS_STRANDED", `"status":"stranded"`},
		{slow, "READINESS_STRANDED", `"status":"stranded"`},
	} {
		found := false
		for _, s := range seen[c.id] {
			if len(s) > len(c.readiness) && s[:len(c.readiness)] == c.readiness && strings.Contains(s, c.words) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s never showed %s with %s: %v", c.id, c.readiness, c.words, seen[c.id])
		}
	}

	// The silent guest booted (its console says so) and said nothing.
	e.waitGuestReady(silent, 1)
	if got := testenv.Str(e.instance(silent), "readiness"); got != "READINESS_UNKNOWN" || e.status(silent) != "STATUS_RUNNING" {
		t.Fatalf("guest without a guest side: readiness %q, status %s", got, e.status(silent))
	}
	// The flood cost the agent nothing: it still runs steps.
	e.mustSucceed(e.do("StopInstance", map[string]any{"id": flood, "gracefulTimeout": "30s", "force": true}))
	if got := testenv.Str(e.instance(flood), "readiness"); got != "" && got != "READINESS_UNSPECIFIED" {
		t.Fatalf("a stopped guest has readiness %q", got)
	}
}
