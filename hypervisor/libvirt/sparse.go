package libvirt

import (
	"bytes"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Writing a received disk sparse: what is a hole on the source stays one
// here, so an overlay takes the space it took there (st_blocks), not its
// apparent size.
const (
	// sparseBlock is the granularity of zero detection in what is read: a
	// multiple of any file system's block, small enough to find the
	// zero clusters of a qcow2 file (64 KiB by default).
	sparseBlock = 64 << 10
	// receiveBuf is how much is read at a time.
	receiveBuf = 1 << 20
)

var zeroBlock [receiveBuf]byte

// writeSparse writes disk into f (empty, at offset 0), leaving holes
// unwritten: the runs of zeros a hypervisor.SparseReader skips, and every
// all-zero block of what is read; the file's size is set at the end. h
// gets every byte, zeros included, unless it is nil. More than limit bytes
// is refused (hypervisor.ErrInvalidSpec). It returns the size written.
func writeSparse(f *os.File, h hash.Hash, disk io.Reader, limit uint64) (int64, error) {
	sr, _ := disk.(hypervisor.SparseReader)
	var buf []byte
	if sr == nil {
		buf = make([]byte, receiveBuf)
	}
	var off int64
	tooLarge := func() error {
		return fmt.Errorf("disk larger than %d bytes: %w", limit, hypervisor.ErrInvalidSpec)
	}
	for {
		if sr != nil {
			n, err := sr.SkipHole()
			if n > 0 {
				if off += n; uint64(off) > limit {
					return 0, tooLarge()
				}
				for ; h != nil && n > 0; n -= min(n, receiveBuf) {
					h.Write(zeroBlock[:min(n, receiveBuf)])
				}
				continue
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, fmt.Errorf("receiving disk: %w", err)
			}
		}
		var data []byte
		var err error
		if sr != nil {
			data, err = sr.ReadData() // back to SkipHole as soon as the data ends
		} else {
			var n int
			n, err = io.ReadFull(disk, buf)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			data = buf[:n]
		}
		if n := len(data); n > 0 {
			if uint64(off)+uint64(n) > limit {
				return 0, tooLarge()
			}
			if err := writeNonZero(f, data, off); err != nil {
				return 0, err
			}
			if h != nil {
				h.Write(data)
			}
			off += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("receiving disk: %w", err)
		}
	}
	// A hole at the end is only the file's size.
	if err := f.Truncate(off); err != nil {
		return 0, err
	}
	return off, nil
}

// writeNonZero writes b at off, skipping its all-zero blocks (aligned to
// sparseBlock in the file), and coalescing the rest into few writes.
func writeNonZero(f *os.File, b []byte, off int64) error {
	start := -1 // start in b of the data not yet written
	flush := func(end int) error {
		if start < 0 {
			return nil
		}
		_, err := f.WriteAt(b[start:end], off+int64(start))
		start = -1
		return err
	}
	for i := 0; i < len(b); {
		// The block ends at the next multiple of sparseBlock in the file.
		end := min(len(b), i+sparseBlock-int((off+int64(i))%sparseBlock))
		if bytes.Equal(b[i:end], zeroBlock[:end-i]) {
			if err := flush(i); err != nil {
				return err
			}
		} else if start < 0 {
			start = i
		}
		i = end
	}
	return flush(len(b))
}
