package main

import (
	"bufio"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// tuneGC sets the collector for a heap that is mostly long-lived records
// (every instance, operation and the watch history), which each collection
// marks again. GOGC and GOMEMLIMIT in the environment still decide.
//
// GOGC=400: at Go's default of 100 a sustained write load spent 10-15% of
// the CPU in GC; 200 about halved that, and 400, measured side by side
// with 200 (bench/cmd/flotilla-writes, 256 clients, three pairs), took
// 3-8% less CPU per write and gave 3-8% more writes per second, for a
// peak RSS about a quarter higher (684 vs 547 MB after 60k creates).
//
// So that a heap allowed to grow to five times the live records never
// costs the machine its memory, a soft limit of half the memory this
// process may use (its cgroup's limit, or the machine's) makes the
// collector run more often as the heap nears it.
//
// It returns the settings in force, for the start-up log.
func tuneGC() (gogc string, memoryLimit int64) {
	gogc = os.Getenv("GOGC")
	if gogc == "" {
		debug.SetGCPercent(400)
		gogc = "400"
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if avail := availableMemory(); avail > 0 {
			debug.SetMemoryLimit(avail / 2)
		}
	}
	return gogc, debug.SetMemoryLimit(-1) // -1 reads the limit, changing nothing
}

// availableMemory is the memory this process may use, in bytes: the
// cgroup v2 limit if one is set, else the machine's; 0 if unknown.
func availableMemory() int64 {
	var total int64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		total = memTotal(f)
		f.Close()
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if lim := cgroupLimit(string(b)); lim > 0 && (total == 0 || lim < total) {
			return lim
		}
	}
	return total
}

// memTotal reads MemTotal from /proc/meminfo, in bytes (0 if absent).
func memTotal(meminfo io.Reader) int64 {
	sc := bufio.NewScanner(meminfo)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "MemTotal" {
			continue
		}
		f := strings.Fields(rest) // "24576000 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb <= 0 {
			return 0
		}
		return kb << 10
	}
	return 0
}

// cgroupLimit parses a cgroup v2 memory.max: a byte count, or "max" (no
// limit, 0).
func cgroupLimit(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}
