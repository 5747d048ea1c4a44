package usage

import (
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

const (
	on  = vocabulary.BillingInstanceUsage
	off = vocabulary.BillingStorageOnly
	nc  = vocabulary.BillingNotCharged
	// stop, as a step of meter, stops metering.
	stop = vocabulary.Billing("-")
)

type sums map[vocabulary.Billing]time.Duration

func secs(kv ...any) sums {
	out := sums{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(vocabulary.Billing)] = time.Duration(kv[i+1].(int)) * time.Second
	}
	return out
}

// meter builds a meter from (second, class) steps; class "-" stops it.
func meter(t *testing.T, steps ...any) Meter {
	t.Helper()
	m := Meter{Vocabulary: vocabulary.RightScale}
	for i := 0; i < len(steps); i += 2 {
		class := steps[i+1].(vocabulary.Billing)
		var ok bool
		m, ok = m.With(at(steps[i].(int)), class, class != stop)
		if !ok {
			t.Fatalf("step %d (%v at %d) changed nothing", i/2, class, steps[i])
		}
	}
	return m
}

func mustSum(t *testing.T, m Meter, from, to int) sums {
	t.Helper()
	got, err := m.Sum(at(from), at(to))
	if err != nil {
		t.Fatalf("sum %d..%d: %v", from, to, err)
	}
	return got
}

func TestSumClipsToTheRange(t *testing.T) {
	// not-charged 0-10, instance-usage 10-100, storage-only 100-130, usage from 130 on.
	m := meter(t, 0, nc, 10, on, 100, off, 130, on)
	for _, c := range []struct {
		from, to int
		want     sums
	}{
		{0, 130, secs(nc, 10, on, 90, off, 30)},
		{-50, 5, secs(nc, 5)},             // before metering began: nothing
		{20, 110, secs(on, 80, off, 10)},  // clipped at both ends
		{100, 130, secs(off, 30)},         // exactly one interval
		{120, 200, secs(off, 10, on, 70)}, // the running class counts up to the end
		{500, 600, secs(on, 100)},         // only the running class
		{50, 50, sums{}},                  // empty range
		{60, 40, sums{}},                  // backwards range
		{-100, -10, sums{}},               // entirely before
		{0, 1 << 20, secs(nc, 10, on, 90+1<<20-130, off, 30)},
	} {
		if got := mustSum(t, m, c.from, c.to); !maps.Equal(got, c.want) {
			t.Errorf("%d..%d: %v, want %v", c.from, c.to, got, c.want)
		}
	}
}

func TestMeteringStopsAndResumes(t *testing.T) {
	// Deleted at 50: nothing accrues after; a domain reappearing at 80 meters again.
	m := meter(t, 0, on, 50, stop, 80, vocabulary.BillingNone)
	if got, want := mustSum(t, m, 0, 100), secs(on, 50, vocabulary.BillingNone, 20); !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	stopped := meter(t, 0, on, 50, stop)
	if got := mustSum(t, stopped, 0, 1000); !maps.Equal(got, secs(on, 50)) {
		t.Fatalf("a stopped meter accrued: %v", got)
	}
	// Stopping a stopped meter, or one never started, changes nothing.
	if _, ok := stopped.With(at(60), "", false); ok {
		t.Fatal("stopping twice changed the meter")
	}
	if _, ok := (Meter{}).With(at(60), "", false); ok {
		t.Fatal("stopping an empty meter changed it")
	}
}

func TestWithKeepsChangesOrderedAndOwnsThem(t *testing.T) {
	m := meter(t, 0, nc, 10, on)
	// The same class again: no change.
	if _, ok := m.With(at(20), on, true); ok {
		t.Fatal("the same class recorded twice")
	}
	// An earlier time (a new leader's clock behind) counts as the last change's:
	// the interval it replaces lasted no time.
	back, ok := m.With(at(5), off, true)
	if !ok || len(back.Changes) != 2 || !back.Changes[1].At.Equal(at(10)) || back.Changes[1].Class != off {
		t.Fatalf("a change stamped before the last: %+v", back.Changes)
	}
	// And changing back at that instant removes it altogether.
	again, ok := back.With(at(10), nc, true)
	if !ok || len(again.Changes) != 1 || again.Changes[0].Class != nc {
		t.Fatalf("back to the class before at the same instant: %+v", again.Changes)
	}
	// The original is untouched (snapshots being written share it).
	if len(m.Changes) != 2 || m.Changes[1].Class != on || !m.Changes[1].At.Equal(at(10)) {
		t.Fatalf("With changed its receiver: %+v", m.Changes)
	}
}

