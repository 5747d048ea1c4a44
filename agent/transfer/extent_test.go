package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// fileDriver serves every disk from one file (sparse, on a real file
// system) and imports through hypervisor.SparseReader when the reader is
// one, recording what it was handed. The fake underneath keeps the
// domains' states.
type fileDriver struct {
	hypervisor.Driver
	path   string
	plain  bool // OpenDisk hides the *os.File (a plain io.Reader)
	sparse bool // ImportDomain uses SkipHole

	mu        sync.Mutex
	got       []byte
	readBytes int64 // bytes handed over by Read
	holeBytes int64 // bytes skipped by SkipHole
}

func (d *fileDriver) OpenDisk(ctx context.Context, id string, layer hypervisor.DiskLayer) (io.ReadCloser, int64, error) {
	rc, _, err := d.Driver.OpenDisk(ctx, id, layer) // the state checks
	if err != nil {
		return nil, 0, err
	}
	rc.Close()
	f, err := os.Open(d.path)
	if err != nil {
		return nil, 0, err
	}
	st, _ := f.Stat()
	if d.plain {
		return struct {
			io.Reader
			io.Closer
		}{f, f}, st.Size(), nil
	}
	return f, st.Size(), nil
}

func (d *fileDriver) ImportDomain(ctx context.Context, spec hypervisor.DomainSpec, disk io.Reader) error {
	var out []byte
	var read, holes int64
	sr, _ := disk.(hypervisor.SparseReader)
	buf := make([]byte, 1<<20)
	for {
		if d.sparse && sr != nil {
			h, err := sr.SkipHole()
			if err != nil && err != io.EOF {
				d.record(nil, read, holes)
				return err
			}
			if h > 0 {
				out = append(out, make([]byte, h)...)
				holes += h
				continue
			}
		}
		n, err := disk.Read(buf)
		out = append(out, buf[:n]...)
		read += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			d.record(nil, read, holes)
			return err
		}
	}
	d.record(out, read, holes)
	return nil
}

func (d *fileDriver) record(got []byte, read, holes int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got, d.readBytes, d.holeBytes = got, read, holes
}

