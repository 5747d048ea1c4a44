package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	"github.com/flotilla-vm/flotilla/internal/mtls"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
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
		{"--disk-reserve-gib", "-1"},
		{"--disk-reserve-gib", "17179869184"}, // 2^34 GiB: beyond 2^64 bytes
		{"--host-id", "h", "extra"},
		{"--peer-listen", "no-port"},
		{"--peer-listen", "0.0.0.0:0"},
		{"--peer-listen", ":7450"},
		{"--peer-listen", "", "--peer-advertise", "h:7450"},
		{"--peer-advertise", "h:0"},
		{"--peer-advertise", ":7450"},
		{"--peer-listen", "10.0.0.5:7450"}, // reachable from other hosts, and no TLS
		{"--peer-listen", "0.0.0.0:7450", "--peer-advertise", "10.0.0.5:7450"},
		// Test switches are not flags (see fake.FaultsEnv and testhooks.go).
		{"--fake-fail", "Start=1"},
		{"--fake-delay", "Start=1s"},
		{"--ignore-events"},
		{"--bridges", "br/0"},
		{"--bridges", "br0,br0"},
		{"--bridges", "a-name-longer-than-15"},
	} {
		var out bytes.Buffer
		if code := run(args, io.Discard, &out); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		if out.Len() == 0 {
			t.Errorf("%q: no error printed", args)
		}
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "flotilla-agent ") || !strings.Contains(stdout.String(), "\ngo: go") {
		t.Fatalf("--version: exit %d, %q %q", code, stdout.String(), stderr.String())
	}
}

