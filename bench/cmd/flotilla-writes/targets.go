package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/flotilla-vm/flotilla/bench/writes"
)

// system is one system under test. start brings up its cluster (data under
// dir) and returns the Target to drive; the benchmark runs all of a system's
// rows, then closes it before starting the next, so the two clusters never
// compete for the machine's cores and disk. A nil Target with a nil error
// means "not available yet": the system is skipped.
type system struct {
	name  string
	start func(ctx context.Context, dir string) (writes.Target, error)
}

func systems() []system {
	return []system{
		{"etcd", func(ctx context.Context, dir string) (writes.Target, error) {
			t, err := writes.NewEtcdTarget(ctx, dir)
			if err != nil {
				return nil, err
			}
			return t, nil
		}},
		{"flotilla", newFlotillaTarget(writes.FlotillaOptions{})},
		{"flotilla+agent", newFlotillaTarget(writes.FlotillaOptions{Agent: true})},
		{"flotilla@leader", newFlotillaTarget(writes.FlotillaOptions{LeaderOnly: true})},
	}
}

// newFlotillaTarget starts 3 flotilla-coordinator processes (and, with
// agent, one fake agent connected to all of them); see writes.FlotillaTarget.
// The binaries are built once per run (go build, no -race) into a temporary
// directory that removeBinaries deletes.
func newFlotillaTarget(opt writes.FlotillaOptions) func(ctx context.Context, dir string) (writes.Target, error) {
	return func(ctx context.Context, dir string) (writes.Target, error) {
		bin, err := buildOnce(dir)
		if err != nil {
			return nil, err
		}
		opt.BinDir, opt.LogLevel = bin, *flotillaLogLevel
		t, err := writes.NewFlotillaTarget(ctx, dir, opt)
		if err != nil {
			return nil, err
		}
		return t, nil
	}
}

var (
	buildMu  sync.Mutex
	binDir   string
	buildErr error
	built    bool
)

func buildOnce(dir string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if !built {
		start := time.Now()
		binDir, buildErr = writes.BuildFlotilla(dir)
		built = true
		if buildErr == nil {
			fmt.Fprintf(os.Stderr, "flotilla: binaries built in %v\n", time.Since(start).Round(time.Millisecond))
		}
	}
	return binDir, buildErr
}

// removeBinaries deletes the binaries built for this run, if any.
func removeBinaries() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
		binDir = ""
	}
}
