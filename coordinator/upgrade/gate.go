// Package upgrade gates the cluster's log version: the leader raises it
// only once every server of the Raft configuration reports supporting the
// next one, and no server that could not read the log is let in after.
// Until then entries are written in the older format, so a cluster runs
// with servers of two releases during a rolling upgrade (as Nomad gates
// features on every server's version, and Consul skips entry types it is
// told it may ignore).
package upgrade

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ErrTooOld refuses a server that cannot read the cluster's log.
var ErrTooOld = errors.New("server too old for the cluster's log version")

// Member is one server of the Raft configuration, with its API address
// (empty when the registry does not know it yet).
type Member struct {
	ID, APIAddr string
}

// Cluster is what the gate reads and proposes, on the leader.
type Cluster interface {
	// ID is this server's id.
	ID() string
	// LogVersion is the cluster's log version as applied here.
	LogVersion() uint32
	// Members lists every server of the committed Raft configuration.
	Members() ([]Member, error)
	// SetLogVersion proposes the new version through the log.
	SetLogVersion(ctx context.Context, v uint32) error
}

// Probe asks the server at addr for the newest log version it supports
// (a server that does not say is at version 1).
type Probe func(ctx context.Context, addr string) (uint32, error)

// Gate raises the log version and admits joining servers, one at a time:
// a server admitted while the gate counted the members would otherwise be
// missed, and then it would be handed a log it cannot read.
type Gate struct {
	cluster Cluster
	probe   Probe
	// supported is the newest version this server reads and writes.
	supported uint32
	log       *slog.Logger
	mu        sync.Mutex
}

// New returns a gate for a server supporting versions up to supported.
func New(c Cluster, probe Probe, supported uint32, log *slog.Logger) *Gate {
	return &Gate{cluster: c, probe: probe, supported: supported, log: log}
}

// Supported is the newest log version this server reads and writes (as
// it advertises).
func (g *Gate) Supported() uint32 { return g.supported }

// Raise makes one attempt: it proposes the newest version every member
// supports, if that is above the cluster's. It returns the cluster's
// version afterwards, and why it could not raise it, if it could not.
func (g *Gate) Raise(ctx context.Context) (uint32, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	current := g.cluster.LogVersion()
	if current >= g.supported {
		return current, nil
	}
	members, err := g.cluster.Members()
	if err != nil {
		return current, err
	}
	target := g.supported
	for _, m := range members {
		if m.ID == g.cluster.ID() {
			continue
		}
		if m.APIAddr == "" {
			return current, fmt.Errorf("server %s: API address not known yet", m.ID)
		}
		v, err := g.probe(ctx, m.APIAddr)
		if err != nil {
			return current, fmt.Errorf("server %s: %w", m.ID, err)
		}
		target = min(target, max(v, 1))
	}
	if target <= current {
		return current, fmt.Errorf("a server supports log version %d only", target)
	}
	if err := g.cluster.SetLogVersion(ctx, target); err != nil {
		return current, err
	}
	g.log.Info("log version raised", "from", current, "to", target, "servers", len(members))
	return target, nil
}

// Run raises the version until it is the newest this server supports or
// ctx ends (this server stops leading), checking again every interval.
func (g *Gate) Run(ctx context.Context, interval time.Duration) {
	for {
		v, err := g.Raise(ctx)
		if v >= g.supported {
			return
		}
		if err != nil {
			g.log.Debug("log version not raised", "version", v, "reason", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// Admit runs add (the membership change) for a joining server that
// supports log versions up to maxVersion (0: it does not say, so 1), unless the
// cluster's log is already newer than that.
func (g *Gate) Admit(maxVersion uint32, add func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if v := g.cluster.LogVersion(); max(maxVersion, 1) < v {
		return fmt.Errorf("%w: it reads log versions up to %d, the cluster is at %d; join it with this release or newer", ErrTooOld, max(maxVersion, 1), v)
	}
	return add()
}
