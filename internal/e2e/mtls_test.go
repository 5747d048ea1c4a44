package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestMutualTLS runs a coordinator and an agent with mutual TLS: clients
// without a certificate from the cluster's CA are turned away, a client with
// one works through the real grpcurl, and an agent may only speak for the
// host its certificate names.
func TestMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	dir := t.TempDir()
	issue := testCA(t, dir)
	coord := testenv.StartCoordinator(t, dir, tlsFlags(issue("c1", mtls.RoleCoordinator))...)
	op := issue("alice", "operator")
	grpcurl := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, testenv.GrpcurlPath(t), args...).CombinedOutput()
		return string(out), err
	}
	secure := []string{"-cacert", op.CA, "-cert", op.Cert, "-key", op.Key}
	testenv.Eventually(t, 30*time.Second, "the coordinator to answer over mutual TLS", func() bool {
		_, err := grpcurl(append(secure, coord.Addr, "flotilla.v1.HostService/ListHosts")...)
		return err == nil
	})

	// No certificate, or none at all: refused.
	if out, err := grpcurl("-plaintext", coord.Addr, "flotilla.v1.HostService/ListHosts"); err == nil {
		t.Fatalf("a plaintext client was served: %s", out)
	}
	if out, err := grpcurl("-cacert", op.CA, coord.Addr, "flotilla.v1.HostService/ListHosts"); err == nil {
		t.Fatalf("a client without a certificate was served: %s", out)
	}
	other, err := mtls.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := other.Issue("mallory", "operator")
	if out, err := grpcurl("-cacert", op.CA, "-cert", stranger.Cert, "-key", stranger.Key, coord.Addr, "flotilla.v1.HostService/ListHosts"); err == nil {
		t.Fatalf("a certificate from another CA was accepted: %s", out)
	}

	// An agent with its own certificate registers; an impostor claiming
	// another host's id with its certificate is refused.
	agentDir, impostorDir := dir+"/good", dir+"/bad"
	for _, d := range []string{agentDir, impostorDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.StartAgent(t, agentDir, coord.Addr, "tls-host", "fake", tlsFlags(issue("tls-host", mtls.RoleAgent))...)
	bad := testenv.StartAgent(t, impostorDir, coord.Addr, "victim", "fake", tlsFlags(issue("impostor", mtls.RoleAgent))...)
	testenv.Eventually(t, 30*time.Second, "tls-host to register", func() bool {
		out, err := grpcurl(append(secure, "-d", `{"id":"tls-host"}`, coord.Addr, "flotilla.v1.HostService/GetHost")...)
		return err == nil && strings.Contains(out, "HOST_STATUS_READY")
	})
	testenv.Eventually(t, 30*time.Second, "the impostor to be refused", func() bool {
		b, _ := os.ReadFile(bad.Log)
		return strings.Contains(string(b), "PermissionDenied")
	})
	if out, _ := grpcurl(append(secure, "-d", `{"id":"victim"}`, coord.Addr, "flotilla.v1.HostService/GetHost")...); !strings.Contains(out, "NotFound") {
		t.Fatalf("the impostor registered host victim: %s", out)
	}

	// The operator works normally: create and see it run.
	out, err := grpcurl(append(secure, "-d", `{"name":"secure","spec":{"vcpus":1,"memoryMib":64,"image":"flotilla-test"}}`, coord.Addr, "flotilla.v1.InstanceService/CreateInstance")...)
	if err != nil {
		t.Fatalf("create over mutual TLS: %v %s", err, out)
	}
	// The operation records who asked: the client certificate's CN and role.
	var created map[string]any
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("create's answer %q: %v", out, err)
	}
	requestedBy(t, created, "alice", "operator")
	testenv.Eventually(t, 30*time.Second, "the instance to run", func() bool {
		out, err := grpcurl(append(secure, "-d", `{"statusFilter":["STATUS_RUNNING"]}`, coord.Addr, "flotilla.v1.InstanceService/ListInstances")...)
		return err == nil && strings.Contains(out, `"name": "secure"`)
	})
}

// testCA makes a CA in dir and returns a function issuing its certificates
// (valid for loopback and the hosts given).
func testCA(t *testing.T, dir string) func(name, role string, hosts ...string) mtls.Files {
	t.Helper()
	ca, err := mtls.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	return func(name, role string, hosts ...string) mtls.Files {
		t.Helper()
		f, err := ca.Issue(name, role, hosts...)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
}

// tlsFlags are the flags that give a process the certificate f.
func tlsFlags(f mtls.Files) []string {
	return []string{"--tls-cert=" + f.Cert, "--tls-key=" + f.Key, "--tls-ca=" + f.CA}
}

// requestedBy requires an operation (as grpcurl prints it) to have been
// asked for by the authenticated certificate name with role.
func requestedBy(t *testing.T, op map[string]any, name, role string) {
	t.Helper()
	by, _ := op["requestedBy"].(map[string]any)
	roles, _ := by["roles"].([]any)
	if by["name"] != name || by["authenticated"] != true || len(roles) != 1 || roles[0] != role || by["address"] == "" {
		t.Fatalf("operation %v: requestedBy %v, want %s (%s), authenticated, with an address", op["id"], by, name, role)
	}
}
