package transfer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
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
//   - Each data chunk carries SHA-256 over its offset and plain bytes; the
//     puller checks it before the bytes go anywhere, and checks that the
//     messages tile the image in order from where it asked to start to the
//     announced size. Every byte handed to the driver is thus one the
//     source read at that offset (holes: one it read as zero or the file
//     system reported as a hole), which is what the plain stream's final
//     SHA-256 established, but per chunk: a bad chunk is caught at once,
//     and a resumed pull needs no hash state of the part already done.
//   - Chunks go zstd-compressed when the puller accepts it, the source is
//     not configured off, and the compressed form is at least 1/8 smaller;
//     after a chunk that did not compress, the next few of the same extent
//     are sent as they are, untried (disk contents come in runs), so random
//     data costs little CPU.
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

// chunkSum is a data chunk's checksum: SHA-256 of its offset (8 bytes,
// big-endian) and its plain bytes.
func chunkSum(off uint64, data []byte) []byte {
	h := sha256.New()
	var o [8]byte
	binary.BigEndian.PutUint64(o[:], off)
	h.Write(o[:])
	h.Write(data)
	return h.Sum(nil)
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
	if !bytes.Equal(chunkSum(off, data), msg.GetChunkSha256()) {
		return nil, fmt.Errorf("chunk at %d: checksum mismatch: %w", off, executor.ErrDiskCorrupt)
	}
	return data, nil
}
