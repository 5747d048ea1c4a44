// Package stepstore records, on the agent's disk, which steps the agent has
// started and how they ended, so that a step is never run twice: not when
// the coordinator re-sends it, and not after the agent restarts.
//
// Records are keyed by step id ("<operation id>/<step>/<attempt>"), or by
// operation id for a coordinator too old to send step ids; the store treats
// the key as opaque.
package stepstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// DefaultRetention is how long finished records are kept. The coordinator
// re-sends a step only while its operation is running, which is bounded by
// the operation's deadline, far shorter than this.
const DefaultRetention = 7 * 24 * time.Hour

// bucketSteps keeps its first name, "operations": the records an agent of
// the previous version wrote under operation ids stay where an older
// coordinator (which sends no step id) still finds them.
var bucketSteps = []byte("operations")

// State is how far a step got on this host.
type State int

const (
	// Unknown: the step was never started here.
	Unknown State = iota
	// Started: the driver may have been called; no result was recorded.
	Started
	// Finished: the result is recorded.
	Finished
)

func (s State) String() string {
	switch s {
	case Started:
		return "started"
	case Finished:
		return "finished"
	}
	return "unknown"
}

// Step describes a step when it starts.
type Step struct {
	OperationID string
	Kind        flotillav1.OperationKind // the operation's kind, for messages
	Action      agentv1.StepAction
	InstanceID  string
	HostEpoch   uint64
}

// Record is what the store knows about one step.
type Record struct {
	StepID string // the key: the step id, or the operation id of an old coordinator
	State  State
	Step
	StartTime  time.Time
	FinishTime time.Time
	Result     *agentv1.StepResult // set when State is Finished
	// Reruns counts how often a later agent process ran the step again
	// after finding it interrupted (see Rerun).
	Reruns int
}

// record is the stored form. The result is kept proto-marshalled so that it
// is returned byte for byte as it was first sent.
type record struct {
	// OperationID and Action are absent from records of the previous version.
	OperationID string    `json:"operation_id,omitempty"`
	Action      int32     `json:"action,omitempty"`
	Kind        int32     `json:"kind"`
	InstanceID  string    `json:"instance_id"`
	HostEpoch   uint64    `json:"host_epoch"`
	StartTime   time.Time `json:"start_time"`
	Done        bool      `json:"done,omitempty"`
	FinishTime  time.Time `json:"finish_time,omitzero"`
	Result      []byte    `json:"result,omitempty"`
	Reruns      int       `json:"reruns,omitempty"`
}

// Store is the agent's step journal, one bbolt file.
type Store struct {
	db  *bolt.DB
	now func() time.Time
}

// Open opens (creating if needed) the journal at path and prunes finished
// records older than DefaultRetention. bbolt locks the file, so a second
// agent on the same state directory fails here instead of running steps twice.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("stepstore: open %s: %w", path, err)
	}
	s := &Store{db: db, now: time.Now}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketSteps)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("stepstore: init %s: %w", path, err)
	}
	if _, err := s.Prune(s.now().Add(-DefaultRetention)); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("stepstore: close: %w", err)
	}
	return nil
}

// Begin records that the step starts now, unless it is already recorded.
// It reports whether the record is new; when it is not, the existing record
// is returned and nothing is written.
func (s *Store) Begin(stepID string, step Step) (Record, bool, error) {
	var (
		out   Record
		fresh bool
	)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSteps)
		if v := b.Get([]byte(stepID)); v != nil {
			var err error
			out, err = decode(stepID, v)
			return err
		}
		r := record{
			OperationID: step.OperationID, Action: int32(step.Action), Kind: int32(step.Kind),
			InstanceID: step.InstanceID, HostEpoch: step.HostEpoch, StartTime: s.now().UTC(),
		}
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fresh = true
		out = Record{StepID: stepID, State: Started, Step: step, StartTime: r.StartTime}
		return b.Put([]byte(stepID), v)
	})
	if err != nil {
		return Record{}, false, fmt.Errorf("stepstore: begin %s: %w", stepID, err)
	}
	return out, fresh, nil
}

