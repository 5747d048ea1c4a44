package libvirt

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// Connection tuning. The back-off is short because the usual outage is a
// libvirtd restart that takes a second or two.
const (
	dialTimeout    = 5 * time.Second
	connectTimeout = 15 * time.Second // dial + auth + open, so a wedged daemon cannot stall reconnection
	backoffMin     = 100 * time.Millisecond
	backoffMax     = 2 * time.Second
)

// connector owns the connection to libvirtd and redials in the background
// after it drops. go-libvirt objects are used for one connection only: a fresh
// one per dial avoids go-libvirt's own reconnect path, whose bookkeeping is not
// safe against concurrent callers.
type connector struct {
	socket string
	uri    golibvirt.ConnectURI
	log    *slog.Logger

	mu     sync.RWMutex
	cur    *golibvirt.Libvirt // nil while disconnected
	closed bool

	stop chan struct{}
	done chan struct{}

	// onReconnect, when set, runs after every reconnection (not the first
	// connection), on the reconnecting goroutine: it must not block.
	onReconnect func()
}

func newConnector(socket string, uri golibvirt.ConnectURI, log *slog.Logger) *connector {
	return &connector{socket: socket, uri: uri, log: log, stop: make(chan struct{}), done: make(chan struct{})}
}

// start makes the first connection synchronously, so a misconfigured host
// fails New, then keeps the connection alive in the background.
func (c *connector) start(ctx context.Context) error {
	type result struct {
		l    *golibvirt.Libvirt
		disc <-chan struct{}
		err  error
	}
	res := make(chan result, 1)
	go func() {
		l, disc, err := c.dial()
		res <- result{l, disc, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			close(c.done)
			return fmt.Errorf("libvirt: connect %s: %w: %w", c.socket, hypervisor.ErrUnavailable, r.err)
		}
		c.set(r.l)
		go c.run(r.disc)
		return nil
	case <-ctx.Done():
		// The dial finishes within connectTimeout; drop its connection then.
		go func() {
			if r := <-res; r.err == nil {
				_ = r.l.Disconnect()
			}
		}()
		close(c.done)
		return fmt.Errorf("libvirt: connect %s: %w", c.socket, ctx.Err())
	}
}

// dial opens one connection. It returns the connection's own Disconnected
// channel, read here in the dialling goroutine because go-libvirt assigns it
// without a lock during ConnectToURI.
func (c *connector) dial() (*golibvirt.Libvirt, <-chan struct{}, error) {
	d := &abortableDialer{path: c.socket}
	l := golibvirt.NewWithDialer(d)
	watchdog := time.AfterFunc(connectTimeout, d.abort)
	err := l.ConnectToURI(c.uri)
	watchdog.Stop()
	if err != nil {
		return nil, nil, err
	}
	disc := l.Disconnected()
	// One round trip proves the daemon answers and, through go-libvirt's
	// locks, orders the setup above before its reader goroutine's cleanup.
	if _, err := l.ConnectGetLibVersion(); err != nil {
		_ = l.Disconnect()
		return nil, nil, err
	}
	return l, disc, nil
}

// run waits for the connection to drop and redials with back-off until
// stopped.
func (c *connector) run(disc <-chan struct{}) {
	defer close(c.done)
	for {
		select {
		case <-disc:
		case <-c.stop:
			return
		}
		c.set(nil)
		c.log.Warn("libvirt connection lost; reconnecting", "socket", c.socket)
		started := time.Now()
		backoff := backoffMin
		for {
			l, d, err := c.dial()
			if err == nil {
				c.set(l)
				disc = d
				c.log.Info("libvirt connection restored", "socket", c.socket, "outage", time.Since(started).Round(time.Millisecond))
				if c.onReconnect != nil {
					c.onReconnect()
				}
				break
			}
			c.log.Debug("libvirt redial failed", "socket", c.socket, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-c.stop:
				return
			}
			backoff = min(backoff*2, backoffMax)
		}
	}
}

func (c *connector) set(l *golibvirt.Libvirt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = l
}

// get returns the live connection, or an error wrapping ErrUnavailable at once
// while reconnecting, so that callers never queue behind an outage.
func (c *connector) get() (*golibvirt.Libvirt, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.cur == nil {
		return nil, fmt.Errorf("not connected to libvirtd at %s (reconnecting): %w", c.socket, hypervisor.ErrUnavailable)
	}
	return c.cur, nil
}

// close stops reconnecting and drops the connection.
func (c *connector) close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()

	close(c.stop)
	<-c.done

	c.mu.Lock()
	l := c.cur
	c.cur = nil
	c.mu.Unlock()
	if l == nil {
		return nil
	}
	if err := l.Disconnect(); err != nil {
		return fmt.Errorf("libvirt: disconnect: %w", err)
	}
	return nil
}

// abortableDialer dials libvirtd's unix socket and can close the connection
// from outside, which is the only way to interrupt go-libvirt's handshake.
type abortableDialer struct {
	path string

	mu      sync.Mutex
	conn    net.Conn
	aborted bool
}

func (d *abortableDialer) Dial() (net.Conn, error) {
	conn, err := net.DialTimeout("unix", d.path, dialTimeout)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.aborted {
		conn.Close()
		return nil, fmt.Errorf("dial %s: connect timed out", d.path)
	}
	d.conn = conn
	return conn, nil
}

func (d *abortableDialer) abort() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.aborted = true
	if d.conn != nil {
		d.conn.Close()
	}
}
