package transfer

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// Whence values of lseek(2) for sparse files (Linux, and most others).
const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

// extentReader walks a disk image from an offset, returning its data in
// chunks of at most ChunkSize and its holes as lengths. With an *os.File it
// asks the file system where the data is and reads only that (at
// offsets); with any other io.ReaderAt it reads everything at offsets; with
// a plain io.Reader it reads everything in order (skipping to the start).
// All-zero chunks read are holes too.
type extentReader struct {
	size int64 // the image's
	end  int64 // where next stops: size, or less to read only a prefix
	off  int64

	file    *os.File    // SEEK_DATA/SEEK_HOLE work on it until sparse is false
	sparse  bool        // the file system answers SEEK_DATA
	dataEnd int64       // end of the data extent off is in (file)
	at      io.ReaderAt // reads at offsets (file or ReaderAt)
	seq     io.Reader   // reads in order otherwise
}

// newExtentReader reads disk (of size bytes) from offset 0.
func newExtentReader(disk io.Reader, size int64) *extentReader {
	e := &extentReader{size: size, end: size}
	switch d := disk.(type) {
	case *os.File:
		e.file, e.sparse, e.at = d, true, d
	case io.ReaderAt:
		e.at = d
	default:
		e.seq = disk
	}
	return e
}

// next returns the hole at the reader's position (hole > 0), or the next
// data chunk, read into buf; io.EOF at end. An all-zero chunk comes back
// as a hole.
func (e *extentReader) next(buf []byte) (hole int64, data []byte, err error) {
	if e.off >= e.end {
		if e.seq != nil && e.end == e.size {
			// Nothing may follow the announced size.
			var b [1]byte
			if n, _ := io.ReadFull(e.seq, b[:]); n > 0 {
				return 0, nil, errGrew
			}
		}
		return 0, nil, io.EOF
	}
	limit := e.end - e.off
	if e.file != nil && e.sparse && e.off >= e.dataEnd {
		data, err := e.file.Seek(e.off, seekData)
		switch {
		case errors.Is(err, syscall.ENXIO): // no data from off on
			data = e.size
		case err != nil: // no SEEK_DATA here: read everything
			e.sparse, e.dataEnd = false, e.size
			data = e.off
		}
		if data > e.off {
			hole := min(data, e.end) - e.off
			e.off += hole
			return hole, nil, nil
		}
		if e.sparse {
			end, err := e.file.Seek(e.off, seekHole)
			if err != nil || end <= e.off {
				end = e.size
			}
			e.dataEnd = min(end, e.end)
		}
	}
	if e.file != nil {
		limit = min(limit, e.dataEnd-e.off)
	}
	n := int(min(int64(len(buf)), limit))
	buf = buf[:n]
	if e.at != nil {
		var got int
		got, err = e.at.ReadAt(buf, e.off)
		if got < n {
			if err == nil || err == io.EOF {
				err = errShrank
			}
			return 0, nil, err
		}
	} else if _, err = io.ReadFull(e.seq, buf); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = errShrank
		}
		return 0, nil, err
	}
	e.off += int64(n)
	if allZero(buf) {
		return int64(n), nil, nil
	}
	return 0, buf, nil
}

var (
	errShrank = errors.New("disk is shorter than announced")
	errGrew   = errors.New("disk is longer than announced")
)
