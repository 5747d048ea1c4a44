package metrics

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// fakeExecutor succeeds every step but stops, and answers nil for step
// "busy" (already running).
type fakeExecutor struct{}

func (fakeExecutor) Execute(step *agentv1.RunStep, _ uint64) *agentv1.StepResult {
	if step.GetStepId() == "busy" {
		return nil
	}
	return &agentv1.StepResult{StepId: step.GetStepId(), Succeeded: step.GetAction() != agentv1.StepAction_STEP_ACTION_STOP}
}

func (fakeExecutor) Report(string, string) *agentv1.StepReport { return nil }

func TestSteps(t *testing.T) {
	m := New()
	e := m.Steps(fakeExecutor{})
	for _, s := range []struct {
		id     string
		action agentv1.StepAction
	}{
		{"1", agentv1.StepAction_STEP_ACTION_CREATE},
		{"2", agentv1.StepAction_STEP_ACTION_CREATE},
		{"3", agentv1.StepAction_STEP_ACTION_STOP},
		{"4", agentv1.StepAction_STEP_ACTION_HARD_RESTART},
		{"busy", agentv1.StepAction_STEP_ACTION_START},
	} {
		e.Execute(&agentv1.RunStep{StepId: s.id, Action: s.action}, 1)
	}
	want := `
# HELP flotilla_agent_steps_total Steps this agent answered, by action (create, start, ...) and result (succeeded, failed); a step asked again after it ended is answered from the journal and counted again.
# TYPE flotilla_agent_steps_total counter
flotilla_agent_steps_total{action="create",result="succeeded"} 2
flotilla_agent_steps_total{action="hard_restart",result="succeeded"} 1
flotilla_agent_steps_total{action="stop",result="failed"} 1
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "flotilla_agent_steps_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.duration); n != 3 {
		t.Fatalf("%d duration series, want 3", n)
	}
}

func TestRegistered(t *testing.T) {
	m := New()
	var registered atomic.Bool
	m.Registered(registered.Load)
	for _, want := range []bool{false, true, false} {
		registered.Store(want)
		exp := "# HELP flotilla_agent_registered 1 while the agent is connected and registered with a coordinator, else 0.\n# TYPE flotilla_agent_registered gauge\nflotilla_agent_registered "
		if want {
			exp += "1\n"
		} else {
			exp += "0\n"
		}
		if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(exp), "flotilla_agent_registered"); err != nil {
			t.Fatal(err)
		}
	}
}

// A finished disk copy is counted, and its rate observed; the guest
// channels are counted by protocol when scraped.
func TestDiskCopiesAndGuestChannels(t *testing.T) {
	m := New()
	m.DiskCopied(64<<20, 10<<20, 2*time.Second)
	want := `
# HELP flotilla_agent_disk_copy_bytes_total Bytes of the disk copies this agent pulled and verified: kind=disk the image's bytes (holes included), kind=wire what came over the network (compressed, holes free).
# TYPE flotilla_agent_disk_copy_bytes_total counter
flotilla_agent_disk_copy_bytes_total{kind="disk"} 6.7108864e+07
flotilla_agent_disk_copy_bytes_total{kind="wire"} 1.048576e+07
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "flotilla_agent_disk_copy_bytes_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.copyRate); n != 1 {
		t.Fatalf("%d rate series", n)
	}
	m.GuestChannels(func() map[int]int { return map[int]int{0: 1, 2: 3} })
	want = `
# HELP flotilla_agent_guest_channels Guest channels connected now, by the protocol the guest side's HELLO named (v1, v2; none: connected, no HELLO yet).
# TYPE flotilla_agent_guest_channels gauge
flotilla_agent_guest_channels{protocol="none"} 1
flotilla_agent_guest_channels{protocol="v1"} 0
flotilla_agent_guest_channels{protocol="v2"} 3
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "flotilla_agent_guest_channels"); err != nil {
		t.Fatal(err)
	}
}
