package state

import (
	"fmt"
	"reflect"
	"testing"
	"time"
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
		"instance":  {func() any { return filled[Instance](t) }, func(v any) any { return v.(*Instance).clone() }},
		"operation": {func() any { return filled[Operation](t) }, func(v any) any { return v.(*Operation).clone() }},
		"host":      {func() any { return filled[Host](t) }, func(v any) any { return v.(*Host).clone() }},
		"step": {func() any { return filled[Step](t) }, func(v any) any {
			c := v.(*Step).clone()
			return &c
		}},
		"model update": {func() any { return filled[ModelUpdate](t) }, func(v any) any { return v.(*ModelUpdate).clone() }},
		"caller":       {func() any { return filled[Caller](t) }, func(v any) any { return v.(*Caller).clone() }},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			orig := c.fill()
			cl := c.clone(orig)
			if !reflect.DeepEqual(cl, orig) {
				t.Fatalf("the clone differs from the original:\n%+v\n%+v", cl, orig)
			}
			scribble(reflect.ValueOf(cl))
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
	inst, op, host := filled[Instance](t), filled[Operation](t), filled[Host](t)
	op.InstanceID = inst.ID
	inst.HostID = host.ID
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
		scribbleAll(i, o, h, tx.InstancesOnHost(hostID), &l)
	}
	update(func(tx *Tx) {
		tx.PutInstance(inst)
		tx.PutOperation(op)
		tx.PutHost(host)
		tx.PutRequest(op.RequestID, opID)
		scribbleAll(inst, op, host)
		scribbleTx(tx) // staged records
	})
	update(scribbleTx) // committed records
	scribbleStore(s, instID, opID, hostID)

	gotInst, err := s.Instance(instID)
	if err != nil {
		t.Fatal(err)
	}
	wantInst := filled[Instance](t)
	wantInst.HostID = hostID
	wantInst.ModifyRev, wantInst.UpdateTime = gotInst.ModifyRev, gotInst.UpdateTime // the commit's
	if !reflect.DeepEqual(&gotInst, wantInst) {
		t.Fatalf("instance changed:\n%+v\nwant\n%+v", gotInst, wantInst)
	}
	gotOp, err := s.Operation(opID)
	if err != nil {
		t.Fatal(err)
	}
	wantOp := filled[Operation](t)
	wantOp.InstanceID = wantInst.ID
	wantOp.Revision, wantOp.Seq = gotOp.Revision, gotOp.Seq
	if !reflect.DeepEqual(&gotOp, wantOp) {
		t.Fatalf("operation changed:\n%+v\nwant\n%+v", gotOp, wantOp)
	}
	gotHost, err := s.Host(hostID)
	if err != nil {
		t.Fatal(err)
	}
	wantHost := filled[Host](t)
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
	scribbleAll(&i, is, &o, ops, osi, s.OpenOperations(), s.HostedOperations(), &h, hs, ev, w)
	for id := range s.requests {
		r, _ := s.OperationByRequest(id)
		scribbleAll(&r)
	}
}

func scribbleAll(vs ...any) {
	for _, v := range vs {
		scribble(reflect.ValueOf(v))
	}
}

// filled returns a T with every field set to a distinct non-zero value,
// every map, slice and pointer it reaches non-empty (a recursive type down
// to fillDepth levels). Equal calls return equal values.
func filled[T any](t *testing.T) *T {
	t.Helper()
	v := new(T)
	n := 0
	if err := fill(reflect.ValueOf(v).Elem(), &n, map[reflect.Type]int{}); err != nil {
		t.Fatal(err)
	}
	return v
}

const fillDepth = 3

var timeType = reflect.TypeOf(time.Time{})

func fill(v reflect.Value, n *int, onPath map[reflect.Type]int) error {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(*n))
	case reflect.Pointer:
		if onPath[v.Type()] >= fillDepth {
			return nil // a recursive type: deep enough
		}
		onPath[v.Type()]++
		defer func() { onPath[v.Type()]-- }()
		p := reflect.New(v.Type().Elem())
		if err := fill(p.Elem(), n, onPath); err != nil {
			return err
		}
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			if err := fill(s.Index(i), n, onPath); err != nil {
				return err
			}
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			if err := fill(k, n, onPath); err != nil {
				return err
			}
			if err := fill(e, n, onPath); err != nil {
				return err
			}
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(time.Unix(int64(*n), 0).UTC()))
			return nil
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				return fmt.Errorf("%s.%s: an unexported field the filler cannot set", v.Type(), f.Name)
			}
			if err := fill(v.Field(i), n, onPath); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%s: a kind the filler does not know (%s)", v.Type(), v.Kind())
	}
	return nil
}

// scribble overwrites every value v reaches, writing through its pointers,
// slices and maps rather than replacing them, as careless code would.
func scribble(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "!")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1000)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1000)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 1000)
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			scribble(v.Elem())
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			scribble(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			scribble(e) // writes through what the value points to
			v.SetMapIndex(k, e)
		}
		v.SetMapIndex(reflect.Zero(v.Type().Key()), reflect.Zero(v.Type().Elem()))
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Hour)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				scribble(v.Field(i))
			}
		}
	}
}
