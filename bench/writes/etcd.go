package writes

import (
	"github.com/flotilla-vm/flotilla/internal/freeport"
	"strconv"

	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// EtcdMembers is the size of the reference etcd cluster (same as Flotilla's
// coordinator cluster).
const EtcdMembers = 3

// Etcd is a 3-member etcd cluster running on 127.0.0.1, each member a child
// process with its own data dir under one temporary directory.
type Etcd struct {
	root      string
	version   string
	endpoints []string
	members   []*etcdMember
	closeOnce sync.Once
}

type etcdMember struct {
	name    string
	dataDir string
	logPath string
	logFile *os.File
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// EtcdBinary returns the path of the etcd server binary, or an error telling
// how to install it.
func EtcdBinary() (string, error) {
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("etcd not found on PATH (run bench/writes/install-etcd.sh): %w", err)
	}
	return p, nil
}

// EtcdVersion returns the first line of `etcd --version`, e.g.
// "etcd Version: 3.4.23".
func EtcdVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("etcd --version: %w", err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// StartEtcd starts a fresh 3-member etcd cluster on loopback, with data dirs
// in a new temporary directory under dir (os.TempDir() if dir is ""), and
// returns once the cluster has elected a leader and accepted a write. fsync
// stays on (etcd's default), i.e. the same durability as Flotilla's
// coordinator. The caller must call Close.
//
// The members are started in their own process group (so a terminal's Ctrl-C
// reaches only the benchmark, which then closes the cluster in order) and with
// a parent-death signal, so they don't outlive the benchmark even if it is
// killed outright.
func StartEtcd(ctx context.Context, dir string) (_ *Etcd, err error) {
	bin, err := EtcdBinary()
	if err != nil {
		return nil, err
	}
	version, err := EtcdVersion(bin)
	if err != nil {
		return nil, err
	}
	help, _ := exec.Command(bin, "--help").CombinedOutput()

	if dir == "" {
		dir = os.TempDir()
	}
	root, err := os.MkdirTemp(dir, "flotilla-bench-etcd-")
	if err != nil {
		return nil, err
	}
	e := &Etcd{root: root, version: version}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()

	ports, err := freePorts(2 * EtcdMembers)
	if err != nil {
		return nil, err
	}
	clientURL := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]) }
	peerURL := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]) }
	var initial []string
	for i := 0; i < EtcdMembers; i++ {
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peerURL(i)))
		e.endpoints = append(e.endpoints, fmt.Sprintf("127.0.0.1:%d", ports[2*i]))
	}
	token := filepath.Base(root)

	for i := 0; i < EtcdMembers; i++ {
		m := &etcdMember{
			name:    fmt.Sprintf("m%d", i),
			dataDir: filepath.Join(root, fmt.Sprintf("m%d", i)),
			logPath: filepath.Join(root, fmt.Sprintf("m%d.log", i)),
			done:    make(chan struct{}),
		}
		args := []string{
			"--name", m.name,
			"--data-dir", m.dataDir,
			"--listen-client-urls", clientURL(i),
			"--advertise-client-urls", clientURL(i),
			"--listen-peer-urls", peerURL(i),
			"--initial-advertise-peer-urls", peerURL(i),
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			"--logger", "zap",
			"--log-outputs", "stderr",
			"--log-level", "error",
		}
		// 3.4 fsyncs unconditionally and has no such flag; newer releases
		// default to false. Say so explicitly where the flag exists.
		if bytes.Contains(help, []byte("--unsafe-no-fsync")) {
			args = append(args, "--unsafe-no-fsync=false")
		}
		m.logFile, err = os.Create(m.logPath)
		if err != nil {
			return nil, err
		}
		m.cmd = exec.Command(bin, args...)
		m.cmd.Stdout = m.logFile
		m.cmd.Stderr = m.logFile
		m.cmd.Env = etcdEnv()
		m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err = m.cmd.Start(); err != nil {
			m.logFile.Close()
			return nil, fmt.Errorf("start etcd %s: %w", m.name, err)
		}
		e.members = append(e.members, m)
		go func() {
			m.waitErr = m.cmd.Wait()
			m.logFile.Close()
			close(m.done)
		}()
	}

	if err = e.waitReady(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	return e, nil
}

