package fsm

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/scheduler"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// BenchmarkApplyCreateBatch applies batches of 32 creates, as the group
// committer proposes them under load, to a store that already holds
// 50,000 instances waiting for capacity (the write benchmark's state at its
// 256-client row). Every replica pays this for every create.
func BenchmarkApplyCreateBatch(b *testing.B) {
	const batch, preload = 32, 50000
	st := state.New(0)
	f := New(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
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
	entries := make([][]byte, b.N)
	for i := range entries {
		entries[i] = entry()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range entries {
		res := f.ApplyBytes(entries[i])
		if rs := res.Value.([]Result); rs[0].Err != nil {
			b.Fatal(rs[0].Err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/create")
}
