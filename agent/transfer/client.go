package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"
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
	return t.pull(ctx, spec, hypervisor.DiskWhole, fromHostID, fromAddr, token, "", t.cfg.Driver.ImportDomain)
}

// FetchImage pulls image name from the agent at fromAddr into the image
// directory (the driver's WriteImage), verified as Import's disk is; sum,
// when set, is the checksum the image must have. An image held already
// with that checksum is not pulled again.
func (t *Transfer) FetchImage(ctx context.Context, name, sum, fromHostID, fromAddr string) error {
	if have, err := t.cfg.Driver.Images(ctx); err == nil {
		for _, im := range have {
			if im.Name == name && (sum == "" || im.SHA256 == sum) {
				return nil
			}
		}
	}
	return t.pull(ctx, hypervisor.DomainSpec{}, hypervisor.DiskWhole, fromHostID, fromAddr, "", name,
		func(ctx context.Context, _ hypervisor.DomainSpec, r io.Reader) error {
			return t.cfg.Driver.WriteImage(ctx, name, sum, r)
		})
}

// Receive pulls one layer of the instance's disk from the agent at fromAddr
// with token, verified as Import's is, and has the driver stage it
// (ReceiveDisk): the target side of a resize's copies.
func (t *Transfer) Receive(ctx context.Context, spec hypervisor.DomainSpec, layer hypervisor.DiskLayer, fromHostID, fromAddr, token string) error {
	return t.pull(ctx, spec, layer, fromHostID, fromAddr, token, "",
		func(ctx context.Context, spec hypervisor.DomainSpec, disk io.Reader) error {
			return t.cfg.Driver.ReceiveDisk(ctx, spec, layer, disk)
		})
}

// pull streams the layer (or, with image set, that image) from the peer
// into write (the driver), verified.
func (t *Transfer) pull(ctx context.Context, spec hypervisor.DomainSpec, layer hypervisor.DiskLayer, fromHostID, fromAddr, token, image string,
	write func(context.Context, hypervisor.DomainSpec, io.Reader) error) error {
	log := t.log.With("instance", spec.ID, "layer", layerName(layer), "peer_host", fromHostID, "peer_addr", fromAddr)
	what := spec.ID
	if image != "" {
		log, what = t.log.With("image", image, "peer_host", fromHostID, "peer_addr", fromAddr), "image "+image
	}
	if fromAddr == "" || token == "" && image == "" {
		return fmt.Errorf("transfer: import %s: peer address and token are required", what)
	}
	creds := insecure.NewCredentials()
	if t.cfg.ClientTLS != nil {
		// The server's certificate must be the source agent's: any of the
		// fleet's CA (another agent's, a coordinator's) would otherwise do,
		// and the disk could be fed by it.
		creds = credentials.NewTLS(mtls.RequirePeer(t.cfg.ClientTLS, mtls.RoleAgent, fromHostID))
	}
	conn, err := grpc.NewClient(fromAddr, grpc.WithTransportCredentials(creds),
		// A disk is one long stream one way: windows far above gRPC's 64 KiB
		// start keep the source sending while the target writes.
		grpc.WithInitialWindowSize(pullWindow), grpc.WithInitialConnWindowSize(pullWindow),
		grpc.WithReadBufferSize(2*ChunkSize))
	if err != nil {
		return fmt.Errorf("transfer: import %s: peer %s at %q: %w: %w", what, fromHostID, fromAddr, executor.ErrPeerUnavailable, err)
	}
	defer conn.Close()
	// Cancelling ends the stream if the driver stops reading early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	started := time.Now()
	pc := agentv1.NewAgentPeerServiceClient(conn)
	r := &pullReader{ctx: ctx, t: t, log: log, hash: sha256.New(), m: &meter{}, decBuf: make([]byte, 0, ChunkSize),
		open: func(resume uint64) (grpc.ServerStreamingClient[agentv1.DiskChunk], error) {
			return pc.PullDisk(ctx, &agentv1.PullDiskRequest{
				InstanceId: spec.ID, Token: token, HostId: t.cfg.HostID, Layer: layerToPB(layer),
				Version: streamVersion, ResumeOffset: resume, AcceptZstd: t.cfg.Compression != CompressOff, Image: image,
			})
		}}
	stream, err := r.open(0)
	if err != nil {
		return fmt.Errorf("transfer: import %s from %s: %w", what, fromHostID, streamErr(ctx, err))
	}
	r.stream = stream
	// The first message comes before the driver is involved, so that a
	// refusal or an unreachable peer is reported as such.
	if err := r.receive(); err != nil {
		log.Warn("import: pull failed", "err", err)
		return fmt.Errorf("transfer: import %s from %s: %w", what, fromHostID, err)
	}
	if t.cfg.Progress != nil && image == "" {
		stop := make(chan struct{})
		defer close(stop)
		go r.m.report(ctx, t.cfg.ProgressEvery, Progress{InstanceID: spec.ID, Layer: layer}, t.cfg.Progress, stop)
	}
	// Receiving, checking and hashing run ahead of the driver's writes.
	stopAhead := r.prefetch(cancel)
	defer stopAhead()
	err = write(ctx, spec, r)
	stopAhead()
	if err != nil {
		log.Warn("import failed", "received_bytes", r.received, "err", err)
		return fmt.Errorf("transfer: import %s from %s: %w", what, fromHostID, err)
	}
	if !r.verified {
		// The driver must read to the end; one that did not has defined a
		// domain (or staged a layer) from unverified bytes, which must not stay.
		err := fmt.Errorf("transfer: import %s: driver stopped reading after %d of %d bytes", what, r.received, r.total)
		if image != "" {
			log.Error("import: unverified image; removing it", "err", err)
			if derr := t.cfg.Driver.RemoveImage(context.WithoutCancel(ctx), image); derr != nil {
				log.Error("import: removing unverified image failed", "err", derr)
			}
			return err
		}
		log.Error("import: unverified disk; deleting the domain", "err", err)
		if derr := t.cfg.Driver.Delete(context.WithoutCancel(ctx), spec.ID); derr != nil {
			log.Error("import: deleting unverified domain failed", "err", derr)
		}
		return err
	}
	took := time.Since(started)
	log.Info("disk imported", "disk_bytes", r.received, "wire_bytes", r.m.sent.Load(), "resumed", r.resumes,
		"stream_version", max(r.version, 1), "took", took.Round(time.Millisecond))
	if t.cfg.Copied != nil {
		t.cfg.Copied(Copied{Disk: int64(r.received), Wire: r.m.sent.Load(), Took: took})
	}
	return nil
}

