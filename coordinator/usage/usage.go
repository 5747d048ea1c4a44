// Package usage meters the time each instance spends in each billing class
// of the vocabularies that name classes (seeds 002 and 003, see
// vocabulary.Metered).
//
// The state records, at every commit that changes an instance's facts, the
// class the instance is in from then on (History.Observe), stamped with the
// log entry's time, so every replica records the same history and it
// survives restarts in snapshots and the log. Sum answers how long the
// instance spent in each class during a range of time.
//
// A meter is a list of changes: class c from At until the next change
// (the last one runs until the range asked about ends), or, for an Off
// change, nothing metered (the instance was deleted). States a seed names
// no class for are metered too, as the empty class ("unclassified").
//
// Memory is bounded: past MaxChanges changes, the oldest half are folded
// into per-class totals over the span they covered, so an instance that
// flaps between classes keeps at most MaxChanges changes and one total per
// class. Ranges that cover that span whole, or miss it, stay exact; a range
// that cuts through it is refused (ErrCompacted).
package usage

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
)

// MaxChanges is how many changes one meter keeps before folding the
// oldest half into totals (about 40 bytes each).
const MaxChanges = 64

// Change is the instance entering a billing class at a time.
type Change struct {
	At    time.Time          `json:"at"`
	Class vocabulary.Billing `json:"class,omitempty"`
	// Off: metering stopped at At (the instance was deleted).
	Off bool `json:"off,omitempty"`
}

func (c Change) same(o Change) bool { return c.Off == o.Off && (c.Off || c.Class == o.Class) }

// Total is time spent in one class.
type Total struct {
	Class vocabulary.Billing `json:"class"`
	Time  time.Duration      `json:"time"`
}

// Meter is an instance's history in one vocabulary. Committed meters are
// shared with readers and snapshots being written: With returns a new
// meter rather than changing this one.
type Meter struct {
	Vocabulary vocabulary.Vocabulary `json:"vocabulary"`
	// Changes, oldest first, each strictly later than the one before.
	Changes []Change `json:"changes"`
	// Folded is what the changes folded away recorded (nil until some
	// were; a pointer, so most meters do not carry its room).
	Folded *Folded `json:"folded,omitempty"`
}

// Folded is the time spent per class (ordered by class) between From and
// the meter's first change.
type Folded struct {
	From   time.Time `json:"from"`
	Totals []Total   `json:"totals"`
}

// Start is when metering began (zero for an empty meter).
func (m *Meter) Start() time.Time {
	if m.Folded != nil {
		return m.Folded.From
	}
	if len(m.Changes) > 0 {
		return m.Changes[0].At
	}
	return time.Time{}
}

// With returns the meter after the instance entered class at at (on), or
// stopped being metered (!on), and whether that changed anything. A time
// before the last change counts as the last change's: log entries' times
// come from the leader's clock, which may step back (a new leader, writes
// stamped before they were batched), and a meter never runs backwards.
func (m Meter) With(at time.Time, class vocabulary.Billing, on bool) (Meter, bool) {
	return m.with(at, class, on, nil)
}

// with is With, taking its new changes' room from buf if it has enough
// (len 0): a new history takes all of its room in one allocation.
func (m Meter) with(at time.Time, class vocabulary.Billing, on bool, buf []Change) (Meter, bool) {
	n := len(m.Changes)
	next := Change{At: at, Class: class}
	if !on {
		next = Change{At: at, Off: true}
	}
	var last Change
	if n > 0 {
		last = m.Changes[n-1]
		if last.same(next) {
			return m, false
		}
		if at.Before(last.At) {
			next.At = last.At
		}
	} else if !on {
		return m, false // never metered: nothing to stop
	}
	out := m
	if cap(buf) >= n+1 {
		out.Changes = append(buf[:0], m.Changes...)
	} else {
		out.Changes = make([]Change, n, n+1)
		copy(out.Changes, m.Changes)
	}
	if n > 0 && last.At.Equal(next.At) {
		// The same instant: the last change lasted no time, and is replaced.
		out.Changes = out.Changes[:n-1]
		if k := n - 1; k > 0 && out.Changes[k-1].same(next) {
			return out, true // back to the class before it
		}
	}
	out.Changes = append(out.Changes, next)
	if len(out.Changes) > MaxChanges {
		out.fold(len(out.Changes) - MaxChanges/2)
	}
	return out, true
}

// fold sums the intervals of the first k changes into Folded and drops
// those changes; m's slices are its own (With copied them).
func (m *Meter) fold(k int) {
	f := &Folded{From: m.Changes[0].At}
	if m.Folded != nil {
		f.From, f.Totals = m.Folded.From, slices.Clone(m.Folded.Totals)
	}
	totals := f.Totals
	for i := range k {
		c := m.Changes[i]
		if c.Off {
			continue
		}
		d := m.Changes[i+1].At.Sub(c.At)
		j, found := slices.BinarySearchFunc(totals, c.Class, func(t Total, b vocabulary.Billing) int {
			return compareBilling(t.Class, b)
		})
		if found {
			totals[j].Time += d
		} else {
			totals = slices.Insert(totals, j, Total{Class: c.Class, Time: d})
		}
	}
	f.Totals = totals
	m.Folded = f
	m.Changes = slices.Clone(m.Changes[k:])
}

