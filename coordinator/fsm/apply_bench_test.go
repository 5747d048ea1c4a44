package fsm

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// BenchmarkApplyCreateBatch applies batches of 32 creates, as the group
// committer proposes them under load, to a store that already holds
// 50,000 instances waiting for capacity (the write benchmark's state at its
// 256-client row). Every replica pays this for every create.
//
// Both log formats, side by side: format 2 (protobuf) is what a cluster
// writes once every server is upgraded, format 1 what 0.13 wrote.
func BenchmarkApplyCreateBatch(b *testing.B) {
	for _, v := range []uint32{LogVersion1, LogVersion2} {
		b.Run(fmt.Sprintf("format=%d", v), func(b *testing.B) { benchmarkApplyCreateBatch(b, v) })
	}
}

func benchmarkApplyCreateBatch(b *testing.B, version uint32) {
	const batch, preload = 32, 50000
	f, entry := createLoad(b, batch, preload, version)
	entries := make([][]byte, b.N)
	for i := range entries {
		entries[i] = entry()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range entries {
		res := f.ApplyBytes(entries[i])
		if rs := res.Value.([]Result); rs[0].Err != nil {
			b.Fatal(rs[0].Err)
		}
		entries[i] = nil // only what the state keeps counts as retained
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/create")
	// What the state keeps per create, once garbage is collected: the
	// live heap a coordinator grows by with every create, which its
	// collector marks on every cycle and which the OS faults in page by
	// page (times 1+GOGC/100 between collections).
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N*batch), "retained-B/create")
	runtime.KeepAlive(f)
}

// BenchmarkSnapshot takes a snapshot of 50,000 created instances: "take"
// is the part that holds the FSM (and the store's lock) back, "persist"
// the encoding Raft runs beside the applies.
func BenchmarkSnapshot(b *testing.B) {
	for _, v := range []uint32{LogVersion1, LogVersion2} {
		b.Run(fmt.Sprintf("format=%d", v), func(b *testing.B) { benchmarkSnapshot(b, v) })
	}
}

// loadAt is createLoad's FSM with the cluster at log version v, so that
// its snapshots are written in format v.
func loadAt(b *testing.B, v uint32) *FSM {
	f, _ := createLoad(b, 32, 50000, v)
	if v >= LogVersion2 {
		e, _ := Encode(TypeSetLogVersion, time.Now(), SetLogVersion{Version: v})
		if r := f.ApplyBytes(e); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	return f
}

func benchmarkSnapshot(b *testing.B, v uint32) {
	f := loadAt(b, v)
	b.Run("take", func(b *testing.B) {
		for b.Loop() {
			if _, err := f.Snapshot(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("persist", func(b *testing.B) {
		for b.Loop() {
			s, err := f.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			sink := &discardSink{}
			if err := s.Persist(sink); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(sink.n), "bytes")
		}
	})
}

type discardSink struct{ n int }

func (d *discardSink) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }
func (d *discardSink) Close() error                { return nil }
func (d *discardSink) ID() string                  { return "discard" }
func (d *discardSink) Cancel() error               { return nil }

// BenchmarkEncodeCreate encodes a create as the leader does for every
// write: in format 2, and rewritten in format 1 (as while some server is
// older), against 0.13's direct format-1 encoding.
func BenchmarkEncodeCreate(b *testing.B) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	c := CreateInstance{
		Policy:    scheduler.Policy{CPUOvercommit: 1, MemoryOvercommit: 1, DiskOvercommit: 1},
		Instance:  state.Instance{ID: "i-w-1", Name: "w-1", Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "flotilla-test"}},
		Operation: state.Operation{ID: "op-w-1", InstanceID: "i-w-1", RequestID: "w-1", Deadline: now.Add(time.Hour)},
	}
	for _, tc := range []struct {
		name string
		fn   func() ([]byte, error)
	}{
		{"format=2", func() ([]byte, error) { return Encode(TypeCreateInstance, now, &c) }},
		{"format=2-downgraded-to-1", func() ([]byte, error) {
			e, err := Encode(TypeCreateInstance, now, &c)
			if err != nil {
				return nil, err
			}
			return Downgrade(e, LogVersion1)
		}},
		{"format=1-direct", func() ([]byte, error) { return encodeLegacy(TypeCreateInstance, now, &c) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// createLoad returns an FSM holding preload creates waiting for capacity,
// and a function building the next batch entry of creates.
func createLoad(b *testing.B, batch, preload int, version uint32) (*FSM, func() []byte) {
	st := state.New(0)
	f := New(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	// As on every cluster once a leader is elected: usage is recorded.
	if start, err := Encode(TypeStartUsage, now, StartUsage{}); err != nil || f.ApplyBytes(start).Value != true {
		b.Fatalf("usage.start: %v", err)
	}
	n := 0
	entry := func() []byte {
		cmds := make([][]byte, batch)
		for i := range cmds {
			id := fmt.Sprintf("w-%d", n)
			n++
			c := CreateInstance{
				Policy:    scheduler.Policy{CPUOvercommit: 1, MemoryOvercommit: 1, DiskOvercommit: 1},
				Instance:  state.Instance{ID: "i-" + id, Name: id, Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "flotilla-test"}},
				Operation: state.Operation{ID: "op-" + id, InstanceID: "i-" + id, RequestID: id, Deadline: now.Add(time.Hour)},
			}
			cmd, err := Encode(TypeCreateInstance, now, &c)
			if err == nil {
				cmd, err = Downgrade(cmd, version)
			}
			if err != nil {
				b.Fatal(err)
			}
			cmds[i] = cmd
		}
		e, _ := EncodeBatch(now, cmds)
		return e
	}
	for n < preload {
		f.ApplyBytes(entry())
	}
	return f, entry
}

// BenchmarkRestore restores a snapshot of 50,000 created instances, as a
// restarted coordinator or a follower catching up does.
func BenchmarkRestore(b *testing.B) {
	for _, v := range []uint32{LogVersion1, LogVersion2} {
		b.Run(fmt.Sprintf("format=%d", v), func(b *testing.B) { benchmarkRestore(b, v) })
	}
}

func benchmarkRestore(b *testing.B, v uint32) {
	f := loadAt(b, v)
	s, err := f.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	sink := &memSink{}
	if err := s.Persist(sink); err != nil {
		b.Fatal(err)
	}
	data := sink.buf.Bytes()
	b.ReportMetric(float64(len(data)), "bytes")
	for b.Loop() {
		if err := New(state.New(0), nil).Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			b.Fatal(err)
		}
	}
}
