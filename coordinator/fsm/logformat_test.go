package fsm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/fieldfill"
	raftv1 "github.com/flotilla-vm/flotilla/proto/flotilla/raft/v1"
)

// bodies holds a body of every command type: a new type must be added here
// (TestCommandsRoundTrip fails until it is).
var bodies = map[string]func(testing.TB) any{
	TypeCreateInstance: func(t testing.TB) any { return fieldfill.New[CreateInstance](t) },
	TypeInstanceAction: func(t testing.TB) any { return fieldfill.New[InstanceAction](t) },
	TypeDispatch:       func(t testing.TB) any { return fieldfill.New[Dispatch](t) },
	TypeFinish:         func(t testing.TB) any { return fieldfill.New[Finish](t) },
	TypeCancel:         func(t testing.TB) any { return fieldfill.New[Cancel](t) },
	TypeRegisterHost:   func(t testing.TB) any { return fieldfill.New[RegisterHost](t) },
	TypeDisconnectHost: func(t testing.TB) any { return fieldfill.New[DisconnectHost](t) },
	TypeObserve:        func(t testing.TB) any { return fieldfill.New[Observe](t) },
	TypeRegisterServer: func(t testing.TB) any { return fieldfill.New[RegisterServer](t) },
	TypeRemoveServer:   func(t testing.TB) any { return fieldfill.New[RemoveServer](t) },
	TypeCordonHost:     func(t testing.TB) any { return fieldfill.New[CordonHost](t) },
	TypeDrainHost:      func(t testing.TB) any { return fieldfill.New[DrainHost](t) },
	TypeRecover:        func(t testing.TB) any { return fieldfill.New[Recover](t) },
	TypePlace:          func(t testing.TB) any { return fieldfill.New[Place](t) },
	TypePreempt:        func(t testing.TB) any { return fieldfill.New[Preempt](t) },
	TypePrune:          func(t testing.TB) any { return fieldfill.New[Prune](t) },
	TypeStartUsage:     func(t testing.TB) any { return fieldfill.New[StartUsage](t) },
	TypeCopyProgress:   func(t testing.TB) any { return fieldfill.New[CopyProgress](t) },
	TypeSetLogVersion:  func(t testing.TB) any { return fieldfill.New[SetLogVersion](t) },
	TypeCreateNetwork:  func(t testing.TB) any { return fieldfill.New[CreateNetwork](t) },
	TypeDeleteNetwork:  func(t testing.TB) any { return fieldfill.New[DeleteNetwork](t) },
	TypeGuestReport:    func(t testing.TB) any { return fieldfill.New[GuestReport](t) },
	TypeStrand:         func(t testing.TB) any { return fieldfill.New[Strand](t) },
}

// Every field of every command survives its log form, format 2; and, for
// the types format 1 has, the entry downgraded to format 1 decodes to the
// same body as a JSON round trip of it (format 1's own reference).
func TestCommandsRoundTrip(t *testing.T) {
	if got, want := slices.Sorted(maps.Keys(bodies)), slices.Sorted(maps.Keys(commands)); !slices.Equal(got, want) {
		t.Fatalf("the test covers %v, the table holds %v", got, want)
	}
	now := time.Date(2026, 12, 7, 1, 2, 3, 4, time.UTC)
	for typ, body := range bodies {
		want := body(t)
		entry, err := Encode(typ, now, want)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		e, err := decodeEntry(entry)
		if err != nil || e.typ != typ || e.format != LogVersion2 || e.version != 1 || !e.now.Equal(now) {
			t.Fatalf("%s: decoded %+v %v", typ, e, err)
		}
		got, err := commands[typ].legacy(e.body)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s does not survive format 2:\n got %+v\nwant %+v", typ, got, want)
		}
		if commands[typ].minVersion > LogVersion1 {
			if _, err := Downgrade(entry, LogVersion1); !errors.Is(err, ErrUnsupported) {
				t.Errorf("%s downgraded to version 1: %v", typ, err)
			}
			continue
		}
		old, err := Downgrade(entry, LogVersion1)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		e1, err := decodeEntry(old)
		if err != nil || e1.format != LogVersion1 || e1.typ != typ || !e1.now.Equal(now) {
			t.Fatalf("%s: downgraded entry %+v %v", typ, e1, err)
		}
		if same, _ := Downgrade(entry, LogVersion2); !bytes.Equal(same, entry) {
			t.Errorf("%s: Downgrade to the entry's own version changed it", typ)
		}
	}
}

