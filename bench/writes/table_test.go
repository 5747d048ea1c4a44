package writes

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func res(ops float64, p50, p99 time.Duration, errs int64) Result {
	return Result{Throughput: ops, P50: p50, P99: p99, Errors: errs}
}

func TestWriteTableOneSystem(t *testing.T) {
	var b strings.Builder
	err := WriteTable(&b, []Row{
		{"etcd", 1, res(400, 2500*time.Microsecond, 5*time.Millisecond, 0), 0.05},
		{"etcd", 256, res(8000, 30*time.Millisecond, 60*time.Millisecond, 3), 0.25},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Log("\n" + out)
	if strings.Contains(out, "during etcd@1\n") {
		t.Error("quiet row flagged")
	}
	for _, want := range []string{"system", "clients", "ops/s", "p50(ms)", "p99(ms)", "errors",
		"2.50", "5.00", "8000", "60.00", "etcd@256 vs etcd@1: throughput x20.00, p99 x12.00",
		"warning: other processes used 25% of the machine's CPU during etcd@256"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestWriteTableRatios(t *testing.T) {
	var b strings.Builder
	err := WriteTable(&b, []Row{
		{"etcd", 1, res(400, 2*time.Millisecond, 4*time.Millisecond, 0), 0},
		{"etcd", 256, res(8000, 30*time.Millisecond, 60*time.Millisecond, 0), 0},
		{"flotilla", 1, res(200, 4*time.Millisecond, 8*time.Millisecond, 0), 0},
		{"flotilla", 256, res(2000, 100*time.Millisecond, 240*time.Millisecond, 1), 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Log("\n" + out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 {
		t.Fatalf("got %d lines", len(lines))
	}
	if !strings.Contains(lines[0], "flotilla/etcd ops/s") {
		t.Errorf("header: %q", lines[0])
	}
	if f := strings.Fields(lines[1]); f[0] != "1" || f[len(f)-2] != "0.50" || f[len(f)-1] != "2.00" {
		t.Errorf("row 1: %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != "256" || f[len(f)-2] != "0.25" || f[len(f)-1] != "4.00" {
		t.Errorf("row 256: %q", lines[2])
	}
	if !strings.Contains(out, "flotilla@256 vs flotilla@1: throughput x10.00, p99 x30.00") {
		t.Errorf("missing flotilla scaling line")
	}
	if !strings.Contains(out, "target: flotilla@256 >= etcd@256: x0.25 MISSED; flotilla@256 >= 20x flotilla@1: x10.00 MISSED") {
		t.Errorf("missing target line")
	}
}

func TestWriteTableAgentColumns(t *testing.T) {
	var b strings.Builder
	err := WriteTable(&b, []Row{
		{"etcd", 1, res(400, 2*time.Millisecond, 4*time.Millisecond, 0), 0},
		{"etcd", 256, res(8000, 30*time.Millisecond, 60*time.Millisecond, 0), 0},
		{"flotilla", 1, res(400, 2*time.Millisecond, 4*time.Millisecond, 0), 0},
		{"flotilla", 256, res(9000, 25*time.Millisecond, 60*time.Millisecond, 0), 0},
		{"flotilla+agent", 1, res(200, 4*time.Millisecond, 8*time.Millisecond, 0), 0},
		{"flotilla+agent", 256, res(4000, 50*time.Millisecond, 120*time.Millisecond, 0), 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Log("\n" + out)
	lines := strings.Split(out, "\n")
	for _, want := range []string{"flotilla/etcd ops/s", "flotilla+agent/etcd ops/s", "flotilla+agent/etcd p99"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header lacks %q: %q", want, lines[0])
		}
	}
	// clients, 3x4 cells, 2x2 ratios
	if f := strings.Fields(lines[2]); len(f) != 17 || f[13] != "1.12" || f[14] != "1.00" || f[15] != "0.50" || f[16] != "2.00" {
		t.Errorf("row 256: %q", lines[2])
	}
	for _, want := range []string{
		"target: flotilla@256 >= etcd@256: x1.12 met; flotilla@256 >= 20x flotilla@1: x22.50 met",
		"target: flotilla+agent@256 >= etcd@256: x0.50 MISSED; flotilla+agent@256 >= 20x flotilla+agent@1: x20.00 met",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "target: etcd") {
		t.Error("etcd has no targets")
	}
}

// The forwarding diagnostic gets its columns but no target line.
func TestWriteTableLeaderDiagnosticHasNoTarget(t *testing.T) {
	var b strings.Builder
	err := WriteTable(&b, []Row{
		{"etcd", 1, res(400, 2*time.Millisecond, 4*time.Millisecond, 0), 0},
		{"etcd", 256, res(8000, 30*time.Millisecond, 60*time.Millisecond, 0), 0},
		{"flotilla", 1, res(400, 2*time.Millisecond, 4*time.Millisecond, 0), 0},
		{"flotilla", 256, res(6000, 25*time.Millisecond, 60*time.Millisecond, 0), 0},
		{"flotilla@leader", 1, res(450, 2*time.Millisecond, 4*time.Millisecond, 0), 0},
		{"flotilla@leader", 256, res(9000, 25*time.Millisecond, 60*time.Millisecond, 0), 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Log("\n" + out)
	if !strings.Contains(out, "flotilla@leader/etcd ops/s") || !strings.Contains(out, "flotilla@leader@256 vs flotilla@leader@1: throughput x20.00") {
		t.Errorf("no columns or scaling line for the diagnostic")
	}
	if !strings.Contains(out, "target: flotilla@256 >= etcd@256: x0.75 MISSED") {
		t.Errorf("missing flotilla's target line")
	}
	if strings.Contains(out, "target: flotilla@leader") {
		t.Error("the diagnostic got a target line")
	}
}

func TestInstanceRecord(t *testing.T) {
	for _, c := range [][2]int{{0, 0}, {255, 123456}, {7, 99999999}} {
		b := InstanceRecord(c[0], c[1])
		if n := len(b); n < 280 || n > 330 {
			t.Errorf("len = %d, want ~300", n)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Errorf("not JSON: %v\n%s", err, b)
		}
	}
}
