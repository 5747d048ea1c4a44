package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// Import pulls the instance's disk from the agent at fromAddr with token and
// has the driver define the domain over it, shut off. The stream is hashed
// as it arrives and its end is only reported to the driver once the size
// and SHA-256 match the source's, so a bad copy fails inside ImportDomain,
// which removes what it wrote.
//
// Errors wrap executor.ErrPeerUnavailable when the peer cannot be reached or
// the stream breaks, executor.ErrDiskCorrupt when the bytes do not match,
// ErrRefused when the peer refuses, hypervisor.ErrInvalidSpec when the
// driver refuses the disk itself, and ctx's error when ctx ends.
func (t *Transfer) Import(ctx context.Context, spec hypervisor.DomainSpec, fromHostID, fromAddr, token string) error {
	return t.pull(ctx, spec, hypervisor.DiskWhole, fromHostID, fromAddr, token, t.cfg.Driver.ImportDomain)
}

// Receive pulls one layer of the instance's disk from the agent at fromAddr
// with token, verified as Import's is, and has the driver stage it
// (ReceiveDisk): the target side of a resize's copies.
func (t *Transfer) Receive(ctx context.Context, spec hypervisor.DomainSpec, layer hypervisor.DiskLayer, fromHostID, fromAddr, token string) error {
	return t.pull(ctx, spec, layer, fromHostID, fromAddr, token,
		func(ctx context.Context, spec hypervisor.DomainSpec, disk io.Reader) error {
			return t.cfg.Driver.ReceiveDisk(ctx, spec, layer, disk)
		})
}

// pull streams the layer from the peer into write (the driver), verified.
func (t *Transfer) pull(ctx context.Context, spec hypervisor.DomainSpec, layer hypervisor.DiskLayer, fromHostID, fromAddr, token string,
	write func(context.Context, hypervisor.DomainSpec, io.Reader) error) error {
	log := t.log.With("instance", spec.ID, "layer", layerName(layer), "peer_host", fromHostID, "peer_addr", fromAddr)
	if fromAddr == "" || token == "" {
		return fmt.Errorf("transfer: import %s: peer address and token are required", spec.ID)
	}
	creds := insecure.NewCredentials()
	if t.cfg.ClientTLS != nil {
		// The server's certificate must be the source agent's: any of the
		// fleet's CA (another agent's, a coordinator's) would otherwise do,
		// and the disk could be fed by it.
		creds = credentials.NewTLS(mtls.RequirePeer(t.cfg.ClientTLS, mtls.RoleAgent, fromHostID))
	}
	conn, err := grpc.NewClient(fromAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("transfer: import %s: peer %s at %q: %w: %w", spec.ID, fromHostID, fromAddr, executor.ErrPeerUnavailable, err)
	}
	defer conn.Close()
	// Cancelling ends the stream if the driver stops reading early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	started := time.Now()
	stream, err := agentv1.NewAgentPeerServiceClient(conn).PullDisk(ctx, &agentv1.PullDiskRequest{
		InstanceId: spec.ID, Token: token, HostId: t.cfg.HostID, Layer: layerToPB(layer),
	})
	if err != nil {
		return fmt.Errorf("transfer: import %s from %s: %w", spec.ID, fromHostID, streamErr(ctx, err))
	}
	r := &pullReader{ctx: ctx, stream: stream, hash: sha256.New()}
	// The first message comes before the driver is involved, so that a
	// refusal or an unreachable peer is reported as such.
	if err := r.receive(); err != nil {
		log.Warn("import: pull failed", "err", err)
		return fmt.Errorf("transfer: import %s from %s: %w", spec.ID, fromHostID, err)
	}
	if err := write(ctx, spec, r); err != nil {
		log.Warn("import failed", "received_bytes", r.received, "err", err)
		return fmt.Errorf("transfer: import %s from %s: %w", spec.ID, fromHostID, err)
	}
	if !r.verified {
		// The driver must read to the end; one that did not has defined a
		// domain (or staged a layer) from unverified bytes, which must not stay.
		err := fmt.Errorf("transfer: import %s: driver stopped reading after %d of %d bytes", spec.ID, r.received, r.total)
		log.Error("import: unverified disk; deleting the domain", "err", err)
		if derr := t.cfg.Driver.Delete(context.WithoutCancel(ctx), spec.ID); derr != nil {
			log.Error("import: deleting unverified domain failed", "err", derr)
		}
		return err
	}
	log.Info("disk imported", "disk_bytes", r.received, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// pullReader turns a PullDisk stream into an io.Reader that ends with
// io.EOF only after the digest and size were checked. Any failure is
// returned from Read in place of io.EOF, so the reader of a bad stream
// never sees a normal end.
type pullReader struct {
	ctx    context.Context
	stream grpc.ServerStreamingClient[agentv1.DiskChunk]
	hash   hash.Hash

	started  bool
	total    uint64 // announced in the first message
	received uint64
	pending  []byte // received, not yet read
	err      error  // sticky: io.EOF once verified
	verified bool
}

func (r *pullReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.receive()
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// receive takes the next message into pending, or checks the final one.
func (r *pullReader) receive() error {
	msg, err := r.stream.Recv()
	if err == io.EOF {
		return fmt.Errorf("stream ended after %d bytes without a digest: %w", r.received, executor.ErrPeerUnavailable)
	}
	if err != nil {
		return streamErr(r.ctx, err)
	}
	if !r.started {
		r.started, r.total = true, msg.GetTotalSize()
	}
	if sum := msg.GetSha256(); len(sum) > 0 {
		return r.finish(sum, len(msg.GetData()))
	}
	data := msg.GetData()
	r.received += uint64(len(data))
	if r.received > r.total {
		return fmt.Errorf("peer sent more than the %d bytes it announced: %w", r.total, executor.ErrDiskCorrupt)
	}
	r.hash.Write(data)
	r.pending = data
	return nil
}

// finish checks the digest message and the stream's clean end.
func (r *pullReader) finish(sum []byte, dataLen int) error {
	if dataLen > 0 {
		return fmt.Errorf("digest message carries data: %w", executor.ErrDiskCorrupt)
	}
	if r.received != r.total {
		return fmt.Errorf("received %d bytes, peer announced %d: %w", r.received, r.total, executor.ErrDiskCorrupt)
	}
	if !bytes.Equal(r.hash.Sum(nil), sum) {
		return fmt.Errorf("SHA-256 of the %d bytes received differs from the peer's: %w", r.received, executor.ErrDiskCorrupt)
	}
	if _, err := r.stream.Recv(); err != io.EOF {
		if err == nil {
			return fmt.Errorf("data after the digest: %w", executor.ErrDiskCorrupt)
		}
		return streamErr(r.ctx, err)
	}
	r.verified = true
	return io.EOF
}

// streamErr classifies a failed PullDisk call or Recv.
func streamErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("pulling disk: %w", ctxErr)
	}
	switch status.Code(err) {
	case codes.PermissionDenied, codes.NotFound, codes.FailedPrecondition, codes.InvalidArgument, codes.Unimplemented:
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return fmt.Errorf("%w: %w", executor.ErrPeerUnavailable, err)
}

var _ executor.Mover = (*Transfer)(nil)
