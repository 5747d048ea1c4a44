package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

func TestNewRefusesIncompleteConfig(t *testing.T) {
	ok := Config{Coordinator: "127.0.0.1:1", HostID: "h", Hypervisor: Fake, StateDir: t.TempDir()}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no coordinator", func(c *Config) { c.Coordinator = "" }},
		{"no host id", func(c *Config) { c.HostID = "" }},
		{"no state dir", func(c *Config) { c.StateDir = "" }},
		{"unknown hypervisor", func(c *Config) { c.Hypervisor = "xen" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			if n, err := New(cfg); err == nil {
				n.Close()
				t.Fatal("New accepted it")
			}
		})
	}
}

// registrar answers Register and hands it to the test.
type registrar struct {
	agentv1.UnimplementedAgentServiceServer
	got chan *agentv1.Register
}

func (r *registrar) Connect(stream grpc.BidiStreamingServer[agentv1.ConnectRequest, agentv1.ConnectResponse]) error {
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := stream.Send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Registered{Registered: &agentv1.Registered{
		Epoch: 1, HeartbeatInterval: durationpb.New(time.Second), ResyncInterval: durationpb.New(time.Hour),
	}}}); err != nil {
		return err
	}
	r.got <- m.GetRegister()
	for {
		if _, err := stream.Recv(); err != nil {
			return nil
		}
	}
}

// A node given its driver registers with what the driver offers and the
// config's labels, and closes the driver when Run ends.
func TestRunWithGivenDriver(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	r := &registrar{got: make(chan *agentv1.Register, 1)}
	agentv1.RegisterAgentServiceServer(srv, r)
	go srv.Serve(lis)
	defer srv.Stop()

	drv := fake.New(fake.Options{Kind: "sim", Capacity: hypervisor.Capacity{VCPUs: 3, MemoryMiB: 1024, DiskGiB: 7}})
	n, err := New(Config{Coordinator: lis.Addr().String(), HostID: "h-1", Driver: drv, StateDir: t.TempDir(),
		Labels: map[string]string{"zone": "a"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	select {
	case reg := <-r.got:
		if reg.GetHostId() != "h-1" || reg.GetHypervisorKind() != "sim" || reg.GetCapacity().GetVcpus() != 3 ||
			reg.GetLabels()["zone"] != "a" || reg.GetPeerAddress() != "" {
			t.Errorf("register %v", reg)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no Register")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	if _, err := drv.Capacity(context.Background()); !errors.Is(err, fake.ErrClosed) {
		t.Errorf("driver after Run: %v, want closed", err)
	}
	if err := n.Run(context.Background()); err == nil {
		t.Error("a second Run was accepted")
	}
}
