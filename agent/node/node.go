// Package node is the agent's composition root: from one Config it wires
// the hypervisor driver, the step journal, the executor, the peer transfer
// service, the guest channel watcher and the coordinator session, and runs them until its context
// ends. cmd/flotilla-agent parses flags into a Config; simulators and
// in-process tests build Configs directly.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/agent/guestchan"
	"github.com/flotilla-vm/flotilla/agent/metrics"
	"github.com/flotilla-vm/flotilla/agent/session"
	"github.com/flotilla-vm/flotilla/agent/stepstore"
	"github.com/flotilla-vm/flotilla/agent/transfer"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	"github.com/flotilla-vm/flotilla/hypervisor/libvirt"
	"github.com/flotilla-vm/flotilla/internal/authz"
	"github.com/flotilla-vm/flotilla/internal/mtls"
)

// Hypervisor kinds Config.Hypervisor names.
const (
	Libvirt = "libvirt"
	Fake    = "fake"
)

// FakeCapacity is what the fake hypervisor offers when the node opens it.
var FakeCapacity = hypervisor.Capacity{VCPUs: 64, MemoryMiB: 262144, DiskGiB: 10000}

// Config is one agent.
type Config struct {
	// Coordinator is host:port of a coordinator, or a comma-separated list
	// of cluster members tried in turn.
	Coordinator string
	HostID      string
	// Hypervisor is Libvirt (opened with Libvirt, waiting for libvirtd) or
	// Fake (in memory, its faults from fake.FaultsEnv). Ignored when
	// Driver is set.
	Hypervisor string
	Libvirt    libvirt.Config
	// Driver, when set, is the hypervisor as is; Run closes it when it ends.
	Driver hypervisor.Driver
	// StateDir holds the step journal; made if missing.
	StateDir string
	// Capacity overrides, field by field, what the hypervisor reports.
	Capacity hypervisor.Capacity
	// DiskReserve is the free disk, in bytes, a preflight keeps.
	DiskReserve uint64
	// GuestPing is the guest channels' heartbeat (0: guestchan's default).
	GuestPing time.Duration
	Labels    map[string]string
	// IgnoreEvents leaves hypervisor events unsubscribed (a test switch:
	// the coordinator then learns of changes only through resyncs).
	IgnoreEvents bool
	// TLS, when set, is mutual TLS to the coordinator and between agents.
	TLS mtls.Files
	// PeerListen is where other agents pull disks from this one; empty:
	// this agent does not move disks. PeerAdvertise is what they dial
	// (default: the address listened on).
	PeerListen, PeerAdvertise string
	// CopyRateLimit and CopyCompression configure disk copies between agents.
	CopyRateLimit   int64
	CopyCompression transfer.Compression
	AgentVersion    string
	// Metrics, when set, counts the steps run and reports the session.
	Metrics *metrics.Agent
	// Logger carries no "host": the agent's packages add it.
	Logger *slog.Logger
}

// Node is one agent, its journal open, ready to Run.
type Node struct {
	cfg      Config
	log      *slog.Logger // without "host"
	hlog     *slog.Logger // with it
	store    *stepstore.Store
	dialOpts []grpc.DialOption

	closeOnce sync.Once
	closeErr  error

	client atomic.Pointer[session.Client]    // while Run runs
	guests atomic.Pointer[guestchan.Watcher] // while Run runs (metrics read it)
}

