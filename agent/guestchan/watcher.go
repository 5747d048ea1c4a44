// Package guestchan is the agent's side of the guest channel
// (org.flotilla.guest.0, protocol v1 in docs/guest-channel.md): a Watcher
// keeps a connection to the channel socket of every running or paused
// domain, validates what each guest says and keeps the latest Report per
// instance. Everything a guest sends is untrusted: lines are bounded, rate
// limited and validated, and a guest's connection only ever changes its
// own instance's report.
package guestchan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// State is where a guest's boot is, as its guest side said.
type State int

const (
	Unknown State = iota // not heard from since it booted
	Booting
	Ready
	Failed
)

func (s State) String() string {
	switch s {
	case Booting:
		return "booting"
	case Ready:
		return "ready"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Report is what one instance's guest last said.
type Report struct {
	InstanceID string
	State      State
	Stage      string // last BOOT stage
	Reason     string // with Failed
	Version    string // from HELLO
	// Protocol is the protocol its HELLO named (1 or 2; 0 before one):
	// from 2 on, the guest side takes commands (Command).
	Protocol int
	// Boot is a v2 HELLO's boot id.
	Boot string
	// OS, OSVersion and Kernel are what a v2 guest answered "osinfo"
	// (tokens, validated like the rest).
	OS, OSVersion, Kernel string
	// Unresponsive: connected and heard from, but no PONG to the last
	// UnresponsivePings PINGs (a hung guest side or kernel).
	Unresponsive bool
	// Dropped counts the guest's lines dropped (malformed, over-long or
	// over the rate) since the watcher began watching this domain run.
	Dropped    uint64
	ObservedAt time.Time // when the agent heard the state
	// Seq orders reports: a higher one is newer (for consumers that may
	// hold an older one, see Updates).
	Seq uint64
}

// same reports whether r and o say the same (apart from when and Seq).
func (r Report) same(o Report) bool {
	return r.State == o.State && r.Stage == o.Stage && r.Reason == o.Reason &&
		r.Version == o.Version && r.Dropped == o.Dropped && r.Protocol == o.Protocol && r.Boot == o.Boot &&
		r.OS == o.OS && r.OSVersion == o.OSVersion && r.Kernel == o.Kernel && r.Unresponsive == o.Unresponsive
}

// Sockets is where guest channels are: hypervisor.Driver.
type Sockets interface {
	GuestSocket(id string) string
}

// Defaults for zero Config fields.
const (
	DefaultRetryInterval = time.Second
	DefaultPingInterval  = 10 * time.Second
	DefaultWriteTimeout  = 2 * time.Second
	DefaultRate          = 20 // lines a second
	DefaultBurst         = 40
	// A guest with this many lines over the rate in one connection is
	// disconnected, and reconnected after a back-off.
	DefaultFloodLines    = 200
	DefaultFloodBackoff  = 5 * time.Second
	DefaultMaxFloodDelay = time.Minute
	DefaultHelloGrace    = 5 * time.Second
	// UnresponsivePings is how many PINGs in a row may go unanswered
	// before a guest that has spoken is reported unresponsive.
	UnresponsivePings = 3
	// osInfoTimeout bounds the "osinfo" command sent after a v2 HELLO.
	osInfoTimeout = 10 * time.Second
)

// Config configures a Watcher.
type Config struct {
	Sockets       Sockets
	Logger        *slog.Logger
	RetryInterval time.Duration // between connection attempts while the domain runs
	PingInterval  time.Duration // heartbeat; also how often drop counts are reported
	WriteTimeout  time.Duration // a PING not written in time ends the connection
	Rate          float64       // lines a second per guest
	Burst         int
	FloodLines    int
	FloodBackoff  time.Duration // first wait after a flood; doubles up to MaxFloodDelay
	MaxFloodDelay time.Duration
	// HelloGrace is how long a command waits for a guest this watcher has
	// not heard from yet (an agent that has just started).
	HelloGrace time.Duration
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.RetryInterval, DefaultRetryInterval)
	def(&c.PingInterval, DefaultPingInterval)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.FloodBackoff, DefaultFloodBackoff)
	def(&c.MaxFloodDelay, DefaultMaxFloodDelay)
	def(&c.HelloGrace, DefaultHelloGrace)
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.FloodLines <= 0 {
		c.FloodLines = DefaultFloodLines
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Watcher watches the guest channels of the domains it is told run (Sync,
// Observe).
type Watcher struct {
	cfg Config
	log *slog.Logger

	life   context.Context
	end    context.CancelFunc
	wg     sync.WaitGroup
	active atomic.Int64 // guest goroutines running (for tests)

	mu      sync.Mutex
	guests  map[string]*guest // domains watched
	reports map[string]Report // latest of each guest heard from
	pending map[string]Report // changed, not yet on updates
	seq     uint64
	signal  chan struct{} // capacity 1: pending may be non-empty
	updates chan Report
}

// New starts a Watcher watching nothing; Close stops it.
func New(cfg Config) *Watcher {
	cfg = cfg.withDefaults()
	w := &Watcher{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "guestchan"),
		guests:  map[string]*guest{},
		reports: map[string]Report{},
		pending: map[string]Report{},
		signal:  make(chan struct{}, 1),
		updates: make(chan Report),
	}
	w.life, w.end = context.WithCancel(context.Background())
	w.wg.Go(w.pump)
	return w
}

// Close stops every connection and Updates; it waits for their goroutines.
func (w *Watcher) Close() {
	w.mu.Lock()
	w.end()
	for id, g := range w.guests {
		g.cancel()
		delete(w.guests, id)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// Updates carries a report each time one changes. It coalesces: a reader
// that falls behind gets each instance's newest report, not every one, and
// never holds up the guests' connections. One report may be older than one
// Reports gave out since; Seq tells.
func (w *Watcher) Updates() <-chan Report { return w.updates }

// Reports is the current report of every guest heard from, e.g. for a
// coordinator that has just registered the host.
func (w *Watcher) Reports() []Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Report, 0, len(w.reports))
	for _, r := range w.reports {
		out = append(out, r)
	}
	return out
}

// Report is the current report of one guest, if it was heard from.
func (w *Watcher) Report(id string) (Report, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.reports[id]
	return r, ok
}

// Sync is the full list of domains: those running or paused are watched,
// the others no longer.
func (w *Watcher) Sync(domains []hypervisor.DomainStatus) {
	live := make(map[string]bool, len(domains))
	for _, d := range domains {
		live[d.ID] = running(d.State)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range w.guests {
		if !live[id] {
			w.stopLocked(id)
		}
	}
	for id, run := range live {
		if run {
			w.startLocked(id)
		}
	}
}

// Observe is one domain's change (a power event).
func (w *Watcher) Observe(d hypervisor.DomainStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if running(d.State) {
		w.startLocked(d.ID)
	} else {
		w.stopLocked(d.ID)
	}
}

// running: QEMU (and its socket) is up. A paused guest cannot talk, but
// its connection is kept for when it resumes.
func running(s hypervisor.PowerState) bool {
	return s == hypervisor.PowerRunning || s == hypervisor.PowerPaused
}

func (w *Watcher) startLocked(id string) {
	if w.guests[id] != nil || w.life.Err() != nil {
		return
	}
	path := w.cfg.Sockets.GuestSocket(id)
	if path == "" {
		return
	}
	ctx, cancel := context.WithCancel(w.life)
	g := &guest{w: w, id: id, path: path, ctx: ctx, cancel: cancel,
		log: w.log.With("instance", id), limit: newBucket(w.cfg.Rate, w.cfg.Burst, time.Now()), cmd: newCommands()}
	w.guests[id] = g
	w.active.Add(1)
	w.wg.Go(func() {
		defer w.active.Add(-1)
		g.run()
	})
}

// stopLocked ends the domain's connection. Its report goes: a guest heard
// from is reported Unknown once, since whatever it said was about a boot
// that has ended.
func (w *Watcher) stopLocked(id string) {
	g := w.guests[id]
	if g == nil {
		return
	}
	g.cancel() // before publishing ends: g's goroutine can publish no more
	delete(w.guests, id)
	if _, heard := w.reports[id]; heard {
		w.publishLocked(Report{InstanceID: id, ObservedAt: time.Now()})
		delete(w.reports, id)
	}
}

// publish makes r the instance's report, unless g has been stopped.
func (w *Watcher) publish(g *guest, r Report) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if g.ctx.Err() != nil {
		return
	}
	w.reports[r.InstanceID] = w.publishLocked(r)
}

func (w *Watcher) publishLocked(r Report) Report {
	w.seq++
	r.Seq = w.seq
	w.pending[r.InstanceID] = r
	select {
	case w.signal <- struct{}{}:
	default:
	}
	return r
}

// pump moves pending reports to updates, newest first taken at each send.
func (w *Watcher) pump() {
	for {
		select {
		case <-w.signal:
		case <-w.life.Done():
			return
		}
		for {
			r, ok := w.takePending()
			if !ok {
				break
			}
			select {
			case w.updates <- r:
			case <-w.life.Done():
				return
			}
		}
	}
}

func (w *Watcher) takePending() (Report, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, r := range w.pending {
		delete(w.pending, id)
		return r, true
	}
	return Report{}, false
}

// guest is one watched domain's channel. Its goroutine alone reads and
// writes its connection; mu guards what the PING loop shares with it, and
// is taken before Watcher.mu.
type guest struct {
	w      *Watcher
	id     string
	path   string
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger

	limit *bucket // across connections: reconnecting refills nothing

	mu          sync.Mutex
	rep         Report
	dropsSent   uint64 // Dropped in the last report published
	lastPong    time.Time
	lastDropWhy string
	wmu         sync.Mutex // serialises writes to the connection
	cmd         commands   // the current connection's command side
}

// run connects, serves and reconnects until the domain stops.
func (g *guest) run() {
	cfg := g.w.cfg
	var d net.Dialer
	failing := false
	flood := time.Duration(0)
	for {
		conn, err := d.DialContext(g.ctx, "unix", g.path)
		wait := cfg.RetryInterval
		if err != nil {
			if !failing && g.ctx.Err() == nil {
				g.log.Debug("guest channel: cannot connect; retrying", "socket", g.path, "err", err)
			}
			failing = true
		} else {
			failing = false
			g.log.Info("guest channel connected", "socket", g.path)
			err = g.serve(conn)
			if errors.Is(err, errFlood) {
				flood = min(max(2*flood, cfg.FloodBackoff), cfg.MaxFloodDelay)
				wait = flood
			} else {
				flood = 0
			}
			if g.ctx.Err() == nil {
				g.log.Info("guest channel disconnected", "err", err, "retry_in", wait)
			} else {
				g.log.Info("guest channel closed: domain no longer running")
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-g.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// serve reads one connection until it breaks, the domain stops, or the
// guest floods; a second goroutine writes the PINGs.
func (g *guest) serve(conn net.Conn) error {
	ctx, cancel := context.WithCancelCause(g.ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	g.attach(conn)
	defer g.detach()
	wg.Go(func() { g.pinger(ctx, cancel) })

	over := 0 // lines over the rate in this connection
	limited := func() bool {
		if g.limit.take(time.Now()) {
			return true
		}
		over++
		return false
	}
	lr := newLineReader(conn, func() bool { return limited() || over < g.w.cfg.FloodLines })
	for {
		line, tooLong, err := lr.next()
		if err != nil {
			if errors.Is(err, errFlood) {
				g.drop("rate")
				return err
			}
			if c := context.Cause(ctx); c != nil {
				return c
			}
			return fmt.Errorf("read: %w", err)
		}
		if !limited() {
			g.drop("rate")
			if over >= g.w.cfg.FloodLines {
				return errFlood
			}
			continue
		}
		if tooLong {
			g.drop("too-long")
			continue
		}
		m, err := parse(line)
		if err != nil {
			g.drop("malformed")
			continue
		}
		g.apply(m)
	}
}

// pinger sends PING n at once and every PingInterval, each with a write
// deadline (a guest that never reads cannot block it), and reports
// changed drop counts at the same pace.
func (g *guest) pinger(ctx context.Context, cancel context.CancelCauseFunc) {
	cfg := g.w.cfg
	t := time.NewTicker(cfg.PingInterval)
	defer t.Stop()
	var n uint64
	for {
		n++
		if err := g.write(fmt.Sprintf("PING %d", n)); err != nil {
			cancel(fmt.Errorf("write PING: %w", err))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.heartbeat(n)
		g.flushDrops()
	}
}

// heartbeat runs after PING n has had a heartbeat's time for its PONG: a
// guest that has spoken and left the last UnresponsivePings unanswered is
// reported unresponsive (once), and responsive again at its next PONG.
func (g *guest) heartbeat(n uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	late := g.lastPong.IsZero() || time.Since(g.lastPong) > time.Duration(UnresponsivePings)*g.w.cfg.PingInterval
	if n < UnresponsivePings || !late || g.rep.State == Unknown || g.rep.Unresponsive {
		return
	}
	g.log.Warn("guest channel: the guest stopped answering PINGs", "last_pong", g.lastPong, "pings", n)
	g.rep.Unresponsive = true
	g.rep.ObservedAt = time.Now()
	g.publishLocked()
}

// drop counts a dropped line; what it said goes nowhere.
func (g *guest) drop(why string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rep.Dropped++
	g.lastDropWhy = why
}

// flushDrops publishes a drop count that changed (only at the heartbeat's
// pace: a flood must not become a flood of reports), and logs it.
func (g *guest) flushDrops() {
	g.mu.Lock()
	if g.rep.Dropped == g.dropsSent {
		g.mu.Unlock()
		return
	}
	g.log.Warn("guest channel lines dropped", "dropped", g.rep.Dropped-g.dropsSent,
		"dropped_total", g.rep.Dropped, "last_reason", g.lastDropWhy)
	g.publishLocked()
	g.mu.Unlock()
}

// publishLocked publishes the report; under g.mu, so that the reader and
// the PING loop publish in the order they changed it.
func (g *guest) publishLocked() {
	g.dropsSent = g.rep.Dropped
	r := g.rep
	r.InstanceID = g.id
	g.w.publish(g, r)
}

// apply changes the report by one valid line and publishes a change.
func (g *guest) apply(m message) {
	g.mu.Lock()
	now := time.Now()
	next := g.rep
	switch m.verb {
	case verbPong:
		g.lastPong = now
		if !g.rep.Unresponsive {
			g.mu.Unlock()
			return
		}
		g.log.Info("guest channel: the guest answers PINGs again")
		next.Unresponsive = false
	case verbDone, verbFail:
		if !g.cmd.reply(m) {
			g.rep.Dropped++
			g.lastDropWhy = "unexpected-reply"
		}
		g.mu.Unlock()
		return
	case verbHello:
		if m.proto >= 2 {
			g.cmd.hello()
			if g.rep.OS == "" && !g.cmd.osInfo {
				g.cmd.osInfo = true
				g.w.wg.Go(g.fetchOSInfo)
			}
		}
		if m.boot != "" && m.boot == g.rep.Boot && g.rep.State != Unknown {
			// A v2 guest side says its HELLO again after each PING 1 (for
			// a host that may know nothing): the same boot, not a new one.
			g.mu.Unlock()
			return
		}
		// A new boot of the guest side.
		next.State, next.Stage, next.Reason, next.Version, next.Protocol, next.Boot = Booting, "", "", m.arg, m.proto, m.boot
		next.OS, next.OSVersion, next.Kernel = "", "", ""
	case verbBoot:
		next.State, next.Stage, next.Reason = Booting, m.arg, ""
	case verbReady:
		next.State, next.Reason = Ready, ""
	case verbFailed:
		next.State, next.Reason = Failed, m.arg
	}
	if next.same(g.rep) {
		g.mu.Unlock()
		return
	}
	if next.State != g.rep.State {
		g.log.Info("guest state", "state", next.State.String(), "stage", next.Stage, "reason", next.Reason, "version", next.Version)
	}
	next.ObservedAt = now
	g.rep = next
	g.publishLocked()
	g.mu.Unlock()
}

// Connections counts the guest channels connected now, by the protocol
// their guest side's HELLO named (0: none yet on this connection's
// guest), for the agent's metrics.
func (w *Watcher) Connections() map[int]int {
	w.mu.Lock()
	guests := make([]*guest, 0, len(w.guests))
	for _, g := range w.guests {
		guests = append(guests, g)
	}
	w.mu.Unlock()
	out := map[int]int{}
	for _, g := range guests {
		g.mu.Lock()
		if g.cmd.conn != nil {
			out[g.rep.Protocol]++
		}
		g.mu.Unlock()
	}
	return out
}