// An entry written in format 1 and the same command in format 2 leave
// replicas in the same state, for a run of commands of every kind that
// applies.
func TestFormatsApplyAlike(t *testing.T) {
	create := fullCreate()
	create.Instance.HostID = "h1"
	cmds := []struct {
		typ  string
		body any
	}{
		{TypeStartUsage, StartUsage{}},
		{TypeRegisterHost, RegisterHost{Host: state.Host{ID: "h1", Kind: "fake", Labels: map[string]string{"zone": "a", "rack": "7"}, Capacity: state.Resources{VCPUs: 4, MemoryMiB: 4096, DiskGiB: 100}}}},
		{TypeCreateInstance, create},
		{TypeCordonHost, CordonHost{HostID: "h1", Cordon: true}},
		{TypeCancel, Cancel{OperationID: "op-i1"}},
	}
	digest := func(version uint32) string {
		h := newHarness(t)
		var entries [][]byte
		for i, c := range cmds {
			e, err := Encode(c.typ, t0.Add(time.Duration(i)*time.Second), c.body)
			if err != nil {
				t.Fatal(err)
			}
			if e, err = Downgrade(e, version); err != nil {
				t.Fatal(err)
			}
			entries = append(entries, e)
		}
		h.fsm.ApplyBytes(entries[0])
		batch, err := EncodeBatch(t0, entries[1:])
		if err != nil {
			t.Fatal(err)
		}
		if e, _ := decodeEntry(batch); e.format != version {
			t.Fatalf("a batch of format-%d entries is of format %d", version, e.format)
		}
		for _, r := range h.fsm.ApplyBytes(batch).Value.([]Result) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		d, _ := h.store.Digest()
		return d
	}
	if a, b := digest(LogVersion1), digest(LogVersion2); a != b {
		t.Fatalf("format 1 gives digest %s, format 2 %s", a, b)
	}
}

// A batch downgraded to version 1 holds format-1 entries; a batch holding
// a command version 1 does not admit is refused whole.
func TestDowngradeBatch(t *testing.T) {
	withNewerType(t)
	a, _ := Encode(TypeCancel, t0, Cancel{OperationID: "op-1"})
	b, _ := Encode(typeNewer, t0, Cancel{OperationID: "op-2"})
	ok, _ := EncodeBatch(t0, [][]byte{a, a})
	old, err := Downgrade(ok, LogVersion1)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := decodeEntry(old)
	cmds, err := splitEntries(e)
	if err != nil || e.format != LogVersion1 || len(cmds) != 2 {
		t.Fatalf("%+v %d %v", e, len(cmds), err)
	}
	for _, c := range cmds {
		if ce, err := decodeEntry(c); err != nil || ce.format != LogVersion1 || ce.typ != TypeCancel {
			t.Fatalf("%+v %v", ce, err)
		}
	}
	mixed, _ := EncodeBatch(t0, [][]byte{a, b})
	if _, err := Downgrade(mixed, LogVersion1); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("a batch holding %s at version 1: %v", typeNewer, err)
	}
	if _, err := Downgrade([]byte{entryMarker, 0xFF}, LogVersion1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a broken entry: %v", err)
	}
}

// typeNewer stands for a command type that log version 2 admits and 1
// does not (none is, yet: this release introduced version 2).
const typeNewer = "test.newer"

func withNewerType(t *testing.T) {
	commands[typeNewer] = def(LogVersion2, newPB[raftv1.Cancel], applyCancel)
	t.Cleanup(func() { delete(commands, typeNewer) })
}

