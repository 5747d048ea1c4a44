package libvirt

import (
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// holeReader is a hypervisor.SparseReader over a sparse file, as the
// agent's pull delivers one: holes found with SEEK_DATA, data by Read.
type holeReader struct {
	f       *os.File
	size    int64
	off     int64
	dataEnd int64
}

func (r *holeReader) SkipHole() (int64, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.off < r.dataEnd {
		return 0, nil
	}
	data, err := r.f.Seek(r.off, 3) // SEEK_DATA
	if errors.Is(err, syscall.ENXIO) {
		data = r.size
	} else if err != nil {
		return 0, err
	}
	end, err := r.f.Seek(data, 4) // SEEK_HOLE
	if err != nil {
		end = r.size
	}
	hole := data - r.off
	r.off, r.dataEnd = data, end
	return hole, nil
}

func (r *holeReader) ReadData() ([]byte, error) {
	p := make([]byte, 256<<10)
	n, err := r.Read(p)
	if n > 0 && err == io.EOF {
		err = nil
	}
	return p[:n], err
}

func (r *holeReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n, err := r.f.ReadAt(p[:min(int64(len(p)), r.dataEnd-r.off)], r.off)
	r.off += int64(n)
	if err == io.EOF && r.off < r.size {
		err = nil
	}
	return n, err
}

// allocated is a file's allocated size (st_blocks).
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// qcow2Overlay makes a qcow2 overlay of 2 GiB virtual with scattered
// writes: random data, text, and clusters of zeros (written as data, and
// left allocated by qemu-io). It needs qemu-img and qemu-io.
func qcow2Overlay(t *testing.T, dir string) string {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool+" (run scripts/setup-host.sh)")
		}
	}
	path := filepath.Join(dir, "src.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", path, "2G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	args := []string{"-f", "qcow2"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		off := rng.Int64N(2<<30-(1<<20)) &^ (64<<10 - 1)
		pattern := []string{"0xab", "0x00", "0x5c"}[i%3]
		args = append(args, "-c", "write -P "+pattern+" "+strconv.FormatInt(off, 10)+" 512k")
	}
	args = append(args, path)
	if out, err := exec.Command("qemu-io", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v: %s", err, out)
	}
	return path
}

// sparseSource is a 256 MiB raw file with 24 MiB of data in it.
func sparseSource(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "src.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{9})
	buf := make([]byte, 2<<20)
	for i := range 12 {
		rng.Read(buf)
		if _, err := f.WriteAt(buf, int64(i)*(20<<20)+4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(256 << 20); err != nil {
		t.Fatal(err)
	}
	return path
}

// receiveDisk writes what it receives sparse: the destination's allocated
// size is within 5 % of the source's, from a SparseReader (the agent's
// pull) and from a plain reader (zeros found by looking at them).
func TestReceiveDiskWritesSparse(t *testing.T) {
	dir := t.TempDir()
	sources := map[string]string{"raw": sparseSource(t, dir)}
	if _, err := exec.LookPath("qemu-io"); err == nil {
		sources["qcow2"] = qcow2Overlay(t, dir)
	}
	for name, src := range sources {
		for _, sparseReader := range []bool{true, false} {
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			var r io.Reader = f
			if sparseReader {
				r = &holeReader{f: f, size: st.Size()}
			}
			out := filepath.Join(t.TempDir())
			path, sum, size, err := receiveDisk(out, "vm", r, 4<<30)
			f.Close()
			if err != nil {
				t.Fatalf("%s: receiveDisk: %v", name, err)
			}
			want, _ := fileSum(src)
			got, _ := fileSum(path)
			if size != st.Size() || got != want || sum != want {
				t.Fatalf("%s: received %d bytes, differing from the %d of the source (or its digest)", name, size, st.Size())
			}
			a, b := allocated(t, src), allocated(t, path)
			t.Logf("%s (sparse reader %v): %d bytes apparent, source allocates %d, copy %d", name, sparseReader, size, a, b)
			if b > a+a/20 {
				t.Fatalf("%s (sparse reader %v): copy allocates %d bytes, source %d: more than 5 %% over", name, sparseReader, b, a)
			}
		}
	}
}

// digestReader is a holeReader that hashes what it delivers, as the
// agent's pull does (hypervisor.DigestReader).
type digestReader struct {
	holeReader
	h    hash.Hash
	done bool
	lie  bool // Sum says it has no verified digest
}

func (r *digestReader) SkipHole() (int64, error) {
	n, err := r.holeReader.SkipHole()
	r.h.Write(make([]byte, n))
	r.done = r.done || err == io.EOF
	return n, err
}

func (r *digestReader) Read(p []byte) (int, error) {
	n, err := r.holeReader.Read(p)
	r.h.Write(p[:n])
	r.done = r.done || err == io.EOF
	return n, err
}

func (r *digestReader) ReadData() ([]byte, error) {
	p := make([]byte, 256<<10)
	n, err := r.Read(p)
	if n > 0 && err == io.EOF {
		err = nil
	}
	return p[:n], err
}

func (r *digestReader) Sum() ([]byte, bool) {
	if !r.done || r.lie {
		return nil, false
	}
	return r.h.Sum(nil), true
}

// receiveDisk takes the digest from a reader that has it, and refuses a
// reader that ends without one.
func TestReceiveDiskTakesTheReadersDigest(t *testing.T) {
	dir := t.TempDir()
	src := sparseSource(t, dir)
	want, _ := fileSum(src)
	for _, lie := range []bool{false, true} {
		f, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		r := &digestReader{holeReader: holeReader{f: f, size: st.Size()}, h: sha256.New(), lie: lie}
		_, sum, _, err := receiveDisk(t.TempDir(), "vm", r, 1<<30)
		f.Close()
		if lie {
			if err == nil {
				t.Fatal("receiveDisk accepted a reader without a verified digest")
			}
			continue
		}
		if err != nil || sum != want {
			t.Fatalf("receiveDisk = %x, %v; want the file's digest %x", sum, err, want)
		}
	}
}
