package guestchan

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// sockets is the driver's GuestSocket for the tests.
type sockets struct {
	mu    sync.Mutex
	paths map[string]string
}

func (s *sockets) GuestSocket(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paths[id]
}

// fakeGuest is QEMU's end of one guest channel: a unix socket it listens
// on, one connection at a time, and the guest's side of that connection.
type fakeGuest struct {
	t     *testing.T
	path  string
	lis   net.Listener
	conns chan net.Conn
}

func newFakeGuest(t *testing.T, dir, id string) *fakeGuest {
	t.Helper()
	path := filepath.Join(dir, id+".guest.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGuest{t: t, path: path, lis: lis, conns: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			g.conns <- c
		}
	}()
	t.Cleanup(func() { lis.Close() })
	return g
}

// accept waits for the host to connect.
func (g *fakeGuest) accept() *guestConn {
	g.t.Helper()
	select {
	case c := <-g.conns:
		g.t.Cleanup(func() { c.Close() })
		return &guestConn{t: g.t, c: c, r: bufio.NewReader(c)}
	case <-time.After(10 * time.Second):
		g.t.Fatal("the host did not connect")
		return nil
	}
}

type guestConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (c *guestConn) say(lines ...string) {
	c.t.Helper()
	for _, l := range lines {
		if _, err := io.WriteString(c.c, l+"\n"); err != nil {
			c.t.Fatalf("guest write: %v", err)
		}
	}
}

// hear returns the host's next line.
func (c *guestConn) hear() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("guest read: %v", err)
	}
	return strings.TrimSuffix(l, "\n")
}

// waitClosed waits until the host has closed the connection.
func (c *guestConn) waitClosed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := c.r.ReadString('\n'); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.t.Fatal("the host kept the connection open")
			}
			return
		}
	}
}

func testDir(t *testing.T) string {
	// unix socket paths are short: t.TempDir may be too long.
	dir, err := os.MkdirTemp("/tmp", "gc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type env struct {
	w   *Watcher
	s   *sockets
	dir string
}

func newEnv(t *testing.T, cfg Config) *env {
	e := &env{s: &sockets{paths: map[string]string{}}, dir: testDir(t)}
	cfg.Sockets = e.s
	cfg.Logger = testLogger(t)
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 20 * time.Millisecond
	}
	e.w = New(cfg)
	t.Cleanup(e.w.Close)
	return e
}

// guest starts a fake guest for id and tells the watcher its domain runs.
func (e *env) guest(t *testing.T, id string) *fakeGuest {
	g := newFakeGuest(t, e.dir, id)
	e.s.mu.Lock()
	e.s.paths[id] = g.path
	e.s.mu.Unlock()
	e.w.Observe(hypervisor.DomainStatus{ID: id, State: hypervisor.PowerRunning})
	return g
}

// next waits for an update for which ok holds, skipping others.
func next(t *testing.T, w *Watcher, what string, ok func(Report) bool) Report {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-w.Updates():
			if ok(r) {
				return r
			}
		case <-timeout:
			t.Fatalf("no update: %s", what)
		}
	}
}

func TestWatcherReportsBootAndAnswersPings(t *testing.T) {
	e := newEnv(t, Config{PingInterval: 50 * time.Millisecond})
	g := e.guest(t, "vm-1")
	c := g.accept()
	if l := c.hear(); l != "PING 1" {
		t.Fatalf("first host line %q, want PING 1 at once", l)
	}
	c.say("HELLO flotilla-guest/1 test-5")
	r := next(t, e.w, "booting", func(r Report) bool { return r.State == Booting })
	if r.InstanceID != "vm-1" || r.Version != "test-5" || r.Stage != "" || r.ObservedAt.IsZero() {
		t.Fatalf("after HELLO: %+v", r)
	}
	c.say("BOOT network", "PONG 1")
	next(t, e.w, "stage network", func(r Report) bool { return r.Stage == "network" })
	c.say("READY")
	r = next(t, e.w, "ready", func(r Report) bool { return r.State == Ready })
	if r.Stage != "network" || r.Version != "test-5" || r.Dropped != 0 {
		t.Fatalf("ready: %+v", r)
	}
	if l := c.hear(); l != "PING 2" {
		t.Fatalf("heartbeat %q, want PING 2", l)
	}
	c.say("FAILED boot-script")
	next(t, e.w, "failed", func(r Report) bool { return r.State == Failed && r.Reason == "boot-script" })
	if got := e.w.Reports(); len(got) != 1 || got[0].State != Failed {
		t.Fatalf("Reports() = %+v", got)
	}
}

