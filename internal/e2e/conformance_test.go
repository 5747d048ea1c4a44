package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// seen is one instance as a watch delivered it: its canonical status and
// its views, decoded from grpcurl's JSON.
type seen struct {
	ID     string
	Status string
	Views  []struct {
		Vocabulary string            `json:"vocabulary"`
		Status     string            `json:"status"`
		Fields     map[string]string `json:"fields"`
	} `json:"views"`
}

// history records every version of every instance a watch streams.
type history struct {
	mu   sync.Mutex
	seen []seen
}

func (h *history) record(s *testenv.Stream) {
	for m := range s.C {
		insts, _ := m["instances"].([]any)
		for _, raw := range insts {
			b, _ := json.Marshal(raw)
			var one seen
			if json.Unmarshal(b, &one) == nil {
				h.mu.Lock()
				h.seen = append(h.seen, one)
				h.mu.Unlock()
			}
		}
	}
}

// shown reports whether instance id was ever seen in canonical status
// `when` with the seed state st showing in its view.
func (h *history) shown(id, when string, st vocabulary.SeedState) bool {
	wire := "VOCABULARY_" + strings.ToUpper(strings.ReplaceAll(string(st.Vocabulary), "-", "_"))
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.seen {
		if s.ID != id || s.Status != when {
			continue
		}
		for _, v := range s.Views {
			if v.Vocabulary != wire {
				continue
			}
			if (st.Field == "" && v.Status == st.Value) || (st.Field != "" && v.Fields[st.Field] == st.Value) {
				return true
			}
		}
	}
	return false
}

// of lists what the watch showed of instance id, for failure messages.
func (h *history) of(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, s := range h.seen {
		if s.ID == id {
			fmt.Fprintf(&b, "  %s %+v\n", s.Status, s.Views)
		}
	}
	return b.String()
}

// vocabSeed is the seed state word of vocabulary v.
func vocabSeed(v, word string) vocabulary.SeedState {
	for _, s := range vocabulary.Seeds {
		if string(s.Vocabulary) == v && s.Word == word {
			return s
		}
	}
	panic("no seed state " + v + "/" + word)
}

// waitSeen waits until the watch has shown instance id in status want.
func (h *history) waitSeen(t *testing.T, id, want string) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, id+" to be seen "+want+" on the watch", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, s := range h.seen {
			if s.ID == id && s.Status == want {
				return true
			}
		}
		return false
	})
}

