package clitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// cluster is a coordinator and one fake-hypervisor agent, and the
// flotctl binary to run against them.
type cluster struct {
	t    *testing.T
	bin  string
	addr string
	home string // $HOME of flotctl: no config file unless a test writes one
	// env, if set, is flotctl's whole environment instead of the default.
	env []string
}

// startCluster starts the coordinator and the agent. The fake's Start
// takes a while, so that a waited-for start shows a RUNNING operation.
func startCluster(t *testing.T) *cluster {
	dir := t.TempDir()
	// A retention window, so that delete and restore can be tried.
	coord := testenv.StartCoordinator(t, dir, "--soft-delete-retention", "1h")
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, bin: filepath.Join(testenv.Binaries(t), "flotctl"), addr: coord.Addr, home: home}
	// flotctl itself says when the cluster is up (no grpcurl needed).
	testenv.Eventually(t, 30*time.Second, "the coordinator to lead", func() bool {
		return c.run("cluster", "status", "-o", "jsonpath={.raftState}").stdout == "Leader\n"
	})
	testenv.StartAgentEnv(t, dir, coord.Addr, "fake-1", "fake", []string{fake.FaultsEnv + "=delay:Start=2500ms"})
	testenv.Eventually(t, 60*time.Second, "host fake-1 to be READY", func() bool {
		return c.run("host", "get", "fake-1", "-o", "jsonpath={.status}").stdout == "HOST_STATUS_READY\n"
	})
	return c
}

// result is one run of flotctl.
type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "flotctl " + strings.Join(r.args, " ") + ": exit " + itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// command is flotctl with args, the coordinator given by the environment.
func (c *cluster) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = []string{"HOME=" + c.home, "PATH=" + os.Getenv("PATH"), "FLOTILLA_COORDINATOR=" + c.addr}
	if c.env != nil {
		cmd.Env = c.env
	}
	return cmd
}

// run runs flotctl with stdout and stderr through pipes.
func (c *cluster) run(args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.command(ctx, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{args: args, stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		c.t.Fatalf("flotctl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// ok runs flotctl and fails the test unless it exits 0.
func (c *cluster) ok(args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("%s", r)
	}
	return r
}

// fails runs flotctl and checks its exit code and its one-line message.
func (c *cluster) fails(code int, message string, args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.code != code || r.stdout != "" || !strings.HasPrefix(r.stderr, "flotctl: ") || !strings.HasSuffix(r.stderr, "\n") ||
		strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, message) {
		c.t.Errorf("want exit %d and one line with %q; %s", code, message, r)
	}
	return r
}

// onTerminal runs flotctl with stdout and stderr on a pseudo-terminal and
// returns what the terminal showed.
func (c *cluster) onTerminal(args ...string) (int, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ptmx, tty, err := pty.Open()
	if err != nil {
		c.t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 160}); err != nil {
		c.t.Fatal(err)
	}
	cmd := c.command(ctx, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	tty.Close() // the child holds it now; reads end (EIO) once it exits
	var screen bytes.Buffer
	read := make(chan struct{})
	go func() { io.Copy(&screen, ptmx); close(read) }()
	err = cmd.Wait()
	<-read
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return code, screen.String()
}

// table is a parsed table: its header and rows, by column name.
type table struct {
	header []string
	rows   []map[string]string
}

var columnGap = regexp.MustCompile(`\s{2,}`)

// parseTable reads flotctl's table output (columns at least two spaces
// apart; empty cells are "-").
func parseTable(t *testing.T, out string) table {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("no table in %q", out)
	}
	tb := table{header: columnGap.Split(strings.TrimSpace(lines[0]), -1)}
	for _, l := range lines[1:] {
		if l == "" {
			break // a second table follows
		}
		cells := columnGap.Split(strings.TrimSpace(l), -1)
		if len(cells) != len(tb.header) {
			t.Fatalf("row %q has %d cells, header %q has %d", l, len(cells), tb.header, len(tb.header))
		}
		row := map[string]string{}
		for i, h := range tb.header {
			row[h] = cells[i]
		}
		tb.rows = append(tb.rows, row)
	}
	return tb
}

// row is the row whose column col is value.
func (tb table) row(t *testing.T, col, value string) map[string]string {
	t.Helper()
	for _, r := range tb.rows {
		if r[col] == value {
			return r
		}
	}
	t.Fatalf("no row with %s=%s in %v", col, value, tb.rows)
	return nil
}

// fromJSON parses a single-message document.
func fromJSON[M proto.Message](t *testing.T, out string, m M) M {
	t.Helper()
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	return m
}

// items parses a list document {"items": [...]}.
func items[M proto.Message](t *testing.T, out string, newM func() M) []M {
	t.Helper()
	var doc struct{ Items []json.RawMessage }
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil || dec.More() {
		t.Fatalf("not one {\"items\": [...]} document (%v): %s", err, out)
	}
	var ms []M
	for _, raw := range doc.Items {
		ms = append(ms, fromJSON(t, string(raw), newM()))
	}
	return ms
}

// sameYAML checks that a YAML output is the JSON output's tree, but for
// the keys named volatile (what changes between two calls, such as when a
// server was last heard from).
func sameYAML(t *testing.T, yamlOut, jsonOut string, volatile ...string) {
	t.Helper()
	var y, j any
	if err := yaml.Unmarshal([]byte(yamlOut), &y); err != nil {
		t.Fatalf("yaml: %v\n%s", err, yamlOut)
	}
	if err := json.Unmarshal([]byte(jsonOut), &j); err != nil {
		t.Fatalf("json: %v\n%s", err, jsonOut)
	}
	dropKeys(y, volatile)
	dropKeys(j, volatile)
	yb, _ := json.Marshal(y)
	jb, _ := json.Marshal(j)
	if !bytes.Equal(yb, jb) {
		t.Errorf("yaml and json differ:\n%s\n%s", yb, jb)
	}
}

// dropKeys removes the keys from every object in the tree v.
func dropKeys(v any, keys []string) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range keys {
			delete(v, k)
		}
		for _, c := range v {
			dropKeys(c, keys)
		}
	case []any:
		for _, c := range v {
			dropKeys(c, keys)
		}
	}
}

func yamlUnmarshal(s string, v any) error { return yaml.Unmarshal([]byte(s), v) }
