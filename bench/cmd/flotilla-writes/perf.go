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

// startPerf records the leader with `perf record -g` during the measured
// window of a row (after the warmup), if dir is set and the leader's pid is
// known. The returned function waits for perf and returns the data file.
func startPerf(dir string, pid int, system string, clients int, cfg writes.Config) func() string {
	if dir == "" || pid <= 0 {
		return func() string { return "" }
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
		cmd := exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", out,
			"--", "sleep", strconv.FormatFloat(cfg.Duration.Seconds(), 'f', 3, 64))
		if b, err := cmd.CombinedOutput(); err != nil {
			done <- fmt.Sprintf("perf failed: %v: %s", err, strings.TrimSpace(string(b)))
			return
		}
		done <- out + " (perf report -i " + out + " --no-children --stdio)"
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
