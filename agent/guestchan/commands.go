package guestchan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Errors of Command.
var (
	// ErrNoGuestSide: the guest has no guest side that takes commands (it
	// has not said a v2 HELLO since it booted), or its domain is not running.
	ErrNoGuestSide = errors.New("the guest has no guest side that takes commands")
	// ErrChannelClosed: the connection ended before the guest replied.
	ErrChannelClosed = errors.New("the guest channel closed before the guest replied")
	// ErrBadCommand: a verb or an argument that cannot go on the channel.
	ErrBadCommand = errors.New("invalid guest command")
)

// CommandError is a guest's FAIL reply to a command.
type CommandError struct {
	Verb   string
	Reason string // a validated reason token
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("the guest failed %q: %s", e.Verb, e.Reason)
}

// reply is what came back for one command.
type reply struct {
	out  []string
	fail string
	err  error
}

// commands is one guest's command side, under guest.mu. Only a connection
// whose guest said a v2 HELLO takes commands; replies are matched by number.
type commands struct {
	conn    net.Conn      // the current connection; nil between connections
	ready   chan struct{} // closed once this connection's guest said a v2 HELLO
	helloed bool          // ready is closed
	next    uint64
	waits   map[uint64]chan reply
	osInfo  bool // an "osinfo" is in flight
}

func newCommands() commands { return commands{ready: make(chan struct{})} }

// hello: the guest on this connection takes commands.
func (c *commands) hello() {
	if !c.helloed {
		close(c.ready)
		c.helloed = true
	}
}

// reply hands m to the command it answers; false if none waits for it.
func (c *commands) reply(m message) bool {
	ch, ok := c.waits[m.n]
	if !ok {
		return false
	}
	delete(c.waits, m.n)
	ch <- reply{out: m.out, fail: m.arg}
	return true
}

// attach makes conn the connection commands go on.
func (g *guest) attach(conn net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cmd.conn = conn
}

// detach ends the connection's command side: every command waiting for a
// reply gets ErrChannelClosed, and new ones wait for the next connection.
func (g *guest) detach() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for n, ch := range g.cmd.waits {
		ch <- reply{err: ErrChannelClosed}
		delete(g.cmd.waits, n)
	}
	g.cmd.conn = nil
	if g.cmd.helloed {
		g.cmd.ready, g.cmd.helloed = make(chan struct{}), false
	}
}

// write sends one line on the current connection, within WriteTimeout (a
// guest that never reads cannot block the agent).
func (g *guest) write(line string) error {
	g.mu.Lock()
	conn := g.cmd.conn
	g.mu.Unlock()
	if conn == nil {
		return ErrChannelClosed
	}
	g.wmu.Lock()
	defer g.wmu.Unlock()
	conn.SetWriteDeadline(time.Now().Add(g.w.cfg.WriteTimeout))
	_, err := conn.Write([]byte(line + "\n"))
	return err
}

// checkCommand refuses what is not one valid CMD line.
func checkCommand(verb string, args []string) error {
	if !tokenPattern.MatchString(verb) {
		return fmt.Errorf("%w: verb %q", ErrBadCommand, verb)
	}
	n := len("CMD 18446744073709551615 ") + len(verb) + 1
	for i, a := range args {
		if a == "" {
			return fmt.Errorf("%w: argument %d of %s is empty", ErrBadCommand, i+1, verb)
		}
		for _, b := range []byte(a) {
			if b <= 0x20 || b > 0x7e {
				// Not the argument itself: it may be a secret.
				return fmt.Errorf("%w: argument %d of %s has a byte that cannot go on the channel", ErrBadCommand, i+1, verb)
			}
		}
		n += len(a) + 1
	}
	if n > MaxLine {
		return fmt.Errorf("%w: %s's line would be %d bytes, over %d", ErrBadCommand, verb, n, MaxLine)
	}
	return nil
}