func TestWatcherReconnectsAndKeepsState(t *testing.T) {
	e := newEnv(t, Config{})
	g := e.guest(t, "vm-1")
	c := g.accept()
	c.say("HELLO flotilla-guest/1 v1", "READY")
	next(t, e.w, "ready", func(r Report) bool { return r.State == Ready })
	// QEMU restarts its end (or the guest's reader breaks): the host
	// connects again, and what it knew is kept.
	c.c.Close()
	c = g.accept()
	if got := e.w.Reports(); len(got) != 1 || got[0].State != Ready {
		t.Fatalf("after reconnecting: %+v", got)
	}
	// The guest rebooted meanwhile: a new HELLO.
	c.say("HELLO flotilla-guest/1 v2")
	next(t, e.w, "booting again", func(r Report) bool { return r.State == Booting && r.Version == "v2" })
}

func TestWatcherStopsWhenTheDomainDoes(t *testing.T) {
	before := runtime.NumGoroutine()
	e := newEnv(t, Config{})
	ga, gb := e.guest(t, "vm-a"), e.guest(t, "vm-b")
	ca, cb := ga.accept(), gb.accept()
	ca.say("READY")
	next(t, e.w, "a ready", func(r Report) bool { return r.InstanceID == "vm-a" && r.State == Ready })
	cb.say("BOOT x")
	next(t, e.w, "b booting", func(r Report) bool { return r.InstanceID == "vm-b" && r.State == Booting })

	// a shuts off: its connection ends and it is reported unknown; b is kept.
	e.w.Sync([]hypervisor.DomainStatus{
		{ID: "vm-a", State: hypervisor.PowerShutOff},
		{ID: "vm-b", State: hypervisor.PowerPaused},
	})
	ca.waitClosed()
	next(t, e.w, "a unknown", func(r Report) bool { return r.InstanceID == "vm-a" && r.State == Unknown })
	if got := e.w.Reports(); len(got) != 1 || got[0].InstanceID != "vm-b" {
		t.Fatalf("Reports() = %+v, want vm-b's alone", got)
	}
	testenv.Eventually(t, 10*time.Second, "one guest goroutine", func() bool { return e.w.active.Load() == 1 })

	// b is deleted (an event: no domain).
	e.w.Observe(hypervisor.DomainStatus{ID: "vm-b", State: hypervisor.PowerNoDomain})
	cb.waitClosed()
	testenv.Eventually(t, 10*time.Second, "no guest goroutine", func() bool { return e.w.active.Load() == 0 })
	if got := e.w.Reports(); len(got) != 0 {
		t.Fatalf("Reports() = %+v, want none", got)
	}
	// A domain that is gone never connects again.
	select {
	case <-ga.conns:
		t.Fatal("reconnected to a stopped domain")
	case <-time.After(100 * time.Millisecond):
	}
	e.w.Close()
	testenv.Eventually(t, 10*time.Second, "goroutines back to "+strconv.Itoa(before), func() bool { return runtime.NumGoroutine() <= before+2 }) // +2: the fake guests' accept loops
}

func TestWatcherRetriesUntilTheSocketExists(t *testing.T) {
	e := newEnv(t, Config{})
	path := filepath.Join(e.dir, "late.guest.sock")
	e.s.paths["vm-late"] = path
	e.w.Observe(hypervisor.DomainStatus{ID: "vm-late", State: hypervisor.PowerRunning})
	g := newFakeGuest(t, e.dir, "late")
	g.accept().say("READY")
	next(t, e.w, "ready", func(r Report) bool { return r.State == Ready })
}

func TestWatcherIgnoresDomainsWithoutChannel(t *testing.T) {
	e := newEnv(t, Config{})
	e.w.Sync([]hypervisor.DomainStatus{{ID: "vm-none", State: hypervisor.PowerRunning}})
	if n := e.w.active.Load(); n != 0 {
		t.Fatalf("%d goroutines for a domain without a guest socket", n)
	}
}

func TestWatcherDropsAbuseAndSurvivesFlood(t *testing.T) {
	e := newEnv(t, Config{PingInterval: 50 * time.Millisecond, FloodLines: 100, FloodBackoff: 200 * time.Millisecond})
	g := e.guest(t, "vm-1")
	c := g.accept()
	c.hear()
	// Malformed, over-long and garbage lines, under the rate: dropped, counted.
	c.say("NONSENSE", "READY now", "BOOT "+strings.Repeat("x", 40), strings.Repeat("y", 5000), "\x00\xff\x1b[2J", "HELLO flotilla-guest/1 v1")
	// (The lines go in order: the HELLO's report counts the drops before it.)
	r := next(t, e.w, "hello", func(r Report) bool { return r.State == Booting })
	if r.Version != "v1" || r.Dropped != 5 || r.Stage != "" {
		t.Fatalf("garbage changed the report: %+v", r)
	}

	// A flood: the host disconnects the guest and comes back after a back-off.
	done := make(chan error, 1)
	go func() {
		w := bufio.NewWriter(c.c)
		for i := 0; ; i++ {
			if _, err := w.WriteString("READY\n"); err != nil {
				done <- err
				return
			}
			if i%64 == 0 {
				if err := w.Flush(); err != nil {
					done <- err
					return
				}
			}
		}
	}()
	select {
	case <-done: // the host hung up on it
	case <-time.After(10 * time.Second):
		t.Fatal("the host never disconnected a flooding guest")
	}
	start := time.Now()
	c = g.accept()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("reconnected after %s", d)
	}
	c.say("FAILED x")
	next(t, e.w, "failed after the flood, the flood counted", func(r Report) bool { return r.State == Failed && r.Dropped > 100 })
}

