package transfer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/flotilla-vm/flotilla/agent/executor"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// The extent stream (PullDiskRequest.version 2). What it adds to the plain
// one, and why each part is shaped as it is:
//
//   - Only data travels. The source asks the file system where the data is
//     (SEEK_DATA/SEEK_HOLE) when the driver's reader is a file, and turns
//     every all-zero chunk it reads into a hole too; a hole is one small
//     message however long, and the target leaves it unwritten.
//   - Each data chunk carries a CRC-32C over its offset and plain bytes; the
//     puller checks it before the bytes go anywhere, and checks that the
//     messages tile the image in order. A bad chunk (or one at the wrong
//     place, or badly decompressed) is thus caught at once, and the pull
//     resumes from before it.
//   - The last message carries the SHA-256 of the whole image (holes as
//     zeros), as the plain stream's does, and the puller, hashing what it
//     hands on, checks it before its reader ends: the strong end-to-end
//     check stays. A resumed stream's source re-reads (not re-sends) what
//     came before its start to hash it. One SHA-256 pass on each side is
//     the copy's main CPU cost, so the driver may take the digest from the
//     reader (hypervisor.DigestReader) instead of hashing again.
//   - Chunks go zstd-compressed when the puller accepts it, the source is
//     not configured off, the network is what holds the copy back (chunks
//     ready to send queue up, and the link, or the rate limit, carries
//     less than compressBelow, 100 MiB/s) and the compressed form is at
//     least 1/8 smaller. After a chunk that did not compress, the next few of
//     the same extent are sent as they are, untried (disk contents come in
//     runs). On a fast link the CPU is the limit and nothing is compressed.
//   - A cut stream is resumed: the puller asks again from the end of what
//     it verified (resume_offset), within the offer's life.
const (
	streamVersion = 2
	// zstdGain: a chunk is sent compressed only when that saves 1/8 of it.
	zstdGainDenom = 8
	// maxCompressSkip is the most chunks sent plain, untried, after a
	// chunk that did not compress.
	maxCompressSkip = 8
)

// Compression says whether the source compresses chunks.
type Compression int

const (
	// CompressAuto compresses a chunk with zstd when that pays (default).
	CompressAuto Compression = iota
	// CompressOff never compresses.
	CompressOff
)

func (c Compression) String() string {
	if c == CompressOff {
		return "off"
	}
	return "auto"
}

// ParseCompression reads "auto" or "off".
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "auto", "zstd", "":
		return CompressAuto, nil
	case "off", "none":
		return CompressOff, nil
	}
	return 0, fmt.Errorf("compression %q: want auto or off", s)
}

var zeroChunk [ChunkSize]byte

// allZero reports whether b holds only zero bytes (len(b) <= ChunkSize).
func allZero(b []byte) bool { return bytes.Equal(b, zeroChunk[:len(b)]) }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// chunkCRC is a data chunk's checksum: CRC-32C of its offset (8 bytes,
// big-endian) and its plain bytes.
func chunkCRC(off uint64, data []byte) uint32 {
	var o [8]byte
	binary.BigEndian.PutUint64(o[:], off)
	return crc32.Update(crc32.Update(0, castagnoli, o[:]), castagnoli, data)
}

// hashZeros writes n zero bytes to h (a hole, in the image's digest).
func hashZeros(h hash.Hash, n int64) {
	for n > 0 {
		k := min(n, ChunkSize)
		h.Write(zeroChunk[:k])
		n -= k
	}
}

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
	zstdErr  error
)

// codecs returns the shared zstd encoder and decoder (EncodeAll and
// DecodeAll are safe for concurrent use).
func codecs() (*zstd.Encoder, *zstd.Decoder, error) {
	zstdOnce.Do(func() {
		zstdEnc, zstdErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false))
		if zstdErr != nil {
			return
		}
		zstdDec, zstdErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(2*ChunkSize), zstd.WithDecoderMaxWindow(2*ChunkSize))
	})
	return zstdEnc, zstdDec, zstdErr
}

// decodeChunk checks a data message of the extent stream at offset off
// and returns its plain bytes. dst is reused for decompression.
func decodeChunk(msg *agentv1.DiskChunk, off uint64, dst []byte) ([]byte, error) {
	data := msg.GetData()
	plain := int(msg.GetPlainLength())
	if plain <= 0 || plain > ChunkSize {
		return nil, fmt.Errorf("chunk at %d: plain length %d out of range: %w", off, plain, executor.ErrDiskCorrupt)
	}
	switch msg.GetEncoding() {
	case agentv1.ChunkEncoding_CHUNK_ENCODING_UNSPECIFIED:
	case agentv1.ChunkEncoding_CHUNK_ENCODING_ZSTD:
		_, dec, err := codecs()
		if err != nil {
			return nil, err
		}
		if data, err = dec.DecodeAll(data, dst[:0]); err != nil {
			return nil, fmt.Errorf("chunk at %d: %v: %w", off, err, executor.ErrDiskCorrupt)
		}
	default:
		return nil, fmt.Errorf("chunk at %d: unknown encoding %v: %w", off, msg.GetEncoding(), executor.ErrDiskCorrupt)
	}
	if len(data) != plain {
		return nil, fmt.Errorf("chunk at %d: %d bytes, announced %d: %w", off, len(data), plain, executor.ErrDiskCorrupt)
	}
	if chunkCRC(off, data) != msg.GetChunkCrc32C() {
		return nil, fmt.Errorf("chunk at %d: checksum mismatch: %w", off, executor.ErrDiskCorrupt)
	}
	return data, nil
}