// reachedBy says where each reachable seed state is expected: which
// instance of the scenario, while it is in which canonical status. The
// conformance test fails for a reachable seed state missing here.
var reachedBy = map[string]struct{ inst, when string }{
	"manage-instance/starting":      {"life", "STATUS_CREATING"},
	"manage-instance/running":       {"life", "STATUS_RUNNING"},
	"manage-instance/restarting":    {"life", "STATUS_REBOOTING"},
	"manage-instance/shutting down": {"life", "STATUS_STOPPING"},
	"manage-instance/offline":       {"life", "STATUS_STOPPED"},
	"manage-instance/terminating":   {"life", "STATUS_DELETING"},
	"manage-instance/failed":        {"broken", "STATUS_ERROR"},
	"manage-instance/bundling":      {"life", "STATUS_BUNDLING"},

	"nova/BUILDING":    {"life", "STATUS_CREATING"},
	"nova/ACTIVE":      {"life", "STATUS_RUNNING"},
	"nova/REBOOT":      {"life", "STATUS_REBOOTING"},
	"nova/HARD_REBOOT": {"life", "STATUS_HARD_REBOOTING"},
	"nova/PAUSED":      {"life", "STATUS_PAUSED"},
	"nova/SUSPENDED":   {"life", "STATUS_SUSPENDED"},
	"nova/STOPPED":     {"life", "STATUS_STOPPED"},
	"nova/DELETED":     {"life", "STATUS_DELETED"},
	"nova/ERROR":       {"broken", "STATUS_ERROR"},
	"nova/UNKNOWN":     {"life", "STATUS_UNKNOWN"},
	"nova/PASSWORD":    {"life", "STATUS_SETTING_PASSWORD"},
	"nova/REBUILD":     {"life", "STATUS_REBUILDING"},
	"nova/RESCUED":     {"life", "STATUS_RESCUED"},
	// Deleted with the cluster's retention window, then deleted again.
	"nova/SOFT_DELETED": {"life", "STATUS_SOFT_DELETED"},

	"rightscale/bidding":       {"spot", "STATUS_BIDDING"},
	"rightscale/pending":       {"life", "STATUS_CREATING"},
	"rightscale/booting":       {"life", "STATUS_REBOOTING"},
	"rightscale/operational":   {"life", "STATUS_RUNNING"},
	"rightscale/shutting-down": {"life", "STATUS_DELETING"},
	"rightscale/terminated":    {"life", "STATUS_DELETED"},
	"rightscale/stopping":      {"life", "STATUS_STOPPING"},
	"rightscale/stopped":       {"life", "STATUS_STOPPED"},
	"rightscale/error":         {"broken", "STATUS_ERROR"},
	"rightscale/stranded":      {"stuck", "STATUS_RUNNING"}, // its boot scripts failed
	// Deleted with a decommission timeout: its guest ran its shutdown work.
	"rightscale/decommissioning": {"life", "STATUS_DECOMMISSIONING"},

	"azure/starting":  {"life", "STATUS_STARTING"},
	"azure/running":   {"life", "STATUS_RUNNING"},
	"azure/stopping":  {"life", "STATUS_STOPPING"},
	"azure/stopped":   {"life", "STATUS_STOPPED"},
	"azure/creating":  {"life", "STATUS_CREATING"},
	"azure/updating":  {"life", "STATUS_UPDATING"}, // a model update (the name)
	"azure/deleting":  {"life", "STATUS_DELETING"},
	"azure/succeeded": {"life", "STATUS_RUNNING"},
	"azure/failed":    {"broken", "STATUS_ERROR"},
	"azure/canceled":  {"life", "STATUS_RUNNING"}, // a stop canceled, undone
	// Its guest side said it was booting, then ready.
	"azure/OSProvisioningInprogress": {"life", "STATUS_RUNNING"},
	"azure/OSProvisioningComplete":   {"life", "STATUS_RUNNING"},
	// Stopped, deallocated, started again.
	"azure/deallocating": {"life", "STATUS_DEALLOCATING"},
	"azure/deallocated":  {"life", "STATUS_DEALLOCATED"},

	"managed-instance/CREATING":     {"life", "STATUS_CREATING"},
	"managed-instance/CREATEFAILED": {"broken", "STATUS_ERROR"},
	"managed-instance/RUNNING":      {"life", "STATUS_RUNNING"},
	"managed-instance/ERROR":        {"life", "STATUS_UNEXPECTED_SHUTOFF"},
	"managed-instance/RESTARTING":   {"life", "STATUS_REBOOTING"},
	"managed-instance/DELETING":     {"life", "STATUS_DELETING"},
	"managed-instance/DELETED":      {"life", "STATUS_DELETED"},
	// Its project was frozen by an admin (the balance's freeze shows the
	// same; internal/e2eprojects runs that one).
	"managed-instance/FROZEN": {"frozen", "STATUS_FROZEN"},
	// A model upgrade its guest passes; one the failing guest does not.
	"managed-instance/UPGRADING": {"life", "STATUS_UPGRADING"},
	"managed-instance/ROLLBACK":  {"stuck", "STATUS_ROLLBACK"},
}

// variantReachedBy is reachedBy for the other words a seed uses for one of
// its states (SeedState.Variants), keyed "vocabulary/variant".
var variantReachedBy = map[string]struct{ inst, when string }{
	// Its decommission scripts failed while it was being deleted.
	"rightscale/stranded in decommissioning": {"strand", "STATUS_STRANDED_DECOMMISSIONING"},
}