func TestFlagDefaults(t *testing.T) {
	cfg, err := parseFlags([]string{"--host-id", "h1.example", "--memory-mib", "4096"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.coordinator != "127.0.0.1:7443" || cfg.hypervisor != "libvirt" || cfg.stateDir != "/var/lib/flotilla/agent" ||
		cfg.capacity.MemoryMiB != 4096 || cfg.capacity.VCPUs != 0 || cfg.daemon.LogLevel != "info" || cfg.daemon.LogFormat != "json" || cfg.daemon.HTTPListen != "" ||
		cfg.peerListen != "127.0.0.1:0" || cfg.peerAdvertise != "" || cfg.diskReserve != 1<<30 {
		t.Errorf("config %+v", cfg)
	}
	if cfg, err := parseFlags([]string{"--host-id", "h1", "--disk-reserve-gib", "0"}, io.Discard); err != nil || cfg.diskReserve != 0 {
		t.Errorf("--disk-reserve-gib 0: %+v %v", cfg, err)
	}
	if cfg, err := parseFlags([]string{"--host-id", "h1", "--bridges", "br0, eth0.100,,"}, io.Discard); err != nil ||
		!slices.Equal(cfg.bridges, []string{"br0", "eth0.100"}) || !slices.Equal(nodeConfig(cfg, nil).Libvirt.Bridges, cfg.bridges) {
		t.Errorf("--bridges: %+v %v", cfg, err)
	}
	if id := defaultHostID(); id != "" && !hostIDPattern.MatchString(id) {
		h, _ := os.Hostname()
		t.Logf("hostname %q gives host id %q, which --host-id must replace", h, id)
	}
}

// registerServer answers Register and reports it; a test that wants to
// send steps sets steps, and finds their results in results.
type registerServer struct {
	agentv1.UnimplementedAgentServiceServer
	got chan *agentv1.Register

	mu      sync.Mutex
	steps   map[string]chan *agentv1.RunStep // by host id
	results chan *agentv1.StepResult
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
	s.mu.Lock()
	steps := s.steps[m.GetRegister().GetHostId()]
	s.mu.Unlock()
	s.got <- m.GetRegister()
	go func() {
		for {
			select {
			case <-stream.Context().Done():
				return
			case st := <-steps: // nil: never
				if stream.Send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_RunStep{RunStep: st}}) != nil {
					return
				}
			}
		}
	}()
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil
		}
		if r := m.GetStepResult(); r != nil && s.results != nil {
			s.results <- r
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
		"--state-dir", stateDir, "--vcpus", "8", "--bridges", "br0,br1",
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
			c.GetVcpus() != 8 || c.GetMemoryMib() != 262144 || c.GetDiskGib() != 10000 ||
			!reg.GetManagedNetworks() || !slices.Equal(reg.GetBridges(), []string{"br0", "br1"}) {
			t.Errorf("register %v", reg)
		}
		// The peer service is served where Register says (plaintext here):
		// a pull without an offer is refused by it, not left unimplemented.
		conn, err := grpc.NewClient(reg.GetPeerAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatalf("peer_address %q: %v", reg.GetPeerAddress(), err)
		}
		defer conn.Close()
		if code := pullCode(t, conn, "vm-1"); code != codes.PermissionDenied {
			t.Errorf("pull without offer: %v, want PermissionDenied", code)
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

// pullCode is the status code of a PullDisk stream's first message.
func pullCode(t *testing.T, conn *grpc.ClientConn, id string) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := agentv1.NewAgentPeerServiceClient(conn).PullDisk(ctx, &agentv1.PullDiskRequest{InstanceId: id, Token: "guess", HostId: "host-b"})
	if err == nil {
		_, err = st.Recv()
	}
	return status.Code(err)
}

func TestPeerListenDisabled(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rs := &registerServer{got: make(chan *agentv1.Register, 1)}
	agentv1.RegisterAgentServiceServer(srv, rs)
	go srv.Serve(lis)
	defer srv.Stop()
	cfg, err := parseFlags([]string{
		"--coordinator", lis.Addr().String(), "--host-id", "test-host", "--hypervisor", "fake",
		"--state-dir", t.TempDir(), "--peer-listen", "",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	stop := serveInBackground(t, cfg)
	defer stop()
	select {
	case reg := <-rs.got:
		if reg.GetPeerAddress() != "" {
			t.Errorf("peer_address %q with --peer-listen \"\"", reg.GetPeerAddress())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no Register")
	}
}

// serveInBackground runs serve until the returned stop is called.
func serveInBackground(t *testing.T, cfg config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("serve did not return")
		}
	}
}

// Two agents with mutual TLS move a disk through their peer services: the
// wiring from flags to executor, transfer and the peer listener.
func TestMoveBetweenAgentsWithMTLS(t *testing.T) {
	ca, err := mtls.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name, role string) mtls.Files {
		f, err := ca.Issue(name, role)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	coordFiles := issue("coordinator", mtls.RoleCoordinator)
	stc, err := mtls.Server(coordFiles)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(stc)))
	rs := &registerServer{
		got:     make(chan *agentv1.Register, 2),
		steps:   map[string]chan *agentv1.RunStep{"host-a": make(chan *agentv1.RunStep, 10), "host-b": make(chan *agentv1.RunStep, 10)},
		results: make(chan *agentv1.StepResult, 10),
	}
	agentv1.RegisterAgentServiceServer(srv, rs)
	go srv.Serve(lis)
	defer srv.Stop()

	peers := map[string]string{}
	for _, host := range []string{"host-a", "host-b"} {
		f := issue(host, mtls.RoleAgent)
		cfg, err := parseFlags([]string{
			"--coordinator", lis.Addr().String(), "--host-id", host, "--hypervisor", "fake",
			"--state-dir", t.TempDir(), "--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA,
		}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		defer serveInBackground(t, cfg)()
		select {
		case reg := <-rs.got:
			peers[reg.GetHostId()] = reg.GetPeerAddress()
		case <-time.After(15 * time.Second):
			t.Fatal("no Register")
		}
	}
	if peers["host-a"] == "" || peers["host-b"] == "" || peers["host-a"] == peers["host-b"] {
		t.Fatalf("peer addresses %v", peers)
	}

	// The peer listener speaks mutual TLS only.
	plain, err := grpc.NewClient(peers["host-a"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if code := pullCode(t, plain, "vm-1"); code != codes.Unavailable {
		t.Errorf("plaintext pull: %v, want Unavailable", code)
	}

	run := func(host string, st *agentv1.RunStep) *agentv1.StepResult {
		t.Helper()
		st.HostEpoch, st.Deadline = 1, timestamppb.New(time.Now().Add(time.Minute))
		rs.steps[host] <- st
		select {
		case r := <-rs.results:
			if r.GetStepId() != st.StepId {
				t.Fatalf("result %v, want one for %s", r, st.StepId)
			}
			return r
		case <-time.After(15 * time.Second):
			t.Fatalf("no result for %s", st.StepId)
			return nil
		}
	}
	spec := &flotillav1.InstanceSpec{Vcpus: 1, MemoryMib: 512, Image: "flotilla-test"}
	move := flotillav1.OperationKind_OPERATION_KIND_MOVE
	for _, c := range []struct {
		host string
		step *agentv1.RunStep
	}{
		{"host-a", &agentv1.RunStep{OperationId: "op-0", StepId: "op-0/create/1", InstanceId: "vm-1", Name: "vm-1", Spec: spec,
			Kind: flotillav1.OperationKind_OPERATION_KIND_CREATE, Action: agentv1.StepAction_STEP_ACTION_CREATE}},
		{"host-a", &agentv1.RunStep{OperationId: "op-1", StepId: "op-1/stop/1", InstanceId: "vm-1", Kind: move,
			Action: agentv1.StepAction_STEP_ACTION_STOP, Force: true, GracefulTimeout: durationpb.New(time.Second)}},
		{"host-a", &agentv1.RunStep{OperationId: "op-1", StepId: "op-1/offer/1", InstanceId: "vm-1", Kind: move,
			Action: agentv1.StepAction_STEP_ACTION_OFFER_DISK, OfferToken: "t0k3n", PeerHostId: "host-b"}},
		{"host-b", &agentv1.RunStep{OperationId: "op-1", StepId: "op-1/import/1", InstanceId: "vm-1", Name: "vm-1", Spec: spec, Kind: move,
			Action: agentv1.StepAction_STEP_ACTION_IMPORT_DISK, OfferToken: "t0k3n", PeerHostId: "host-a", PeerAddress: peers["host-a"]}},
	} {
		if r := run(c.host, c.step); !r.GetSucceeded() {
			t.Fatalf("%s on %s: %v", c.step.StepId, c.host, r)
		} else if c.step.Action == agentv1.StepAction_STEP_ACTION_IMPORT_DISK &&
			r.GetState().GetState() != flotillav1.PowerState_POWER_STATE_SHUT_OFF {
			t.Errorf("imported domain %v, want shut off", r.GetState())
		}
	}
}

// A peer listener other hosts can reach needs TLS, or saying it is insecure.
func TestPeerListenerExposure(t *testing.T) {
	for _, args := range [][]string{
		{"--host-id", "h", "--peer-listen", "127.0.0.1:7450"},
		{"--host-id", "h", "--peer-listen", "localhost:7450"},
		{"--host-id", "h", "--peer-listen", "10.0.0.5:7450", "--peer-insecure"},
		{"--host-id", "h", "--peer-listen", ""},
	} {
		if _, err := parseFlags(args, io.Discard); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// A bad fault list for the fake hypervisor is an error, not a panic.
func TestBadFakeFaults(t *testing.T) {
	t.Setenv(fake.FaultsEnv, "fail:Strat=1")
	cfg, err := parseFlags([]string{"--host-id", "h", "--hypervisor", "fake", "--state-dir", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = serve(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), fake.FaultsEnv) {
		t.Fatalf("serve: %v, want an error naming %s", err, fake.FaultsEnv)
	}
}
