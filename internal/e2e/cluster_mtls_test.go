package e2e

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestClusterMutualTLS runs three coordinators with mutual TLS: they form
// a cluster through --join, a write sent to a follower is forwarded and
// replicated, and their Raft port serves nothing but a coordinator of the
// cluster's CA (Raft traffic carries the whole state and changes it).
func TestClusterMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test: not run with -short")
	}
	dir := t.TempDir()
	issue := testCA(t, dir)
	coord, op := issue("coordinator", mtls.RoleCoordinator), issue("alice", "operator")
	cs := testenv.StartCluster(t, dir, 3, tlsFlags(coord)...)
	call := func(addr, method string, req any) (map[string]any, error) {
		return testenv.NewGrpcurlTLS(t, addr, op).Call(method, req)
	}
	testenv.Eventually(t, 60*time.Second, "three voters under mutual TLS", func() bool {
		m, err := call(cs[0].Addr, "flotilla.v1.ClusterService/ListServers", map[string]any{})
		if err != nil {
			return false
		}
		servers, _ := m["servers"].([]any)
		voters := 0
		for _, s := range servers {
			if s.(map[string]any)["suffrage"] == "voter" {
				voters++
			}
		}
		return voters == 3
	})

	// A write through a follower (c1 bootstrapped and leads, unless an
	// election moved it: any member but the leader will do).
	status, err := call(cs[0].Addr, "flotilla.v1.ClusterService/GetNodeStatus", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	via := cs[1]
	if status["raftState"] != "Leader" {
		via = cs[0]
	}
	opm, err := call(via.Addr, "flotilla.v1.InstanceService/CreateInstance", map[string]any{
		"name": "over-tls", "requestId": "over-tls", "spec": map[string]any{"vcpus": 1, "memoryMib": 64, "image": "flotilla-test"}})
	if err != nil {
		t.Fatalf("create through a follower: %v", err)
	}
	id, _ := opm["instanceId"].(string)
	if id == "" {
		t.Fatalf("create returned %v", opm)
	}
	// The leader recorded the client who called the follower, not the follower.
	requestedBy(t, opm, "alice", "operator")
	for _, c := range cs {
		if _, err := call(c.Addr, "flotilla.v1.InstanceService/GetInstance", map[string]any{"id": id, "minRevision": opm["revision"]}); err != nil {
			t.Errorf("%s does not have the instance: %v", c.Name, err)
		}
	}

	// The Raft port speaks TLS to a coordinator; plaintext, and an
	// operator's certificate, are dropped.
	coordCfg, err := mtls.Client(coord)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		tc, err := tls.Dial("tcp", c.RaftAddr, coordCfg)
		if err != nil {
			t.Fatalf("%s: a coordinator's TLS handshake on the Raft port: %v", c.Name, err)
		}
		tc.Close()
		plain, err := net.DialTimeout("tcp", c.RaftAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		plain.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0})
		expectClosed(t, plain, c.Name+": plaintext on the Raft port")
		cfg, err := mtls.Client(op)
		if err != nil {
			t.Fatal(err)
		}
		if tc, err := tls.Dial("tcp", c.RaftAddr, cfg); err == nil {
			expectClosed(t, tc, c.Name+": an operator's certificate on the Raft port")
		}
	}
	if out, _ := os.ReadFile(cs[0].Log); !strings.Contains(string(out), "raft transport: refused a connection") {
		t.Error("c1 did not log the connections it refused")
	}
}

// expectClosed waits until the server ends a connection without answering.
func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case err == nil:
		t.Errorf("%s: answered with %d bytes", what, n)
	case errors.As(err, &ne) && ne.Timeout():
		t.Errorf("%s: neither refused nor answered: %v", what, err)
	}
}
