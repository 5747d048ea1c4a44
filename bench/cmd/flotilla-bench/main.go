// Command flotilla-bench measures Flotilla against the real libvirtd on this
// host and prints a table:
//
//  1. event -> coordinator watch: the time from a libvirt lifecycle event
//     (seen by the bench's own go-libvirt subscription) to the coordinator's
//     WatchInstances stream delivering the new power state, for pauses and
//     resumes made behind Flotilla's back;
//  2. create -> RUNNING through Flotilla against `virsh create` of the same
//     domain XML.
//
// Run it from the repository as `go run ./bench/cmd/flotilla-bench` (root,
// libvirtd running, test guest built: `make bench` sets all that up). See
// bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/flotilla-vm/flotilla/bench/procs"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

type options struct {
	n        int
	m        int
	keepLogs bool
	imageDir string
	socket   string
	repo     string
}

func main() {
	var o options
	defImages := "/var/lib/flotilla/images"
	if d := os.Getenv("FLOTILLA_IMAGE_DIR"); d != "" {
		defImages = d
	}
	flag.IntVar(&o.n, "n", 100, "pause/resume rounds for the event latency (two samples each)")
	flag.IntVar(&o.m, "m", 5, "creates through Flotilla and through virsh (each)")
	flag.BoolVar(&o.keepLogs, "keep-logs", false, "keep the work dir with the coordinator and agent logs")
	flag.StringVar(&o.imageDir, "image-dir", defImages, "directory of base images (holding flotilla-test/)")
	flag.StringVar(&o.socket, "libvirt-socket", "/var/run/libvirt/libvirt-sock", "libvirtd's unix socket")
	flag.StringVar(&o.repo, "repo", "", "repository root (default: found above the working directory)")
	flag.Parse()
	if flag.NArg() > 0 || o.n < 1 || o.m < 1 {
		fmt.Fprintln(os.Stderr, "usage: flotilla-bench [-n rounds>=1] [-m creates>=1] [--keep-logs]")
		os.Exit(2)
	}
	os.Exit(run(o))
}

func run(o options) (code int) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the bench at once
	}()

	var cl cleanups
	defer func() {
		if ctx.Err() != nil {
			logf("interrupted: cleaning up (signal again to abandon)")
			code = 130
		}
		cl.run()
	}()

	b := &bench{opts: o, cl: &cl}
	if err := b.run(ctx); err != nil {
		if ctx.Err() == nil {
			logf("FAILED: %v", err)
			if b.workDir != "" {
				b.tailLogs()
			}
		}
		return 1
	}
	return 0
}

// bench holds everything one run sets up.
type bench struct {
	opts options
	cl   *cleanups

	workDir string // logs, Raft data, disks of the virsh domains
	runDir  string // short: agent's consoles and sockets
	binDir  string

	coord *procs.Coordinator
	agent *procs.Agent
	conn  *grpc.ClientConn
	inst  pb.InstanceServiceClient
	ops   pb.OperationServiceClient
	hosts pb.HostServiceClient
	lv    *libvirtConn

	// live Flotilla instances, deleted at the end if still there.
	live map[string]bool

	template       domainTemplate // Flotilla's domain XML, for virsh
	libvirtVersion string
	domainType     string
	results        results
}

func (b *bench) run(ctx context.Context) error {
	if err := b.preflight(); err != nil {
		return err
	}
	unlock, err := lockLibvirtShared(ctx)
	if err != nil {
		return err
	}
	b.cl.add(unlock)

	if err := b.setup(ctx); err != nil {
		return err
	}
	if err := b.latency(ctx); err != nil {
		return fmt.Errorf("event latency: %w", err)
	}
	if err := b.createVsVirsh(ctx); err != nil {
		return fmt.Errorf("create vs virsh: %w", err)
	}
	b.results.analyze(b.agent.Log)
	b.results.print(os.Stdout, b)
	return nil
}

func (b *bench) preflight() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (libvirt's system instance)")
	}
	if _, err := os.Stat(b.opts.socket); err != nil {
		missing = append(missing, "libvirtd socket "+b.opts.socket+" (scripts/setup-host.sh)")
	}
	for _, tool := range []string{"virsh", "qemu-img", "go"} {
		if _, err := lookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat(filepath.Join(b.opts.imageDir, "flotilla-test", ".complete")); err != nil {
		missing = append(missing, "test guest image in "+b.opts.imageDir+" (scripts/build-test-guest.sh)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s", strings.Join(missing, "; "))
	}
	return nil
}