// Command sends the guest of instance id the command verb with args
// (tokens of printable ASCII without spaces) and waits for its reply: the
// DONE's fields, a *CommandError for a FAIL, ErrNoGuestSide when the guest
// cannot take commands, ErrChannelClosed when the connection ends first.
// It waits for a connection while the guest is between connections, up to
// ctx. Arguments are never logged nor put in errors: they may be secrets.
func (w *Watcher) Command(ctx context.Context, id, verb string, args ...string) ([]string, error) {
	if err := checkCommand(verb, args); err != nil {
		return nil, err
	}
	w.mu.Lock()
	g := w.guests[id]
	rep := w.reports[id]
	w.mu.Unlock()
	if g == nil {
		return nil, fmt.Errorf("%w: its domain is not running", ErrNoGuestSide)
	}
	if rep.Protocol < 2 {
		if rep.Protocol == 0 {
			return nil, fmt.Errorf("%w: it has not spoken on the guest channel since it booted", ErrNoGuestSide)
		}
		return nil, fmt.Errorf("%w: it speaks protocol v%d, commands need v2", ErrNoGuestSide, rep.Protocol)
	}
	return g.command(ctx, verb, args)
}

func (g *guest) command(ctx context.Context, verb string, args []string) ([]string, error) {
	var n uint64
	ch := make(chan reply, 1)
	for {
		g.mu.Lock()
		ready := g.cmd.ready
		if g.cmd.helloed && g.cmd.conn != nil {
			g.cmd.next++
			n = g.cmd.next
			if g.cmd.waits == nil {
				g.cmd.waits = map[uint64]chan reply{}
			}
			g.cmd.waits[n] = ch
			g.mu.Unlock()
			break
		}
		g.mu.Unlock()
		select {
		case <-ready:
		case <-g.ctx.Done():
			return nil, fmt.Errorf("%w: its domain stopped running", ErrNoGuestSide)
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the guest channel to take %s: %w", verb, ctx.Err())
		}
	}
	forget := func() {
		g.mu.Lock()
		delete(g.cmd.waits, n)
		g.mu.Unlock()
	}
	start := time.Now()
	log := g.log.With("command", verb, "n", n)
	log.Info("guest command sent")
	line := strings.Join(append([]string{"CMD", fmt.Sprint(n), verb}, args...), " ")
	if err := g.write(line); err != nil {
		forget()
		return nil, fmt.Errorf("%w: writing %s: %v", ErrChannelClosed, verb, noArgs(err, line))
	}
	select {
	case r := <-ch:
		took := time.Since(start).Round(time.Millisecond)
		switch {
		case r.err != nil:
			log.Warn("guest command: channel closed before the reply", "took", took)
			return nil, r.err
		case r.fail != "":
			log.Warn("guest command failed", "reason", r.fail, "took", took)
			return nil, &CommandError{Verb: verb, Reason: r.fail}
		}
		log.Info("guest command done", "took", took)
		return r.out, nil
	case <-ctx.Done():
		forget()
		log.Warn("guest command: no reply in time", "took", time.Since(start).Round(time.Millisecond))
		return nil, fmt.Errorf("waiting for the guest's reply to %s: %w", verb, ctx.Err())
	}
}

// noArgs is a write error's text, without the line should it quote it.
func noArgs(err error, line string) string {
	return strings.ReplaceAll(err.Error(), line, "<command>")
}

// fetchOSInfo asks a v2 guest what it runs, once per boot, and reports it.
func (g *guest) fetchOSInfo() {
	ctx, cancel := context.WithTimeout(g.ctx, osInfoTimeout)
	defer cancel()
	out, err := g.command(ctx, "osinfo", nil)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cmd.osInfo = false
	if err != nil || len(out) != 3 {
		g.log.Info("guest channel: no OS information", "err", err, "fields", len(out))
		return
	}
	if g.rep.OS == out[0] && g.rep.OSVersion == out[1] && g.rep.Kernel == out[2] {
		return
	}
	g.rep.OS, g.rep.OSVersion, g.rep.Kernel = out[0], out[1], out[2]
	g.rep.ObservedAt = time.Now()
	g.publishLocked()
}
