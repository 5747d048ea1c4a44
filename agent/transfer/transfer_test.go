package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

const token = "0123456789abcdef0123456789abcdef"

// node is one agent's side of the transfer: a fake hypervisor, a Transfer
// and, for sources, a gRPC server on a loopback socket.
type node struct {
	host string
	drv  *fake.Driver
	tr   *Transfer
	addr string
}

type nodeOpts struct {
	wrap      func(*fake.Driver) hypervisor.Driver // the driver the Transfer uses, around the fake
	serverTLS *tls.Config
	clientTLS *tls.Config
	requireID bool
	cfg       func(*Config) // changes to the Transfer's configuration
}

func newNode(t *testing.T, host string, o nodeOpts) *node {
	t.Helper()
	drv := fake.New(fake.Options{Images: []string{"img"}})
	t.Cleanup(func() { drv.Close() })
	var d hypervisor.Driver = drv
	if o.wrap != nil {
		d = o.wrap(drv)
	}
	n := &node{host: host, drv: drv}
	cfg := Config{HostID: host, Driver: d, Logger: testLogger(t).With("node", host),
		ClientTLS: o.clientTLS, RequireClientIdentity: o.requireID}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	n.tr = New(cfg)
	n.tr.resumeWait = time.Millisecond
	n.addr = serve(t, o.serverTLS, n.tr.Register)
	return n
}

// serve runs a gRPC server on a fresh loopback port until the test ends.
func serve(t *testing.T, tlsCfg *tls.Config, register func(*grpc.Server)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(ServerCredentials(tlsCfg)))
	}
	srv := grpc.NewServer(opts...)
	register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func spec(id string) hypervisor.DomainSpec {
	return hypervisor.DomainSpec{ID: id, Name: "moved " + id, VCPUs: 1, MemoryMiB: 128, Image: "img"}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stopped creates instance id on n and shuts it off, ready to be offered.
func stopped(t *testing.T, n *node, id string) []byte {
	t.Helper()
	ctx := ctxT(t)
	if err := n.drv.Create(ctx, spec(id)); err != nil {
		t.Fatal(err)
	}
	if err := n.drv.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	disk, _ := n.drv.Disk(id)
	return disk
}

func wantCode(t *testing.T, err error, code codes.Code, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) || !hasCode(err, code) {
		t.Fatalf("error %v: want %v wrapping status %s", err, sentinel, code)
	}
}

// hasCode looks for a gRPC status with code anywhere in err's chain.
func hasCode(err error, code codes.Code) bool {
	for _, e := range allErrors(err) {
		if s, ok := status.FromError(e); ok && s.Code() == code {
			return true
		}
	}
	return false
}

func allErrors(err error) []error {
	if err == nil {
		return nil
	}
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, allErrors(e)...)
		}
	case interface{ Unwrap() error }:
		out = append(out, allErrors(u.Unwrap())...)
	}
	return out
}

func wantNoDomain(t *testing.T, n *node, id string) {
	t.Helper()
	if _, ok := n.drv.Disk(id); ok {
		t.Fatalf("%s has a domain %s; a failed import must leave nothing", n.host, id)
	}
}