// TestSeedConformance drives a real guest on the real libvirtd through
// every state Flotilla can reach, with a watch (through grpcurl) asking for
// all five vocabularies, then checks every seed state of DESIGN.md section
// 2 in its own seed's words: reached where it is reachable, listed with the
// operation it awaits where it is not.
func TestSeedConformance(t *testing.T) {
	// A 300 ms heartbeat lets a silent agent's host go down in seconds (UNKNOWN).
	// A retention window: deletes soft-delete (those that must free their
	// room at once are forced).
	e := newEnv(t, []string{"--agent-heartbeat-interval=300ms", "--soft-delete-retention=1h"}, []string{"--vcpus=4"})
	list := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", nil)
	all := []string{"VOCABULARY_MANAGE_INSTANCE", "VOCABULARY_NOVA", "VOCABULARY_RIGHTSCALE", "VOCABULARY_AZURE", "VOCABULARY_MANAGED_INSTANCE"}
	var h history
	w := e.g.Stream("flotilla.v1.InstanceService/WatchInstances", map[string]any{"startRevision": testenv.Str(list, "revision"), "vocabularies": all})
	go h.record(w)
	ids := map[string]string{}

	// A create that fails: no such image.
	op := e.do("CreateInstance", map[string]any{"name": "conf-broken", "spec": map[string]any{"vcpus": 1, "memoryMib": 128, "image": "no-such-image"}})
	ids["broken"] = testenv.Str(op, "instanceId")
	h.waitSeen(t, ids["broken"], "STATUS_ERROR")

	// A guest whose boot scripts fail: stranded.
	op = e.do("CreateInstance", map[string]any{"name": "conf-stuck", "spec": map[string]any{"vcpus": 1, "memoryMib": 128, "image": "flotilla-test"},
		"userData": "flotilla-test: fail"})
	ids["stuck"] = testenv.Str(op, "instanceId")
	testenv.Eventually(t, 90*time.Second, "the failing guest to be stranded", func() bool {
		return testenv.Str(e.instance(ids["stuck"]), "readiness") == "READINESS_STRANDED"
	})
	// Its upgrade never becomes healthy: it rolls back by itself.
	op = e.do("UpgradeInstance", map[string]any{"id": ids["stuck"], "memoryMib": 160, "healthTimeout": "60s", "gracefulTimeout": "5s"})
	if got := testenv.Str(op, "state"); got != "OPERATION_STATE_FAILED" {
		t.Fatalf("upgrade of the failing guest ended %s", got)
	}
	h.waitSeen(t, ids["stuck"], "STATUS_ROLLBACK")
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": ids["stuck"], "force": true}))

	// A guest whose decommission scripts fail, deleted: stranded in
	// decommissioning, then terminated all the same.
	op = e.do("CreateInstance", map[string]any{"name": "conf-strand", "spec": map[string]any{"vcpus": 1, "memoryMib": 128, "image": "flotilla-test"},
		"userData": "flotilla-test: decommission=fail"})
	ids["strand"] = testenv.Str(op, "instanceId")
	testenv.Eventually(t, 90*time.Second, "the guest to be operational", func() bool {
		return testenv.Str(e.instance(ids["strand"]), "readiness") == "READINESS_OPERATIONAL"
	})
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": ids["strand"], "decommissionTimeout": "30s", "force": true}))

	// The guest that lives through every state: 1 of the host's 4 vCPUs
	// (the failed create holds another until it is deleted).
	life := e.create("conf-life")
	ids["life"] = life
	ready := 1
	e.waitGuestReady(life, ready)

	// A preemptible create bids for room that is not free (4 vCPUs at the
	// default overcommit of 4.0 place 16: at most 15 are free), and is withdrawn.
	op = e.g.MustCall("flotilla.v1.InstanceService/CreateInstance", map[string]any{"name": "conf-spot", "spec": map[string]any{"vcpus": 16, "memoryMib": 128, "image": "flotilla-test"}, "placement": map[string]any{"preemptible": true}})
	ids["spot"] = testenv.Str(op, "instanceId")
	h.waitSeen(t, ids["spot"], "STATUS_BIDDING")
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": ids["spot"]}))

	// A project frozen by an admin: its guest is paused and the instance
	// FROZEN (seed 004); unfrozen, it runs again.
	e.g.MustCall("flotilla.v1.ProjectService/CreateProject", map[string]any{"project": map[string]any{"name": "conf"}})
	op = e.do("CreateInstance", map[string]any{"name": "conf-frozen", "project": "conf", "spec": map[string]any{"vcpus": 1, "memoryMib": 128, "image": "flotilla-test"}})
	e.mustSucceed(op)
	ids["frozen"] = testenv.Str(op, "instanceId")
	t.Cleanup(func() {
		_, _ = virsh(t, "destroy", "flotilla-"+ids["frozen"])
		_, _ = virsh(t, "undefine", "--managed-save", "flotilla-"+ids["frozen"])
	})
	e.g.MustCall("flotilla.v1.ProjectService/FreezeProject", map[string]any{"name": "conf"})
	h.waitSeen(t, ids["frozen"], "STATUS_FROZEN")
	e.g.MustCall("flotilla.v1.ProjectService/UnfreezeProject", map[string]any{"name": "conf"})
	e.waitStatus(ids["frozen"], "STATUS_RUNNING", 30*time.Second)
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": ids["frozen"]}))

	// Reboots: soft (the guest's ACPI button), then hard.
	e.mustSucceed(e.do("RestartInstance", map[string]any{"id": life}))
	ready++
	e.waitGuestReady(life, ready)
	e.mustSucceed(e.do("RestartInstance", map[string]any{"id": life, "hard": true}))
	ready++
	e.waitGuestReady(life, ready)
	for _, m := range []string{"PauseInstance", "UnpauseInstance", "SuspendInstance", "ResumeInstance"} {
		e.mustSucceed(e.do(m, map[string]any{"id": life}))
	}
	e.mustSucceed(e.do("UpdateInstance", map[string]any{"id": life, "updateMask": map[string]any{"paths": []string{"name"}}, "name": "conf-renamed"}))
	// A password set inside the guest, through its guest side.
	testenv.Eventually(t, 60*time.Second, "the guest side to say it takes commands", func() bool {
		return testenv.Str(e.instance(life), "guest", "protocol") == "2"
	})
	e.mustSucceed(e.do("SetPassword", map[string]any{"id": life, "password": "conformance"}))
	// A rebuild (Nova's REBUILD) from its own image; a rescue (RESCUED)
	// and back.
	e.mustSucceed(e.do("RebuildInstance", map[string]any{"id": life}))
	ready++
	e.waitGuestReady(life, ready)
	e.mustSucceed(e.do("RescueInstance", map[string]any{"id": life}))
	h.waitSeen(t, life, "STATUS_RESCUED")
	ready++
	e.waitGuestReady(life, ready)
	e.mustSucceed(e.do("UnrescueInstance", map[string]any{"id": life}))
	ready++
	e.waitGuestReady(life, ready)

	// Powered off behind Flotilla's back, then started again.
	if out, err := virsh(t, "destroy", "flotilla-"+life); err != nil {
		t.Fatalf("virsh destroy: %v %s", err, out)
	}
	h.waitSeen(t, life, "STATUS_UNEXPECTED_SHUTOFF")
	e.mustSucceed(e.do("StartInstance", map[string]any{"id": life}))
	ready++
	e.waitGuestReady(life, ready)

	// The host goes silent: UNKNOWN, not stopped; then it answers again.
	e.agent.Send(syscall.SIGSTOP)
	h.waitSeen(t, life, "STATUS_UNKNOWN")
	e.agent.Send(syscall.SIGCONT)
	e.epoch = testenv.WaitHost(t, e.g, e.host, e.epoch)
	e.waitStatus(life, "STATUS_RUNNING", 30*time.Second)

	// A graceful stop the guest honours, a restart from offline (seed 000),
	// and the delete.
	e.mustSucceed(e.do("StopInstance", map[string]any{"id": life, "gracefulTimeout": "60s"}))
	// Bundled from offline (seed 000's bundling) into an image of its own.
	bundle := fmt.Sprintf("conf-bundle-%d", time.Now().UnixNano())
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(testenv.ImageDir(), bundle)) })
	e.mustSucceed(e.do("BundleInstance", map[string]any{"id": life, "image": bundle}))
	e.mustSucceed(e.do("RestartInstance", map[string]any{"id": life}))
	// A stop canceled at once (the guest has not booted far enough to
	// honour the button yet): whatever it did is undone, the guest runs.
	op = e.g.MustCall("flotilla.v1.InstanceService/StopInstance", map[string]any{"id": life, "gracefulTimeout": "60s"})
	e.g.MustCall("flotilla.v1.OperationService/CancelOperation", map[string]any{"id": testenv.Str(op, "id")})
	if got := testenv.Str(e.waitOp(testenv.Str(op, "id")), "state"); got != "OPERATION_STATE_CANCELED" {
		t.Fatalf("canceled stop ended %s", got)
	}
	e.waitStatus(life, "STATUS_RUNNING", 30*time.Second)
	// Deallocated (Azure): stopped, the host released, started again there.
	e.mustSucceed(e.do("StopInstance", map[string]any{"id": life, "gracefulTimeout": "60s", "force": true}))
	e.mustSucceed(e.do("DeallocateInstance", map[string]any{"id": life}))
	h.waitSeen(t, life, "STATUS_DEALLOCATED")
	e.mustSucceed(e.do("StartInstance", map[string]any{"id": life}))
	// A model upgrade (seed 004): the guest comes back healthy.
	e.mustSucceed(e.do("UpgradeInstance", map[string]any{"id": life, "memoryMib": 160, "healthTimeout": "90s", "gracefulTimeout": "60s"}))
	e.waitStatus(life, "STATUS_RUNNING", 30*time.Second)
	// The delete gives the guest time for its decommission scripts.
	testenv.Eventually(t, 90*time.Second, "the guest to be operational", func() bool {
		return testenv.Str(e.instance(life), "readiness") == "READINESS_OPERATIONAL"
	})
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": life, "decommissionTimeout": "60s"}))
	h.waitSeen(t, life, "STATUS_SOFT_DELETED")
	// Deleted again within the window: reclaimed at once.
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": life}))
	h.waitSeen(t, life, "STATUS_DELETED")
	w.Close()

	var report strings.Builder
	reached, onBed, expected := 0, 0, vocabulary.Reachable()
	for _, st := range vocabulary.Seeds {
		key := string(st.Vocabulary) + "/" + st.Word
		verdict := "awaits " + st.Awaits
		if bed, ok := reachedOnTestbed[key]; ok && st.Awaits == "" {
			// It takes two hosts: checked on the test bed.
			onBed++
			verdict = fmt.Sprintf("reached on the test bed (%s, while %s)", bed.test, strings.TrimPrefix(bed.when, "STATUS_"))
		} else if st.Awaits == "" {
			where, ok := reachedBy[key]
			switch {
			case !ok:
				t.Errorf("seed %s %q is reachable but the conformance suite does not say where", st.Vocabulary.Seed(), st.Word)
				verdict = "NOT CHECKED"
			case h.shown(ids[where.inst], where.when, st):
				reached++
				verdict = fmt.Sprintf("reached (%s while %s)", where.inst, strings.TrimPrefix(where.when, "STATUS_"))
			default:
				t.Errorf("seed %s %q was not shown while %s was %s; the watch showed it as:\n%s", st.Vocabulary.Seed(), st.Word, where.inst, where.when, h.of(ids[where.inst]))
				verdict = "NOT SHOWN"
			}
		}
		fmt.Fprintf(&report, "  %s %-17s %-40q %s\n", st.Vocabulary.Seed(), st.Vocabulary, st.Word, verdict)
		for _, variant := range st.Variants {
			key := string(st.Vocabulary) + "/" + variant
			where, ok := variantReachedBy[key]
			as := vocabulary.SeedState{Vocabulary: st.Vocabulary, Word: variant, Value: variant}
			switch {
			case !ok:
				t.Errorf("seed %s %q (a word for %q) is not said to be reached anywhere", st.Vocabulary.Seed(), variant, st.Word)
			case !h.shown(ids[where.inst], where.when, as):
				t.Errorf("seed %s %q was not shown while %s was %s; the watch showed it as:\n%s", st.Vocabulary.Seed(), variant, where.inst, where.when, h.of(ids[where.inst]))
			default:
				fmt.Fprintf(&report, "  %s %-17s %-40q reached (%s while %s)\n", st.Vocabulary.Seed(), st.Vocabulary, variant, where.inst, strings.TrimPrefix(where.when, "STATUS_"))
			}
		}
	}
	t.Logf("seed conformance: %d/%d on real libvirt here, %d more on the test bed (%d reachable)\n%s",
		reached, len(vocabulary.Seeds), onBed, expected, report.String())
	fmt.Printf("seed conformance: %d/%d on real libvirt (%d here, %d on the test bed)\n", reached+onBed, len(vocabulary.Seeds), reached, onBed)
	if reached+onBed < expected {
		t.Fatalf("seed conformance: %d/%d, below the %d reachable states", reached, len(vocabulary.Seeds), expected)
	}
}
