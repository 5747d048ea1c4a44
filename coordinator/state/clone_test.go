package state

import (
	"reflect"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/internal/fieldfill"
)

// The records' clones share nothing with what they copy: every field of a
// record is filled (every map, slice and pointer it reaches non-empty),
// the record is cloned, every value the clone reaches is overwritten, and
// the original must still equal an identically filled record. A field
// added to a record without its copy in clone.go fails here.
func TestClonesShareNothing(t *testing.T) {
	cases := map[string]struct {
		fill  func() any    // a filled record, as a pointer
		clone func(any) any // its clone, as a pointer
	}{
		"instance":  {func() any { return fieldfill.New[Instance](t) }, func(v any) any { return v.(*Instance).clone() }},
		"operation": {func() any { return fieldfill.New[Operation](t) }, func(v any) any { return v.(*Operation).clone() }},
		"host":      {func() any { return fieldfill.New[Host](t) }, func(v any) any { return v.(*Host).clone() }},
		"step": {func() any { return fieldfill.New[Step](t) }, func(v any) any {
			c := v.(*Step).clone()
			return &c
		}},
		"model update": {func() any { return fieldfill.New[ModelUpdate](t) }, func(v any) any { return v.(*ModelUpdate).clone() }},
		"caller":       {func() any { return fieldfill.New[Caller](t) }, func(v any) any { return v.(*Caller).clone() }},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			orig := c.fill()
			cl := c.clone(orig)
			if !reflect.DeepEqual(cl, orig) {
				t.Fatalf("the clone differs from the original:\n%+v\n%+v", cl, orig)
			}
			fieldfill.Scribble(cl)
			if reflect.DeepEqual(cl, orig) {
				t.Fatal("scribbling changed nothing: the test proves nothing")
			}
			if want := c.fill(); !reflect.DeepEqual(orig, want) {
				t.Fatalf("writing into the clone changed the original:\n%+v\nwant\n%+v", orig, want)
			}
		})
	}
}

// What a Put was given, what the Tx getters and the store's reads return,
// none of it reaches the committed record: all of it is overwritten, and
// the record read afterwards is still the one put.
func TestCommittedRecordsAreUnreachable(t *testing.T) {
	s := New(0)
	inst, op, host := fieldfill.New[Instance](t), fieldfill.New[Operation](t), fieldfill.New[Host](t)
	op.InstanceID = inst.ID
	inst.HostID = host.ID
	inst.Power = lifecycle.PowerRunning             // up: PutInstance keeps its guest's report
	instID, opID, hostID := inst.ID, op.ID, host.ID // the records are scribbled over
	update := func(fn func(tx *Tx)) {
		t.Helper()
		if err := s.Update(time.Now(), func(tx *Tx) error { fn(tx); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	scribbleTx := func(tx *Tx) {
		i, _ := tx.Instance(instID)
		o, _ := tx.Operation(opID)
		h, _ := tx.Host(hostID)
		l := tx.HostLoad(hostID)
		fieldfill.Scribble(i, o, h, tx.InstancesOnHost(hostID), &l)
	}
	update(func(tx *Tx) {
		tx.PutInstance(inst)
		tx.PutOperation(op)
		tx.PutHost(host)
		tx.PutRequest(op.RequestID, opID)
		fieldfill.Scribble(inst, op, host)
		scribbleTx(tx) // staged records
	})
	update(scribbleTx) // committed records
	scribbleStore(s, instID, opID, hostID)

	gotInst, err := s.Instance(instID)
	if err != nil {
		t.Fatal(err)
	}
	wantInst := fieldfill.New[Instance](t)
	wantInst.HostID = hostID
	wantInst.Power = lifecycle.PowerRunning
	wantInst.ModifyRev, wantInst.UpdateTime = gotInst.ModifyRev, gotInst.UpdateTime // the commit's
	if !reflect.DeepEqual(&gotInst, wantInst) {
		t.Fatalf("instance changed:\n%+v\nwant\n%+v", gotInst, wantInst)
	}
	gotOp, err := s.Operation(opID)
	if err != nil {
		t.Fatal(err)
	}
	wantOp := fieldfill.New[Operation](t)
	wantOp.InstanceID = wantInst.ID
	wantOp.Revision, wantOp.Seq = gotOp.Revision, gotOp.Seq
	if !reflect.DeepEqual(&gotOp, wantOp) {
		t.Fatalf("operation changed:\n%+v\nwant\n%+v", gotOp, wantOp)
	}
	gotHost, err := s.Host(hostID)
	if err != nil {
		t.Fatal(err)
	}
	wantHost := fieldfill.New[Host](t)
	wantHost.ModifyRev = gotHost.ModifyRev
	if !reflect.DeepEqual(&gotHost, wantHost) {
		t.Fatalf("host changed:\n%+v\nwant\n%+v", gotHost, wantHost)
	}
}

// scribbleStore overwrites whatever the store's reads return.
func scribbleStore(s *Store, instID, opID, hostID string) {
	i, _ := s.Instance(instID)
	is, _ := s.Instances()
	o, _ := s.Operation(opID)
	ops, _ := s.Operations("")
	osi, _ := s.Operations(instID)
	h, _ := s.Host(hostID)
	hs, _ := s.Hosts()
	ev, _, _, _ := s.Since(0)
	w, _, _ := s.Waiting(0)
	fieldfill.Scribble(&i, is, &o, ops, osi, s.OpenOperations(), s.HostedOperations(), &h, hs, ev, w)
	for id := range s.requests {
		r, _ := s.OperationByRequest(id)
		fieldfill.Scribble(&r)
	}
}