func TestMove(t *testing.T) {
	var copied []Copied
	src := newNode(t, "host-s", nodeOpts{})
	dst := newNode(t, "host-t", nodeOpts{cfg: func(c *Config) { c.Copied = func(c Copied) { copied = append(copied, c) } }})
	want := stopped(t, src, "vm")
	ctx := ctxT(t)
	if err := src.tr.Offer(ctx, "vm", hypervisor.DiskWhole, token, "host-t", time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("Offer: %v", err)
	}
	// Offering again (a retried step) is harmless.
	if err := src.tr.Offer(ctx, "vm", hypervisor.DiskWhole, token, "host-t", time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("second Offer: %v", err)
	}
	if err := dst.tr.Import(ctx, spec("vm"), "host-s", src.addr, token); err != nil {
		t.Fatalf("Import: %v", err)
	}
	got, ok := dst.drv.Disk("vm")
	if !ok || !bytes.Equal(got, want) {
		t.Fatalf("imported disk differs from the source's (%d vs %d bytes)", len(got), len(want))
	}
	if st, _ := dst.drv.Status(ctx, "vm"); st.State != hypervisor.PowerShutOff {
		t.Fatalf("imported domain is %s, want shut-off", st.State)
	}
	if len(copied) != 1 || copied[0].Disk != int64(len(want)) || copied[0].Wire <= 0 || copied[0].Took <= 0 {
		t.Fatalf("copies told: %+v, want one of %d bytes", copied, len(want))
	}
	if err := dst.drv.Start(ctx, "vm"); err != nil {
		t.Fatalf("Start after import: %v", err)
	}

	// The offer stays until revoked, so an import that failed late can pull
	// again; once another step revokes it, pulling is refused.
	again := newNode(t, "host-t", nodeOpts{})
	if err := again.tr.Import(ctx, spec("vm"), "host-s", src.addr, token); err != nil {
		t.Fatalf("second pull before the offer was revoked: %v", err)
	}
	src.tr.Revoke("vm")
	other := newNode(t, "host-t", nodeOpts{})
	err := other.tr.Import(ctx, spec("vm"), "host-s", src.addr, token)
	wantCode(t, err, codes.PermissionDenied, ErrRefused)
	wantNoDomain(t, other, "vm")
}

func TestOfferRefusesLiveDomain(t *testing.T) {
	src := newNode(t, "host-s", nodeOpts{})
	ctx := ctxT(t)
	if err := src.drv.Create(ctx, spec("vm")); err != nil {
		t.Fatal(err)
	}
	if err := src.tr.Offer(ctx, "vm", hypervisor.DiskWhole, token, "host-t", time.Now().Add(time.Minute)); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("Offer of a running domain = %v, want ErrInvalidState", err)
	}
	if err := src.tr.Offer(ctx, "nope", hypervisor.DiskWhole, token, "host-t", time.Now().Add(time.Minute)); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("Offer of a missing domain = %v, want ErrNotFound", err)
	}
	if err := src.tr.Offer(ctx, "vm", hypervisor.DiskWhole, token, "host-t", time.Now().Add(-time.Second)); err == nil {
		t.Fatal("Offer with a past deadline succeeded")
	}
	// Started again after the offer: the pull is refused, not served.
	stopped(t, src, "vm2")
	if err := src.tr.Offer(ctx, "vm2", hypervisor.DiskWhole, token, "host-t", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := src.drv.Start(ctx, "vm2"); err != nil {
		t.Fatal(err)
	}
	dst := newNode(t, "host-t", nodeOpts{})
	err := dst.tr.Import(ctx, spec("vm2"), "host-s", src.addr, token)
	wantCode(t, err, codes.FailedPrecondition, ErrRefused)
	wantNoDomain(t, dst, "vm2")
}

func TestPullRefused(t *testing.T) {
	src := newNode(t, "host-s", nodeOpts{})
	stopped(t, src, "vm")
	ctx := ctxT(t)
	now := time.Now()
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	src.tr.now = func() time.Time { return *clock.Load() }
	if err := src.tr.Offer(ctx, "vm", hypervisor.DiskWhole, token, "host-t", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	dst := newNode(t, "host-t", nodeOpts{})
	wrongToken := token[:len(token)-1] + "0"
	err := dst.tr.Import(ctx, spec("vm"), "host-s", src.addr, wrongToken)
	wantCode(t, err, codes.PermissionDenied, ErrRefused)
	wantNoDomain(t, dst, "vm")

	intruder := newNode(t, "host-x", nodeOpts{})
	err = intruder.tr.Import(ctx, spec("vm"), "host-s", src.addr, token)
	wantCode(t, err, codes.PermissionDenied, ErrRefused)
	wantNoDomain(t, intruder, "vm")

	err = dst.tr.Import(ctx, spec("other"), "host-s", src.addr, token)
	wantCode(t, err, codes.PermissionDenied, ErrRefused)

	expired := now.Add(time.Minute)
	clock.Store(&expired)
	err = dst.tr.Import(ctx, spec("vm"), "host-s", src.addr, token)
	wantCode(t, err, codes.PermissionDenied, ErrRefused)
	wantNoDomain(t, dst, "vm")
	src.tr.mu.Lock()
	left := len(src.tr.offers)
	src.tr.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d expired offers kept", left)
	}
}

