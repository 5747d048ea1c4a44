package fsm

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/scheduler"

	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// jsonEntry builds an entry of the first format, as older logs hold.
func jsonEntry(t *testing.T, typ string, now time.Time, body any) []byte {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	e, err := json.Marshal(Command{Type: typ, Time: now.UTC(), Body: b})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEnvelopeRoundTrip(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 891011121, time.FixedZone("x", 3600))
	e, err := encodeLegacy(TypeCancel, now, Cancel{OperationID: "op-1"})
	if err != nil {
		t.Fatal(err)
	}
	typ, at, body, err := decode(e)
	if err != nil || typ != TypeCancel || !at.Equal(now) || at.Location() != time.UTC || string(body) != `{"operation_id":"op-1"}` {
		t.Fatalf("decoded %q %v %s %v", typ, at, body, err)
	}
	for _, bad := range [][]byte{nil, {envelopeMagic}, {envelopeMagic, 99}, e[:4], e[:len(e)-len(body)-1]} {
		if _, _, _, err := decode(bad); err == nil {
			t.Fatalf("decoded a broken entry %x", bad)
		}
	}
}

// Both formats of the same commands leave replicas in the same state: a
// log written before the binary envelope replays to the same digest.
func TestJSONAndBinaryEntriesApplyAlike(t *testing.T) {
	type cmd struct {
		typ  string
		body any
	}
	cmds := []cmd{
		{TypeRegisterHost, RegisterHost{Host: state.Host{ID: "h1", Kind: "fake", Labels: map[string]string{"zone": "a", "rack": "7"}, Capacity: state.Resources{VCPUs: 4, MemoryMiB: 4096, DiskGiB: 100}}}},
		{TypeCreateInstance, fullCreate()},
		{TypeCreateInstance, CreateInstance{
			Instance:  state.Instance{ID: "i2", Name: "i2", Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}},
			Operation: state.Operation{ID: "op-i2", InstanceID: "i2"},
		}},
	}
	digest := func(binaryFormat bool) string {
		h := newHarness(t)
		var entries [][]byte
		for i, c := range cmds {
			now := t0.Add(time.Duration(i) * time.Second)
			if binaryFormat {
				e, err := Encode(c.typ, now, c.body)
				if err != nil {
					t.Fatal(err)
				}
				entries = append(entries, e)
			} else {
				entries = append(entries, jsonEntry(t, c.typ, now, c.body))
			}
		}
		// The last two go in one batch entry of the same format.
		h.fsm.ApplyBytes(entries[0])
		var batch []byte
		if binaryFormat {
			var err error
			if batch, err = EncodeBatch(t0, entries[1:]); err != nil {
				t.Fatal(err)
			}
		} else {
			raw := []json.RawMessage{entries[1], entries[2]}
			batch = jsonEntry(t, TypeBatch, t0, Batch{Commands: raw})
		}
		for _, r := range h.fsm.ApplyBytes(batch).Value.([]Result) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		d, rev := h.store.Digest()
		if rev != 3 {
			t.Fatalf("revision %d", rev)
		}
		return d
	}
	if a, b := digest(false), digest(true); a != b {
		t.Fatalf("JSON entries give digest %s, binary ones %s", a, b)
	}
}

// fullCreate sets every field a create carries.
func fullCreate() CreateInstance {
	return CreateInstance{
		Instance: state.Instance{ID: "i1", Name: "i1", HostID: "h1", Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, DiskGiB: 3, Image: "img"},
			Recovery:  state.Recovery{Policy: state.RecoverRestart, MaxRestarts: 3},
			Placement: state.Placement{Kind: "fake", Labels: map[string]string{"zone": "a", "rack": "7"}, Group: "db"}},
		Operation: state.Operation{ID: "op-i1", InstanceID: "i1", RequestID: "r1", Deadline: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
			RequestedBy: &state.Caller{Name: "alice", Roles: []string{"operator", "db"}, Authenticated: true, Address: "10.0.0.7:5123"}},
		Policy: scheduler.Policy{Pack: true, CPUOvercommit: 4, MemoryOvercommit: 1.5},
	}
}

