package securitytest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// issueCerts runs scripts/issue-certs.sh in dir for specs (NAME:ROLE) and
// returns each name's files.
func issueCerts(t *testing.T, dir string, specs ...string) map[string]mtls.Files {
	t.Helper()
	script := filepath.Join(testenv.RepoRoot(t), "scripts", "issue-certs.sh")
	cmd := exec.Command("bash", append([]string{script, dir}, specs...)...)
	cmd.Env = append(os.Environ(), "ANY_OU=1") // mallory's OU names no role
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("issue-certs.sh: %v\n%s", err, out)
	}
	files := map[string]mtls.Files{}
	for _, s := range specs {
		name := s
		for i, c := range s {
			if c == ':' {
				name = s[:i]
				break
			}
		}
		files[name] = mtls.Files{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(dir, "ca.pem")}
	}
	return files
}

func tlsFlags(f mtls.Files) []string {
	return []string{"--tls-cert=" + f.Cert, "--tls-key=" + f.Key, "--tls-ca=" + f.CA}
}

// dial connects to addr presenting f (plaintext when f is empty).
func dial(t *testing.T, addr string, f mtls.Files) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if f.Enabled() {
		cfg, err := mtls.Client(f)
		if err != nil {
			t.Fatal(err)
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// invoke calls a unary method with req (an empty request when nil).
func invoke(t *testing.T, conn *grpc.ClientConn, method string, req, resp any) error {
	t.Helper()
	if req == nil {
		req = &emptypb.Empty{}
	}
	if resp == nil {
		resp = &emptypb.Empty{}
	}
	return conn.Invoke(ctx(t), method, req, resp)
}