// flakyDriver breaks the reader of the next OpenDisk after its first chunk.
type flakyDriver struct {
	hypervisor.Driver
	breakNext atomic.Bool
}

func (d *flakyDriver) OpenDisk(ctx context.Context, id string, layer hypervisor.DiskLayer) (io.ReadCloser, int64, error) {
	rc, size, err := d.Driver.OpenDisk(ctx, id, layer)
	if err != nil || !d.breakNext.Swap(false) {
		return rc, size, err
	}
	r := io.MultiReader(io.LimitReader(rc, ChunkSize), errReader{errors.New("disk read failed")})
	return struct {
		io.Reader
		io.Closer
	}{r, rc}, size, nil
}

// stuckDriver's disk readers all fail at the same offset.
type stuckDriver struct{ hypervisor.Driver }

func (d *stuckDriver) OpenDisk(ctx context.Context, id string, layer hypervisor.DiskLayer) (io.ReadCloser, int64, error) {
	rc, size, err := d.Driver.OpenDisk(ctx, id, layer)
	if err != nil {
		return rc, size, err
	}
	data, _ := io.ReadAll(rc)
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(data[:ChunkSize+100]), errReader{errors.New("disk read failed")}), rc}, size, nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestBrokenPullCanBeRetried(t *testing.T) {
	flaky := &flakyDriver{}
	src := newNode(t, "host-s", nodeOpts{wrap: func(d *fake.Driver) hypervisor.Driver {
		flaky.Driver = d
		return flaky
	}})
	want := stopped(t, src, "vm")
	ctx := ctxT(t)
	if err := src.tr.Offer(ctx, "vm", hypervisor.DiskWhole, token, "host-t", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	dst := newNode(t, "host-t", nodeOpts{})
	flaky.breakNext.Store(true)
	// The cut stream is resumed (see TestResume).
	if err := dst.tr.Import(ctx, spec("vm"), "host-s", src.addr, token); err != nil {
		t.Fatalf("Import over a stream cut once: %v", err)
	}
	if got, _ := dst.drv.Disk("vm"); !bytes.Equal(got, want) {
		t.Fatal("resumed import differs from the source's disk")
	}
	// A source that breaks at the same place every time is given up on,
	// and can be pulled from again once it is well.
	dst = newNode(t, "host-t", nodeOpts{})
	stuck := newNode(t, "host-t", nodeOpts{cfg: func(c *Config) { c.ResumeAttempts = 2 }})
	stuckSrc := newNode(t, "host-s", nodeOpts{wrap: func(d *fake.Driver) hypervisor.Driver {
		return &stuckDriver{Driver: d}
	}})
	stopped(t, stuckSrc, "vm")
	if err := stuckSrc.tr.Offer(ctx, "vm", hypervisor.DiskWhole, token, "host-t", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	err := stuck.tr.Import(ctx, spec("vm"), "host-s", stuckSrc.addr, token)
	if !errors.Is(err, executor.ErrPeerUnavailable) {
		t.Fatalf("Import over a stream that always breaks at the same place = %v, want ErrPeerUnavailable", err)
	}
	wantNoDomain(t, stuck, "vm")

	if err := dst.tr.Import(ctx, spec("vm"), "host-s", src.addr, token); err != nil {
		t.Fatalf("retried Import: %v", err)
	}
	if got, _ := dst.drv.Disk("vm"); !bytes.Equal(got, want) {
		t.Fatal("retried import differs from the source's disk")
	}
}

func TestPeerUnreachable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	dst := newNode(t, "host-t", nodeOpts{})
	err = dst.tr.Import(ctxT(t), spec("vm"), "host-s", addr, token)
	if !errors.Is(err, executor.ErrPeerUnavailable) {
		t.Fatalf("Import from a closed port = %v, want ErrPeerUnavailable", err)
	}
	wantNoDomain(t, dst, "vm")

	// A deadline that passes is the caller's deadline, not the peer's fault.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := dst.tr.Import(ctx, spec("vm"), "host-s", addr, token); !errors.Is(err, context.Canceled) {
		t.Fatalf("Import with an ended context = %v, want context.Canceled", err)
	}
}