func TestCompactCreateRoundTrip(t *testing.T) {
	c := fullCreate()
	b, err := encodeBody(c)
	if err != nil || b[0] != compactMark {
		t.Fatalf("a plain create is not encoded compactly: %v %q", err, b)
	}
	var back CreateInstance
	if err := decodeBody(b, &back); err != nil {
		t.Fatal(err)
	}
	// What a JSON body decodes to is the reference.
	j, _ := json.Marshal(c)
	var want CreateInstance
	if err := json.Unmarshal(j, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, want) {
		t.Fatalf("compact round trip:\n got %+v\nwant %+v", back, want)
	}
	// encodeLegacy writes a create's envelope and body in one go: the same
	// bytes as the envelope around encodeBody's, which decode to the same
	// command.
	now := time.Date(2026, 11, 24, 1, 2, 3, 4, time.UTC)
	entry, err := encodeLegacy(TypeCreateInstance, now, &c)
	if err != nil {
		t.Fatal(err)
	}
	if framed := envelope(TypeCreateInstance, now, len(b), func(buf []byte) []byte { return append(buf, b...) }); !bytes.Equal(entry, framed) {
		t.Fatalf("encodeLegacy of a create:\n got %x\nwant %x", entry, framed)
	}
	if typ, at, body, err := decode(entry); err != nil || typ != TypeCreateInstance || !at.Equal(now) || !bytes.Equal(body, b) {
		t.Fatalf("decode of an encoded create: %q %v %x %v", typ, at, body, err)
	}
	// A deadline in another zone, with a monotonic reading, comes back as
	// the same instant in UTC.
	c.Operation.Deadline = time.Now().In(time.FixedZone("x", 7200))
	b, _ = encodeBody(c)
	back = CreateInstance{}
	if err := decodeBody(b, &back); err != nil || b[0] != compactMark || !back.Operation.Deadline.Equal(c.Operation.Deadline) || back.Operation.Deadline.Location() != time.UTC {
		t.Fatalf("deadline %v came back as %v (%v)", c.Operation.Deadline, back.Operation.Deadline, err)
	}
	// Zero deadline and no labels come back as the zero time and nil; an
	// unauthenticated caller has neither name nor roles.
	c.Operation.Deadline, c.Instance.Placement.Labels = time.Time{}, nil
	c.Operation.RequestedBy = &state.Caller{Address: "127.0.0.1:40000"}
	b, _ = encodeBody(&c)
	back = CreateInstance{}
	if err := decodeBody(b, &back); err != nil || !reflect.DeepEqual(back, c) || b[0] != compactMark {
		t.Fatalf("zero fields: %+v %v", back, err)
	}
	for _, c := range []CreateInstance{c, fullCreate()} {
		b, _ := encodeBody(c)
		// The caller is the optional tail: a body cut just before it is a
		// whole body without one (as entries written before it was added).
		c.Operation.RequestedBy = nil
		tailless, _ := encodeBody(c)
		for n := 1; n < len(b); n++ {
			if n == len(tailless) {
				continue
			}
			if err := decodeBody(b[:n], &CreateInstance{}); err == nil {
				t.Fatalf("decoded a compact body cut at %d of %d bytes", n, len(b))
			}
		}
	}
}

// A create entry written before creates carried their caller decodes as
// one without a caller.
func TestCompactCreateWithoutCaller(t *testing.T) {
	c := fullCreate()
	c.Operation.RequestedBy = nil
	b, err := encodeBody(c)
	if err != nil || b[0] != compactMark {
		t.Fatalf("%v %q", err, b)
	}
	var back CreateInstance
	if err := decodeBody(b, &back); err != nil || back.Operation.RequestedBy != nil || !reflect.DeepEqual(back, c) {
		t.Fatalf("%+v %v", back, err)
	}
}

// A create carrying a field the compact form does not is written as JSON,
// so the field is not lost.
func TestCompactCreateFallsBackToJSON(t *testing.T) {
	for name, change := range map[string]func(*CreateInstance){
		"power":       func(c *CreateInstance) { c.Instance.Power = lifecycle.PowerRunning },
		"op kind":     func(c *CreateInstance) { c.Operation.Kind = lifecycle.OpCreate },
		"create time": func(c *CreateInstance) { c.Operation.CreateTime = t0 },
	} {
		c := fullCreate()
		change(&c)
		b, err := encodeBody(c)
		if err != nil || b[0] != '{' {
			t.Fatalf("%s: not JSON: %v %q", name, err, b)
		}
	}
}
