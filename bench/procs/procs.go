// Package procs builds Flotilla's binaries and runs them as processes for
// programs that are not tests (internal/testenv needs a testing.TB). It
// starts the coordinator and the agent with the same flags testenv uses.
package procs

import (
	"github.com/flotilla-vm/flotilla/internal/freeport"

	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// RepoRoot finds the module root (the directory holding go.mod) at or above
// dir.
func RepoRoot(dir string) (string, error) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above " + dir)
		}
		dir = parent
	}
}

// Build runs `go build -o outDir/ ./cmd/...` in root (no -race: the
// binaries are measured).
func Build(root, outDir string) error {
	cmd := exec.Command("go", "build", "-o", outDir+"/", "./cmd/...")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

// FreeAddr returns a loopback address for a process under measurement.
func FreeAddr() (string, error) { return freeport.Addr() }

// Proc is one started binary; its combined output goes to Log.
type Proc struct {
	Name string
	Log  string
	Bin  string
	Args []string

	cmd      *exec.Cmd
	end      chan struct{}
	waitErr  error // valid once end is closed
	stopping bool  // set by Stop before it signals
	stopOnce sync.Once
	mu       sync.Mutex
}

// Start runs bin with args, output appended to logPath.
func Start(bin, logPath string, args ...string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: a Ctrl-C in the terminal reaches the bench only,
	// which then stops the children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &Proc{Name: filepath.Base(bin), Log: logPath, Bin: bin, Args: args, cmd: cmd, end: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); f.Close(); close(p.end) }()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.end:
		return true
	default:
		return false
	}
}

// Unexpected describes how the process ended if it ended without Stop
// (e.g. "exit status 1", "signal: killed"), or is "" while it runs or after
// Stop.
func (p *Proc) Unexpected() string {
	if !p.Exited() {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return ""
	}
	if p.waitErr == nil {
		return "exited with status 0"
	}
	return p.waitErr.Error()
}

// Stop sends SIGTERM and waits up to grace for the exit, then kills.
// Safe to call more than once.
func (p *Proc) Stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.stopping = true
		p.mu.Unlock()
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.end:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.end
		}
	})
}

// Coordinator is a running single-node flotilla-coordinator.
type Coordinator struct {
	*Proc
	Addr     string
	RaftAddr string
	DataDir  string
}

// StartCoordinator starts a coordinator from binDir with its data under dir
// and its log in dir/flotilla-coordinator.log.
func StartCoordinator(binDir, dir string, extra ...string) (*Coordinator, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	raftAddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	c := &Coordinator{Addr: addr, RaftAddr: raftAddr, DataDir: filepath.Join(dir, "coordinator")}
	args := append([]string{"--node-id=c1", "--data-dir=" + c.DataDir, "--listen=" + c.Addr,
		"--raft-addr=" + c.RaftAddr, "--log-level=debug"}, extra...)
	c.Proc, err = Start(filepath.Join(binDir, "flotilla-coordinator"), filepath.Join(dir, "flotilla-coordinator.log"), args...)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Agent is a running flotilla-agent.
type Agent struct {
	*Proc
	HostID   string
	RunDir   string // console logs and sockets; short, for unix socket paths
	DiskDir  string
	StateDir string
}

// StartAgent starts an agent for hostID against the coordinator at addr,
// its state under dir and its log in dir/flotilla-agent.log. runDir must be
// short (unix socket paths hold 107 bytes at most).
func StartAgent(binDir, dir, runDir, imageDir, addr, hostID, hypervisor string, extra ...string) (*Agent, error) {
	a := &Agent{HostID: hostID, RunDir: runDir, DiskDir: filepath.Join(dir, hostID, "disks"), StateDir: filepath.Join(dir, hostID, "state")}
	args := append([]string{
		"--coordinator=" + addr, "--host-id=" + hostID, "--hypervisor=" + hypervisor,
		"--image-dir=" + imageDir, "--disk-dir=" + a.DiskDir, "--run-dir=" + a.RunDir, "--state-dir=" + a.StateDir,
		"--log-level=debug",
	}, extra...)
	var err error
	a.Proc, err = Start(filepath.Join(binDir, "flotilla-agent"), filepath.Join(dir, "flotilla-agent.log"), args...)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
	<-p.end
}

// Restart starts the same binary with the same arguments and log.
func (p *Proc) Restart() (*Proc, error) {
	np, err := Start(p.Bin, p.Log, p.Args...)
	if err != nil {
		return nil, err
	}
	np.Name = p.Name
	return np, nil
}

// StartClusterNode starts coordinator id with short Raft timeouts; join is
// the API address of a member to join through, empty for the first node.
func StartClusterNode(binDir, dir, id, join string, extra ...string) (*Coordinator, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	raftAddr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	c := &Coordinator{Addr: addr, RaftAddr: raftAddr, DataDir: filepath.Join(dir, id)}
	args := append([]string{"--node-id=" + id, "--data-dir=" + c.DataDir, "--listen=" + c.Addr,
		"--raft-addr=" + c.RaftAddr, "--raft-fast", "--log-level=info"}, extra...)
	if join != "" {
		args = append(args, "--join="+join)
	}
	c.Proc, err = Start(filepath.Join(binDir, "flotilla-coordinator"), filepath.Join(dir, id+".log"), args...)
	if err != nil {
		return nil, err
	}
	c.Proc.Name = id
	return c, nil
}