func TestFlappingIsFoldedAndBounded(t *testing.T) {
	m := Meter{Vocabulary: vocabulary.RightScale}
	// 1000 flaps of 10 s each way: usage 10 s, storage 10 s.
	const flaps = 1000
	for i := range 2 * flaps {
		class := on
		if i%2 == 1 {
			class = off
		}
		var ok bool
		if m, ok = m.With(at(10*i), class, true); !ok {
			t.Fatalf("flap %d not recorded", i)
		}
		if len(m.Changes) > MaxChanges {
			t.Fatalf("%d changes kept after %d flaps", len(m.Changes), i)
		}
	}
	if m.Folded == nil || len(m.Folded.Totals) != 2 || m.Folded.From != at(0) {
		t.Fatalf("folded %+v", m.Folded)
	}
	end := 10 * 2 * flaps
	// The whole history, folded part included, is exact.
	if got := mustSum(t, m, -10, end); !maps.Equal(got, secs(on, 10*flaps, off, 10*flaps)) {
		t.Fatalf("whole history: %v", got)
	}
	// A range after the folded span is exact too.
	kept := int(m.Changes[0].At.Sub(t0) / time.Second)
	if got := mustSum(t, m, kept, kept+40); !maps.Equal(got, secs(on, 20, off, 20)) {
		t.Fatalf("after the folded span: %v", got)
	}
	// A range before it (nothing metered yet) is empty.
	if got := mustSum(t, m, -100, 0); len(got) != 0 {
		t.Fatalf("before metering: %v", got)
	}
	// A range that cuts through the folded span is refused, naming it.
	_, err := m.Sum(at(100), at(end))
	var ce *CompactedError
	if !errors.Is(err, ErrCompacted) || !errors.As(err, &ce) || ce.From != at(0) || ce.To != m.Changes[0].At {
		t.Fatalf("a range through the folded span: %v", err)
	}
	if m.Start() != at(0) {
		t.Fatalf("start %v", m.Start())
	}
}

func TestObserveRecordsEveryMeteredVocabulary(t *testing.T) {
	running := vocabulary.Input{Facts: lifecycle.Facts{Desired: lifecycle.DesiredRunning, Power: lifecycle.PowerRunning, Result: lifecycle.ResultSucceeded}}
	stopping := running
	stopping.Op, stopping.Desired = lifecycle.OpStop, lifecycle.DesiredStopped
	stopped := vocabulary.Input{Facts: lifecycle.Facts{Desired: lifecycle.DesiredStopped, Power: lifecycle.PowerShutOff, Result: lifecycle.ResultSucceeded}}
	deleted := vocabulary.Input{Facts: lifecycle.Facts{Desired: lifecycle.DesiredDeleted, Power: lifecycle.PowerNoDomain, Result: lifecycle.ResultSucceeded}}

	h, changed := Observe(nil, "i-1", at(0), running)
	if !changed || h.InstanceID != "i-1" || len(h.Meters) != 2 {
		t.Fatalf("first observation: %+v", h)
	}
	// STOPPING: RightScale bills storage only, Azure still hardware and software.
	h2, changed := Observe(h, "i-1", at(60), stopping)
	if !changed || len(h2.Meters[0].Changes) != 2 || len(h2.Meters[1].Changes) != 1 {
		t.Fatalf("stopping: %+v", h2)
	}
	if len(h.Meters[0].Changes) != 1 {
		t.Fatal("Observe changed the history it was given")
	}
	// A change of facts within the same classes changes nothing.
	if same, changed := Observe(h2, "i-1", at(61), stopping); changed || same != h2 {
		t.Fatal("the same classes made a new history")
	}
	h3, _ := Observe(h2, "i-1", at(90), stopped)
	h4, _ := Observe(h3, "i-1", at(200), deleted)
	want := map[vocabulary.Vocabulary]sums{
		vocabulary.RightScale: secs(vocabulary.BillingInstanceUsage, 60, vocabulary.BillingStorageOnly, 140),
		vocabulary.Azure:      secs(vocabulary.BillingHardwareAndSoftware, 90, vocabulary.BillingHardwareOnly, 110),
	}
	for v, w := range want {
		m, ok := h4.Meter(v)
		if !ok {
			t.Fatalf("no %s meter", v)
		}
		if got := mustSum(t, *m, 0, 10000); !maps.Equal(got, w) {
			t.Errorf("%s: %v, want %v", v, got, w)
		}
	}
	// An instance first seen deleted has nothing to meter.
	if h, changed := Observe(nil, "i-2", at(0), deleted); changed || h != nil {
		t.Fatalf("a deleted instance got a history: %+v", h)
	}
}

// Report fills in an open range: from when metering began, until now at
// the latest; a range wholly after now counts nothing.
func TestReportRange(t *testing.T) {
	m := meter(t, 10, nc, 20, on)
	for _, c := range []struct {
		from, to, now    time.Time
		wantFrom, wantTo time.Time
		want             sums
	}{
		{time.Time{}, time.Time{}, at(100), at(10), at(100), secs(nc, 10, on, 80)},
		{at(15), at(1000), at(100), at(15), at(100), secs(nc, 5, on, 80)},
		{at(0), at(50), at(100), at(10), at(50), secs(nc, 10, on, 30)},
		{at(200), at(300), at(100), at(200), at(200), sums{}},
	} {
		r, err := m.Report(c.from, c.to, c.now)
		if err != nil || !r.From.Equal(c.wantFrom) || !r.To.Equal(c.wantTo) || !r.Since.Equal(at(10)) || !maps.Equal(sums(r.Time), c.want) {
			t.Errorf("Report(%v, %v, now %v) = %+v, %v; want %v..%v %v", c.from, c.to, c.now, r, err, c.wantFrom, c.wantTo, c.want)
		}
	}
	if r, err := (&Meter{}).Report(time.Time{}, time.Time{}, at(5)); err != nil || !r.Since.IsZero() || len(r.Time) != 0 {
		t.Errorf("an empty meter: %+v %v", r, err)
	}
}
