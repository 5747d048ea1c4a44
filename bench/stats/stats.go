// Package stats summarises duration samples: count, mean and nearest-rank
// percentiles.
package stats

import (
	"math"
	"slices"
	"time"
)

// Summary describes a set of samples.
type Summary struct {
	N                  int
	Mean               time.Duration
	P50, P90, P99, Max time.Duration
	Min                time.Duration
}

// Summarize computes the summary of samples (which it does not modify).
// An empty input gives the zero Summary.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Summary{
		N:    len(s),
		Mean: sum / time.Duration(len(s)),
		P50:  Percentile(s, 50),
		P90:  Percentile(s, 90),
		P99:  Percentile(s, 99),
		Max:  s[len(s)-1],
		Min:  s[0],
	}
}

// Percentile is the nearest-rank p-th percentile of sorted: the smallest
// sample with at least p% of the samples at or below it.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// Ms is d in milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