func compareBilling(a, b vocabulary.Billing) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ErrCompacted: the range asked about cuts through the span a meter keeps
// only as totals.
var ErrCompacted = errors.New("usage kept only as totals there")

// CompactedError says which span is kept only as totals.
type CompactedError struct {
	From, To time.Time
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("usage from %s to %s is kept only as per-class totals (more than %d class changes since): "+
		"ask for a range that covers all of it or none of it", e.From.Format(time.RFC3339Nano), e.To.Format(time.RFC3339Nano), MaxChanges/2)
}

func (e *CompactedError) Unwrap() error { return ErrCompacted }

// Sum returns the time spent in each class between from and to (the
// running class counts up to to). Classes with no time are absent.
func (m *Meter) Sum(from, to time.Time) (map[vocabulary.Billing]time.Duration, error) {
	out := map[vocabulary.Billing]time.Duration{}
	if !to.After(from) || len(m.Changes) == 0 {
		return out, nil
	}
	if m.Folded != nil {
		start, end := m.Folded.From, m.Changes[0].At
		switch {
		case !to.After(start) || !from.Before(end): // misses the folded span
		case !from.After(start) && !to.Before(end): // covers it whole
			for _, t := range m.Folded.Totals {
				out[t.Class] += t.Time
			}
		default:
			return nil, &CompactedError{From: start, To: end}
		}
	}
	for i, c := range m.Changes {
		if c.Off {
			continue
		}
		end := to
		if i+1 < len(m.Changes) {
			end = m.Changes[i+1].At
		}
		s, e := later(c.At, from), earlier(end, to)
		if e.After(s) {
			out[c.Class] += e.Sub(s)
		}
	}
	return out, nil
}

// Report is a meter's usage over a range, as the API answers it.
type Report struct {
	From, To time.Time // the range counted
	Since    time.Time // when metering began (zero if never)
	Time     map[vocabulary.Billing]time.Duration
}

// Report sums the usage between from and to, zero meaning since metering
// began and until now; the range ends at now at the latest, which is how
// far the running class counts.
func (m *Meter) Report(from, to, now time.Time) (Report, error) {
	if to.IsZero() || to.After(now) {
		to = now
	}
	from = later(from, m.Start())
	to = later(to, from) // a range after now: nothing yet
	sums, err := m.Sum(from, to)
	return Report{From: from, To: to, Since: m.Start(), Time: sums}, err
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// History is one instance's meters, one per metered vocabulary, in the
// order of vocabulary.Metered. Committed histories are shared: Observe
// returns a new one.
type History struct {
	InstanceID string  `json:"instance_id"`
	Meters     []Meter `json:"meters"`
}

// Meter returns the history's meter of vocabulary v.
func (h *History) Meter(v vocabulary.Vocabulary) (*Meter, bool) {
	for i := range h.Meters {
		if h.Meters[i].Vocabulary == v {
			return &h.Meters[i], true
		}
	}
	return nil, false
}

// metered is vocabulary.Metered, listed once: Observe runs at every
// commit that changes an instance's facts.
var metered = vocabulary.Metered()

// Observe returns the history of instance id (h, which may be nil) after a
// commit at `at` left the instance with input in: each metered
// vocabulary's class is recorded, or metering stops once the instance is
// DELETED (a deleted instance accrues nothing). changed is false, and h
// returned, when no class changed.
func Observe(h *History, id string, at time.Time, in vocabulary.Input) (_ *History, changed bool) {
	on := lifecycle.Derive(in.Facts) != lifecycle.StatusDeleted
	var out *block
	if h == nil {
		out = newBlock(id, nil)
	}
	for i, v := range metered {
		var buf []Change
		if h == nil {
			buf = out.changes[i : i : i+1]
		}
		next, ok := h.meter(v).with(at, vocabulary.BillingClass(v, in), on, buf)
		if !ok {
			continue
		}
		if out == nil {
			out = newBlock(id, h)
		}
		out.h.Meters[i] = next
		changed = true
	}
	if !changed {
		return h, false
	}
	return &out.h, true
}

// block is a history with the room it takes: every instance gets a
// history, and one allocation then holds it, its meters and (for a new
// one) their first changes.
type block struct {
	h       History
	meters  [2]Meter
	changes [2]Change
}

func init() {
	if len(metered) > len(block{}.meters) {
		panic("usage: a block has no room for every metered vocabulary")
	}
}

// newBlock returns a history of instance id holding h's meters.
func newBlock(id string, h *History) *block {
	b := new(block)
	b.h = History{InstanceID: id, Meters: b.meters[:len(metered):len(metered)]}
	for j, v := range metered {
		b.h.Meters[j] = h.meter(v)
	}
	return b
}

// MeterOf returns h's meter of v, or an empty one.
func (h *History) MeterOf(v vocabulary.Vocabulary) Meter { return h.meter(v) }

// meter returns h's meter of v, or an empty one (h may be nil).
func (h *History) meter(v vocabulary.Vocabulary) Meter {
	if h != nil {
		if m, ok := h.Meter(v); ok {
			return *m
		}
	}
	return Meter{Vocabulary: v}
}
