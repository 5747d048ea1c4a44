package main

import (
	"context"

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
		{"flotilla", newFlotillaTarget},
	}
}

// ==== HOOK: the Flotilla side (not implemented yet) ====
//
// newFlotillaTarget is to start 3 flotilla-coordinator processes on
// 127.0.0.1 (each with its own data dir under dir, Raft with fsync on every
// commit as in production), wait for a leader, and return a writes.Target
// whose Name() is "flotilla" and whose Op(ctx, client, seq) performs one
// committed CreateInstance-like write (an instance record like
// writes.InstanceRecord(client, seq); (client, seq) never repeats, so it can
// name the instance), through a shared pool of connections to any member, as
// the etcd side does. Close must kill the processes and remove dir's data.
//
// Once it returns a Target, the table prints flotilla next to etcd with the
// flotilla/etcd ratios per row and the flotilla@256 vs flotilla@1 line.
func newFlotillaTarget(ctx context.Context, dir string) (writes.Target, error) {
	return nil, nil
}