// sparseImage writes a 32 MiB sparse file: 3 MiB of random data at 1 MiB,
// 2 MiB of compressible text at 10 MiB, 1 MiB of written zeros at 20 MiB,
// a little data at 31 MiB, holes elsewhere. It returns the path, the
// content and the bytes of data (not zero) in it.
func sparseImage(t *testing.T) (string, []byte, int64) {
	t.Helper()
	const size = 32 << 20
	content := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(content[1<<20 : 4<<20])
	text := []byte("flotilla moves disks; holes stay holes and text compresses well. ")
	for off := 10 << 20; off < 12<<20; off += len(text) {
		copy(content[off:12<<20], text)
	}
	rng.Read(content[31<<20 : 31<<20+4096])
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range [][2]int{{1 << 20, 4 << 20}, {10 << 20, 12 << 20}, {20 << 20, 21 << 20}, {31 << 20, 31<<20 + 4096}} {
		if _, err := f.WriteAt(content[r[0]:r[1]], int64(r[0])); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path, content, 3<<20 + 2<<20 + 4096
}

// filePair is a source serving path and a target importing with a
// fileDriver.
func filePair(t *testing.T, path string, srcOpts, dstOpts nodeOpts) (src, dst *node, dd *fileDriver) {
	t.Helper()
	srcOpts.wrap = func(d *fake.Driver) hypervisor.Driver { return &fileDriver{Driver: d, path: path} }
	dd = &fileDriver{sparse: true}
	dstOpts.wrap = func(d *fake.Driver) hypervisor.Driver { dd.Driver = d; return dd }
	src, dst = newNode(t, "host-s", srcOpts), newNode(t, "host-t", dstOpts)
	stopped(t, src, "vm")
	if err := src.tr.Offer(ctxT(t), "vm", hypervisor.DiskWhole, token, "host-t", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return src, dst, dd
}

func TestSparseCopy(t *testing.T) {
	path, want, data := sparseImage(t)
	for _, tc := range []struct {
		name       string
		plainSrc   bool // the source's reader is no file: every byte is read, zeros still skipped
		sparseDst  bool
		compressed bool
	}{
		{"file to sparse target", false, true, true},
		{"reader to sparse target", true, true, true},
		{"file to a target reading zeros", false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst, dd := filePair(t, path, nodeOpts{}, nodeOpts{})
			src.tr.cfg.Driver.(*fileDriver).plain = tc.plainSrc
			dd.sparse = tc.sparseDst
			if err := dst.tr.Import(ctxT(t), spec("vm"), "host-s", src.addr, token); err != nil {
				t.Fatalf("Import: %v", err)
			}
			if !bytes.Equal(dd.got, want) {
				t.Fatal("imported disk differs from the source's")
			}
			sent, _ := src.tr.Stats()
			_, pulled := dst.tr.Stats()
			t.Logf("data %d, wire %d, read by the driver %d, holes skipped %d", data, sent, dd.readBytes, dd.holeBytes)
			// A reader that is no file is read in whole chunks: the one
			// with 4 KiB of data goes whole.
			if sent != pulled || sent > data+ChunkSize {
				t.Fatalf("sent %d, pulled %d bytes over the wire for %d of data", sent, pulled, data)
			}
			if tc.sparseDst {
				if dd.readBytes > data+ChunkSize || dd.holeBytes < int64(len(want))-data-ChunkSize {
					t.Fatalf("driver read %d bytes and skipped %d of holes; the image has %d of data in %d", dd.readBytes, dd.holeBytes, data, len(want))
				}
			} else if dd.readBytes != int64(len(want)) {
				t.Fatalf("driver without SkipHole read %d bytes of %d", dd.readBytes, len(want))
			}
		})
	}
}

func TestCompression(t *testing.T) {
	path, want, data := sparseImage(t)
	for _, tc := range []struct {
		name     string
		src, dst Compression
		smaller  bool
	}{
		// The source's rate limit makes compressing pay. It is low
		// enough that even a reader starved of CPU (-race on a loaded
		// machine) stays ahead of the link, as compressing needs.
		{"auto", CompressAuto, CompressAuto, true},
		{"source off", CompressOff, CompressAuto, false},
		{"puller off", CompressAuto, CompressOff, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst, dd := filePair(t, path,
				nodeOpts{cfg: func(c *Config) { c.Compression, c.RateLimit = tc.src, 2<<20 }},
				nodeOpts{cfg: func(c *Config) { c.Compression = tc.dst }})
			if err := dst.tr.Import(ctxT(t), spec("vm"), "host-s", src.addr, token); err != nil {
				t.Fatalf("Import: %v", err)
			}
			if !bytes.Equal(dd.got, want) {
				t.Fatal("imported disk differs from the source's")
			}
			_, pulled := dst.tr.Stats()
			t.Logf("%d bytes of data, %d on the wire", data, pulled)
			// The text (2 MiB) compresses to almost nothing; the random
			// data (3 MiB) not at all, and is sent as it is.
			if tc.smaller && pulled > data-(2<<20)+(256<<10) {
				t.Fatalf("compressed copy sent %d bytes for %d of data", pulled, data)
			}
			if !tc.smaller && pulled != data {
				t.Fatalf("uncompressed copy sent %d bytes for %d of data", pulled, data)
			}
		})
	}
}

// mangler is a server stream interceptor that lets a test change or cut
// the messages a PullDisk sends.
type mangler struct {
	calls atomic.Int32
	// mangle sees message i of call c (from 0) and returns false to cut
	// the stream there.
	mangle func(call, i int, m *agentv1.DiskChunk) bool
}

func (m *mangler) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &mangledStream{ServerStream: ss, m: m, call: int(m.calls.Add(1)) - 1})
}

type mangledStream struct {
	grpc.ServerStream
	m    *mangler
	call int
	i    int
}

func (s *mangledStream) SendMsg(msg any) error {
	c := msg.(*agentv1.DiskChunk)
	i := s.i
	s.i++
	if !s.m.mangle(s.call, i, c) {
		return status.Error(codes.Unavailable, "connection cut by the test")
	}
	return s.ServerStream.SendMsg(c)
}

// mangledPair is filePair with the source's stream passed through m.
func mangledPair(t *testing.T, path string, m *mangler, dstOpts nodeOpts) (src, dst *node, dd *fileDriver) {
	t.Helper()
	src, dst, dd = filePair(t, path, nodeOpts{cfg: func(c *Config) { c.Compression = CompressOff }}, dstOpts)
	src.addr = serveWith(t, src.tr.Register, grpc.StreamInterceptor(m.intercept))
	return src, dst, dd
}

