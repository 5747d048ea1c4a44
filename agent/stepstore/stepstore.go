// Package stepstore records, on the agent's disk, which operations the agent
// has started and how they ended, so that a step is never run twice: not
// when the coordinator re-sends it, and not after the agent restarts.
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

var bucketOps = []byte("operations")

// State is how far an operation got on this host.
type State int

const (
	// Unknown: the operation was never started here.
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

// Step describes an operation's step when it starts.
type Step struct {
	Kind       flotillav1.OperationKind
	InstanceID string
	HostEpoch  uint64
}

// Record is what the store knows about one operation.
type Record struct {
	OperationID string
	State       State
	Step
	StartTime  time.Time
	FinishTime time.Time
	Result     *agentv1.StepResult // set when State is Finished
}

// record is the stored form. The result is kept proto-marshalled so that it
// is returned byte for byte as it was first sent.
type record struct {
	Kind       int32     `json:"kind"`
	InstanceID string    `json:"instance_id"`
	HostEpoch  uint64    `json:"host_epoch"`
	StartTime  time.Time `json:"start_time"`
	Done       bool      `json:"done,omitempty"`
	FinishTime time.Time `json:"finish_time,omitzero"`
	Result     []byte    `json:"result,omitempty"`
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
		_, err := tx.CreateBucketIfNotExists(bucketOps)
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

// Begin records that the operation's step starts now, unless the operation
// is already recorded. It reports whether the record is new; when it is not,
// the existing record is returned and nothing is written.
func (s *Store) Begin(opID string, step Step) (Record, bool, error) {
	var (
		out   Record
		fresh bool
	)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOps)
		if v := b.Get([]byte(opID)); v != nil {
			var err error
			out, err = decode(opID, v)
			return err
		}
		r := record{Kind: int32(step.Kind), InstanceID: step.InstanceID, HostEpoch: step.HostEpoch, StartTime: s.now().UTC()}
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fresh = true
		out = Record{OperationID: opID, State: Started, Step: step, StartTime: r.StartTime}
		return b.Put([]byte(opID), v)
	})
	if err != nil {
		return Record{}, false, fmt.Errorf("stepstore: begin %s: %w", opID, err)
	}
	return out, fresh, nil
}

// ErrFinished is returned by Finish for an operation that already has a result.
var ErrFinished = errors.New("operation already finished")

// Finish records the operation's result. An operation that was never begun
// is recorded too (a step can fail before it starts, e.g. on its deadline),
// so that a re-sent step gets the same answer. A second Finish fails with
// ErrFinished: the first result is the one the coordinator may have seen.
func (s *Store) Finish(opID string, res *agentv1.StepResult) error {
	raw, err := proto.Marshal(res)
	if err != nil {
		return fmt.Errorf("stepstore: finish %s: %w", opID, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOps)
		var r record
		if v := b.Get([]byte(opID)); v != nil {
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode: %w", err)
			}
			if r.Done {
				return ErrFinished
			}
		} else {
			r.StartTime = s.now().UTC()
			r.HostEpoch = res.GetHostEpoch()
			r.InstanceID = res.GetState().GetInstanceId()
		}
		r.Done, r.FinishTime, r.Result = true, s.now().UTC(), raw
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return b.Put([]byte(opID), v)
	})
	if err != nil {
		return fmt.Errorf("stepstore: finish %s: %w", opID, err)
	}
	return nil
}

// Get returns what is known about the operation; State is Unknown if nothing.
func (s *Store) Get(opID string) (Record, error) {
	out := Record{OperationID: opID}
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketOps).Get([]byte(opID))
		if v == nil {
			return nil
		}
		var err error
		out, err = decode(opID, v)
		return err
	})
	if err != nil {
		return Record{}, fmt.Errorf("stepstore: get %s: %w", opID, err)
	}
	return out, nil
}

// Prune removes finished records that finished before cutoff and returns
// how many. Started records are kept whatever their age: they are the only
// evidence that a step may have been interrupted.
func (s *Store) Prune(cutoff time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOps)
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

func decode(opID string, v []byte) (Record, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return Record{}, fmt.Errorf("decode %s: %w", opID, err)
	}
	out := Record{
		OperationID: opID,
		State:       Started,
		Step: Step{
			Kind:       flotillav1.OperationKind(r.Kind),
			InstanceID: r.InstanceID,
			HostEpoch:  r.HostEpoch,
		},
		StartTime:  r.StartTime,
		FinishTime: r.FinishTime,
	}
	if r.Done {
		res := &agentv1.StepResult{}
		if err := proto.Unmarshal(r.Result, res); err != nil {
			return Record{}, fmt.Errorf("decode result of %s: %w", opID, err)
		}
		out.State, out.Result = Finished, res
	}
	return out, nil
}