// A type a newer log version admits is refused while the cluster is
// older, and proposed as it is from that version.
func TestDowngradeRefusesNewerTypes(t *testing.T) {
	withNewerType(t)
	e, err := Encode(typeNewer, t0, Cancel{OperationID: "op-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Downgrade(e, LogVersion1); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "needs log version 2") {
		t.Fatalf("at version 1: %v", err)
	}
	if d, err := Downgrade(e, LogVersion2); err != nil || !bytes.Equal(d, e) {
		t.Fatalf("at version 2: %v", err)
	}
}

// futureEntry is an entry of a type this server does not know, as a newer
// release would write it.
func futureEntry(typ string, ignorable bool) []byte {
	return appendEntry(nil, typ, ignorable, t0, []byte{1, 2, 3})
}

// A newer server's command flagged ignorable is skipped by every replica
// alike; one that is not stops the replica (it cannot apply the log
// faithfully, and must be upgraded) rather than diverge silently.
func TestUnknownEntries(t *testing.T) {
	h := newHarness(t)
	before, rev := h.store.Digest()
	if r := h.fsm.ApplyBytes(futureEntry("volume.attach", true)); r.Err != nil || r.Value != nil {
		t.Fatalf("ignorable entry: %+v", r)
	}
	if after, rev2 := h.store.Digest(); after != before || rev2 != rev {
		t.Fatal("an ignored entry changed the state")
	}
	// Inside a batch too; the batch's other commands apply.
	c, _ := Encode(TypeStartUsage, t0, StartUsage{})
	batch, _ := EncodeBatch(t0, [][]byte{futureEntry("volume.attach", true), c})
	if rs := h.fsm.ApplyBytes(batch).Value.([]Result); len(rs) != 2 || rs[1].Value != true {
		t.Fatalf("batch results %+v", rs)
	}
	// A known type whose body is of a newer schema is unknown too.
	newer := appendEntry(nil, TypeCancel, false, t0, nil)
	newer = bytes.Replace(newer, []byte{2 << 3, 1}, []byte{2 << 3, 2}, 1)
	for name, e := range map[string][]byte{"unknown type": futureEntry("volume.attach", false), "newer body": newer} {
		func() {
			defer func() {
				if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "upgrade it") {
					t.Errorf("%s: applied or failed without saying why: %v", name, p)
				}
			}()
			h.fsm.ApplyBytes(e)
		}()
	}
}

// The log version rises through SetLogVersion, never falls, and refuses a
// version this server does not support.
func TestSetLogVersion(t *testing.T) {
	h := newHarness(t)
	if v := h.fsm.LogVersion(); v != LogVersion1 {
		t.Fatalf("a new cluster is at version %d", v)
	}
	h.apply(TypeSetLogVersion, SetLogVersion{Version: 2})
	h.apply(TypeSetLogVersion, SetLogVersion{Version: 1})
	if v := h.fsm.LogVersion(); v != LogVersion2 {
		t.Fatalf("version %d after raising to 2 and asking for 1", v)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a version this server does not support was applied")
		}
	}()
	h.apply(TypeSetLogVersion, SetLogVersion{Version: SupportedLogVersion + 1})
}

func persist(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil || sink.canceled || !sink.closed {
		t.Fatal(err)
	}
	return sink.buf.Bytes()
}