func serveWith(t *testing.T, register func(*grpc.Server), opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestResume(t *testing.T) {
	// Random data throughout, so that every chunk travels.
	path := filepath.Join(t.TempDir(), "disk.img")
	want := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{2}).Read(want)
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	chunks := len(want) / ChunkSize
	var cutAt atomic.Int64
	m := &mangler{mangle: func(call, i int, c *agentv1.DiskChunk) bool {
		if call == 0 && i == 1+chunks/2 { // the header, then half the chunks
			cutAt.Store(int64(c.GetOffset()))
			return false
		}
		return true
	}}
	src, dst, dd := mangledPair(t, path, m, nodeOpts{})
	if err := dst.tr.Import(ctxT(t), spec("vm"), "host-s", src.addr, token); err != nil {
		t.Fatalf("Import over a stream cut halfway: %v", err)
	}
	if !bytes.Equal(dd.got, want) {
		t.Fatal("resumed copy differs from the source's disk")
	}
	if m.calls.Load() != 2 {
		t.Fatalf("%d PullDisk calls, want 2 (one resume)", m.calls.Load())
	}
	sent, _ := src.tr.Stats()
	t.Logf("cut at %d of %d; %d bytes sent in all", cutAt.Load(), len(want), sent)
	if cutAt.Load() != int64(len(want)/2) {
		t.Fatalf("cut at %d, want the middle", cutAt.Load())
	}
	if sent > int64(len(want))+ChunkSize {
		t.Fatalf("sent %d bytes for a %d-byte disk: the part before the cut was sent again", sent, len(want))
	}
	if dd.readBytes != int64(len(want)) {
		t.Fatalf("driver read %d bytes of %d: it saw the cut", dd.readBytes, len(want))
	}
}

func TestCorruptChunk(t *testing.T) {
	path, want, _ := sparseImage(t)
	// A byte of a chunk flipped: the first time only (resumed and
	// completed), or every time (fails, and the driver was never handed
	// the bad chunk nor anything after it).
	for _, always := range []bool{false, true} {
		var badOff atomic.Int64
		m := &mangler{mangle: func(call, i int, c *agentv1.DiskChunk) bool {
			if len(c.GetData()) == 0 {
				return true
			}
			if call == 0 && badOff.Load() == 0 && c.GetOffset() >= 2<<20 {
				badOff.Store(int64(c.GetOffset()))
			}
			if int64(c.GetOffset()) == badOff.Load() && (always || call == 0) {
				c.Data = bytes.Clone(c.Data)
				c.Data[100] ^= 1
			}
			return true
		}}
		src, dst, dd := mangledPair(t, path, m, nodeOpts{cfg: func(c *Config) { c.ResumeAttempts = 2 }})
		err := dst.tr.Import(ctxT(t), spec("vm"), "host-s", src.addr, token)
		if !always {
			if err != nil {
				t.Fatalf("Import with one corrupt chunk: %v", err)
			}
			if !bytes.Equal(dd.got, want) || m.calls.Load() != 2 {
				t.Fatalf("copy differs or took %d calls (want 2)", m.calls.Load())
			}
			continue
		}
		if !errors.Is(err, executor.ErrDiskCorrupt) {
			t.Fatalf("Import with a chunk always corrupt = %v, want ErrDiskCorrupt", err)
		}
		t.Logf("refused: %v", err)
		if end := dd.readBytes + dd.holeBytes; end > badOff.Load() {
			t.Fatalf("driver was handed %d bytes; the bad chunk was at %d", end, badOff.Load())
		}
		wantNoDomain(t, dst, "vm")
	}
}

// A chunk changed with its checksum to match passes as it arrives, but
// not the digest of the whole image at the end: the import fails and
// leaves nothing.
func TestDigestCatchesWhatChunkChecksumsMiss(t *testing.T) {
	path, _, _ := sparseImage(t)
	m := &mangler{mangle: func(call, i int, c *agentv1.DiskChunk) bool {
		if len(c.GetData()) > 0 && c.GetOffset() == 2<<20 {
			c.Data = bytes.Clone(c.Data)
			c.Data[0] ^= 1
			c.ChunkCrc32C = chunkCRC(c.GetOffset(), c.Data)
		}
		return true
	}}
	src, dst, dd := mangledPair(t, path, m, nodeOpts{})
	err := dst.tr.Import(ctxT(t), spec("vm"), "host-s", src.addr, token)
	if !errors.Is(err, executor.ErrDiskCorrupt) || m.calls.Load() != 1 {
		t.Fatalf("Import with a consistent but wrong chunk = %v after %d calls, want ErrDiskCorrupt after 1", err, m.calls.Load())
	}
	if dd.got != nil {
		t.Fatal("the driver saw a normal end")
	}
	wantNoDomain(t, dst, "vm")
}

