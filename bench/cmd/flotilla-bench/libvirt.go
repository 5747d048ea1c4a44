package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// lockPath is the lock the test suites share around the one libvirtd: a
// test that restarts libvirtd takes it exclusively, everyone else shared.
const lockPath = "/tmp/flotilla-libvirt-tests.lock"

// lockLibvirtShared takes the shared lock, waiting (until ctx ends) while a
// test holds it exclusively. It returns the release function.
func lockLibvirtShared(ctx context.Context) (func(), error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("flock %s: %w", lockPath, err)
		}
		logf("waiting for the shared libvirt lock %s (a test holds it exclusively)", lockPath)
		got := make(chan error, 1)
		go func() { got <- syscall.Flock(int(f.Fd()), syscall.LOCK_SH) }()
		select {
		case err := <-got:
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("flock %s: %w", lockPath, err)
			}
		case <-ctx.Done():
			f.Close() // ends the blocked flock's claim with the descriptor
			return nil, ctx.Err()
		}
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// libvirtConn is the bench's own connection to libvirtd, used to act behind
// Flotilla's back and to watch lifecycle events independently of the agent.
type libvirtConn struct {
	l      *golibvirt.Libvirt
	cancel context.CancelFunc
	events chan lvEvent
}

// lvEvent is one lifecycle event, stamped when the bench received it.
type lvEvent struct {
	at    time.Time
	name  string
	event golibvirt.DomainEventType
}

type unixDialer struct{ path string }

func (d unixDialer) Dial() (net.Conn, error) { return net.DialTimeout("unix", d.path, 5*time.Second) }

// dialLibvirt connects to qemu:///system through socket and subscribes to
// lifecycle events at once.
func dialLibvirt(socket string) (*libvirtConn, error) {
	l := golibvirt.NewWithDialer(unixDialer{socket})
	if err := l.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		return nil, fmt.Errorf("libvirt: connect %s: %w", socket, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := l.LifecycleEvents(ctx)
	if err != nil {
		cancel()
		_ = l.Disconnect()
		return nil, fmt.Errorf("libvirt: subscribe to lifecycle events: %w", err)
	}
	c := &libvirtConn{l: l, cancel: cancel, events: make(chan lvEvent, 4096)}
	go func() {
		// Stamp first, then hand on; never block go-libvirt's forwarder.
		for msg := range ch {
			ev := lvEvent{at: time.Now(), name: msg.Dom.Name, event: golibvirt.DomainEventType(msg.Event)}
			select {
			case c.events <- ev:
			default: // nobody is measuring and the buffer is full: drop
			}
		}
	}()
	return c, nil
}

func (c *libvirtConn) close() {
	c.cancel()
	_ = c.l.Disconnect()
}

// drain drops events received so far.
func (c *libvirtConn) drain() {
	for {
		select {
		case <-c.events:
		default:
			return
		}
	}
}

// virsh runs virsh against the system libvirtd and returns its output.
func virsh(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", "qemu:///system"}, args...)...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, s)
	}
	return s, nil
}

func lookPath(name string) (string, error) { return exec.LookPath(name) }
