package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc/codes"
	"testing"
	"time"
)

// Coordinator is a running flotilla-coordinator process.
type Coordinator struct {
	*Proc
	Addr     string
	RaftAddr string
	DataDir  string
}

// StartCoordinator starts a single-node coordinator with its data in dir.
// extra flags are appended (e.g. "--agent-resync-interval=1s").
func StartCoordinator(t testing.TB, dir string, extra ...string) *Coordinator {
	t.Helper()
	return startNode(t, "", dir, "c1", FreeAddr(t), extra...)
}

// StartCoordinatorAt is StartCoordinator serving the API on addr, e.g. a
// port of a test bed's bridge address, which its hosts' agents can reach.
func StartCoordinatorAt(t testing.TB, dir, addr string, extra ...string) *Coordinator {
	t.Helper()
	return startNode(t, "", dir, "c1", addr, extra...)
}

// startNode starts a coordinator from binDir's binaries ("" for this tree's).
func startNode(t testing.TB, binDir, dir, id, addr string, extra ...string) *Coordinator {
	t.Helper()
	c := &Coordinator{Addr: addr, RaftAddr: FreeAddr(t), DataDir: filepath.Join(dir, id)}
	args := append([]string{"--node-id=" + id, "--data-dir=" + c.DataDir, "--listen=" + c.Addr, "--raft-addr=" + c.RaftAddr, "--log-level=debug"}, extra...)
	if binDir == "" {
		binDir = Binaries(t)
	}
	c.Proc = StartFrom(t, binDir, "flotilla-coordinator", id, dir, args...)
	return c
}

// StartNode starts one more coordinator with the given id (e.g. to join a cluster).
func StartNode(t testing.TB, dir, id string, extra ...string) *Coordinator {
	t.Helper()
	return startNode(t, "", dir, id, FreeAddr(t), extra...)
}

// StartCluster starts n coordinator processes on loopback with short Raft
// timeouts: the first bootstraps, the others join through it.
func StartCluster(t testing.TB, dir string, n int, extra ...string) []*Coordinator {
	t.Helper()
	return StartClusterFrom(t, "", dir, n, extra...)
}

// StartClusterFrom is StartCluster with binDir's binaries ("" for this
// tree's), e.g. a previous release's. Unless extra turns mutual TLS on (the
// caller then waits itself), it returns once all n are voters: a joining
// server is a non-voter until it has caught up, and a test that stops
// servers needs every one of them counted in the quorum.
func StartClusterFrom(t testing.TB, binDir, dir string, n int, extra ...string) []*Coordinator {
	t.Helper()
	first := startNode(t, binDir, dir, "c1", FreeAddr(t), append([]string{"--raft-fast"}, extra...)...)
	out := []*Coordinator{first}
	for i := 2; i <= n; i++ {
		args := append([]string{"--raft-fast", "--join=" + first.Addr}, extra...)
		out = append(out, startNode(t, binDir, dir, fmt.Sprintf("c%d", i), FreeAddr(t), args...))
	}
	for _, f := range extra {
		if strings.HasPrefix(f, "--tls-") {
			return out
		}
	}
	WaitVoters(t, NewGrpcurl(t, first.Addr), n)
	return out
}

// WaitVoters waits until the cluster g talks to has a leader and n voters.
func WaitVoters(t testing.TB, g *Grpcurl, n int) {
	t.Helper()
	Eventually(t, 60*time.Second, fmt.Sprintf("%d voters with a leader", n), func() bool {
		r, err := g.Call("flotilla.v1.ClusterService/ListServers", map[string]any{})
		if err != nil || Str(r, "leaderId") == "" {
			return false
		}
		servers, _ := r["servers"].([]any)
		voters := 0
		for _, s := range servers {
			if m, _ := s.(map[string]any); m["suffrage"] == "voter" {
				voters++
			}
		}
		return voters == n
	})
}

// WaitReady waits until the coordinator answers and leads.
func (c *Coordinator) WaitReady(t testing.TB, g *Grpcurl) {
	t.Helper()
	Eventually(t, 30*time.Second, "coordinator to serve", func() bool {
		// A cancel needs the leader to commit: NOT_FOUND means it serves and leads.
		_, err := g.Call("flotilla.v1.OperationService/CancelOperation", map[string]any{"id": "op-probe"})
		ce, ok := err.(*CallError)
		return ok && ce.Code == codes.NotFound
	})
}

// Agent is a running flotilla-agent process.
type Agent struct {
	*Proc
	HostID   string
	RunDir   string
	DiskDir  string
	StateDir string
}

// StartAgent starts an agent for hostID against the coordinator at addr.
// hypervisor is "libvirt" or "fake".
func StartAgent(t testing.TB, dir, addr, hostID, hypervisor string, extra ...string) *Agent {
	t.Helper()
	return StartAgentEnv(t, dir, addr, hostID, hypervisor, nil, extra...)
}

// StartAgentEnv is StartAgent with env (NAME=value) added to the agent's
// environment: test-only switches go there, e.g. fake.FaultsEnv for the
// fake hypervisor's faults, or FLOTILLA_AGENT_IGNORE_EVENTS=1.
func StartAgentEnv(t testing.TB, dir, addr, hostID, hypervisor string, env []string, extra ...string) *Agent {
	t.Helper()
	return startAgent(t, "", dir, addr, hostID, hypervisor, env, extra...)
}

// StartAgentFrom is StartAgent with binDir's binary ("" for this tree's).
func StartAgentFrom(t testing.TB, binDir, dir, addr, hostID, hypervisor string, extra ...string) *Agent {
	t.Helper()
	return startAgent(t, binDir, dir, addr, hostID, hypervisor, nil, extra...)
}

func startAgent(t testing.TB, binDir, dir, addr, hostID, hypervisor string, env []string, extra ...string) *Agent {
	t.Helper()
	if binDir == "" {
		binDir = Binaries(t)
	}
	// The run dir holds unix sockets (107-byte paths at most): keep it short.
	run, err := os.MkdirTemp("/tmp", "flr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	a := &Agent{HostID: hostID, RunDir: run, DiskDir: filepath.Join(dir, hostID, "disks"), StateDir: filepath.Join(dir, hostID, "state")}
	args := append([]string{
		"--coordinator=" + addr, "--host-id=" + hostID, "--hypervisor=" + hypervisor,
		"--image-dir=" + ImageDir(), "--disk-dir=" + a.DiskDir, "--run-dir=" + a.RunDir, "--state-dir=" + a.StateDir,
		"--log-level=debug",
	}, extra...)
	a.Proc = startBin(t, filepath.Join(binDir, "flotilla-agent"), "flotilla-agent", dir, nil, env, args...)
	return a
}

// WaitHost waits until the host is READY with an epoch above minEpoch and
// returns the epoch.
func WaitHost(t testing.TB, g *Grpcurl, hostID string, minEpoch int) int {
	t.Helper()
	var epoch int
	Eventually(t, 60*time.Second, "host "+hostID+" to be READY", func() bool {
		h, err := g.Call("flotilla.v1.HostService/GetHost", map[string]any{"id": hostID})
		if err != nil || Str(h, "status") != "HOST_STATUS_READY" {
			return false
		}
		epoch = Atoi(Str(h, "epoch"))
		return epoch > minEpoch
	})
	return epoch
}

// Atoi parses the decimal strings proto JSON uses for 64-bit integers
// (the leading digits; 0 if there are none).
func Atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return n
		}
		n = n*10 + int(c-'0')
	}
	return n
}
