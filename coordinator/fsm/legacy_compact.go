package fsm

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Every replica decodes every entry, so decoding is paid three times per
// write; for CreateInstance, the most frequent write, JSON decoding was the
// largest part of applying it. Such a body may therefore be written in a
// compact binary form, marked by a first byte that never starts JSON. The
// form holds only the fields a create sets; an encoder uses it only when
// decoding it gives back exactly the command (a field it does not carry,
// set by a later change, makes it fall back to JSON), so nothing can be
// lost by it, and every replica decodes the same bytes the same way. Like
// JSON entries of the envelope, it carries times in UTC; an empty label
// map comes back nil, as from JSON (the field is omitempty).
const compactMark = 0x01

// encodeBody encodes a command body, compactly when it can be.
func encodeBody(body any) ([]byte, error) {
	if c := createBody(body); c != nil {
		if b, ok := compactCreate(make([]byte, 0, 256), c); ok {
			return b, nil
		}
	}
	return json.Marshal(body)
}

// createBody returns body as a create, or nil if it is another command.
func createBody(body any) *CreateInstance {
	switch b := body.(type) {
	case CreateInstance:
		return &b
	case *CreateInstance:
		return b
	}
	return nil
}

// decodeBody decodes a body written by encodeBody.
func decodeBody[T any](raw []byte, body *T) error {
	if len(raw) == 0 || raw[0] != compactMark {
		return json.Unmarshal(raw, body)
	}
	c, ok := any(body).(*CreateInstance)
	if !ok {
		return fmt.Errorf("no compact form for %T", body)
	}
	return decodeCreate(raw[1:], c)
}

// compactCreate appends c's compact encoding to dst; ok is false if that
// would lose something (then the caller encodes it as JSON).
func compactCreate(dst []byte, c *CreateInstance) (_ []byte, ok bool) {
	w := wbuf{b: append(dst, compactMark)}
	i, o, p := &c.Instance, &c.Operation, &c.Policy
	w.str(i.ID)
	w.str(i.Name)
	w.uint(uint64(i.Spec.VCPUs))
	w.uint(i.Spec.MemoryMiB)
	w.uint(i.Spec.DiskGiB)
	w.str(i.Spec.Image)
	w.str(i.HostID)
	w.str(string(i.Recovery.Policy))
	w.int(int64(i.Recovery.MaxRestarts))
	w.str(i.Placement.Kind)
	keys := make([]string, 0, len(i.Placement.Labels))
	for k := range i.Placement.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.uint(uint64(len(keys)))
	for _, k := range keys {
		w.str(k)
		w.str(i.Placement.Labels[k])
	}
	w.str(i.Placement.Group)
	w.bool(i.Placement.Preemptible)
	w.str(o.ID)
	w.str(o.InstanceID)
	w.str(o.RequestID)
	w.time(o.Deadline)
	w.bool(p.Pack)
	w.float(p.CPUOvercommit)
	w.float(p.MemoryOvercommit)
	w.float(p.DiskOvercommit)
	if by := o.RequestedBy; by != nil {
		// Last, and only when set: a body without it (older entries too)
		// ends here.
		w.str(by.Name)
		w.uint(uint64(len(by.Roles)))
		for _, r := range by.Roles {
			w.str(r)
		}
		w.bool(by.Authenticated)
		w.str(by.Address)
	}
	return w.b, carriesAll(c)
}

// carriesAll reports whether every field of c that is set is one the
// compact form carries (checked by reflection, so that a field added to
// the records later is caught without anyone updating this list).
func carriesAll(c *CreateInstance) bool {
	rest := *c
	i, o, p := &rest.Instance, &rest.Operation, &rest.Policy
	// Field by field, never whole structs: a field added to one is then not cleared.
	i.ID, i.Name, i.HostID = "", "", ""
	i.Spec.VCPUs, i.Spec.MemoryMiB, i.Spec.DiskGiB, i.Spec.Image = 0, 0, 0, ""
	i.Recovery.Policy, i.Recovery.MaxRestarts = "", 0
	i.Placement.Kind, i.Placement.Labels, i.Placement.Group, i.Placement.Preemptible = "", nil, "", false
	o.ID, o.InstanceID, o.RequestID, o.Deadline, o.RequestedBy = "", "", "", time.Time{}, nil
	p.Pack, p.CPUOvercommit, p.MemoryOvercommit, p.DiskOvercommit = false, 0, 0, 0
	return reflect.ValueOf(&rest).Elem().IsZero()
}

