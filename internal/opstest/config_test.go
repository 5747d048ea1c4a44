package opstest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// Bad configuration stops a daemon at once, non-zero, with a message that
// names the setting; a good file is what --print-config shows.
func TestBadConfigurationFailsAtStart(t *testing.T) {
	bin := testenv.Binaries(t)
	dir := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notADir := file("plain", "x")
	data := "--data-dir=" + filepath.Join(dir, "data")
	for _, c := range []struct {
		name string
		prog string
		args []string
		env  []string
		want string
	}{
		{"unknown key", "flotilla-coordinator", []string{"--config", file("a.yaml", "raft-adress: 127.0.0.1:1\n")}, nil, `unknown setting "raft-adress"`},
		{"bad address", "flotilla-coordinator", []string{data, "--listen=localhost"}, nil, "--listen"},
		{"bad address from the environment", "flotilla-coordinator", []string{data}, []string{"FLOTILLA_COORDINATOR_RAFT_ADDR=nowhere"}, "--raft-addr"},
		{"unwritable data dir", "flotilla-coordinator", []string{"--data-dir=" + filepath.Join(notADir, "d")}, nil, "--data-dir"},
		{"conflicting flags", "flotilla-coordinator", []string{data, "--pprof"}, nil, "--pprof needs --http-listen"},
		{"bad value in a file", "flotilla-agent", []string{"--config", file("b.yaml", "guest-ping-interval: often\n")}, nil, `setting "guest-ping-interval"`},
		{"bad environment value", "flotilla-agent", nil, []string{"FLOTILLA_AGENT_LOG_LEVEL=loud"}, "loud"},
		{"unwritable state dir", "flotilla-agent", []string{"--state-dir=" + filepath.Join(notADir, "s")}, nil, "--state-dir"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(bin, c.prog), c.args...)
			cmd.Env = append(os.Environ(), c.env...)
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("still running: %s", out)
			}
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("exit %v, want a failure naming %q:\n%s", err, c.want, out)
			}
		})
	}

	// A file sets what flags do not; --print-config shows the outcome.
	good := file("good.yaml", "node-id: c7\nreadiness-timeout: 3m\noperation-deadline: [create=10m]\n")
	cmd := exec.Command(filepath.Join(bin, "flotilla-coordinator"), "--config", good, "--readiness-timeout=4m", "--print-config")
	cmd.Env = append(os.Environ(), "FLOTILLA_COORDINATOR_NODE_ID=c8")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"node-id: c8\n", "readiness-timeout: 4m0s\n", "- create=10m0s\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--print-config lacks %q:\n%s", want, out)
		}
	}
}
