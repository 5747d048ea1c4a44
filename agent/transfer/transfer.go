// Package transfer moves a stopped instance's disk from one agent to another,
// the middle of a cold move (stop on S, offer on S, import on T, start on T,
// delete on S). It exists apart from the executor because it is both a
// server and a client of the agent-to-agent protocol (AgentPeerService):
// the source agent serves PullDisk for the disks the coordinator told it to
// offer, and the target agent pulls, verifies and imports through the
// hypervisor driver.
//
// The coordinator is the only authority over who may pull what: an offer
// names the instance, a random token and the one host allowed to pull,
// and lasts until the time the executor gives (well past the offer step,
// so a failed import can be tried again) or until any other step on the
// instance revokes it. The source keeps offers in memory only; an agent
// restart forgets them (the pull is then refused and the move rolls back).
// The bytes are checked twice on arrival: against the source's SHA-256 and
// size here, and by the driver for what it will let QEMU open.
package transfer

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/hypervisor"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// ChunkSize is the most disk bytes one DiskChunk carries: large enough that
// per-message overhead is negligible, well under gRPC's 4 MiB message limit.
const ChunkSize = 256 << 10

// ErrRefused is wrapped when the source agent refuses the pull (no matching
// offer, wrong host or token, expired, or the disk is not in a state to be
// copied). Retrying the same pull will not help; the coordinator must offer
// again.
var ErrRefused = fmt.Errorf("transfer: %w", executor.ErrPeerRefused)

// Config configures a Transfer.
type Config struct {
	HostID string            // this agent's host id: sent when pulling, named by offers to us
	Driver hypervisor.Driver // opens offered disks and imports pulled ones
	Logger *slog.Logger      // default slog.Default()
	// ClientTLS dials peers with TLS (mutual when it holds a certificate);
	// nil dials in plaintext.
	ClientTLS *tls.Config
	// RequireClientIdentity makes PullDisk refuse a puller whose verified
	// client certificate (internal/mtls) does not name the host id it pulls
	// for, so a stolen token alone is not enough.
	RequireClientIdentity bool

	// Compression: whether this agent, as a source, compresses chunks for
	// pullers that accept it, and as a puller, accepts them.
	Compression Compression
	// RateLimit caps, in bytes per second, what this agent sends to
	// pullers, all pulls together, and, separately, what it pulls; 0 is
	// no limit. Holes cost nothing; compressed chunks their wire size.
	RateLimit int64
	// Progress, when set, is called about every ProgressEvery while a pull
	// runs, with the context of the Import or Receive call (the executor's
	// step is in it, see executor.StepFromContext).
	Progress      func(context.Context, Progress)
	ProgressEvery time.Duration // default DefaultProgressEvery
	// Copied, when set, is told of each pull that ended with the disk
	// verified (the agent's metrics count them).
	Copied func(Copied)
	// ResumeAttempts is how many times in a row a cut pull is resumed
	// without getting further before the pull fails (default 5).
	ResumeAttempts int
}

// Copied is one finished pull: the image's bytes verified (holes
// included), the bytes that came over the network, and the time it took.
type Copied struct {
	Disk, Wire int64
	Took       time.Duration
}

// Transfer offers local disks to peers and imports peers' disks. It is safe
// for concurrent use.
type Transfer struct {
	cfg Config
	log *slog.Logger
	now func() time.Time // time.Now; tests move it to expire offers

	sendLimit, pullLimit *limiter
	resumeWait           time.Duration // first wait before resuming a cut pull
	wireSent, wirePulled atomic.Int64  // data bytes sent and pulled, on the wire (see Stats)

	mu     sync.Mutex
	offers map[string][]*offer       // by instance id
	pulls  map[string]map[*pull]bool // pulls being served, by instance id
}

// pull is one PullDisk being served; Revoke ends it.
type pull struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// offer is one permission to pull an instance's disk.
type offer struct {
	layer  hypervisor.DiskLayer
	token  string
	toHost string
	until  time.Time
}

// New returns a Transfer; Register serves its side of the peer protocol.
func New(cfg Config) *Transfer {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = DefaultProgressEvery
	}
	if cfg.ResumeAttempts <= 0 {
		cfg.ResumeAttempts = 5
	}
	return &Transfer{
		cfg:        cfg,
		sendLimit:  newLimiter(cfg.RateLimit),
		pullLimit:  newLimiter(cfg.RateLimit),
		resumeWait: 200 * time.Millisecond,
		log:        cfg.Logger.With("component", "agent/transfer", "host", cfg.HostID),
		now:        time.Now,
		offers:     make(map[string][]*offer),
		pulls:      make(map[string]map[*pull]bool),
	}
}

// ServerOptions are the gRPC server options a peer server should have for
// fast pulls: write buffers that take a whole chunk, so a chunk goes out
// in a few large writes rather than many small ones.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.WriteBufferSize(2 * ChunkSize), grpc.ReadBufferSize(64 << 10),
		grpc.InitialWindowSize(1 << 20), grpc.InitialConnWindowSize(1 << 20)}
}

// Register serves AgentPeerService (PullDisk) on s.
func (t *Transfer) Register(s *grpc.Server) {
	agentv1.RegisterAgentPeerServiceServer(s, &peerServer{t: t})
}

