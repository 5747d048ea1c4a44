package main

import (
	"os"
	"strconv"
	"strings"
)

// cpuSample is a snapshot of CPU time in clock ticks: busy time of the whole
// machine, and of this process plus its direct children (the clusters'
// members). The difference over a row is what other processes used, which
// on a shared machine makes a row's numbers suspect.
type cpuSample struct {
	total, busy, ours uint64
}

func sampleCPU() (cpuSample, bool) {
	var s cpuSample
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 8 || f[0] != "cpu" {
		return s, false
	}
	for i, v := range f[1:] {
		if i >= 8 { // guest time is already included in user
			break
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		s.total += n
		if i != 3 && i != 4 { // idle, iowait
			s.busy += n
		}
	}
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, ticks, ok := procTicks(pid)
		if ok && (pid == self || ppid == self) {
			s.ours += ticks
		}
	}
	return s, true
}

// procTicks returns a process's parent and its user+system time.
func procTicks(pid int) (ppid int, ticks uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:])) // state ppid ... utime(12) stime(13)
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return ppid, ut + st, true
}

// otherLoad returns, between two samples, the share of the machine's CPU
// capacity used by the benchmark (with its clusters) and by everything else.
func otherLoad(a, b cpuSample) (ours, others float64) {
	total := float64(b.total - a.total)
	if total <= 0 {
		return 0, 0
	}
	busy := float64(b.busy - a.busy)
	o := float64(b.ours - a.ours)
	if o > busy {
		o = busy
	}
	return o / total, (busy - o) / total
}
