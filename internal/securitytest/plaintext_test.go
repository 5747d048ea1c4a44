package securitytest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/freeport"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// A coordinator without TLS listening where other machines reach it gave
// every caller every power, silently. It now refuses to start, naming the
// flags, with or without --insecure-dev; on loopback it starts, and says
// so (loudly with --insecure-dev).
func TestPlaintextOffLoopbackRefused(t *testing.T) {
	bin := filepath.Join(testenv.Binaries(t), "flotilla-coordinator")
	port, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := strings.Cut(port, ":")
	cases := []struct {
		name  string
		flags []string
	}{
		{"every interface", []string{"--listen=0.0.0.0:" + p}},
		{"every interface, --insecure-dev", []string{"--listen=0.0.0.0:" + p, "--insecure-dev"}},
		{"empty host", []string{"--listen=:" + p}},
		{"raft off loopback", []string{"--listen=" + testenv.FreeAddr(t), "--raft-addr=0.0.0.0:" + p}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append([]string{"--data-dir=" + t.TempDir(), "--raft-addr=" + testenv.FreeAddr(t)}, c.flags...)
			out, err := exec.CommandContext(cctx, bin, args...).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 || cctx.Err() != nil {
				t.Fatalf("want exit 1, got %v (%v):\n%s", err, cctx.Err(), out)
			}
			for _, flag := range []string{"--tls-cert", "--tls-key", "--tls-ca", "--insecure-dev"} {
				if !strings.Contains(string(out), flag) {
					t.Errorf("the refusal does not name %s:\n%s", flag, out)
				}
			}
		})
	}

	// Loopback: it starts; --insecure-dev says what it means.
	dir := t.TempDir()
	coord := testenv.StartCoordinator(t, dir, "--insecure-dev")
	coord.WaitReady(t, testenv.NewGrpcurl(t, coord.Addr))
	testenv.Eventually(t, 10*time.Second, "the insecure mode to be logged", func() bool {
		b, _ := os.ReadFile(coord.Log)
		return strings.Contains(string(b), "INSECURE DEVELOPMENT MODE")
	})
}