// ErrRerunLimit is returned by Rerun for a step already run again max times.
var ErrRerunLimit = errors.New("step already run again after an interruption")

// Rerun records, before an interrupted step (recorded started, never
// finished) is run again, that it is: at most max times, so that a step
// whose reruns keep being interrupted is not run without end. It fails with
// ErrRerunLimit past max, and with ErrFinished for a finished step.
func (s *Store) Rerun(stepID string, max int) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSteps)
		v := b.Get([]byte(stepID))
		if v == nil {
			return errors.New("not begun")
		}
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		switch {
		case r.Done:
			return ErrFinished
		case r.Reruns >= max:
			return ErrRerunLimit
		}
		r.Reruns++
		out, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return b.Put([]byte(stepID), out)
	})
	if err != nil {
		return fmt.Errorf("stepstore: rerun %s: %w", stepID, err)
	}
	return nil
}

// ErrFinished is returned by Finish for a step that already has a result.
var ErrFinished = errors.New("step already finished")

// Finish records the step's result. A step that was never begun is
// recorded too (a step can fail before it starts, e.g. on its deadline), so
// that a re-sent step gets the same answer. A second Finish fails with
// ErrFinished: the first result is the one the coordinator may have seen.
func (s *Store) Finish(stepID string, res *agentv1.StepResult) error {
	raw, err := proto.Marshal(res)
	if err != nil {
		return fmt.Errorf("stepstore: finish %s: %w", stepID, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSteps)
		var r record
		if v := b.Get([]byte(stepID)); v != nil {
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode: %w", err)
			}
			if r.Done {
				return ErrFinished
			}
		} else {
			r.StartTime = s.now().UTC()
			r.OperationID = res.GetOperationId()
			r.HostEpoch = res.GetHostEpoch()
			r.InstanceID = res.GetState().GetInstanceId()
		}
		r.Done, r.FinishTime, r.Result = true, s.now().UTC(), raw
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return b.Put([]byte(stepID), v)
	})
	if err != nil {
		return fmt.Errorf("stepstore: finish %s: %w", stepID, err)
	}
	return nil
}

// Get returns what is known about the step; State is Unknown if nothing.
func (s *Store) Get(stepID string) (Record, error) {
	out := Record{StepID: stepID}
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSteps).Get([]byte(stepID))
		if v == nil {
			return nil
		}
		var err error
		out, err = decode(stepID, v)
		return err
	})
	if err != nil {
		return Record{}, fmt.Errorf("stepstore: get %s: %w", stepID, err)
	}
	return out, nil
}

// Prune removes finished records that finished before cutoff and returns
// how many. Started records are kept whatever their age: they are the only
// evidence that a step may have been interrupted.
func (s *Store) Prune(cutoff time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSteps)
		var old [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				// An undecodable record would be unreadable forever; dropping
				// it only loses the at-most-once memory of a long-gone step.
				old = append(old, append([]byte(nil), k...))
				return nil
			}
			if r.Done && r.FinishTime.Before(cutoff) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Deleting while iterating with ForEach is not allowed in bbolt.
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("stepstore: prune: %w", err)
	}
	return n, nil
}

func decode(key string, v []byte) (Record, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return Record{}, fmt.Errorf("decode %s: %w", key, err)
	}
	opID := r.OperationID
	if opID == "" {
		opID = key // a record of the previous version, keyed by operation id
	}
	out := Record{
		StepID: key,
		State:  Started,
		Step: Step{
			OperationID: opID,
			Kind:        flotillav1.OperationKind(r.Kind),
			Action:      agentv1.StepAction(r.Action),
			InstanceID:  r.InstanceID,
			HostEpoch:   r.HostEpoch,
		},
		StartTime:  r.StartTime,
		FinishTime: r.FinishTime,
		Reruns:     r.Reruns,
	}
	if r.Done {
		res := &agentv1.StepResult{}
		if err := proto.Unmarshal(r.Result, res); err != nil {
			return Record{}, fmt.Errorf("decode result of %s: %w", key, err)
		}
		out.State, out.Result = Finished, res
	}
	return out, nil
}
