package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-vm/flotilla/bench/writes"
)

// committer is a Target that can tell its Raft commit index (FlotillaTarget).
type committer interface {
	CommitIndex(ctx context.Context) (uint64, error)
}

// leaderPider is a Target that can tell which process leads (FlotillaTarget).
type leaderPider interface {
	LeaderPid(ctx context.Context) int
}

// memberPider is a Target that can tell its members' processes (FlotillaTarget).
type memberPider interface {
	Pids() []int
}

// perfPids are the processes --perf-dir records for a row: the leader, or
// with --perf-members every member (a write's CPU is spread over all
// three: followers relay it and apply it too).
func perfPids(t writes.Target, leaderPid int, members bool) []int {
	if mp, ok := t.(memberPider); ok && members {
		var out []int
		for _, p := range mp.Pids() {
			if p > 0 {
				out = append(out, p)
			}
		}
		return out
	}
	if leaderPid > 0 {
		return []int{leaderPid}
	}
	return nil
}

// startPerf records pids with `perf record -g` during the measured window
// of a row (after the warmup), if dir is set and any pid is known. The
// returned function waits for perf and returns the data file.
func startPerf(dir string, pids []int, system string, clients int, cfg writes.Config) func() string {
	if dir == "" || len(pids) == 0 {
		return func() string { return "" }
	}
	list := make([]string, len(pids))
	for i, p := range pids {
		list[i] = strconv.Itoa(p)
	}
	report := " --no-children --stdio"
	if len(pids) > 1 {
		report = " --no-children --stdio --sort pid,symbol"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, " (perf: %v)", err)
		return func() string { return "" }
	}
	name := strings.NewReplacer("+", "-").Replace(system)
	out := filepath.Join(dir, fmt.Sprintf("%s-%d.perf.data", name, clients))
	for i := 2; ; i++ { // a client count may be given more than once
		if _, err := os.Stat(out); os.IsNotExist(err) {
			break
		}
		out = filepath.Join(dir, fmt.Sprintf("%s-%d.%d.perf.data", name, clients, i))
	}
	done := make(chan string, 1)
	go func() {
		time.Sleep(cfg.Warmup)
		cmd := exec.Command("perf", "record", "-F", "499", "-g", "-p", strings.Join(list, ","), "-o", out,
			"--", "sleep", strconv.FormatFloat(cfg.Duration.Seconds(), 'f', 3, 64))
		if b, err := cmd.CombinedOutput(); err != nil {
			done <- fmt.Sprintf("perf failed: %v: %s", err, strings.TrimSpace(string(b)))
			return
		}
		done <- out + " (perf report -i " + out + report + ")"
	}()
	return func() string {
		select {
		case s := <-done:
			return s
		case <-time.After(cfg.Duration + 30*time.Second):
			return "perf did not finish"
		}
	}
}
