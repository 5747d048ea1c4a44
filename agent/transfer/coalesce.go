package transfer

import (
	"context"
	"crypto/tls"
	"net"
	"sync"

	"google.golang.org/grpc/credentials"
)

// ServerCredentials are TLS credentials for a peer server (see
// ServerOptions) that send what one TLS write makes in one system call.
// crypto/tls writes every record (16 KiB at most) to the connection on its
// own: a disk sent at several hundred MB/s cost tens of thousands of
// write calls a second, a tenth of the source's CPU. Here the records of
// one write are gathered and written together.
func ServerCredentials(cfg *tls.Config) credentials.TransportCredentials {
	return &coalescingCreds{TransportCredentials: credentials.NewTLS(cfg)}
}

type coalescingCreds struct {
	credentials.TransportCredentials
}

func (c *coalescingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	g := &gatherConn{Conn: raw}
	conn, info, err := c.TransportCredentials.ServerHandshake(g)
	if err != nil {
		return nil, nil, err
	}
	return &flushingConn{Conn: conn, g: g}, info, nil
}

func (c *coalescingCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.TransportCredentials.ClientHandshake(ctx, authority, raw)
}

func (c *coalescingCreds) Clone() credentials.TransportCredentials {
	return &coalescingCreds{TransportCredentials: c.TransportCredentials.Clone()}
}

// gatherConn is the raw connection under TLS: while gathering, writes go
// to a buffer that flush sends in one call.
type gatherConn struct {
	net.Conn
	mu        sync.Mutex
	gathering int
	buf       []byte
	err       error // of the last flush: later writes fail with it
}

func (g *gatherConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return 0, g.err
	}
	if g.gathering == 0 {
		return g.Conn.Write(p)
	}
	g.buf = append(g.buf, p...)
	return len(p), nil
}

func (g *gatherConn) start() {
	g.mu.Lock()
	g.gathering++
	g.mu.Unlock()
}

// flush ends one gathering and, when none is left, sends what it gathered.
func (g *gatherConn) flush() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gathering--
	if g.gathering > 0 || len(g.buf) == 0 || g.err != nil {
		return g.err
	}
	_, g.err = g.Conn.Write(g.buf)
	if cap(g.buf) > 4<<20 {
		g.buf = nil // a huge write once is not kept
	} else {
		g.buf = g.buf[:0]
	}
	return g.err
}

// flushingConn is the TLS connection whose writes are gathered below.
type flushingConn struct {
	net.Conn
	g *gatherConn
}

func (c *flushingConn) Write(p []byte) (int, error) {
	c.g.start()
	n, err := c.Conn.Write(p)
	if ferr := c.g.flush(); err == nil && ferr != nil {
		// TLS took the records; the network did not: the connection is
		// broken for every later write too.
		return 0, ferr
	}
	return n, err
}