func decodeCreate(b []byte, c *CreateInstance) error {
	r := rbuf{b: b}
	i, o, p := &c.Instance, &c.Operation, &c.Policy
	i.ID = r.str()
	i.Name = r.str()
	i.Spec.VCPUs = uint32(r.uint())
	i.Spec.MemoryMiB = r.uint()
	i.Spec.DiskGiB = r.uint()
	i.Spec.Image = r.str()
	i.HostID = r.str()
	i.Recovery.Policy = state.RecoveryPolicy(r.str())
	i.Recovery.MaxRestarts = int32(r.int())
	i.Placement.Kind = r.str()
	if n := r.uint(); n > 0 && r.err == nil {
		if n > uint64(len(r.b)) {
			return errors.New("compact create: bad label count")
		}
		i.Placement.Labels = make(map[string]string, n)
		for range n {
			k := r.str()
			i.Placement.Labels[k] = r.str()
		}
	}
	i.Placement.Group = r.str()
	i.Placement.Preemptible = r.bool()
	o.ID = r.str()
	o.InstanceID = r.str()
	o.RequestID = r.str()
	o.Deadline = r.time()
	p.Pack = r.bool()
	p.CPUOvercommit = r.float()
	p.MemoryOvercommit = r.float()
	p.DiskOvercommit = r.float()
	if r.err == nil && len(r.b) > 0 {
		by := &state.Caller{Name: r.str()}
		if n := r.uint(); n > 0 && r.err == nil {
			if n > uint64(len(r.b)) {
				return errors.New("compact create: bad role count")
			}
			by.Roles = make([]string, n)
			for k := range by.Roles {
				by.Roles[k] = r.str()
			}
		}
		by.Authenticated = r.bool()
		by.Address = r.str()
		o.RequestedBy = by
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = errors.New("trailing bytes")
	}
	if r.err != nil {
		return fmt.Errorf("compact create: %w", r.err)
	}
	return nil
}

type wbuf struct{ b []byte }

func (w *wbuf) uint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *wbuf) int(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *wbuf) str(s string)  { w.uint(uint64(len(s))); w.b = append(w.b, s...) }
func (w *wbuf) float(f float64) {
	w.b = binary.LittleEndian.AppendUint64(w.b, math.Float64bits(f))
}
func (w *wbuf) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}
func (w *wbuf) time(t time.Time) {
	w.int(t.Unix())
	w.uint(uint64(t.Nanosecond()))
}

// rbuf reads what wbuf wrote; the first error sticks and zeroes the rest.
type rbuf struct {
	b   []byte
	err error
	// all is the whole body as one string, made on the first str: the
	// strings read are slices of it, one allocation for all of a record's
	// strings rather than one each (they live and die together).
	all string
}

func (r *rbuf) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("truncated %s", what)
	}
	r.b = nil
}

func (r *rbuf) uint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *rbuf) int() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *rbuf) str() string {
	n := r.uint()
	if n > uint64(len(r.b)) {
		r.fail("string")
		return ""
	}
	if n == 0 {
		return ""
	}
	if r.all == "" {
		r.all = string(r.b)
	}
	at := len(r.all) - len(r.b) // b is the unread tail of all
	r.b = r.b[n:]
	return r.all[at : at+int(n)]
}

func (r *rbuf) float() float64 {
	if len(r.b) < 8 {
		r.fail("float")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

func (r *rbuf) bool() bool {
	if len(r.b) < 1 || r.b[0] > 1 {
		r.fail("bool")
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

func (r *rbuf) time() time.Time {
	sec := r.int()
	nsec := r.uint()
	if nsec >= 1e9 {
		r.fail("time")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}