// evilPeer serves a disk whose bytes or framing do not match what it claims.
type evilPeer struct {
	agentv1.UnimplementedAgentPeerServiceServer
	data   []byte
	mangle func(chunks []*agentv1.DiskChunk) []*agentv1.DiskChunk
}

func (p *evilPeer) PullDisk(_ *agentv1.PullDiskRequest, stream grpc.ServerStreamingServer[agentv1.DiskChunk]) error {
	sum := sha256.Sum256(p.data)
	var chunks []*agentv1.DiskChunk
	for off := 0; off < len(p.data); off += ChunkSize {
		chunks = append(chunks, &agentv1.DiskChunk{Data: bytes.Clone(p.data[off:min(off+ChunkSize, len(p.data))])})
	}
	chunks[0].TotalSize = uint64(len(p.data))
	chunks = append(chunks, &agentv1.DiskChunk{Sha256: sum[:]})
	for _, c := range p.mangle(chunks) {
		if err := stream.Send(c); err != nil {
			return err
		}
	}
	return nil
}

func TestCorruptCopyLeavesNothing(t *testing.T) {
	data := fake.DiskContent("vm", fake.DefaultDiskSize)
	cases := map[string]func([]*agentv1.DiskChunk) []*agentv1.DiskChunk{
		"flipped byte": func(c []*agentv1.DiskChunk) []*agentv1.DiskChunk {
			c[1].Data[7] ^= 0x40
			return c
		},
		"missing chunk": func(c []*agentv1.DiskChunk) []*agentv1.DiskChunk {
			return append(c[:1], c[2:]...)
		},
		"size understated": func(c []*agentv1.DiskChunk) []*agentv1.DiskChunk {
			c[0].TotalSize = ChunkSize
			return c
		},
		"no digest": func(c []*agentv1.DiskChunk) []*agentv1.DiskChunk {
			return c[:len(c)-1]
		},
		"data after digest": func(c []*agentv1.DiskChunk) []*agentv1.DiskChunk {
			return append(c, &agentv1.DiskChunk{Data: []byte("more")})
		},
	}
	for name, mangle := range cases {
		t.Run(name, func(t *testing.T) {
			addr := serve(t, nil, func(s *grpc.Server) {
				agentv1.RegisterAgentPeerServiceServer(s, &evilPeer{data: data, mangle: mangle})
			})
			dst := newNode(t, "host-t", nodeOpts{})
			err := dst.tr.Import(ctxT(t), spec("vm"), "host-s", addr, token)
			if err == nil {
				t.Fatal("Import of a bad copy succeeded")
			}
			if !errors.Is(err, executor.ErrDiskCorrupt) && !errors.Is(err, executor.ErrPeerUnavailable) {
				t.Fatalf("Import of a bad copy = %v, want ErrDiskCorrupt or ErrPeerUnavailable", err)
			}
			t.Logf("refused: %v", err)
			wantNoDomain(t, dst, "vm")
		})
	}
	// The unmangled stream is accepted, so the cases above fail for their
	// mangling and nothing else.
	addr := serve(t, nil, func(s *grpc.Server) {
		agentv1.RegisterAgentPeerServiceServer(s, &evilPeer{data: data, mangle: func(c []*agentv1.DiskChunk) []*agentv1.DiskChunk { return c }})
	})
	dst := newNode(t, "host-t", nodeOpts{})
	if err := dst.tr.Import(ctxT(t), spec("vm"), "host-s", addr, token); err != nil {
		t.Fatalf("Import of an intact stream: %v", err)
	}
}