func (b *bench) setup(ctx context.Context) error {
	root := b.opts.repo
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		if root, err = procs.RepoRoot(wd); err != nil {
			return err
		}
	}
	var err error
	if b.workDir, err = os.MkdirTemp("", "flotilla-bench-"); err != nil {
		return err
	}
	b.cl.add(func() {
		if b.opts.keepLogs {
			// Disks are large and useless afterwards; logs stay.
			_ = filepath.Walk(b.workDir, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() && strings.HasSuffix(p, ".qcow2") {
					_ = os.Remove(p)
				}
				return nil
			})
			_ = os.RemoveAll(b.binDir)
			logf("logs kept in %s", b.workDir)
			return
		}
		_ = os.RemoveAll(b.workDir)
	})
	// Unix socket paths hold 107 bytes at most: keep the run dir short.
	if b.runDir, err = os.MkdirTemp("/tmp", "flb-"); err != nil {
		return err
	}
	b.cl.add(func() { _ = os.RemoveAll(b.runDir) })

	b.binDir = filepath.Join(b.workDir, "bin")
	logf("building binaries")
	if err := procs.Build(root, b.binDir); err != nil {
		return err
	}

	logf("starting coordinator and agent (work dir %s)", b.workDir)
	if b.coord, err = procs.StartCoordinator(b.binDir, b.workDir); err != nil {
		return err
	}
	b.cl.add(func() { b.coord.Stop(20 * time.Second) })
	if b.conn, err = grpc.NewClient(b.coord.Addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return err
	}
	b.cl.add(func() { _ = b.conn.Close() })
	b.inst = pb.NewInstanceServiceClient(b.conn)
	b.ops = pb.NewOperationServiceClient(b.conn)
	b.hosts = pb.NewHostServiceClient(b.conn)
	if err := b.waitCoordinator(ctx); err != nil {
		return err
	}

	hostID := fmt.Sprintf("bench-%d", os.Getpid())
	if b.agent, err = procs.StartAgent(b.binDir, b.workDir, b.runDir, b.opts.imageDir, b.coord.Addr, hostID, "libvirt"); err != nil {
		return err
	}
	b.cl.add(func() { b.agent.Stop(20 * time.Second) })
	// Registered after the agent's stop, so it runs before it: instances
	// are deleted through Flotilla while the agent still runs.
	b.live = map[string]bool{}
	b.cl.add(b.deleteLeftovers)
	if err := b.waitHost(ctx, hostID); err != nil {
		return err
	}

	if b.lv, err = dialLibvirt(b.opts.socket); err != nil {
		return err
	}
	b.cl.add(b.lv.close)
	if v, err := b.lv.l.ConnectGetLibVersion(); err == nil {
		b.libvirtVersion = fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
	}
	return nil
}

// waitCoordinator waits until the coordinator serves and leads: cancelling
// an unknown operation needs a committed read, so NOT_FOUND means ready.
func (b *bench) waitCoordinator(ctx context.Context) error {
	return poll(ctx, 30*time.Second, "coordinator to serve", func() (bool, error) {
		if b.coord.Exited() {
			return false, errors.New("coordinator exited")
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := b.ops.CancelOperation(cctx, &pb.CancelOperationRequest{Id: "op-probe"})
		return status.Code(err) == codes.NotFound, nil
	})
}

func (b *bench) waitHost(ctx context.Context, hostID string) error {
	return poll(ctx, 60*time.Second, "host "+hostID+" to be READY", func() (bool, error) {
		if b.agent.Exited() {
			return false, errors.New("agent exited")
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		h, err := b.hosts.GetHost(cctx, &pb.GetHostRequest{Id: hostID})
		return err == nil && h.GetStatus() == pb.HostStatus_HOST_STATUS_READY, nil
	})
}

// tailLogs prints the end of both logs after a failure.
func (b *bench) tailLogs() {
	for _, p := range []*procs.Proc{procOf(b.coord), procOf(b.agent)} {
		if p == nil {
			continue
		}
		if how := p.Unexpected(); how != "" {
			fmt.Fprintf(os.Stderr, "%s ended on its own: %s\n", p.Name, how)
		}
		data, err := os.ReadFile(p.Log)
		if err != nil {
			continue
		}
		if len(data) > 4096 {
			data = data[len(data)-4096:]
		}
		fmt.Fprintf(os.Stderr, "---- %s (last 4 KiB of %s) ----\n%s\n", p.Name, p.Log, data)
	}
	if !b.opts.keepLogs {
		fmt.Fprintln(os.Stderr, "(rerun with --keep-logs to keep the full logs)")
	}
}

func procOf[T interface {
	*procs.Coordinator | *procs.Agent
}](x T) *procs.Proc {
	switch v := any(x).(type) {
	case *procs.Coordinator:
		if v != nil {
			return v.Proc
		}
	case *procs.Agent:
		if v != nil {
			return v.Proc
		}
	}
	return nil
}

// cleanups run in reverse order of registration, each once.
type cleanups struct{ fns []func() }

func (c *cleanups) add(f func()) { c.fns = append(c.fns, f) }

func (c *cleanups) run() {
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
	c.fns = nil
}

// poll calls cond every 20 ms until it holds, fails, timeout passes or ctx
// ends.
func poll(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var logOut io.Writer = os.Stderr

// logf prints progress to stderr; the table goes to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(logOut, "flotilla-bench: "+format+"\n", args...)
}

func cores() int { return runtime.NumCPU() }