// Every record of a snapshot survives format 2, field by field; a replica
// restored from it has the state digest of the one that wrote it.
func TestSnapshotRoundTrip(t *testing.T) {
	snap := fieldfill.New[state.Snapshot](t)
	snap.Version, snap.LogVersion = 1, LogVersion2
	src := state.New(0)
	src.Load(snap)
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, src.View()); err != nil {
		t.Fatal(err)
	}
	got, err := readSnapshot(bufio.NewReader(bytes.NewReader(buf.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	want := src.View().Snapshot()
	got.Version = want.Version
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("snapshot round trip:\n got %+v\nwant %+v", got, want)
	}
	dst := state.New(0)
	dst.Load(got)
	if a, _ := src.Digest(); a != func() string { d, _ := dst.Digest(); return d }() {
		t.Fatal("restored state differs")
	}
	// Cut anywhere, it is refused rather than restored in part.
	full := buf.Bytes()
	for _, n := range []int{len(snapshotMarker), len(snapshotMarker) + 1, len(full) / 2, len(full) - 1} {
		if _, err := readSnapshot(bufio.NewReader(bytes.NewReader(full[:n]))); err == nil {
			t.Fatalf("a snapshot cut at %d of %d bytes was read", n, len(full))
		}
	}
}

// Persist writes format 1 until the cluster is at version 2 (followers of
// the older release may be sent it), format 2 from then; Restore reads
// either.
func TestSnapshotFormatFollowsLogVersion(t *testing.T) {
	h := newHarness(t)
	h.apply(TypeRegisterHost, RegisterHost{Host: state.Host{ID: "h1", Kind: "fake", Capacity: state.Resources{VCPUs: 4, MemoryMiB: 4096, DiskGiB: 100}}})
	h.apply(TypeCreateInstance, fullCreate())
	for _, v := range []uint32{LogVersion1, LogVersion2} {
		if v == LogVersion2 {
			h.apply(TypeSetLogVersion, SetLogVersion{Version: v})
		}
		b := persist(t, h.fsm)
		if isV2 := bytes.HasPrefix(b, []byte(snapshotMarker)); isV2 != (v == LogVersion2) {
			t.Fatalf("at log version %d the snapshot starts %q", v, b[:min(len(b), 12)])
		}
		want, _ := h.store.Digest()
		store := state.New(0)
		if err := New(store, slog.New(slog.DiscardHandler)).Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
			t.Fatal(err)
		}
		if got, _ := store.Digest(); got != want {
			t.Fatalf("version %d snapshot restores another state", v)
		}
		if store.LogVersion() != h.store.LogVersion() {
			t.Fatalf("log version %d restored as %d", h.store.LogVersion(), store.LogVersion())
		}
	}
}

// An entry after its marker is the Entry message of log.proto, so any
// protobuf tool can read the log.
func TestEntryIsTheProto(t *testing.T) {
	e, _ := Encode(TypeCancel, t0, Cancel{OperationID: "op-9"})
	var m raftv1.Entry
	if err := proto.Unmarshal(e[1:], &m); err != nil {
		t.Fatal(err)
	}
	var body raftv1.Cancel
	if err := proto.Unmarshal(m.Body, &body); err != nil || m.Type != TypeCancel || m.Version != 1 || m.Ignorable ||
		m.TimeUnixNano != t0.UnixNano() || body.OperationId != "op-9" {
		t.Fatalf("%+v %+v %v", &m, &body, err)
	}
}

// A batch's entries read in place are the Batch message's, as protobuf
// decodes them; a broken batch is refused.
func TestSplitEntriesIsTheProto(t *testing.T) {
	a, _ := Encode(TypeCancel, t0, Cancel{OperationID: "op-1"})
	b, _ := Encode(TypeStartUsage, t0, StartUsage{})
	batch, _ := EncodeBatch(t0, [][]byte{a, b, a})
	e, err := decodeEntry(batch)
	if err != nil {
		t.Fatal(err)
	}
	got, err := splitEntries(e)
	var want raftv1.Batch
	if err != nil || proto.Unmarshal(e.body, &want) != nil || len(got) != len(want.Entries) {
		t.Fatalf("%d entries (%v), want %d", len(got), err, len(want.Entries))
	}
	for k := range got {
		if !bytes.Equal(got[k], want.Entries[k]) {
			t.Fatalf("entry %d differs", k)
		}
	}
	for n := 1; n < len(e.body); n++ {
		cut := e
		cut.body = e.body[:n]
		if cmds, err := splitEntries(cut); err == nil && len(cmds) == 3 {
			t.Fatalf("a batch cut at %d of %d bytes split into 3 entries", n, len(e.body))
		}
	}
}
