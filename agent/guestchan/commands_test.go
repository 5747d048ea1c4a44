package guestchan

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// hearCmd reads host lines until a CMD, answering nothing else.
func (c *guestConn) hearCmd() (n string, rest string) {
	c.t.Helper()
	for {
		l := c.hear()
		if strings.HasPrefix(l, "CMD ") {
			n, rest, _ = strings.Cut(strings.TrimPrefix(l, "CMD "), " ")
			return n, rest
		}
	}
}

const bootID = "0f6b2a7e-3c1d-4b8e-9a55-2f0c8d1e7b34"

// A v2 guest is asked its OS once it says HELLO, and runs commands: DONE
// returns its fields, FAIL a *CommandError; a reply nobody waits for is
// dropped.
func TestCommands(t *testing.T) {
	e := newEnv(t, Config{PingInterval: 50 * time.Millisecond}) // drop counts go out at its pace
	g := e.guest(t, "vm-1")
	c := g.accept()
	c.say("HELLO flotilla-guest/2 test-6 " + bootID)
	n, rest := c.hearCmd()
	if rest != "osinfo" {
		t.Fatalf("first command %q, want osinfo", rest)
	}
	c.say("DONE " + n + " flotilla-test 6 6.1.0-28-cloud-amd64")
	r := next(t, e.w, "os info", func(r Report) bool { return r.OS != "" })
	if r.OS != "flotilla-test" || r.OSVersion != "6" || r.Kernel != "6.1.0-28-cloud-amd64" || r.Protocol != 2 || r.Boot != bootID {
		t.Fatalf("report %+v", r)
	}

	type result struct {
		out []string
		err error
	}
	run := func(verb string, args ...string) chan result {
		ch := make(chan result, 1)
		go func() {
			out, err := e.w.Command(context.Background(), "vm-1", verb, args...)
			ch <- result{out, err}
		}()
		return ch
	}
	done := run("password", "root", "68756e74657232")
	n, rest = c.hearCmd()
	if rest != "password root 68756e74657232" {
		t.Fatalf("command line %q", rest)
	}
	c.say("DONE 999", "DONE "+n) // 999: nobody asked
	if res := <-done; res.err != nil || len(res.out) != 0 {
		t.Fatalf("password: %+v", res)
	}
	next(t, e.w, "drop counted", func(r Report) bool { return r.Dropped == 1 })

	failed := run("decommission", "30")
	n, _ = c.hearCmd()
	c.say("FAIL " + n + " decommission-script")
	var ce *CommandError
	if res := <-failed; !errors.As(res.err, &ce) || ce.Reason != "decommission-script" {
		t.Fatalf("decommission: %+v", res)
	}

	// The connection ends mid-command: ErrChannelClosed.
	lost := run("decommission", "30")
	c.hearCmd()
	c.c.Close()
	if res := <-lost; !errors.Is(res.err, ErrChannelClosed) {
		t.Fatalf("closed mid-command: %+v", res)
	}
	// It waits for the next connection, whose guest says its HELLO again
	// (the same boot: no new one, no second osinfo).
	later := run("osinfo")
	c = g.accept()
	c.say("HELLO flotilla-guest/2 test-6 " + bootID)
	n, rest = c.hearCmd()
	if rest != "osinfo" {
		t.Fatalf("after reconnecting: %q", rest)
	}
	c.say("DONE " + n + " a b c")
	if res := <-later; res.err != nil || strings.Join(res.out, " ") != "a b c" {
		t.Fatalf("after reconnecting: %+v", res)
	}
	if got := e.w.Reports(); got[0].State != Booting || got[0].OS != "flotilla-test" {
		t.Fatalf("the same boot's HELLO changed the report: %+v", got[0])
	}
}

// Commands are refused, at once, for a guest without a v2 guest side, and
// bad commands never reach the channel; a guest that never replies is
// waited for only until the context ends.
func TestCommandRefusals(t *testing.T) {
	e := newEnv(t, Config{})
	if _, err := e.w.Command(context.Background(), "vm-0", "osinfo"); !errors.Is(err, ErrNoGuestSide) {
		t.Fatalf("no domain: %v", err)
	}
	g := e.guest(t, "vm-1")
	c := g.accept()
	if _, err := e.w.Command(context.Background(), "vm-1", "osinfo"); !errors.Is(err, ErrNoGuestSide) {
		t.Fatalf("silent guest: %v", err)
	}
	c.say("HELLO flotilla-guest/1 test-5")
	next(t, e.w, "booting", func(r Report) bool { return r.State == Booting })
	if _, err := e.w.Command(context.Background(), "vm-1", "osinfo"); !errors.Is(err, ErrNoGuestSide) || !strings.Contains(err.Error(), "v1") {
		t.Fatalf("v1 guest: %v", err)
	}
	c.say("HELLO flotilla-guest/2 test-6 " + bootID)
	c.hearCmd() // osinfo, never answered
	for _, bad := range [][]string{{"Bad"}, {"password", "root", "se cret"}, {"password", "root", ""}, {"password", strings.Repeat("x", 300)}} {
		if _, err := e.w.Command(context.Background(), "vm-1", bad[0], bad[1:]...); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%q: %v", bad, err)
		} else if len(bad) > 2 && bad[2] != "" && strings.Contains(err.Error(), bad[2]) {
			t.Errorf("the refusal quotes an argument: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := e.w.Command(ctx, "vm-1", "decommission", "1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered: %v", err)
	}
}

// A guest that has spoken and stops answering PINGs is reported
// unresponsive, and responsive again at its next PONG.
func TestUnresponsiveGuest(t *testing.T) {
	e := newEnv(t, Config{PingInterval: 30 * time.Millisecond})
	g := e.guest(t, "vm-1")
	c := g.accept()
	c.say("HELLO flotilla-guest/1 test-5", "READY")
	next(t, e.w, "unresponsive", func(r Report) bool { return r.Unresponsive && r.State == Ready })
	c.say("PONG 1")
	next(t, e.w, "responsive", func(r Report) bool { return !r.Unresponsive && r.State == Ready })
}
