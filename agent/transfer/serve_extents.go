package transfer

import (
	"context"
	"crypto/sha256"
	"hash"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/hypervisor"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// hashPrefix hashes the image up to end (holes as zeros), leaving ext there.
func hashPrefix(ctx context.Context, ext *extentReader, end int64, sum hash.Hash) error {
	ext.end = end
	defer func() { ext.end = ext.size }()
	buf := make([]byte, ChunkSize)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hole, data, err := ext.next(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if hole > 0 {
			hashZeros(sum, hole)
		} else {
			sum.Write(data)
		}
	}
}

const (
	// compressBelow: chunks are compressed only while the link carries
	// less than this (bytes/s). zstd's fastest level compresses some
	// 400-500 MB/s per core; on the 2-core test bed, where both ends
	// share the CPUs, compressing at ~400 MiB/s (a fast link) made copies
	// slower, and a link slowed by CPU contention is not told apart from a
	// slow one: so only a clearly slow link (under about 800 Mb/s, or a
	// rate limit under that) has chunks compressed.
	compressBelow = 100 << 20
	// rateWindow is how long the link's rate is measured over.
	rateWindow = 250 * time.Millisecond
)

// prepared is one message of the extent stream, ready to send.
type prepared struct {
	msg  *agentv1.DiskChunk
	wire int     // data bytes on the wire
	buf  *[]byte // from chunkBufs, back there once msg is sent
	err  error
}

// chunkBufs holds read buffers of ChunkSize. A buffer goes back once its
// message is sent: gRPC has encoded it by then (this server has no stats
// handler or tracing that could look at a message later).
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// serveExtents sends the disk as an extent stream (see wire.go) from the
// offset the puller asks for. Reading, hashing and compressing run in one
// goroutine, sending in this one, so both cores work on a large copy.
func (t *Transfer) serveExtents(ctx context.Context, log *slog.Logger, req *agentv1.PullDiskRequest, id string,
	layer hypervisor.DiskLayer, disk io.Reader, size int64, stream grpc.ServerStreamingServer[agentv1.DiskChunk]) error {
	start := req.GetResumeOffset()
	if start > uint64(size) {
		log.Warn("pull refused: resume offset past the end", "resume_offset", start, "disk_bytes", size)
		return status.Errorf(codes.OutOfRange, "resume offset %d is past the disk's %d bytes", start, size)
	}
	ext := newExtentReader(disk, size)
	// The final digest covers the whole image: what a resumed stream does
	// not send is read again here, and hashed.
	sum := sha256.New()
	if start > 0 {
		if err := hashPrefix(ctx, ext, int64(start), sum); err != nil {
			log.Error("pull: reading disk before the resume offset failed", "err", err)
			return status.Errorf(codes.Internal, "reading disk: %v", err)
		}
	}
	if err := stream.Send(&agentv1.DiskChunk{Version: streamVersion, TotalSize: uint64(size), Offset: start}); err != nil {
		return err
	}
	compress := req.GetAcceptZstd() && t.cfg.Compression != CompressOff
	started := time.Now()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan prepared, 8)
	// slow: the link (or the rate limit) carries less than compressBelow,
	// measured by the sender over windows of rateWindow.
	var slow atomic.Bool
	slow.Store(t.sendLimit != nil && t.sendLimit.rate < compressBelow)
	go t.prepare(ctx, ext, start, sum, compress, &slow, msgs)

	var sent, wire, holes int64
	winStart, winWire := time.Now(), int64(0)
	var compressed int
	var last *agentv1.DiskChunk
	for p := range msgs {
		if p.err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			log.Error("pull: reading disk failed", "sent_bytes", sent, "err", p.err)
			if p.err == errShrank || p.err == errGrew {
				// The file changed under us: the domain was not really stopped.
				return status.Errorf(codes.Aborted, "disk changed size while being sent: %v", p.err)
			}
			return status.Errorf(codes.Internal, "reading disk: %v", p.err)
		}
		if p.msg.GetDone() {
			last = p.msg
			break
		}
		if err := t.sendLimit.wait(ctx, p.wire); err != nil {
			return status.FromContextError(err).Err()
		}
		if err := stream.Send(p.msg); err != nil {
			log.Info("pull broken while sending", "sent_bytes", sent, "err", err)
			return err
		}
		if p.buf != nil {
			chunkBufs.Put(p.buf)
		}
		wire += int64(p.wire)
		t.wireSent.Add(int64(p.wire))
		if winWire += int64(p.wire); time.Since(winStart) >= rateWindow {
			slow.Store(float64(winWire)/time.Since(winStart).Seconds() < compressBelow)
			winStart, winWire = time.Now(), 0
		}
		if h := p.msg.GetHoleLength(); h > 0 {
			holes += int64(h)
		} else {
			sent += int64(p.msg.GetPlainLength())
			if p.msg.GetEncoding() == agentv1.ChunkEncoding_CHUNK_ENCODING_ZSTD {
				compressed++
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	if last == nil {
		return status.Error(codes.Internal, "disk read ended early")
	}
	if err := t.checkStillOff(ctx, log, id, layer); err != nil {
		return err
	}
	if err := stream.Send(last); err != nil {
		return err
	}
	log.Info("disk pulled", "disk_bytes", size, "from_offset", start, "data_bytes", sent, "hole_bytes", holes,
		"wire_bytes", wire, "compressed_chunks", compressed, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// prepare reads the disk from start and queues its messages: holes merged,
// data checksummed and, when it pays, compressed; everything hashed into
// sum, which the last message (done) carries. The channel is closed at the
// end, after an error message if there was one.
func (t *Transfer) prepare(ctx context.Context, ext *extentReader, start uint64, sum hash.Hash, compress bool, slow *atomic.Bool, out chan<- prepared) {
	defer close(out)
	put := func(p prepared) bool {
		select {
		case out <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var enc interface {
		EncodeAll(src, dst []byte) []byte
	}
	if compress {
		e, _, err := codecs()
		if err != nil {
			put(prepared{err: err})
			return
		}
		enc = e
	}
	off := start
	var holeStart, holeLen uint64
	flushHole := func() bool {
		if holeLen == 0 {
			return true
		}
		ok := put(prepared{msg: &agentv1.DiskChunk{Offset: holeStart, HoleLength: holeLen}})
		holeLen = 0
		return ok
	}
	skip, skipNext := 0, 0 // chunks to send plain before trying again
	for {
		if ctx.Err() != nil {
			return
		}
		bp := chunkBufs.Get().(*[]byte)
		hole, data, err := ext.next(*bp)
		if err == io.EOF {
			if flushHole() {
				put(prepared{msg: &agentv1.DiskChunk{Done: true, Sha256: sum.Sum(nil)}})
			}
			return
		}
		if err != nil {
			put(prepared{err: err})
			return
		}
		if hole > 0 {
			chunkBufs.Put(bp)
			hashZeros(sum, hole)
			skip, skipNext = 0, 0 // a new extent: its data may compress
			if holeLen == 0 {
				holeStart = off
			}
			holeLen += uint64(hole)
			off += uint64(hole)
			continue
		}
		if !flushHole() {
			return
		}
		sum.Write(data)
		msg := &agentv1.DiskChunk{Offset: off, PlainLength: uint32(len(data)), ChunkCrc32C: chunkCRC(off, data), Data: data}
		// Compressing pays only when the network holds the copy back:
		// messages queue up here, and the link carries less than
		// compressBelow (a receiver that is slow for want of CPU also
		// makes them queue up, and compressing would slow it further).
		if enc != nil && len(out) >= cap(out)/2 && slow.Load() {
			if skip > 0 {
				skip--
			} else if z := enc.EncodeAll(data, make([]byte, 0, len(data))); len(z) < len(data)-len(data)/zstdGainDenom {
				msg.Data, msg.Encoding = z, agentv1.ChunkEncoding_CHUNK_ENCODING_ZSTD
				skipNext = 0
			} else {
				skipNext = min(max(1, skipNext*2), maxCompressSkip)
				skip = skipNext
			}
		}
		off += uint64(len(data))
		if !put(prepared{msg: msg, wire: len(msg.Data), buf: bp}) {
			return
		}
	}
}