// pullWindow is the flow control window of a pull's stream and connection.
const pullWindow = 16 << 20

// pullReader turns a PullDisk stream into an io.Reader (and a
// hypervisor.SparseReader and DigestReader) that ends with io.EOF only
// after the whole image was checked: its size and SHA-256, and for an
// extent stream every chunk's checksum (as it arrives) and their tiling
// of the image. Any failure is returned from Read in place of io.EOF, so the
// reader of a bad stream never sees a normal end. A cut extent stream is
// resumed from the end of what was verified, on a new call, so the driver
// never sees the cut.
type pullReader struct {
	ctx    context.Context
	t      *Transfer
	log    *slog.Logger
	open   func(resume uint64) (grpc.ServerStreamingClient[agentv1.DiskChunk], error)
	stream grpc.ServerStreamingClient[agentv1.DiskChunk]
	hash   hash.Hash // of everything handed on (holes as zeros)
	m      *meter
	decBuf []byte

	started  bool
	version  uint32 // 0 (plain) or streamVersion, from the first message
	total    uint64 // announced in the first message
	received uint64 // bytes verified (extent stream: the next offset expected)
	inData   []byte // what the last receive took in: data,
	inHole   int64  // or zeros
	verified bool
	ended    bool // the source's last message came

	// The reading side (the driver's goroutine): what it has at hand, and
	// what comes next (from prefetch, or from receive when not started).
	pending []byte // received, not yet read
	hole    int64  // zeros received, not yet read
	err     error  // sticky: io.EOF once verified
	ahead   chan aheadItem

	resumes   int    // streams opened after the first
	failures  int    // resumes in a row that got no further
	failedAt  uint64 // received when the last resume was needed
	resumedAt uint64 // offset the current stream started at
}

