package e2e

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestBenchResizeDowntime is the resize downtime benchmark (make
// bench-resize; bench/README.md), not a test: it runs only when
// FLOTILLA_BENCH=resize. On the test bed, a running guest with a 2 GiB disk
// written through is moved cold (stop, copy the whole disk, start: the full
// offline copy), then resized back while 10 % of its disk (205 MiB) is
// written during the bulk copy, pair after pair. Downtime is from the guest
// off (its stop step ended) to the guest running at the new place and
// shape (the start step ended), from the operation's own step times.
func TestBenchResizeDowntime(t *testing.T) {
	if os.Getenv("FLOTILLA_BENCH") != "resize" {
		t.Skip("a benchmark: run it with make bench-resize")
	}
	rounds := 3
	if n := os.Getenv("FLOTILLA_BENCH_ROUNDS"); n != "" {
		fmt.Sscan(n, &rounds)
	}
	flags := []string{"--copy-compression=off"} // pattern data would compress to nothing
	if lim := os.Getenv("FLOTILLA_BENCH_RATE"); lim != "" {
		flags = append(flags, "--copy-rate-limit="+lim)
	}
	e := newTestbedEnvWith(t, flags...)
	dstAgent := e.startAgent(e.dst, flags...)
	op := e.do("CreateInstance", map[string]any{"name": "bench", "spec": map[string]any{"vcpus": 1, "memoryMib": 192, "diskGib": 2, "image": "flotilla-test"}})
	e.mustSucceed(op)
	id := testenv.Str(op, "instanceId")
	e.waitGuestReady(id, 1)
	const chunk = 256 << 20
	for off := int64(0); off < 2<<30; off += chunk {
		testenv.GuestDiskWrite(t, e.src.URI(), id, byte(0x11+off/chunk), off, chunk)
	}

	var moves, resizes []time.Duration
	var breakdown []string
	host := map[bool]testenv.TestbedHost{false: e.src, true: e.dst}
	runDir := map[bool]string{false: e.agent.RunDir, true: dstAgent.RunDir}
	there, vcpus := false, 1
	// Before each stop, the guest listens for the power button: its stop is
	// a clean shutdown, not a wait for the grace to end. Each operation
	// leaves a domain booted once on the host it went to (its console log
	// starts anew with it).
	ready := func() {
		readyIn(t, runDir[there], id, 1)
	}
	for r := 0; r < rounds; r++ {
		ready()
		// The full offline copy: a cold move.
		there = !there
		mv := e.g.MustCall("flotilla.v1.InstanceService/MoveInstance", map[string]any{"id": id, "targetHostId": host[there].Name, "gracefulTimeout": "30s"})
		done := e.waitOp(testenv.Str(mv, "id"))
		e.mustSucceed(done)
		ready()
		moves = append(moves, downtime(t, done, "stop-on-source", "start-on-target"))
		breakdown = append(breakdown, fmt.Sprintf("round %d move:   %s", r+1, stepTimes(done)))

		// The resize back, 10 % of the disk written while the base travels.
		from := host[there]
		there, vcpus = !there, 3-vcpus
		rs := e.g.MustCall("flotilla.v1.InstanceService/ResizeInstance", map[string]any{"id": id, "vcpus": vcpus,
			"targetHostId": host[there].Name, "gracefulTimeout": "30s"})
		opID := testenv.Str(rs, "id")
		e.waitStep(opID, "copy-base-to-target")
		testenv.GuestDiskWrite(t, from.URI(), id, byte(0x80+r), int64(r)<<28, 205<<20)
		if cur := testenv.Str(e.g.MustCall("flotilla.v1.OperationService/GetOperation", map[string]any{"id": opID}), "step"); cur != "copy-base-to-target" {
			t.Fatalf("the writes outlasted the bulk copy (now at %s): not a valid round", cur)
		}
		done = e.waitOp(opID)
		e.mustSucceed(done)
		resizes = append(resizes, downtime(t, done, "stop-on-source", "start-on-target"))
		breakdown = append(breakdown, fmt.Sprintf("round %d resize: %s", r+1, stepTimes(done)))
		e.mustSucceed(e.do("ConfirmResize", map[string]any{"id": id}))
	}
	med := func(d []time.Duration) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
		return s[len(s)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "resize downtime, 2 GiB disk written through, 205 MiB written during the bulk copy (%d rounds, copy rate limit %q)\n", rounds, os.Getenv("FLOTILLA_BENCH_RATE"))
	fmt.Fprintf(&b, "%-8s %-22s %-22s %s\n", "round", "full offline copy", "resize", "ratio")
	for i := range moves {
		fmt.Fprintf(&b, "%-8d %-22s %-22s %.3f\n", i+1, moves[i].Round(time.Millisecond), resizes[i].Round(time.Millisecond), resizes[i].Seconds()/moves[i].Seconds())
	}
	ratio := med(resizes).Seconds() / med(moves).Seconds()
	verdict := "met"
	if ratio > 0.1 {
		verdict = "MISSED"
	}
	fmt.Fprintf(&b, "%-8s %-22s %-22s %.3f (target <= 0.1: %s)\n", "median", med(moves).Round(time.Millisecond), med(resizes).Round(time.Millisecond), ratio, verdict)
	fmt.Fprintf(&b, "steps (wall time each):\n  %s\n", strings.Join(breakdown, "\n  "))
	fmt.Print(b.String())
	t.Log("\n" + b.String())
}

// downtime is the time from the end of step off to the end of step on of a
// finished operation (grpcurl's JSON).
func downtime(t *testing.T, op map[string]any, off, on string) time.Duration {
	t.Helper()
	var down, up time.Time
	steps, _ := op["steps"].([]any)
	for _, s := range steps {
		s, _ := s.(map[string]any)
		end, err := time.Parse(time.RFC3339Nano, testenv.Str(s, "endTime"))
		switch testenv.Str(s, "name") {
		case off:
			down = end
		case on:
			up = end
		default:
			continue
		}
		if err != nil {
			t.Fatalf("step %s: end time: %v", testenv.Str(s, "name"), err)
		}
	}
	if down.IsZero() || up.IsZero() {
		t.Fatalf("no %s or %s in %v", off, on, testenv.Str(op, "steps"))
	}
	return up.Sub(down)
}

// stepTimes lists each step of a finished operation with how long it took.
func stepTimes(op map[string]any) string {
	var out []string
	steps, _ := op["steps"].([]any)
	for _, s := range steps {
		s, _ := s.(map[string]any)
		start, err1 := time.Parse(time.RFC3339Nano, testenv.Str(s, "startTime"))
		end, err2 := time.Parse(time.RFC3339Nano, testenv.Str(s, "endTime"))
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s", testenv.Str(s, "name"), end.Sub(start).Round(time.Millisecond)))
	}
	return strings.Join(out, ", ")
}
