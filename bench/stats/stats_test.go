package stats

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	got := Summarize(s)
	want := Summary{N: 100, Mean: 50500 * time.Microsecond, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond,
		P99: 99 * time.Millisecond, Max: 100 * time.Millisecond, Min: time.Millisecond}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if s[0] != 100*time.Millisecond {
		t.Fatal("Summarize sorted its input")
	}
	five := Summarize([]time.Duration{5, 1, 4, 2, 3})
	if five.P50 != 3 || five.P90 != 5 || five.P99 != 5 {
		t.Fatalf("n=5: %+v", five)
	}
	if (Summarize(nil) != Summary{}) {
		t.Fatal("empty input")
	}
}