func (r *pullReader) Read(p []byte) (int, error) {
	if !r.fill() {
		return 0, r.err
	}
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	n := int(min(int64(len(p)), r.hole))
	clear(p[:n])
	r.hole -= int64(n)
	return n, nil
}

// ReadData implements hypervisor.SparseReader.
func (r *pullReader) ReadData() ([]byte, error) {
	if !r.fill() {
		return nil, r.err
	}
	data := r.pending
	r.pending = nil
	return data, nil
}

// SkipHole implements hypervisor.SparseReader.
func (r *pullReader) SkipHole() (int64, error) {
	if !r.fill() {
		return 0, r.err
	}
	if len(r.pending) > 0 {
		return 0, nil
	}
	h := r.hole
	r.hole = 0
	return h, nil
}

// fill receives until there is something to read; false at the end (r.err).
func (r *pullReader) fill() bool {
	for len(r.pending) == 0 && r.hole == 0 {
		if r.err != nil {
			return false
		}
		var it aheadItem
		if r.ahead != nil {
			it = <-r.ahead
		} else {
			it = r.next()
		}
		r.pending, r.hole, r.err = it.data, it.hole, it.err
	}
	return true
}

// aheadItem is what one receive took in.
type aheadItem struct {
	data []byte
	hole int64
	err  error
}

// next returns what the last receive took in, or receives.
func (r *pullReader) next() aheadItem {
	var it aheadItem
	if r.inData == nil && r.inHole == 0 {
		it.err = r.receive()
	}
	it.data, it.hole = r.inData, r.inHole
	r.inData, r.inHole = nil, 0
	return it
}

// prefetch receives in a goroutine of its own from now on, a few messages
// ahead of the reader. The function it returns ends that goroutine (with
// cancel, which ends the stream, if it still runs) and waits for it; after
// it, the receiving side's fields may be read again.
func (r *pullReader) prefetch(cancel context.CancelFunc) func() {
	r.ahead = make(chan aheadItem, 4)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			it := r.next()
			select {
			case r.ahead <- it:
			case <-stop:
				return
			}
			if it.err != nil {
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			select {
			case <-done:
			default:
				cancel()
				<-done
			}
		})
	}
}

// receive takes the next message into pending or hole, checks the final
// one, or resumes a cut extent stream.
func (r *pullReader) receive() error {
	msg, err := r.stream.Recv()
	if err == io.EOF {
		err = fmt.Errorf("stream ended after %d bytes without a digest: %w", r.received, executor.ErrPeerUnavailable)
	} else if err != nil {
		err = streamErr(r.ctx, err)
	} else if !r.started {
		r.started, r.total = true, msg.GetTotalSize()
		r.version = msg.GetVersion()
		r.m.total.Store(int64(r.total))
		if r.version == streamVersion {
			return r.header(msg)
		}
		return r.plain(msg)
	} else if r.version == streamVersion {
		err = r.extent(msg)
	} else {
		return r.plain(msg)
	}
	if err != nil && err != io.EOF && r.version == streamVersion && !r.ended {
		return r.resume(err)
	}
	return err
}

// header checks the first message of an extent stream.
func (r *pullReader) header(msg *agentv1.DiskChunk) error {
	if msg.GetOffset() != r.received || len(msg.GetData()) > 0 || msg.GetHoleLength() > 0 {
		return fmt.Errorf("extent stream starts at %d, asked for %d: %w", msg.GetOffset(), r.received, executor.ErrDiskCorrupt)
	}
	r.resumedAt = r.received
	return nil
}

