package lifecycle

import "testing"

// Every kind of operation a user or an action starts ends by a deadline, so
// none can wait forever.
func TestEveryKindHasADeadline(t *testing.T) {
	for _, k := range AllOpKinds[1:] {
		if k == OpPreempt {
			continue // the placer gives a preemption its own
		}
		if d := DefaultDeadlines[k]; d <= 0 {
			t.Errorf("operation kind %s has deadline %v", k, d)
		}
	}
}