func TestWatcherEndlessLineIsAFlood(t *testing.T) {
	e := newEnv(t, Config{FloodLines: 10, FloodBackoff: 50 * time.Millisecond})
	g := e.guest(t, "vm-1")
	c := g.accept()
	go io.Copy(c.c, endless{})
	c.waitClosed()
	g.accept().say("READY")
	next(t, e.w, "ready", func(r Report) bool { return r.State == Ready && r.Dropped > 0 })
}

// A guest that never reads cannot block the PINGs: the write times out
// and the connection ends (net.Pipe has no buffer at all).
func TestGuestThatNeverReads(t *testing.T) {
	e := newEnv(t, Config{WriteTimeout: 50 * time.Millisecond})
	host, guestEnd := net.Pipe()
	defer guestEnd.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := &guest{w: e.w, id: "vm-1", ctx: ctx, cancel: cancel, log: e.w.log, limit: newBucket(20, 40, time.Now())}
	errc := make(chan error, 1)
	go func() { errc <- g.serve(host) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "PING") {
			t.Fatalf("serve = %v, want a PING write error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a guest that never reads blocked the host")
	}
}

// A consumer that reads no updates blocks nothing: the guest's lines are
// still read, and the consumer then gets the newest report.
func TestUpdatesCoalesce(t *testing.T) {
	e := newEnv(t, Config{})
	g := e.guest(t, "vm-1")
	c := g.accept()
	c.hear()
	for i := range 30 {
		c.say("BOOT s" + strconv.Itoa(i))
	}
	c.say("READY")
	testenv.Eventually(t, 10*time.Second, "ready in Reports", func() bool {
		rs := e.w.Reports()
		return len(rs) == 1 && rs[0].State == Ready
	})
	var last Report
	for n := 0; ; n++ {
		select {
		case r := <-e.w.Updates():
			if r.Seq <= last.Seq {
				t.Fatalf("update %+v not newer than %+v", r, last)
			}
			last = r
			continue
		case <-time.After(100 * time.Millisecond):
		}
		if n > 2 {
			t.Fatalf("%d updates queued for one instance, want the newest (and at most one older in hand)", n)
		}
		break
	}
	if last.State != Ready || last.Stage != "s29" {
		t.Fatalf("last update %+v", last)
	}
}

// A guest's lines only ever change its own instance's report, whatever
// they name.
func TestGuestCannotTouchAnother(t *testing.T) {
	e := newEnv(t, Config{})
	ga, gb := e.guest(t, "vm-a"), e.guest(t, "vm-b")
	ca, cb := ga.accept(), gb.accept()
	cb.say("BOOT slow")
	next(t, e.w, "b booting", func(r Report) bool { return r.InstanceID == "vm-b" })
	ca.say("READY vm-b", "FAILED vm-b", "BOOT vm-b READY", "HELLO flotilla-guest/1 vm-b")
	r := next(t, e.w, "a booting", func(r Report) bool { return r.InstanceID == "vm-a" && r.State == Booting })
	if r.Version != "vm-b" || r.Dropped != 2 {
		t.Fatalf("a: %+v", r)
	}
	for _, r := range e.w.Reports() {
		if r.InstanceID == "vm-b" && (r.State != Booting || r.Stage != "slow" || r.Dropped != 0) {
			t.Fatalf("b changed by a's lines: %+v", r)
		}
	}
}

// Connections counts connected channels by their guest side's protocol.
func TestConnections(t *testing.T) {
	e := newEnv(t, Config{})
	c1 := e.guest(t, "vm-1").accept()
	g2 := e.guest(t, "vm-2")
	c2 := g2.accept()
	count := func(want map[int]int) func() bool {
		return func() bool {
			got := e.w.Connections()
			for k, v := range want {
				if got[k] != v {
					return false
				}
			}
			return len(got) == len(want)
		}
	}
	testenv.Eventually(t, 10*time.Second, "two channels, no HELLO yet", count(map[int]int{0: 2}))
	c1.say("HELLO flotilla-guest/1 v1")
	c2.say("HELLO flotilla-guest/2 v1 " + bootID)
	testenv.Eventually(t, 10*time.Second, "one v1 and one v2 channel", count(map[int]int{1: 1, 2: 1}))
	// The guest's end goes away (its socket too, or the host would connect
	// again and count it by the side it remembers for this boot).
	g2.lis.Close()
	c2.c.Close()
	testenv.Eventually(t, 10*time.Second, "the v2 channel gone", func() bool { return e.w.Connections()[1] == 1 && e.w.Connections()[2] == 0 })
}