// New checks cfg and opens the step journal; Run does the rest. A Node
// that is never run is released with Close.
func New(cfg Config) (*Node, error) {
	if cfg.Coordinator == "" || cfg.HostID == "" || cfg.StateDir == "" {
		return nil, errors.New("agent node: Coordinator, HostID and StateDir are required")
	}
	if cfg.Driver == nil && cfg.Hypervisor != Libvirt && cfg.Hypervisor != Fake {
		return nil, fmt.Errorf("agent node: hypervisor %q: want %s or %s", cfg.Hypervisor, Libvirt, Fake)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, log: cfg.Logger, hlog: cfg.Logger.With("host", cfg.HostID)}
	if cfg.TLS.Enabled() {
		tc, err := mtls.Client(cfg.TLS)
		if err != nil {
			return nil, err
		}
		n.dialOpts = append(n.dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	store, err := stepstore.Open(filepath.Join(cfg.StateDir, "agent.db"))
	if err != nil {
		return nil, err
	}
	n.store = store
	if cfg.Metrics != nil {
		cfg.Metrics.Registered(func() bool { return n.Ready() == nil })
		cfg.Metrics.GuestChannels(func() map[int]int {
			if w := n.guests.Load(); w != nil {
				return w.Connections()
			}
			return nil
		})
	}
	return n, nil
}

// copied counts a finished disk copy in the metrics, if any.
func (n *Node) copied(c transfer.Copied) {
	if n.cfg.Metrics != nil {
		n.cfg.Metrics.DiskCopied(c.Disk, c.Wire, c.Took)
	}
}

// Ready returns nil while the agent is connected and registered with a
// coordinator, else why not.
func (n *Node) Ready() error {
	if c := n.client.Load(); c == nil || !c.Registered() {
		return errors.New("not registered with a coordinator")
	}
	return nil
}

// Close releases what New opened (and Config.Driver), if Run has not.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		errs := []error{n.store.Close()}
		if n.cfg.Driver != nil {
			errs = append(errs, n.cfg.Driver.Close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// Run serves the coordinator until ctx ends, then closes everything. It
// returns nil if ctx ends while it waits for libvirtd.
func (n *Node) Run(ctx context.Context) error {
	var stored bool
	n.closeOnce.Do(func() { stored = true }) // Run closes from here on
	if !stored {
		return errors.New("agent node: closed")
	}
	defer closeLogged(n.hlog, "step journal", n.store.Close)

	drv, err := n.openDriver(ctx)
	if err != nil {
		return err
	}
	if drv == nil {
		return nil // interrupted while waiting for the hypervisor
	}
	defer closeLogged(n.hlog, "hypervisor driver", drv.Close)

	progress := &copyProgress{}
	mover, peerAddr, stopPeer, err := n.startPeer(drv, progress.report)
	if err != nil {
		return err
	}
	// Stopped before the driver closes: a pull in progress reads through it.
	defer stopPeer()

	// Guest channels: the session tells the watcher which domains run and
	// sends on what their guests say; steps send commands through it.
	// Closed after the executor (defers run in reverse), before the driver.
	guests := guestchan.New(guestchan.Config{Sockets: drv, Logger: n.hlog, PingInterval: n.cfg.GuestPing})
	defer guests.Close()
	n.guests.Store(guests)
	defer n.guests.Store(nil)

	exec, err := executor.New(executor.Config{HostID: n.cfg.HostID, Driver: drv, Store: n.store, Logger: n.log, Mover: mover,
		DiskReserve: n.cfg.DiskReserve, Guests: guests})
	if err != nil {
		return err
	}
	// Closed before the driver and the journal (defers run in reverse):
	// running steps end first.
	defer exec.Close()

	var steps session.Executor = exec
	if n.cfg.Metrics != nil {
		steps = n.cfg.Metrics.Steps(exec)
	}
	client, err := session.New(session.Config{
		Coordinator:  n.cfg.Coordinator,
		HostID:       n.cfg.HostID,
		Driver:       drv,
		Executor:     steps,
		Capacity:     n.cfg.Capacity,
		AgentVersion: n.cfg.AgentVersion,
		IgnoreEvents: n.cfg.IgnoreEvents,
		Guests:       guests,
		Labels:       n.cfg.Labels,
		PeerAddress:  peerAddr,
		Images:       imageFetcher(mover),
		Logger:       n.log,
		DialOptions:  n.dialOpts,
	})
	if err != nil {
		return err
	}
	defer closeLogged(n.hlog, "coordinator connection", client.Close)
	progress.client.Store(client)
	n.client.Store(client)
	defer n.client.Store(nil)

	n.hlog.Info("agent starting", "coordinator", n.cfg.Coordinator, "hypervisor", n.cfg.Hypervisor,
		"kind", drv.Kind(), "state_dir", n.cfg.StateDir, "disk_reserve_bytes", n.cfg.DiskReserve, "peer_address", peerAddr, "version", n.cfg.AgentVersion)
	return client.Run(ctx)
}

// startPeer serves AgentPeerService on PeerListen, with the TLS material
// of the coordinator connection when it is set: peers present certificates
// signed by the same CA, and a pull must come from the host its certificate
// names. It returns the disk mover for the executor (nil when disabled), the
// address to advertise, and a stop function.
func (n *Node) startPeer(drv hypervisor.Driver, progress func(context.Context, transfer.Progress)) (executor.Mover, string, func(), error) {
	cfg := n.cfg
	if cfg.PeerListen == "" {
		return nil, "", func() {}, nil
	}
	var (
		srvOpts   []grpc.ServerOption
		clientTLS *tls.Config
	)
	if cfg.TLS.Enabled() {
		stc, err := mtls.Server(cfg.TLS)
		if err != nil {
			return nil, "", nil, err
		}
		if clientTLS, err = mtls.Client(cfg.TLS); err != nil {
			return nil, "", nil, err
		}
		srvOpts = append(srvOpts, grpc.Creds(transfer.ServerCredentials(stc)))
	}
	lis, err := net.Listen("tcp", cfg.PeerListen)
	if err != nil {
		return nil, "", nil, fmt.Errorf("peer listener: %w", err)
	}
	tr := transfer.New(transfer.Config{
		HostID: cfg.HostID, Driver: drv, Logger: n.log,
		ClientTLS: clientTLS, RequireClientIdentity: cfg.TLS.Enabled(),
		Compression: cfg.CopyCompression, RateLimit: cfg.CopyRateLimit, Progress: progress,
		Copied: n.copied,
	})
	// The one authorization table covers this server too (agents only;
	// PullDisk then checks the certificate names the host of the offer).
	srvOpts = append(srvOpts, grpc.ChainUnaryInterceptor(authz.Unary(authz.PeerPrincipal)), grpc.ChainStreamInterceptor(authz.Stream(authz.PeerPrincipal)))
	srv := grpc.NewServer(append(srvOpts, transfer.ServerOptions()...)...)
	tr.Register(srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(lis); err != nil {
			n.hlog.Error("peer service stopped", "err", err)
		}
	}()
	addr := cfg.PeerAdvertise
	if addr == "" {
		addr = lis.Addr().String()
	}
	n.hlog.Info("serving disks to peer agents", "listen", lis.Addr().String(), "advertise", addr,
		"tls", cfg.TLS.Enabled(), "copy_rate_limit", cfg.CopyRateLimit, "copy_compression", cfg.CopyCompression.String())
	stop := func() {
		// Not graceful: a pull cut short fails on the target as
		// PEER_UNAVAILABLE, and the coordinator tries it again.
		srv.Stop()
		<-served
	}
	return tr, addr, stop, nil
}

// openDriver opens the hypervisor. libvirtd may start after the agent (both
// at boot), so an unavailable libvirtd is waited for; other errors are
// configuration mistakes and end the agent. It returns nil, nil if ctx ends.
func (n *Node) openDriver(ctx context.Context) (hypervisor.Driver, error) {
	if n.cfg.Driver != nil {
		return n.cfg.Driver, nil
	}
	if n.cfg.Hypervisor == Fake {
		// Tests inject faults through the fake's own environment variable.
		faults, err := fake.FaultsFromEnv()
		if err != nil {
			return nil, err
		}
		bridges, err := fake.BridgesFromEnv()
		if err != nil {
			return nil, err
		}
		if len(bridges) == 0 {
			bridges = n.cfg.Libvirt.Bridges // --bridges
		}
		return fake.New(fake.Options{Capacity: FakeCapacity, Images: []string{"flotilla-test"}, Faults: faults, Bridges: bridges}), nil
	}
	lc := n.cfg.Libvirt
	if lc.Logger == nil {
		lc.Logger = n.hlog
	}
	for _, dir := range []string{lc.ImageDir, lc.DiskDir, lc.RunDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("hypervisor dirs: %w", err)
		}
	}
	wait := 100 * time.Millisecond
	for {
		drv, err := libvirt.New(ctx, lc)
		if err == nil {
			return drv, nil
		}
		if !errors.Is(err, hypervisor.ErrUnavailable) {
			return nil, fmt.Errorf("libvirt: %w", err)
		}
		n.hlog.Warn("libvirtd unavailable; retrying", "socket", lc.Socket, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// imageFetcher is the Mover as the session's image fetcher; nil (no peer
// service) for none.
func imageFetcher(m executor.Mover) session.ImageFetcher {
	if m == nil {
		return nil
	}
	return m
}

func closeLogged(log *slog.Logger, what string, closeFn func() error) {
	if err := closeFn(); err != nil {
		log.Warn("closing "+what+" failed", "err", err)
	}
}
