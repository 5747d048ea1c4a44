package raftstore

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// handshakeTimeout bounds a TLS handshake on the Raft port, either way.
const handshakeTimeout = 10 * time.Second

// tlsLayer is the Raft transport's stream layer under mutual TLS. Every
// connection, accepted or dialed, completes its handshake before Raft sees
// it, and both sides' certificates must be signed by the cluster's CA and
// name a coordinator (the configurations carry that check): the log holds
// the whole state, move tokens included, and appending to it is what
// changes it. A peer that fails the handshake is logged and dropped; it
// never reaches Raft, and a slow one holds only its own goroutine.
type tlsLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	log       *slog.Logger

	ready     chan net.Conn // handshaken connections for Accept
	acceptErr chan error    // why the listener stopped
	closed    chan struct{}
	closeOnce sync.Once
}

var _ raft.StreamLayer = (*tlsLayer)(nil)

func newTLSLayer(bind string, advertise net.Addr, server, client *tls.Config, log *slog.Logger) (*tlsLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	l := &tlsLayer{ln: ln, advertise: advertise, server: server, client: client, log: log,
		ready: make(chan net.Conn), acceptErr: make(chan error, 1), closed: make(chan struct{})}
	go l.serve()
	return l, nil
}

func (l *tlsLayer) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			l.acceptErr <- err
			return
		}
		go l.handshake(c)
	}
}

func (l *tlsLayer) handshake(c net.Conn) {
	tc := tls.Server(c, l.server)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		l.log.Warn("raft transport: refused a connection", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	select {
	case l.ready <- tc:
	case <-l.closed:
		tc.Close()
	}
}

// Accept returns the next connection whose handshake succeeded.
func (l *tlsLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.acceptErr:
		l.acceptErr <- err // every later Accept fails the same way
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *tlsLayer) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.ln.Close()
}

func (l *tlsLayer) Addr() net.Addr { return l.advertise }

// Dial connects to a peer and completes the handshake within timeout.
func (l *tlsLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: l.client}
	return d.DialContext(ctx, "tcp", string(address))
}
