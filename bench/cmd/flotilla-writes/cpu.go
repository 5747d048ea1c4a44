package main

import (
	"fmt"
	"os"
	"sort"
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

// childTicks returns the user+system time of this process ("bench") and of
// each direct child, keyed by pid, with a short name: the binary plus its
// --node-id, --host-id or --name ("flotilla-coordinator c1", "etcd m0").
func childTicks() map[int]namedTicks {
	out := map[int]namedTicks{}
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, ticks, ok := procTicks(pid)
		if !ok || (pid != self && ppid != self) {
			continue
		}
		name := "bench"
		if pid != self {
			name = procName(pid)
		}
		out[pid] = namedTicks{name, ticks}
	}
	return out
}

type namedTicks struct {
	name  string
	ticks uint64
}

func procName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return strconv.Itoa(pid)
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	name := args[0]
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	for i, a := range args {
		for _, f := range []string{"--node-id", "--host-id", "--name"} {
			if v, ok := strings.CutPrefix(a, f+"="); ok {
				return name + " " + v
			}
			if a == f && i+1 < len(args) {
				return name + " " + args[i+1]
			}
		}
	}
	return name
}

// cpuBreakdown formats each process's share of one core between two
// childTicks samples taken wall apart, busiest first.
func cpuBreakdown(a, b map[int]namedTicks, wall float64, leaderPid int) string {
	type share struct {
		name string
		pct  float64
	}
	var shares []share
	for pid, nb := range b {
		d := ticksBetween(a, b, pid)
		name := nb.name
		if pid == leaderPid {
			name += " (leader)"
		}
		shares = append(shares, share{name, 100 * float64(d) / clockTicks / wall})
	}
	sort.Slice(shares, func(i, j int) bool { return shares[i].pct > shares[j].pct })
	var parts []string
	for _, s := range shares {
		if s.pct >= 1 {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", s.name, s.pct))
		}
	}
	return strings.Join(parts, ", ")
}

// clusterCPU is the CPU time, in seconds, the benchmark's child processes
// (the cluster, not the benchmark itself) used between a and b.
func clusterCPU(a, b map[int]namedTicks) float64 {
	self := os.Getpid()
	var ticks uint64
	for pid := range b {
		if pid != self {
			ticks += ticksBetween(a, b, pid)
		}
	}
	return float64(ticks) / clockTicks
}

// ticksBetween is the CPU ticks process pid used between samples a and b.
func ticksBetween(a, b map[int]namedTicks, pid int) uint64 {
	d := b[pid].ticks - a[pid].ticks
	if d > b[pid].ticks { // a new process (or a reused pid) counts from 0
		d = b[pid].ticks
	}
	return d
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100
