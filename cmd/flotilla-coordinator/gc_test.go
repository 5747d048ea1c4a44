package main

import (
	"strings"
	"testing"
)

func TestMemTotal(t *testing.T) {
	for _, tc := range []struct {
		name, meminfo string
		want          int64
	}{
		{"debian", "MemTotal:       24576000 kB\nMemFree:        1000 kB\n", 24576000 << 10},
		{"not first", "Foo:  1 kB\nMemTotal: 2048 kB\n", 2 << 20},
		{"no unit", "MemTotal: 2048\n", 0},
		{"garbage", "MemTotal: lots kB\n", 0},
		{"MemTotalX is another key", "MemTotalX: 5 kB\n", 0},
		{"absent", "MemFree: 5 kB\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := memTotal(strings.NewReader(tc.meminfo)); got != tc.want {
				t.Errorf("memTotal = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCgroupLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"max\n":        0,
		"1073741824\n": 1 << 30,
		"0\n":          0,
		"":             0,
		"-1":           0,
	} {
		if got := cgroupLimit(in); got != want {
			t.Errorf("cgroupLimit(%q) = %d, want %d", in, got, want)
		}
	}
}
