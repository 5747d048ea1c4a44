package hypervisor

// SparseReader is implemented by a disk reader that knows where the image
// it delivers has holes (runs of zero bytes nothing need be written for).
// A driver writing a disk from an io.Reader (ImportDomain, ReceiveDisk)
// may type-assert it and leave holes unwritten; Read alone still delivers
// every byte, holes as zeros, so a driver that ignores it is correct too.
type SparseReader interface {
	// SkipHole consumes the run of zeros at the reader's position and
	// returns its length: 0 when the next bytes are data. At the end of
	// the image it returns 0 and the error Read would (io.EOF once the
	// whole image was delivered and verified).
	SkipHole() (int64, error)
	// ReadData returns the data at the reader's position, as much as it
	// has at hand (none at a hole: SkipHole it), without copying; the
	// slice is the caller's. At the end it returns the error Read would.
	ReadData() ([]byte, error)
	Read(p []byte) (int, error)
}

// DigestReader is implemented by a disk reader that hashes everything it
// delivers (holes as zeros) with SHA-256 and checks the digest against the
// source's before its Read returns io.EOF. A driver that needs the image's
// digest may take it from Sum, once Read returned io.EOF, rather than hash
// every byte again.
type DigestReader interface {
	// Sum returns the SHA-256 of the image, and false before the image
	// was read to its end and verified.
	Sum() ([]byte, bool)
}