// Offer lets toHostID pull one layer of the instance's disk with token
// until the given time. The layer must be readable now (the driver's
// OpenDisk decides, as it will again for the pull). Offering the same layer
// with the same token to the same host again only moves its end, so a
// retried step is harmless.
func (t *Transfer) Offer(ctx context.Context, instanceID string, layer hypervisor.DiskLayer, token, toHostID string, until time.Time) error {
	if err := hypervisor.ValidateID(instanceID); err != nil {
		return fmt.Errorf("transfer: offer: %w", err)
	}
	if token == "" || toHostID == "" {
		return fmt.Errorf("transfer: offer %s: token and puller host are required", instanceID)
	}
	if !t.now().Before(until) {
		return fmt.Errorf("transfer: offer %s: its deadline %s has passed", instanceID, until.Format(time.RFC3339))
	}
	disk, size, err := t.cfg.Driver.OpenDisk(ctx, instanceID, layer)
	if err != nil {
		return fmt.Errorf("transfer: offer %s: %w", instanceID, err)
	}
	disk.Close()

	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked()
	renewed := false
	for _, o := range t.offers[instanceID] {
		if o.layer == layer && o.toHost == toHostID && subtle.ConstantTimeCompare([]byte(o.token), []byte(token)) == 1 {
			o.until, renewed = until, true
		}
	}
	if !renewed {
		t.offers[instanceID] = append(t.offers[instanceID], &offer{layer: layer, token: token, toHost: toHostID, until: until})
	}
	t.log.Info("disk offered", "instance", instanceID, "layer", layerName(layer), "peer_host", toHostID,
		"until", until.Format(time.RFC3339), "disk_bytes", size, "renewed", renewed)
	return nil
}

// match returns the unexpired offer of the layer of instance's disk to host
// with token. Every offer of the instance is compared, in constant time, so
// that the answer's timing says nothing about how much of a token was right.
func (t *Transfer) match(instanceID string, layer hypervisor.DiskLayer, token, host string) *offer {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked()
	var found *offer
	for _, o := range t.offers[instanceID] {
		tokenOK := subtle.ConstantTimeCompare([]byte(o.token), []byte(token))
		hostOK := subtle.ConstantTimeCompare([]byte(o.toHost), []byte(host))
		if tokenOK&hostOK == 1 && o.layer == layer {
			found = o
		}
	}
	return found
}

// Revoke withdraws every offer of the instance's disk and ends the pulls
// being served, waiting for them: the executor calls it before any other
// step on the instance, so a domain is never started (or deleted) while a
// peer is still reading its disk.
func (t *Transfer) Revoke(instanceID string) {
	t.mu.Lock()
	delete(t.offers, instanceID)
	var active []*pull
	for p := range t.pulls[instanceID] {
		p.cancel()
		active = append(active, p)
	}
	t.mu.Unlock()
	for _, p := range active {
		<-p.done
	}
	if len(active) > 0 {
		t.log.Info("disk pulls ended: the instance is being acted on", "instance", instanceID, "pulls", len(active))
	}
}

// startPull records a pull being served; end it with endPull.
func (t *Transfer) startPull(ctx context.Context, instanceID string) (context.Context, *pull) {
	ctx, cancel := context.WithCancel(ctx)
	p := &pull{cancel: cancel, done: make(chan struct{})}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pulls[instanceID] == nil {
		t.pulls[instanceID] = map[*pull]bool{}
	}
	t.pulls[instanceID][p] = true
	return ctx, p
}

func (t *Transfer) endPull(instanceID string, p *pull) {
	t.mu.Lock()
	delete(t.pulls[instanceID], p)
	if len(t.pulls[instanceID]) == 0 {
		delete(t.pulls, instanceID)
	}
	t.mu.Unlock()
	p.cancel()
	close(p.done)
}

// pruneLocked drops expired offers, so memory does not grow with moves that
// were never pulled.
func (t *Transfer) pruneLocked() {
	now := t.now()
	for id, list := range t.offers {
		var kept []*offer
		for _, o := range list {
			if now.Before(o.until) {
				kept = append(kept, o)
			}
		}
		if len(kept) == 0 {
			delete(t.offers, id)
		} else {
			t.offers[id] = kept
		}
	}
}

// Stats returns the disk data bytes this Transfer has sent to pullers and
// pulled from sources since it was made, as they crossed the network
// (compressed, without holes or framing).
func (t *Transfer) Stats() (sent, pulled int64) { return t.wireSent.Load(), t.wirePulled.Load() }

// layerName is how logs name a layer.
func layerName(l hypervisor.DiskLayer) string {
	if l == hypervisor.DiskWhole {
		return "whole"
	}
	return string(l)
}

// layerToPB and layerFromPB convert a layer for the peer protocol.
func layerToPB(l hypervisor.DiskLayer) agentv1.DiskLayer {
	switch l {
	case hypervisor.DiskBase:
		return agentv1.DiskLayer_DISK_LAYER_BASE
	case hypervisor.DiskMid:
		return agentv1.DiskLayer_DISK_LAYER_MID
	case hypervisor.DiskTop:
		return agentv1.DiskLayer_DISK_LAYER_TOP
	}
	return agentv1.DiskLayer_DISK_LAYER_UNSPECIFIED
}
