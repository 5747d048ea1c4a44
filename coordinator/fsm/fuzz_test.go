package fsm

import (
	"bytes"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/fieldfill"
)

// applyOrStop applies data as ApplyBytes does, and reports whether it
// stopped the server on purpose: an entry that does not decode, a type
// this server does not know, or a body that does not decode (the log is
// written by the leader: corruption or a newer server's entry, and no
// replica may go on past it). Any other panic fails the test.
func applyOrStop(t *testing.T, m *FSM, data []byte) (stopped bool) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		msg, _ := r.(string)
		for _, designed := range []string{"fsm: undecodable ", "fsm: unknown command type "} {
			if strings.HasPrefix(msg, designed) {
				stopped = true
				return
			}
		}
		t.Fatalf("applying %q panicked: %v", data, r)
	}()
	m.ApplyBytes(data)
	return false
}

// FuzzLogEntry decodes any bytes as a log entry, in either format, and
// applies what decodes to a state machine: a malformed body is refused
// with an error, never a crash of every replica. (An undecodable entry or
// an unknown type stops the server on purpose: it is older than its log.)
func FuzzLogEntry(f *testing.F) {
	now := time.Date(2026, 12, 7, 1, 2, 3, 4, time.UTC)
	var all [][]byte
	for _, typ := range slices.Sorted(maps.Keys(bodies)) {
		e, err := Encode(typ, now, bodies[typ](f))
		if err != nil {
			f.Fatal(err)
		}
		all = append(all, e)
		f.Add(e)
		if legacy, err := Downgrade(e, LogVersion1); err == nil {
			f.Add(legacy)
		}
	}
	batch, _ := EncodeBatch(now, all[:4])
	f.Add(batch)
	if legacy, err := Downgrade(batch, LogVersion1); err == nil {
		f.Add(legacy)
	}
	f.Add(futureEntry("future-type", true))
	f.Add([]byte{})
	quiet := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := TypeOf(data); err == nil {
			for _, v := range []uint32{LogVersion1, SupportedLogVersion} {
				_, _ = Downgrade(data, v)
			}
		}
		if applyOrStop(t, New(state.New(0), quiet), data) {
			return
		}
		// Once more, at the newest log version, where every type applies.
		m := New(state.New(0), quiet)
		set, _ := Encode(TypeSetLogVersion, now, SetLogVersion{Version: SupportedLogVersion})
		m.ApplyBytes(set)
		applyOrStop(t, m, data)
	})
}

// FuzzSnapshot restores any bytes as a snapshot, of either format: a
// damaged snapshot is refused with an error, never a crash.
func FuzzSnapshot(f *testing.F) {
	snap := fieldfill.New[state.Snapshot](f)
	snap.Version = 1
	for _, v := range []uint32{LogVersion1, LogVersion2} {
		snap.LogVersion = v
		src := state.New(0)
		src.Load(snap)
		s, _ := New(src, nil).Snapshot()
		var sink memSink
		if err := s.Persist(&sink); err != nil {
			f.Fatal(err)
		}
		f.Add(sink.buf.Bytes())
	}
	f.Add([]byte(snapshotMarker))
	f.Add([]byte("{}"))
	quiet := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, data []byte) {
		store := state.New(0)
		if err := New(store, quiet).Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			return
		}
		// What was restored can be snapshotted again.
		s, err := New(store, quiet).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		var sink memSink
		_ = s.Persist(&sink)
		_, _ = store.Digest()
	})
}
