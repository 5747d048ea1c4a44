package stepstore

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var stopStep = Step{
	OperationID: "op-1", Kind: flotillav1.OperationKind_OPERATION_KIND_STOP,
	Action: agentv1.StepAction_STEP_ACTION_STOP, InstanceID: "vm-1", HostEpoch: 3,
}

func TestLifecycleSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s := open(t, path)

	if rec, err := s.Get("op-1/stop/1"); err != nil || rec.State != Unknown {
		t.Fatalf("Get before Begin = %v, %v", rec, err)
	}
	rec, fresh, err := s.Begin("op-1/stop/1", stopStep)
	if err != nil || !fresh || rec.State != Started {
		t.Fatalf("Begin = %v, %v, %v", rec, fresh, err)
	}
	if _, fresh, _ := s.Begin("op-1/stop/1", stopStep); fresh {
		t.Fatal("second Begin reported a new step")
	}
	// Another attempt of the same operation is another step.
	if rec, err := s.Get("op-1/stop/2"); err != nil || rec.State != Unknown {
		t.Fatalf("attempt 2 = %v, %v", rec, err)
	}
	s.Close()

	s = open(t, path)
	rec, err = s.Get("op-1/stop/1")
	if err != nil || rec.State != Started || rec.Step != stopStep || rec.StartTime.IsZero() || rec.StepID != "op-1/stop/1" {
		t.Fatalf("after reopen: %+v, %v", rec, err)
	}
	res := &agentv1.StepResult{OperationId: "op-1", StepId: "op-1/stop/1", HostEpoch: 3, Succeeded: true}
	if err := s.Finish("op-1/stop/1", res); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish("op-1/stop/1", &agentv1.StepResult{OperationId: "op-1"}); !errors.Is(err, ErrFinished) {
		t.Fatalf("second Finish: %v, want ErrFinished", err)
	}
	s.Close()

	s = open(t, path)
	defer s.Close()
	rec, err = s.Get("op-1/stop/1")
	if err != nil || rec.State != Finished || !proto.Equal(rec.Result, res) || rec.Step != stopStep {
		t.Fatalf("finished record: %+v, %v", rec, err)
	}
	// Begin of a finished step returns it without writing.
	rec, fresh, err = s.Begin("op-1/stop/1", stopStep)
	if err != nil || fresh || rec.State != Finished {
		t.Fatalf("Begin after Finish = %v, %v, %v", rec, fresh, err)
	}
}

func TestFinishWithoutBegin(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "agent.db"))
	defer s.Close()
	res := &agentv1.StepResult{OperationId: "op-1", Fault: &flotillav1.Fault{Code: "DEADLINE_EXCEEDED"}}
	if err := s.Finish("op-1", res); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.Get("op-1"); rec.State != Finished || !proto.Equal(rec.Result, res) {
		t.Fatalf("record %+v", rec)
	}
}

// A record written by the previous version (keyed by operation id, without
// operation_id or action) still reads, with the key as its operation id.
func TestPreviousVersionRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s := open(t, path)
	defer s.Close()
	old := `{"kind":3,"instance_id":"vm-1","host_epoch":3,"start_time":"2026-01-02T03:04:05Z"}`
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("operations")).Put([]byte("op-9"), []byte(old))
	}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get("op-9")
	want := Step{OperationID: "op-9", Kind: flotillav1.OperationKind_OPERATION_KIND_STOP, InstanceID: "vm-1", HostEpoch: 3}
	if err != nil || rec.State != Started || rec.Step != want {
		t.Fatalf("old record: %+v, %v", rec, err)
	}
}

func TestPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s := open(t, path)
	now := time.Now()
	s.now = func() time.Time { return now.Add(-8 * 24 * time.Hour) }
	for _, id := range []string{"old-finished", "old-started"} {
		if _, _, err := s.Begin(id, stopStep); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Finish("old-finished", &agentv1.StepResult{OperationId: "old-finished"}); err != nil {
		t.Fatal(err)
	}
	s.now = time.Now
	if err := s.Finish("new-finished", &agentv1.StepResult{OperationId: "new-finished"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, path) // prunes
	defer s.Close()
	for id, want := range map[string]State{"old-finished": Unknown, "old-started": Started, "new-finished": Finished} {
		if rec, err := s.Get(id); err != nil || rec.State != want {
			t.Errorf("%s: %v, %v; want %v", id, rec.State, err, want)
		}
	}
}

func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s := open(t, path)
	defer s.Close()
	if s2, err := Open(path); err == nil {
		s2.Close()
		t.Fatal("a second Open of a store in use succeeded")
	}
}

func TestRerunAtMostMaxTimes(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "steps.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Rerun("never", 1); err == nil {
		t.Fatal("rerun of a step never begun: want an error")
	}
	if _, _, err := s.Begin("op/1/1", Step{OperationID: "op", InstanceID: "i"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Rerun("op/1/1", 1); err != nil {
		t.Fatalf("first rerun: %v", err)
	}
	if r, _ := s.Get("op/1/1"); r.Reruns != 1 || r.State != Started {
		t.Fatalf("after a rerun: %+v, want started with 1 rerun", r)
	}
	if err := s.Rerun("op/1/1", 1); !errors.Is(err, ErrRerunLimit) {
		t.Fatalf("second rerun: %v, want ErrRerunLimit", err)
	}
	if err := s.Finish("op/1/1", &agentv1.StepResult{Succeeded: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Rerun("op/1/1", 5); !errors.Is(err, ErrFinished) {
		t.Fatalf("rerun of a finished step: %v, want ErrFinished", err)
	}
}
