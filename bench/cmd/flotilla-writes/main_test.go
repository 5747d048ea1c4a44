package main

import (
	"slices"
	"testing"
	"time"
)

func TestParseClients(t *testing.T) {
	got, err := parseClients("1, 16,256")
	if err != nil || !slices.Equal(got, []int{1, 16, 256}) {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "1,x", "-3"} {
		if _, err := parseClients(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSampleCPU(t *testing.T) {
	a, ok := sampleCPU()
	if !ok {
		t.Skip("no /proc/stat")
	}
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
	}
	b, _ := sampleCPU()
	ours, others := otherLoad(a, b)
	if ours <= 0 || ours > 1 || others < 0 || ours+others > 1.0001 {
		t.Errorf("ours=%v others=%v", ours, others)
	}
}

func TestFsyncProbe(t *testing.T) {
	p50, p99, err := fsyncProbe(t.TempDir(), 10)
	if err != nil || p50 <= 0 || p99 < p50 {
		t.Fatalf("p50=%v p99=%v err=%v", p50, p99, err)
	}
	t.Logf("p50=%v p99=%v disk=%s", p50, p99, describeDisk(t.TempDir()))
}