func TestMutualTLSIdentity(t *testing.T) {
	ca, err := mtls.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name string) mtls.Files {
		f, err := ca.Issue(name, mtls.RoleAgent)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	serverCfg, err := mtls.Server(issue("host-s"))
	if err != nil {
		t.Fatal(err)
	}
	src := newNode(t, "host-s", nodeOpts{serverTLS: serverCfg, requireID: true})
	want := stopped(t, src, "vm")
	ctx := ctxT(t)
	if err := src.tr.Offer(ctx, "vm", hypervisor.DiskWhole, token, "host-t", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	client := func(name string) *tls.Config {
		c, err := mtls.Client(issue(name))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	// Right token, claims to be host-t, but its certificate names host-x.
	impostor := newNode(t, "host-t", nodeOpts{clientTLS: client("host-x")})
	err = impostor.tr.Import(ctx, spec("vm"), "host-s", src.addr, token)
	wantCode(t, err, codes.PermissionDenied, ErrRefused)
	wantNoDomain(t, impostor, "vm")

	// Without a client certificate the handshake itself fails.
	anon := newNode(t, "host-t", nodeOpts{clientTLS: &tls.Config{RootCAs: client("host-t").RootCAs, MinVersion: tls.VersionTLS13}})
	if err := anon.tr.Import(ctx, spec("vm"), "host-s", src.addr, token); err == nil {
		t.Fatal("Import without a client certificate succeeded")
	}
	wantNoDomain(t, anon, "vm")

	// A server whose certificate is not the source agent's is not pulled from.
	fakeCfg, err := mtls.Server(issue("host-x"))
	if err != nil {
		t.Fatal(err)
	}
	fakeSrc := newNode(t, "host-s", nodeOpts{serverTLS: fakeCfg})
	stopped(t, fakeSrc, "vm")
	if err := fakeSrc.tr.Offer(ctx, "vm", hypervisor.DiskWhole, token, "host-t", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	fooled := newNode(t, "host-t", nodeOpts{clientTLS: client("host-t")})
	if err := fooled.tr.Import(ctx, spec("vm"), "host-s", fakeSrc.addr, token); err == nil || !strings.Contains(err.Error(), "certificate names") || !strings.Contains(err.Error(), "host-x") {
		t.Fatalf("Import from a server with host-x's certificate: %v", err)
	}
	wantNoDomain(t, fooled, "vm")

	dst := newNode(t, "host-t", nodeOpts{clientTLS: client("host-t")})
	if err := dst.tr.Import(ctx, spec("vm"), "host-s", src.addr, token); err != nil {
		t.Fatalf("Import with host-t's certificate: %v", err)
	}
	if got, _ := dst.drv.Disk("vm"); !bytes.Equal(got, want) {
		t.Fatal("imported disk differs")
	}
}

// TestConcurrentImports moves several instances at once between the same
// two agents.
func TestConcurrentImports(t *testing.T) {
	src, dst := newNode(t, "host-s", nodeOpts{}), newNode(t, "host-t", nodeOpts{})
	ctx := ctxT(t)
	ids := []string{"a", "b", "c", "d"}
	for _, id := range ids {
		stopped(t, src, id)
		if err := src.tr.Offer(ctx, id, hypervisor.DiskWhole, token+id, "host-t", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Go(func() { errs[i] = dst.tr.Import(ctx, spec(id), "host-s", src.addr, token+id) })
	}
	wg.Wait()
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("Import %s: %v", id, errs[i])
		}
		got, _ := dst.drv.Disk(id)
		if want, _ := src.drv.Disk(id); !bytes.Equal(got, want) {
			t.Fatalf("disk %s differs", id)
		}
	}
}
