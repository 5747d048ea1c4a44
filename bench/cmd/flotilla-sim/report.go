package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flotilla-vm/flotilla/bench/stats"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// qualityResult is placement quality, from every instance and host as the
// coordinator lists them after the run.
type qualityResult struct {
	instances, placed   int
	hosts, usedHosts    int
	memMax, memMean     float64 // allocated / physical memory, per host
	memStd              float64
	cpuMax              float64 // allocated vCPUs / allocatable (overcommit applied)
	clusterMem          float64 // allocated / physical, whole cluster
	antiAffinity        int     // extra instances of a group on one host
	labelViolations     int     // zone=a instances on hosts without zone=a
	overfilled          int     // hosts beyond allocatable in any resource
	allocatedMismatches int     // hosts whose reported allocation differs from the sum of their instances
	statusN             map[pb.Status]int
	hostStatusN         map[pb.HostStatus]int
}

func (c *cluster) quality(ctx context.Context, o options) (qualityResult, error) {
	var q qualityResult
	hapi := pb.NewHostServiceClient(c.live())
	hosts, err := hapi.ListHosts(ctx, &pb.ListHostsRequest{})
	if err != nil {
		return q, fmt.Errorf("ListHosts: %w", err)
	}
	iapi := pb.NewInstanceServiceClient(c.live())
	var all []*pb.Instance
	for token := ""; ; {
		resp, err := iapi.ListInstances(ctx, &pb.ListInstancesRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			return q, fmt.Errorf("ListInstances: %w", err)
		}
		all = append(all, resp.Instances...)
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	type use struct{ vcpus, mem, disk uint64 }
	used := map[string]*use{}
	groups := map[[2]string]int{}
	byID := map[string]*pb.Host{}
	for _, h := range hosts.Hosts {
		byID[h.Id] = h
	}
	q.instances = len(all)
	q.statusN, q.hostStatusN = map[pb.Status]int{}, map[pb.HostStatus]int{}
	for _, h := range hosts.Hosts {
		q.hostStatusN[h.Status]++
	}
	for _, inst := range all {
		q.statusN[inst.Status]++
		if inst.HostId == "" || inst.Status == pb.Status_STATUS_DELETED {
			continue
		}
		q.placed++
		u := used[inst.HostId]
		if u == nil {
			u = &use{}
			used[inst.HostId] = u
		}
		u.vcpus += uint64(inst.Spec.Vcpus)
		u.mem += uint64(inst.Spec.MemoryMib)
		u.disk += uint64(inst.Spec.DiskGib)
		if g := inst.GetPlacement().GetAntiAffinityGroup(); g != "" {
			groups[[2]string{g, inst.HostId}]++
		}
		if want, ok := inst.GetPlacement().GetHostLabels()["zone"]; ok {
			if h := byID[inst.HostId]; h == nil || h.Labels["zone"] != want {
				q.labelViolations++
			}
		}
	}
	for _, n := range groups {
		q.antiAffinity += n - 1
	}
	var sum, sumSq, totalUsed, totalCap float64
	for _, h := range hosts.Hosts {
		q.hosts++
		u := used[h.Id]
		if u == nil {
			u = &use{}
		} else {
			q.usedHosts++
		}
		cp := h.Capacity
		m := float64(u.mem) / float64(cp.MemoryMib)
		sum += m
		sumSq += m * m
		q.memMax = max(q.memMax, m)
		totalUsed += float64(u.mem)
		totalCap += float64(cp.MemoryMib)
		cpuLim := math.Floor(float64(cp.Vcpus) * o.cpuOvercommit)
		q.cpuMax = max(q.cpuMax, float64(u.vcpus)/cpuLim)
		if float64(u.vcpus) > cpuLim || u.mem > cp.MemoryMib || (cp.DiskGib > 0 && u.disk > cp.DiskGib) {
			q.overfilled++
		}
		if a := h.Allocated; a.GetVcpus() != uint32(u.vcpus) || a.GetMemoryMib() != u.mem || a.GetDiskGib() != u.disk {
			q.allocatedMismatches++
		}
	}
	if q.hosts > 0 {
		q.memMean = sum / float64(q.hosts)
		q.memStd = math.Sqrt(max(0, sumSq/float64(q.hosts)-q.memMean*q.memMean))
	}
	if totalCap > 0 {
		q.clusterMem = totalUsed / totalCap
	}
	return q, nil
}

// memResult is the process's footprint at the end.
type memResult struct {
	rss, hwm   string // VmRSS, VmHWM from /proc/self/status
	heap       uint64
	goroutines int
}

func readMem() memResult {
	var m memResult
	m.goroutines = runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.heap = ms.HeapInuse
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		switch k {
		case "VmRSS":
			m.rss = kbToMiB(v)
		case "VmHWM":
			m.hwm = kbToMiB(v)
		}
	}
	return m
}

