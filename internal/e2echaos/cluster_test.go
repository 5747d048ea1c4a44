package e2echaos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	agentnode "github.com/flotilla-vm/flotilla/agent/node"
	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// TestChaosRoundsCluster is TestChaosRounds on three coordinator
// processes, so that the leader and a follower can be SIGKILLed (and
// started again), with two agents in this process on fake hypervisors
// that outlive them. Every replica's digest is compared after each round.
func TestChaosRoundsCluster(t *testing.T) {
	rounds := envInt("FLOTILLA_CHAOS_CLUSTER_ROUNDS", defaultRounds)
	seed := uint64(envInt("FLOTILLA_CHAOS_SEED", defaultSeed))
	// The fake's libvirtd restart is harmless to others: always on (the
	// real one is TestChaosLibvirtdRestart's, on the test bed's own daemon).
	in := NewInjector(seed, []Fault{FaultLeaderKill, FaultFollowerKill, FaultAgentKill, FaultGuestPowerOff, FaultLibvirtdRestart}, true)
	t.Logf("chaos (3 coordinators): seed %d, %d rounds, faults %v", seed, rounds, in.Kinds())
	fmt.Printf("chaos (3 coordinators): seed %d, %d rounds, faults %v\n", seed, rounds, in.Kinds())

	dir := t.TempDir()
	cs := testenv.StartCluster(t, dir, 3, "--agent-heartbeat-interval=500ms")
	var addrs []string
	clients := map[string]pb.ClusterServiceClient{}
	for i, c := range cs {
		addrs = append(addrs, c.Addr)
		conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients[fmt.Sprintf("c%d", i+1)] = pb.NewClusterServiceClient(conn)
	}
	// The workload talks to c1 (followers forward writes); when c1 is the
	// one killed, calls retry until it is back.
	conn, err := grpc.NewClient(cs[0].Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	w := &workload{t: t, in: in, acked: map[string]bool{}, grace: 500 * time.Millisecond,
		instances: pb.NewInstanceServiceClient(conn), operations: pb.NewOperationServiceClient(conn)}
	for i := range 2 {
		id := fmt.Sprintf("fh-%d", i+1)
		drv := fake.New(fake.Options{Capacity: agentnode.FakeCapacity, Images: []string{"flotilla-test"}})
		a := &procAgent{t: t, id: id, drv: drv, coords: strings.Join(addrs, ","), stateDir: filepath.Join(dir, id)}
		a.start()
		t.Cleanup(a.stop)
		w.hosts = append(w.hosts, chaosHost{id: id, driver: drv, restart: func() { a.stop(); a.start() }})
	}
	leader := func() int {
		for {
			for i := range cs {
				st, err := clients[fmt.Sprintf("c%d", i+1)].GetNodeStatus(context.Background(), &pb.GetNodeStatusRequest{})
				if err == nil && st.GetLeaderId() != "" {
					for j := range cs {
						if st.GetLeaderId() == fmt.Sprintf("c%d", j+1) {
							return j
						}
					}
				}
			}
			time.Sleep(50 * time.Millisecond) // polling for an elected leader
		}
	}
	kill := func(i int) {
		cs[i].Kill()
		cs[i].Restart()
	}
	w.killLeader = func() { kill(leader()) }
	w.killFollower = func() { kill((leader() + 1 + in.IntN(2)) % 3) }
	w.digests = func() map[string]string {
		// Equal digests are only comparable at one revision: read until
		// every replica answers at the same one (or give the last reads).
		var out map[string]string
		for range 50 {
			out = map[string]string{}
			revs := map[int64]bool{}
			for name, c := range clients {
				st, err := c.GetNodeStatus(context.Background(), &pb.GetNodeStatusRequest{IncludeDigest: true})
				if err != nil {
					continue
				}
				out[name] = st.GetStateDigest()
				revs[st.GetRevision()] = true
			}
			if len(out) == len(clients) && len(revs) == 1 {
				return out
			}
			time.Sleep(20 * time.Millisecond) // polling for the replicas to catch up
		}
		return out
	}
	w.run(rounds, seed)
}

// procAgent is an agent node in this process on a fake hypervisor that
// outlives it.
type procAgent struct {
	t        *testing.T
	id       string
	drv      *fake.Driver
	coords   string
	stateDir string
	cancel   context.CancelFunc
	done     chan error
}

type keepOpen struct{ *fake.Driver }

func (keepOpen) Close() error { return nil }

func (a *procAgent) start() {
	n, err := agentnode.New(agentnode.Config{Coordinator: a.coords, HostID: a.id, Driver: keepOpen{a.drv},
		StateDir: a.stateDir, AgentVersion: "chaos", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		a.t.Fatalf("agent %s: %v", a.id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan error, 1)
	go func() { a.done <- n.Run(ctx) }()
}

func (a *procAgent) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	<-a.done
	a.cancel = nil
}
