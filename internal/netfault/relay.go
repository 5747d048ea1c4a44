// Package netfault is a TCP relay a test puts between two processes to
// partition them: while cut, the relay forwards nothing either way (bytes
// are held, not refused, as a network that drops packets holds a TCP
// connection until it heals or times out) and holds new connections too.
package netfault

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
)

// Relay forwards connections on its address to a target address.
type Relay struct {
	lis    net.Listener
	target string
	log    *slog.Logger

	mu     sync.Mutex
	open   chan struct{} // closed while traffic flows; replaced on Cut
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Listen starts a relay on 127.0.0.1 to target.
func Listen(target string, log *slog.Logger) (*Relay, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	open := make(chan struct{})
	close(open)
	r := &Relay{lis: lis, target: target, log: log, open: open, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is where clients dial instead of the target.
func (r *Relay) Addr() string { return r.lis.Addr().String() }

// Cut partitions: no byte crosses until Heal.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.open:
		r.open = make(chan struct{})
	default: // already cut
	}
}

// Heal lets traffic flow again; what was held is delivered.
func (r *Relay) Heal() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.open:
	default:
		close(r.open)
	}
}

// Close stops the relay and ends every connection through it.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.Heal()
	err := r.lis.Close()
	r.wg.Wait()
	return err
}

// gate returns once traffic may flow, or false when the relay closed.
func (r *Relay) gate() bool {
	r.mu.Lock()
	open, closed := r.open, r.closed
	r.mu.Unlock()
	if closed {
		return false
	}
	<-open
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.closed
}

func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		in, err := r.lis.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Warn("relay: accept failed", "err", err)
			}
			return
		}
		if !r.track(in) {
			return
		}
		r.wg.Add(1)
		go r.serve(in)
	}
}

// serve connects in to the target once traffic may flow and copies both
// ways, each chunk waiting for the gate.
func (r *Relay) serve(in net.Conn) {
	defer r.wg.Done()
	defer r.untrack(in)
	if !r.gate() {
		return
	}
	out, err := net.Dial("tcp", r.target)
	if err != nil {
		r.log.Warn("relay: dial failed", "target", r.target, "err", err)
		return
	}
	if !r.track(out) {
		return
	}
	defer r.untrack(out)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if !r.gate() {
					return
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done // one side ended: end both
	in.Close()
	out.Close()
	<-done
}