// etcdEnv is the environment for members: ours minus any ETCD_* variables,
// which etcd would read as flags.
func etcdEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitReady waits until every member reports the same leader and a write
// through member 0 commits.
func (e *Etcd) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conns := make([]*grpc.ClientConn, len(e.endpoints))
	for i, ep := range e.endpoints {
		c, err := dialEtcd(ep)
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c
	}
	var last error
	for {
		if err := e.exited(); err != nil {
			return err
		}
		last = e.probe(ctx, conns)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd cluster not ready: %v (last: %v)%s", ctx.Err(), last, e.logTails())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *Etcd) probe(ctx context.Context, conns []*grpc.ClientConn) error {
	var leader uint64
	for i, c := range conns {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := pb.NewMaintenanceClient(c).Status(cctx, &pb.StatusRequest{})
		cancel()
		if err != nil {
			return fmt.Errorf("status %s: %w", e.endpoints[i], err)
		}
		if st.Leader == 0 {
			return fmt.Errorf("%s has no leader yet", e.endpoints[i])
		}
		if i > 0 && st.Leader != leader {
			return fmt.Errorf("members disagree on leader (%x vs %x)", leader, st.Leader)
		}
		leader = st.Leader
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := pb.NewKVClient(conns[0]).Put(cctx, &pb.PutRequest{Key: []byte("/bench/ready"), Value: []byte("1")})
	return err
}

// exited returns an error if any member has exited.
func (e *Etcd) exited() error {
	for _, m := range e.members {
		select {
		case <-m.done:
			return fmt.Errorf("etcd %s exited: %v%s", m.name, m.waitErr, e.logTails())
		default:
		}
	}
	return nil
}

func (e *Etcd) logTails() string {
	var b strings.Builder
	for _, m := range e.members {
		data, _ := os.ReadFile(m.logPath)
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		if len(bytes.TrimSpace(data)) > 0 {
			fmt.Fprintf(&b, "\n--- %s log (tail) ---\n%s", m.name, data)
		}
	}
	return b.String()
}

// Endpoints returns the members' client addresses (host:port, plain gRPC).
func (e *Etcd) Endpoints() []string { return slices.Clone(e.endpoints) }

// Version is the first line of `etcd --version`.
func (e *Etcd) Version() string { return e.version }

// Dir is the temporary directory holding the members' data dirs and logs.
func (e *Etcd) Dir() string { return e.root }

// Close kills the members, waits for them to exit and removes their data.
// It is safe to call more than once.
func (e *Etcd) Close() {
	e.closeOnce.Do(func() {
		for _, m := range e.members {
			if m.cmd.Process != nil {
				_ = m.cmd.Process.Kill()
			}
		}
		for _, m := range e.members {
			select {
			case <-m.done:
			case <-time.After(10 * time.Second):
			}
		}
		if e.root != "" {
			_ = os.RemoveAll(e.root)
		}
	})
}

// freePorts picks n distinct free loopback ports (see internal/freeport).
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		addr, err := freeport.Addr()
		if err != nil {
			return nil, err
		}
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		ports = append(ports, port)
	}
	return ports, nil
}

func dialEtcd(endpoint string) (*grpc.ClientConn, error) {
	c, err := grpc.NewClient("passthrough:///"+endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", endpoint, err)
	}
	c.Connect()
	return c, nil
}

// EtcdConnections is the size of the client connection pool: realistic
// clients share a few connections rather than holding one each.
const EtcdConnections = 8

// EtcdTarget is the etcd side of the benchmark: each op is a Put of a ~300-byte
// instance record to /instances/<client>-<seq>, sent over a pool of
// EtcdConnections gRPC connections used round-robin, spread over all members
// (followers forward proposals to the leader, as Flotilla's will).
type EtcdTarget struct {
	etcd  *Etcd
	conns []*grpc.ClientConn
	kvs   []pb.KVClient
	next  atomic.Uint64
}

var _ Target = (*EtcdTarget)(nil)

// NewEtcdTarget starts an etcd cluster (see StartEtcd) and connects the pool.
func NewEtcdTarget(ctx context.Context, dir string) (*EtcdTarget, error) {
	e, err := StartEtcd(ctx, dir)
	if err != nil {
		return nil, err
	}
	t := &EtcdTarget{etcd: e}
	eps := e.Endpoints()
	for i := 0; i < EtcdConnections; i++ {
		c, err := dialEtcd(eps[i%len(eps)])
		if err != nil {
			t.Close()
			return nil, err
		}
		t.conns = append(t.conns, c)
		t.kvs = append(t.kvs, pb.NewKVClient(c))
	}
	return t, nil
}

// Etcd returns the cluster under test.
func (t *EtcdTarget) Etcd() *Etcd { return t.etcd }

func (t *EtcdTarget) Name() string { return "etcd" }

func (t *EtcdTarget) Op(ctx context.Context, client, seq int) error {
	kv := t.kvs[(t.next.Add(1)-1)%uint64(len(t.kvs))]
	_, err := kv.Put(ctx, &pb.PutRequest{
		Key:   fmt.Appendf(nil, "/instances/%d-%d", client, seq),
		Value: InstanceRecord(client, seq),
	})
	return err
}

func (t *EtcdTarget) Close() {
	for _, c := range t.conns {
		_ = c.Close()
	}
	t.etcd.Close()
}
