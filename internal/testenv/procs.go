package testenv

import (
	"context"

	"fmt"
	"github.com/flotilla-vm/flotilla/internal/freeport"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries builds the three commands once per test process and returns
// the directory holding them. They are built with the testhooks tag, which
// lets a test turn on test-only switches through the environment (see
// StartAgentEnv); the shipped binaries have none.
func Binaries(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "flotilla-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-race", "-tags", "testhooks", "-o", buildDir+"/", "./cmd/...")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

// RemoveBinaries deletes what Binaries built, if anything. Each test
// process builds its own (about 70 MB, under -race), so a package whose
// tests start processes calls it from TestMain once they are done.
func RemoveBinaries() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// FreeAddr returns a loopback address for a process under test.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Proc is one started binary. It is stopped when the test ends.
type Proc struct {
	Name string
	Args []string
	Log  string   // path of its combined output
	Env  []string // NAME=value added to the test's environment

	t    testing.TB
	bin  string
	wrap []string // a command that runs bin (and execs it: signals must reach bin)
	mu   sync.Mutex
	cmd  *exec.Cmd
	end  chan struct{}
}

// Start runs binary name from Binaries with args; output goes to a log file
// in dir, printed when the test fails.
func Start(t testing.TB, name, dir string, args ...string) *Proc {
	t.Helper()
	return StartNamed(t, name, name, dir, args...)
}

// StartNamed is Start for one of several processes of the same binary:
// label names its log file.
func StartNamed(t testing.TB, name, label, dir string, args ...string) *Proc {
	t.Helper()
	return startWrapped(t, name, label, dir, nil, nil, args...)
}

// StartFrom is StartNamed for a binary of binDir (e.g. a previous
// release's, see PreviousRelease) rather than this tree's.
func StartFrom(t testing.TB, binDir, name, label, dir string, args ...string) *Proc {
	t.Helper()
	return startBin(t, filepath.Join(binDir, name), label, dir, nil, nil, args...)
}

// startWrapped is StartNamed with the binary run by the command wrap, which
// must exec it in its place (as nsenter does), and env added to its environment.
func startWrapped(t testing.TB, name, label, dir string, wrap, env []string, args ...string) *Proc {
	t.Helper()
	return startBin(t, filepath.Join(Binaries(t), name), label, dir, wrap, env, args...)
}

func startBin(t testing.TB, bin, label, dir string, wrap, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: label, Args: args, Env: env, Log: filepath.Join(dir, label+".log"), t: t, bin: bin, wrap: wrap}
	p.start()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(p.Log); err == nil {
				t.Logf("---- %s log (last 8 KiB) ----\n%s", label, tail(string(b), 8192))
			}
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *Proc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	argv := append(append(slices.Clone(p.wrap), p.bin), p.Args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if len(p.Env) > 0 {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.Name, err)
	}
	end := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(end) }()
	p.mu.Lock()
	p.cmd, p.end = cmd, end
	p.mu.Unlock()
}

// Signal sends sig and waits (up to 20 s) for the process to exit.
func (p *Proc) Signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, end := p.cmd, p.end
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-end:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-end
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
}

// Stop terminates the process gracefully.
func (p *Proc) Stop() { p.Signal(syscall.SIGTERM) }

// Kill kills the process without warning.
func (p *Proc) Kill() { p.Signal(syscall.SIGKILL) }

// Restart starts the process again with the same arguments, stopping it
// first (SIGTERM) if it still runs: two at once would share its files.
func (p *Proc) Restart() {
	p.t.Helper()
	p.Stop()
	p.start()
}

// Replace stops the process (SIGTERM) and starts the binary of the same
// name from binDir in its place, with the same arguments: an upgrade in
// place. An empty binDir is this tree's binaries.
func (p *Proc) Replace(binDir string) {
	p.t.Helper()
	if binDir == "" {
		binDir = Binaries(p.t)
	}
	p.Stop()
	p.bin = filepath.Join(binDir, filepath.Base(p.bin))
	p.start()
}

// Eventually polls cond every 20 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Run runs a command and returns its combined output.
func Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Send delivers sig without waiting (e.g. SIGSTOP/SIGCONT to freeze a process).
func (p *Proc) Send(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Freeze stops the process with SIGSTOP and waits until every one of its
// threads is stopped: the signal is delivered asynchronously, and a test
// that acts on "the process is frozen" must not race its last thread.
func (p *Proc) Freeze() {
	p.t.Helper()
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		p.t.Fatalf("%s: not running, cannot be frozen", p.Name)
	}
	_ = cmd.Process.Signal(syscall.SIGSTOP)
	Eventually(p.t, 10*time.Second, p.Name+" to be stopped", func() bool {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", cmd.Process.Pid))
		if err != nil || len(tasks) == 0 {
			return false
		}
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				return false
			}
			// The state follows the command name's closing parenthesis.
			i := strings.LastIndexByte(string(b), ')')
			if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
				return false
			}
		}
		return true
	})
}

// LogCount counts the occurrences of s in the process's log, across its
// restarts (they append to one file). For waiting on something a process
// does that no API shows; prefer a condition observable through the API.
func (p *Proc) LogCount(s string) int {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// Pid is the process id of the running process (0 if it is not running),
// e.g. to read its memory from /proc.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}