func kbToMiB(v string) string {
	var kb uint64
	if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
		return strings.TrimSpace(v)
	}
	return fmt.Sprintf("%.0f MiB", float64(kb)/1024)
}

type results struct {
	coordinatorUp, agentsStarted, hostsReady time.Duration
	create                                   createResult
	createPhase                              time.Duration
	running                                  runningResult
	allRunning                               time.Duration
	quality                                  qualityResult
	hostsDown                                hostsDown
	mem                                      memResult
	failover                                 failoverResult
	snapshot                                 snapshotResult
	total                                    time.Duration
	loadStart, loadEnd                       string // /proc/loadavg: other work on the machine skews every figure
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (r *results) print(out io.Writer, o options) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(k, v string, args ...any) { fmt.Fprintf(w, "%s\t%s\n", k, fmt.Sprintf(v, args...)) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", stats.Ms(d)) }
	sec := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	policy := "spread"
	if o.pack {
		policy = "pack"
	}
	fmt.Fprintln(w, "metric\tvalue")
	fmt.Fprintln(w, "------\t-----")
	agentDir := "in the run's temp dir"
	if o.agentDir != "" {
		agentDir = "under " + o.agentDir
	}
	row("setup", "%d hosts, %d instances, %d clients, %d coordinator(s), %s, cpu overcommit %g, GOMAXPROCS %d; agent journals %s",
		o.hosts, o.instances, o.clients, o.coordinators, policy, o.cpuOvercommit, runtime.GOMAXPROCS(0), agentDir)
	row("coordinator leading / agents started / all hosts READY", "%s / %s / %s", sec(r.coordinatorUp), sec(r.agentsStarted), sec(r.hostsReady))
	cr := r.create
	if r.createPhase > 0 {
		s := stats.Summarize(cr.latencies)
		row("CreateInstance acknowledged", "%d of %d (failed %d%s)", cr.acked, o.instances, cr.failed, failures(cr))
		if cr.notIssued > 0 {
			row("NOT ISSUED: create budget ran out", "%d creates not attempted after -create-budget %s", cr.notIssued, o.createBudget)
		}
		row("commit-time conflicts retried", "%d", cr.conflicts)
		row("create phase", "%s", sec(r.createPhase))
		row("placements/s (whole phase)", "%.0f", float64(cr.acked)/r.createPhase.Seconds())
		row("placements/s first 10 s / last 10 s", "%s", windows(cr.ackTimes))
		row("CreateInstance latency p50 / p99 / max", "%s / %s / %s", ms(s.P50), ms(s.P99), ms(s.Max))
	}
	if f := r.failover; f.ran {
		row("failover: leader closed", "%s after %d acknowledged creates", f.killed, f.acksBefore)
		row("failover: new leader / first ack / first ack of a create issued after", "%s / %s / %s", ms(f.elected), ms(f.firstAck), ms(f.firstStartedAck))
	}
	if rr := r.running; rr.waited {
		if rr.count >= cr.acked {
			row("all RUNNING after (from first create)", "%s", sec(r.allRunning))
		} else {
			why := fmt.Sprintf("gave up %s after the create phase", o.runningTimeout)
			if rr.streamErr != nil {
				why = fmt.Sprintf("watch broke: %v", rr.streamErr)
			}
			row("NOT ALL RUNNING", "only %d of %d; the last seen RUNNING %s after the first create (%s)", rr.count, cr.acked, sec(r.allRunning), why)
		}
		s := stats.Summarize(rr.ackToRun)
		row("acknowledged -> RUNNING p50 / p99 / max", "%s / %s / %s", ms(s.P50), ms(s.P99), ms(s.Max))
	}
	if q := r.quality; q.hosts > 0 {
		row("instances listed / placed", "%d / %d on %d of %d hosts", q.instances, q.placed, q.usedHosts, q.hosts)
		row("host memory utilisation max / mean (sd)", "%.1f%% / %.1f%% (%.1f%%); max - mean %.1f points", 100*q.memMax, 100*q.memMean, 100*q.memStd, 100*(q.memMax-q.memMean))
		row("cluster memory utilisation", "%.1f%%", 100*q.clusterMem)
		row("host vCPU utilisation max (of allocatable)", "%.1f%%", 100*q.cpuMax)
		row("anti-affinity violations", "%d", q.antiAffinity)
		row("label (zone=a) violations", "%d", q.labelViolations)
		row("overfilled hosts", "%d", q.overfilled)
		row("hosts whose allocated != sum of instances", "%d", q.allocatedMismatches)
		row("instance statuses at end", "%s", statuses(q.statusN))
		row("host statuses at end", "%s", hostStatuses(q.hostStatusN))
	}
	if hd := r.hostsDown; hd.polls > 0 {
		row("hosts seen not READY during the run", "%d distinct, at most %d at once (%d polls of ListHosts, %d failed)", hd.distinct, hd.maxAtOnce, hd.polls, hd.pollErrors)
	}
	if r.mem.goroutines > 0 {
		row("RSS at end (peak)", "%s (%s), heap in use %.0f MiB", r.mem.rss, r.mem.hwm, float64(r.mem.heap)/(1<<20))
		row("goroutines at end", "%d", r.mem.goroutines)
		if n := r.quality.instances; n > 0 {
			row("heap in use per instance (whole process: coordinators and agents)", "%.1f KiB", float64(r.mem.heap)/1024/float64(n))
		}
	}
	if sn := r.snapshot; sn.bytes > 0 || sn.err != nil {
		row("leader state snapshot: size / written in / Raft snapshot in", "%.1f MiB / %s / %s (err %v)", float64(sn.bytes)/(1<<20), ms(sn.encodeTook), ms(sn.raftTook), sn.err)
	}
	if r.total > 0 {
		row("total (before teardown)", "%s", sec(r.total))
	}
	row("machine load average at start / end", "%s / %s (%d CPUs)", r.loadStart, r.loadEnd, runtime.NumCPU())
	w.Flush()
}

func failures(cr createResult) string {
	if cr.failed == 0 {
		return ""
	}
	var parts []string
	for k, v := range cr.errors {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(parts)
	return ": " + strings.Join(parts, ", ") + "; first: " + cr.firstErr
}

// windows is the acknowledgement rate in the first and the last 10 s.
func windows(acks []time.Time) string {
	if len(acks) == 0 {
		return "-"
	}
	s := slices.SortedFunc(slices.Values(acks), func(a, b time.Time) int { return a.Compare(b) })
	first, last := s[0], s[len(s)-1]
	win := min(10*time.Second, last.Sub(first))
	if win < time.Second {
		return "-"
	}
	var a, b int
	for _, t := range s {
		if t.Sub(first) < win {
			a++
		}
		if last.Sub(t) < win {
			b++
		}
	}
	return fmt.Sprintf("%.0f / %.0f", float64(a)/win.Seconds(), float64(b)/win.Seconds())
}

func hostStatuses(m map[pb.HostStatus]int) string {
	var parts []string
	for s, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(s.String(), "HOST_STATUS_"), n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func statuses(m map[pb.Status]int) string {
	var parts []string
	for s, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(s.String(), "STATUS_"), n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
