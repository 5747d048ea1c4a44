package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--bogus"},
		{"--host-id", "Bad_Host"},
		{"--host-id", "-a"},
		{"--host-id", strings.Repeat("a", 64)},
		{"--hypervisor", "xen"},
		{"--coordinator", "no-port"},
		{"--log-level", "loud"},
		{"--log-format", "xml"},
		{"--vcpus", "-1"},
		{"--host-id", "h", "extra"},
	} {
		var out bytes.Buffer
		if code := run(args, &out); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		if out.Len() == 0 {
			t.Errorf("%q: no error printed", args)
		}
	}
}

func TestFlagDefaults(t *testing.T) {
	cfg, err := parseFlags([]string{"--host-id", "h1.example", "--memory-mib", "4096"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.coordinator != "127.0.0.1:7443" || cfg.hypervisor != "libvirt" || cfg.stateDir != "/var/lib/flotilla/agent" ||
		cfg.capacity.MemoryMiB != 4096 || cfg.capacity.VCPUs != 0 || cfg.logLevel != slog.LevelInfo {
		t.Errorf("config %+v", cfg)
	}
	if id := defaultHostID(); id != "" && !hostIDPattern.MatchString(id) {
		h, _ := os.Hostname()
		t.Logf("hostname %q gives host id %q, which --host-id must replace", h, id)
	}
}

// registerServer answers Register and reports it.
type registerServer struct {
	agentv1.UnimplementedAgentServiceServer
	got chan *agentv1.Register
}

func (s *registerServer) Connect(stream grpc.BidiStreamingServer[agentv1.ConnectRequest, agentv1.ConnectResponse]) error {
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := stream.Send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Registered{Registered: &agentv1.Registered{
		Epoch: 1, HeartbeatInterval: durationpb.New(time.Second), ResyncInterval: durationpb.New(time.Hour),
	}}}); err != nil {
		return err
	}
	s.got <- m.GetRegister()
	for {
		if _, err := stream.Recv(); err != nil {
			return nil
		}
	}
}

func TestServeWithFakeHypervisor(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rs := &registerServer{got: make(chan *agentv1.Register, 1)}
	agentv1.RegisterAgentServiceServer(srv, rs)
	go srv.Serve(lis)
	defer srv.Stop()

	stateDir := filepath.Join(t.TempDir(), "nested", "agent")
	cfg, err := parseFlags([]string{
		"--coordinator", lis.Addr().String(), "--host-id", "test-host", "--hypervisor", "fake",
		"--state-dir", stateDir, "--vcpus", "8",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()

	select {
	case reg := <-rs.got:
		c := reg.GetCapacity()
		if reg.GetHostId() != "test-host" || reg.GetHypervisorKind() != "fake" ||
			c.GetVcpus() != 8 || c.GetMemoryMib() != 262144 || c.GetDiskGib() != 10000 {
			t.Errorf("register %v", reg)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no Register")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return")
	}
	if _, err := os.Stat(filepath.Join(stateDir, "agent.db")); err != nil {
		t.Error(err)
	}
}