func TestThrottle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	data := make([]byte, 2<<20)
	rand.NewChaCha8([32]byte{3}).Read(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	const rate = 1 << 20
	for _, side := range []string{"source", "puller"} {
		t.Run(side, func(t *testing.T) {
			limit := func(c *Config) { c.RateLimit = rate }
			var so, do nodeOpts
			if side == "source" {
				so.cfg = limit
			} else {
				do.cfg = limit
			}
			src, dst, dd := filePair(t, path, so, do)
			start := time.Now()
			if err := dst.tr.Import(ctxT(t), spec("vm"), "host-s", src.addr, token); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if !bytes.Equal(dd.got, data) {
				t.Fatal("copy differs")
			}
			// 2 MiB at 1 MiB/s with a 256 KiB burst: 1.75 s at least.
			t.Logf("2 MiB at %d B/s took %s", rate, took)
			if took < 1500*time.Millisecond || took > 10*time.Second {
				t.Fatalf("2 MiB at 1 MiB/s took %s", took)
			}
		})
	}
}

type ctxKey struct{}

func TestProgress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	data := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{4}).Read(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []Progress
	src, dst, _ := filePair(t, path, nodeOpts{}, nodeOpts{cfg: func(c *Config) {
		c.RateLimit = 4 << 20
		c.ProgressEvery = 50 * time.Millisecond
		c.Progress = func(ctx context.Context, p Progress) {
			if ctx.Value(ctxKey{}) != "step-1" {
				t.Errorf("progress without the Import's context")
			}
			mu.Lock()
			got = append(got, p)
			mu.Unlock()
		}
	}})
	ctx := context.WithValue(ctxT(t), ctxKey{}, "step-1")
	if err := dst.tr.Import(ctx, spec("vm"), "host-s", src.addr, token); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 5 {
		t.Fatalf("%d progress reports for a copy of about 0.7 s every 50 ms", len(got))
	}
	var last, rates int64
	for _, p := range got {
		if p.InstanceID != "vm" || p.Total != int64(len(data)) || p.Done < last || p.Done > p.Total || p.Sent > p.Done {
			t.Fatalf("bad progress %+v after done=%d", p, last)
		}
		last, rates = p.Done, rates+p.Rate
	}
	// The rate is of each interval: around the limit on average.
	if mean := rates / int64(len(got)); mean < 1<<20 || mean > 8<<20 || last < int64(len(data))/2 {
		t.Fatalf("progress showed a mean rate of %d B/s (limit 4 MiB/s) and ended at %d of %d", mean, last, len(data))
	}
	t.Logf("%d reports, last %+v", len(got), got[len(got)-1])
}

// TestOldPuller: a puller that does not ask for the extent stream (an
// older agent) gets the plain one, every byte and the SHA-256 at the end.
func TestOldPuller(t *testing.T) {
	path, want, _ := sparseImage(t)
	src, _, _ := filePair(t, path, nodeOpts{}, nodeOpts{})
	conn, err := grpc.NewClient(src.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := agentv1.NewAgentPeerServiceClient(conn).PullDisk(ctxT(t), &agentv1.PullDiskRequest{
		InstanceId: "vm", Token: token, HostId: "host-t"})
	if err != nil {
		t.Fatal(err)
	}
	var got, sum []byte
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.GetVersion() != 0 || m.GetHoleLength() != 0 || m.GetOffset() != 0 {
			t.Fatalf("extent stream fields in a plain stream: %v", m)
		}
		got = append(got, m.GetData()...)
		if len(m.GetSha256()) > 0 {
			sum = m.GetSha256()
		}
	}
	if want256 := sha256.Sum256(want); !bytes.Equal(got, want) || !bytes.Equal(sum, want256[:]) {
		t.Fatal("plain stream differs from the disk")
	}
}