// extent takes one message of an extent stream after the first.
func (r *pullReader) extent(msg *agentv1.DiskChunk) error {
	if msg.GetDone() {
		if len(msg.GetData()) > 0 || msg.GetHoleLength() > 0 {
			return fmt.Errorf("final message carries data: %w", executor.ErrDiskCorrupt)
		}
		if r.received != r.total {
			return fmt.Errorf("stream ended at %d of %d bytes: %w", r.received, r.total, executor.ErrDiskCorrupt)
		}
		// Not resumed from: what was handed on is the whole image; if
		// its digest is wrong, starting again is the coordinator's call.
		r.ended = true
		return r.finish(msg.GetSha256(), 0)
	}
	if off := msg.GetOffset(); off != r.received {
		return fmt.Errorf("message at offset %d, expected %d: %w", off, r.received, executor.ErrDiskCorrupt)
	}
	if h := msg.GetHoleLength(); h > 0 {
		if len(msg.GetData()) > 0 || h > r.total-r.received {
			return fmt.Errorf("bad hole of %d bytes at %d: %w", h, r.received, executor.ErrDiskCorrupt)
		}
		r.inHole = int64(h)
		hashZeros(r.hash, int64(h))
		r.received += h
		r.m.done.Store(int64(r.received))
		return nil
	}
	if err := r.t.pullLimit.wait(r.ctx, len(msg.GetData())); err != nil {
		return fmt.Errorf("pulling disk: %w", err)
	}
	data, err := decodeChunk(msg, r.received, r.decBuf)
	if err != nil {
		return err
	}
	if uint64(len(data)) > r.total-r.received {
		return fmt.Errorf("peer sent more than the %d bytes it announced: %w", r.total, executor.ErrDiskCorrupt)
	}
	if msg.GetEncoding() != agentv1.ChunkEncoding_CHUNK_ENCODING_UNSPECIFIED {
		r.decBuf = data[:0] // decoded into, again and again: pending gets a copy
		data = bytes.Clone(data)
	}
	r.hash.Write(data)
	r.inData = data
	r.received += uint64(len(data))
	r.m.done.Store(int64(r.received))
	r.m.sent.Add(int64(len(msg.GetData())))
	r.t.wirePulled.Add(int64(len(msg.GetData())))
	return nil
}

// resume opens a new extent stream from the end of what was verified,
// after a cut or a bad chunk, unless the pull is refused, ctx ended, or
// ResumeAttempts resumes in a row got no further.
func (r *pullReader) resume(cause error) error {
	for {
		if r.ctx.Err() != nil || errors.Is(cause, ErrRefused) {
			return cause
		}
		if r.received != r.failedAt || r.failures == 0 {
			r.failures, r.failedAt = 0, r.received
		}
		r.failures++
		if r.failures > r.t.cfg.ResumeAttempts {
			return cause
		}
		wait := r.t.resumeWait << min(r.failures-1, 4)
		r.log.Warn("pull cut; resuming", "at_offset", r.received, "of", r.total, "attempt", r.failures, "wait", wait, "err", cause)
		select {
		case <-time.After(wait):
		case <-r.ctx.Done():
			return cause
		}
		stream, err := r.open(r.received)
		if err != nil {
			cause = streamErr(r.ctx, err)
			continue
		}
		r.stream, r.resumes = stream, r.resumes+1
		msg, err := stream.Recv()
		if err != nil {
			cause = streamErr(r.ctx, err)
			continue
		}
		if msg.GetVersion() != streamVersion || msg.GetTotalSize() != r.total {
			return fmt.Errorf("resumed stream is version %d of %d bytes, was version %d of %d: %w",
				msg.GetVersion(), msg.GetTotalSize(), r.version, r.total, executor.ErrDiskCorrupt)
		}
		if err := r.header(msg); err != nil {
			cause = err
			continue
		}
		return nil
	}
}

// plain takes one message of a plain stream (from an older source).
func (r *pullReader) plain(msg *agentv1.DiskChunk) error {
	if sum := msg.GetSha256(); len(sum) > 0 {
		return r.finish(sum, len(msg.GetData()))
	}
	data := msg.GetData()
	r.received += uint64(len(data))
	if r.received > r.total {
		return fmt.Errorf("peer sent more than the %d bytes it announced: %w", r.total, executor.ErrDiskCorrupt)
	}
	r.hash.Write(data)
	r.inData = data
	r.m.done.Store(int64(r.received))
	r.m.sent.Add(int64(len(data)))
	r.t.wirePulled.Add(int64(len(data)))
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

// Sum implements hypervisor.DigestReader: the SHA-256 of the whole image,
// checked against the source's once Read has returned io.EOF.
func (r *pullReader) Sum() ([]byte, bool) {
	if !r.verified {
		return nil, false
	}
	return r.hash.Sum(nil), true
}

var (
	_ hypervisor.SparseReader = (*pullReader)(nil)
	_ hypervisor.DigestReader = (*pullReader)(nil)
)

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
