package fake

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

func TestParseFaults(t *testing.T) {
	for _, tc := range []struct {
		spec   string
		ok     bool
		delays map[string]time.Duration
		fails  map[string]int // method -> times
	}{
		{spec: "", ok: true},
		{spec: "fail:Start=2", ok: true, fails: map[string]int{"Start": 2}},
		{spec: "fail:ImportDomain=-1:invalid", ok: true, fails: map[string]int{"ImportDomain": -1}},
		{spec: "fail:Start=1:state, delay:ImportDomain=2s", ok: true,
			fails: map[string]int{"Start": 1}, delays: map[string]time.Duration{"ImportDomain": 2 * time.Second}},
		{spec: "fail:Start=0"},
		{spec: "fail:Start=-2"},
		{spec: "fail:Start=x"},
		{spec: "fail:Start=1:bogus"},
		{spec: "fail:Start="},
		{spec: "fail:Strat=1"}, // a typo must not silently disable the fault
		{spec: "delay:Start=-1s"},
		{spec: "delay:Start=soon"},
		{spec: "slow:Start=1s"},
		{spec: "Start=1"},
	} {
		f, err := ParseFaults(tc.spec)
		if (err == nil) != tc.ok {
			t.Errorf("ParseFaults(%q) error %v, want ok %v", tc.spec, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if len(f.Delays) != len(tc.delays) || len(f.Fails) != len(tc.fails) {
			t.Errorf("ParseFaults(%q) = %+v", tc.spec, f)
		}
		for m, d := range tc.delays {
			if f.Delays[m] != d {
				t.Errorf("ParseFaults(%q): delay of %s %v, want %v", tc.spec, m, f.Delays[m], d)
			}
		}
		for m, n := range tc.fails {
			if f.Fails[m].Times != n || f.Fails[m].Err == nil {
				t.Errorf("ParseFaults(%q): failure of %s %+v, want %d times", tc.spec, m, f.Fails[m], n)
			}
		}
	}
}

// Faults in Options are in place from the start; a failure without a kind
// is the transient one.
func TestOptionsFaults(t *testing.T) {
	t.Setenv(FaultsEnv, "fail:Capacity=1")
	f, err := FaultsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	d := New(Options{Faults: f})
	if _, err := d.Capacity(context.Background()); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Fatalf("first Capacity: %v, want ErrUnavailable", err)
	}
	if _, err := d.Capacity(context.Background()); err != nil {
		t.Fatalf("second Capacity: %v", err)
	}
}
