package state

import (
	"strings"
	"time"
)

// CopyProgress is how far an operation's running disk copy step has got,
// as its target agent last reported. It belongs to one step attempt
// (StepID): readers show it only while that attempt is the operation's
// running step, so a value left from an earlier attempt or step is never
// shown.
type CopyProgress struct {
	StepID         string    `json:"step_id"`
	BytesDone      uint64    `json:"bytes_done"`
	BytesTotal     uint64    `json:"bytes_total"`
	BytesPerSecond uint64    `json:"bytes_per_second"`
	BytesSent      uint64    `json:"bytes_sent,omitempty"`
	ReportTime     time.Time `json:"report_time"`
}

// RunningCopy returns the operation's copy progress if it is of the step
// attempt running now, else nil.
func (o *Operation) RunningCopy() *CopyProgress {
	if o.Copy == nil || o.State.Done() {
		return nil
	}
	st := o.Current()
	if st == nil || st.State != StepRunning || o.StepID(o.Cur, st.Attempt) != o.Copy.StepID {
		return nil
	}
	return o.Copy
}

// RunningCopy returns the instance's copy progress if it is of its
// current operation (a step's end clears it, see fsm.applyFinish).
func (i *Instance) RunningCopy() *CopyProgress {
	if i.Copy == nil || i.CurrentOp == "" || !strings.HasPrefix(i.Copy.StepID, i.CurrentOp+"/") {
		return nil
	}
	return i.Copy
}
