package fake

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

func spec(id string) hypervisor.DomainSpec {
	return hypervisor.DomainSpec{ID: id, Name: "test " + id, VCPUs: 1, MemoryMiB: 128, Image: "img"}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func state(t *testing.T, d *Driver, id string) hypervisor.PowerState {
	t.Helper()
	st, err := d.Status(context.Background(), id)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return st.State
}

// inState builds a driver with domain "vm" in the given state.
func inState(t *testing.T, s hypervisor.PowerState) *Driver {
	t.Helper()
	d := New(Options{Images: []string{"img"}, PreserveCrashed: s == hypervisor.PowerCrashed})
	ctx := context.Background()
	if s == hypervisor.PowerNoDomain {
		return d
	}
	if err := d.Create(ctx, spec("vm")); err != nil {
		t.Fatal(err)
	}
	var err error
	switch s {
	case hypervisor.PowerPaused:
		err = d.Pause(ctx, "vm")
	case hypervisor.PowerShutOff:
		err = d.Destroy(ctx, "vm")
	case hypervisor.PowerSavedToDisk:
		err = d.Save(ctx, "vm")
	case hypervisor.PowerCrashed:
		err = d.Crash("vm")
	case hypervisor.PowerShuttingDown:
		d.SetShutdownDelay("vm", time.Hour)
		err = d.Shutdown(ctxT(t, time.Second), "vm", 0, false)
		if errors.Is(err, context.DeadlineExceeded) {
			err = nil
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := state(t, d, "vm"); got != s {
		t.Fatalf("setup: state %s, want %s", got, s)
	}
	return d
}

func TestTransitions(t *testing.T) {
	const (
		running  = hypervisor.PowerRunning
		paused   = hypervisor.PowerPaused
		shutoff  = hypervisor.PowerShutOff
		saved    = hypervisor.PowerSavedToDisk
		crashed  = hypervisor.PowerCrashed
		shutting = hypervisor.PowerShuttingDown
		none     = hypervisor.PowerNoDomain
	)
	ops := map[string]func(d *Driver) error{
		"Create":   func(d *Driver) error { return d.Create(context.Background(), spec("vm")) },
		"Start":    func(d *Driver) error { return d.Start(context.Background(), "vm") },
		"Shutdown": func(d *Driver) error { return d.Shutdown(context.Background(), "vm", time.Second, false) },
		"Destroy":  func(d *Driver) error { return d.Destroy(context.Background(), "vm") },
		"Reboot":   func(d *Driver) error { return d.Reboot(context.Background(), "vm", true) },
		"Soft":     func(d *Driver) error { return d.Reboot(context.Background(), "vm", false) },
		"Pause":    func(d *Driver) error { return d.Pause(context.Background(), "vm") },
		"Resume":   func(d *Driver) error { return d.Resume(context.Background(), "vm") },
		"Save":     func(d *Driver) error { return d.Save(context.Background(), "vm") },
		"Delete":   func(d *Driver) error { return d.Delete(context.Background(), "vm") },
		"PowerOff": func(d *Driver) error { return d.PowerOff("vm") },
		"Crash":    func(d *Driver) error { return d.Crash("vm") },
	}
	tests := []struct {
		from hypervisor.PowerState
		op   string
		want hypervisor.PowerState
		err  error
	}{
		{none, "Create", running, nil},
		{running, "Create", running, nil},
		{shutoff, "Create", shutoff, hypervisor.ErrAlreadyExists},
		{saved, "Create", saved, hypervisor.ErrAlreadyExists},

		{none, "Start", none, hypervisor.ErrNotFound},
		{running, "Start", running, nil},
		{shutoff, "Start", running, nil},
		{saved, "Start", running, nil},
		{paused, "Start", paused, hypervisor.ErrInvalidState},
		{crashed, "Start", crashed, hypervisor.ErrInvalidState},

		{none, "Shutdown", none, hypervisor.ErrNotFound},
		{running, "Shutdown", shutoff, nil},
		{paused, "Shutdown", shutoff, nil},
		{shutoff, "Shutdown", shutoff, nil},
		{saved, "Shutdown", saved, nil},
		{crashed, "Shutdown", shutoff, nil},

		{none, "Destroy", none, hypervisor.ErrNotFound},
		{running, "Destroy", shutoff, nil},
		{paused, "Destroy", shutoff, nil},
		{shutting, "Destroy", shutoff, nil},
		{shutoff, "Destroy", shutoff, nil},
		{saved, "Destroy", saved, nil},

		{running, "Reboot", running, nil},
		{paused, "Reboot", paused, hypervisor.ErrInvalidState},
		// A hard reboot of a domain that is off boots it; a soft one has no guest to ask.
		{shutoff, "Reboot", running, nil},
		{crashed, "Reboot", running, nil},
		{saved, "Reboot", saved, hypervisor.ErrInvalidState},
		{none, "Reboot", none, hypervisor.ErrNotFound},
		{running, "Soft", running, nil},
		{shutoff, "Soft", shutoff, hypervisor.ErrInvalidState},
		{crashed, "Soft", crashed, hypervisor.ErrInvalidState},

		{running, "Pause", paused, nil},
		{paused, "Pause", paused, nil},
		{shutoff, "Pause", shutoff, hypervisor.ErrInvalidState},
		{saved, "Pause", saved, hypervisor.ErrInvalidState},
		{none, "Pause", none, hypervisor.ErrNotFound},

		{paused, "Resume", running, nil},
		{running, "Resume", running, nil},
		{shutoff, "Resume", shutoff, hypervisor.ErrInvalidState},

		{running, "Save", saved, nil},
		{paused, "Save", saved, nil},
		{saved, "Save", saved, nil},
		{shutoff, "Save", shutoff, hypervisor.ErrInvalidState},

		{running, "Delete", none, nil},
		{saved, "Delete", none, nil},
		{none, "Delete", none, nil},

		{running, "PowerOff", shutoff, nil},
		{shutting, "PowerOff", shutoff, nil},
		{paused, "PowerOff", paused, hypervisor.ErrInvalidState},
		{running, "Crash", shutoff, nil}, // on_crash=destroy; TestCrash covers PreserveCrashed
		{shutoff, "Crash", shutoff, hypervisor.ErrInvalidState},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.from, tt.op), func(t *testing.T) {
			d := inState(t, tt.from)
			err := ops[tt.op](d)
			if tt.err == nil && err != nil {
				t.Fatalf("%s: unexpected error %v", tt.op, err)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("%s: error %v, want %v", tt.op, err, tt.err)
			}
			if got := state(t, d, "vm"); got != tt.want {
				t.Fatalf("%s from %s: state %s, want %s", tt.op, tt.from, got, tt.want)
			}
		})
	}
}

func TestCreateValidation(t *testing.T) {
	d := New(Options{Images: []string{"img"}})
	tests := []struct {
		name string
		mod  func(*hypervisor.DomainSpec)
		want error
	}{
		{"bad id", func(s *hypervisor.DomainSpec) { s.ID = "Bad_ID" }, hypervisor.ErrInvalidSpec},
		{"image path", func(s *hypervisor.DomainSpec) { s.Image = "../etc" }, hypervisor.ErrInvalidSpec},
		{"unknown image", func(s *hypervisor.DomainSpec) { s.Image = "other" }, hypervisor.ErrImageNotFound},
		{"no vcpus", func(s *hypervisor.DomainSpec) { s.VCPUs = 0 }, hypervisor.ErrInvalidSpec},
		{"tiny memory", func(s *hypervisor.DomainSpec) { s.MemoryMiB = 1 }, hypervisor.ErrInvalidSpec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec("vm")
			tt.mod(&s)
			if err := d.Create(context.Background(), s); !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
	if list, _ := d.List(context.Background()); len(list) != 0 {
		t.Fatalf("failed creates left domains: %+v", list)
	}
	if err := New(Options{}).Create(context.Background(), spec("vm")); err != nil {
		t.Fatalf("no image list accepts any image: %v", err)
	}
}

func TestShutdownDelayAndIgnoreACPI(t *testing.T) {
	ctx := context.Background()
	t.Run("delayed guest", func(t *testing.T) {
		d := New(Options{ShutdownDelay: 50 * time.Millisecond})
		d.Create(ctx, spec("vm"))
		start := time.Now()
		if err := d.Shutdown(ctx, "vm", time.Second, false); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 50*time.Millisecond {
			t.Fatalf("shutdown took %s, guest delay is 50ms", took)
		}
		st, _ := d.Status(ctx, "vm")
		if st.State != hypervisor.PowerShutOff || st.Reason != "shutdown" {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("grace shorter than delay", func(t *testing.T) {
		d := New(Options{})
		d.Create(ctx, spec("vm"))
		d.SetShutdownDelay("vm", time.Hour)
		err := d.Shutdown(ctx, "vm", 20*time.Millisecond, false)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want DeadlineExceeded", err)
		}
		if s := state(t, d, "vm"); s != hypervisor.PowerShuttingDown {
			t.Fatalf("state %s", s)
		}
	})
	t.Run("ignores ACPI, no force", func(t *testing.T) {
		d := New(Options{})
		d.SetIgnoreACPI("vm", true) // before the domain exists
		d.Create(ctx, spec("vm"))
		if err := d.Shutdown(ctx, "vm", 20*time.Millisecond, false); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want DeadlineExceeded", err)
		}
		if s := state(t, d, "vm"); s != hypervisor.PowerRunning {
			t.Fatalf("state %s", s)
		}
	})
	t.Run("ignores ACPI, force", func(t *testing.T) {
		d := New(Options{})
		d.SetIgnoreACPI("vm", true)
		d.Create(ctx, spec("vm"))
		if err := d.Shutdown(ctx, "vm", 20*time.Millisecond, true); err != nil {
			t.Fatal(err)
		}
		st, _ := d.Status(ctx, "vm")
		if st.State != hypervisor.PowerShutOff || st.Reason != "destroyed" {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("force within a short ctx", func(t *testing.T) {
		d := New(Options{})
		d.SetIgnoreACPI("vm", true)
		d.Create(ctx, spec("vm"))
		if err := d.Shutdown(ctxT(t, 50*time.Millisecond), "vm", time.Hour, true); err != nil {
			t.Fatalf("forced shutdown must fit in ctx: %v", err)
		}
		if s := state(t, d, "vm"); s != hypervisor.PowerShutOff {
			t.Fatalf("state %s", s)
		}
	})
	t.Run("ctx cancelled", func(t *testing.T) {
		d := New(Options{})
		d.SetIgnoreACPI("vm", true)
		d.Create(ctx, spec("vm"))
		c, cancel := context.WithCancel(ctx)
		time.AfterFunc(20*time.Millisecond, cancel)
		if err := d.Shutdown(c, "vm", time.Hour, true); !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want Canceled", err)
		}
	})
	t.Run("soft reboot ignored", func(t *testing.T) {
		d := New(Options{})
		d.SetIgnoreACPI("vm", true)
		d.Create(ctx, spec("vm"))
		ev, _ := d.Events(ctxT(t, time.Second))
		if err := d.Reboot(ctx, "vm", false); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-ev:
			t.Fatalf("ignored reboot produced event %+v", e)
		default:
		}
	})
	t.Run("delete during delayed shutdown", func(t *testing.T) {
		d := New(Options{ShutdownDelay: time.Hour})
		d.Create(ctx, spec("vm"))
		go func() {
			time.Sleep(20 * time.Millisecond)
			d.Delete(ctx, "vm")
		}()
		if err := d.Shutdown(ctx, "vm", time.Second, false); err != nil {
			t.Fatalf("shutdown of a deleted domain: %v", err)
		}
	})
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	d := New(Options{})
	boom := fmt.Errorf("injected: %w", hypervisor.ErrUnavailable)
	d.InjectFault("Create", boom, 2)
	for i := range 2 {
		if err := d.Create(ctx, spec("vm")); !errors.Is(err, hypervisor.ErrUnavailable) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if s := state(t, d, "vm"); s != hypervisor.PowerNoDomain {
		t.Fatalf("a faulted Create changed state: %s", s)
	}
	if err := d.Create(ctx, spec("vm")); err != nil {
		t.Fatalf("third call: %v", err)
	}
	if n := d.Calls("Create"); n != 3 {
		t.Fatalf("Calls = %d", n)
	}

	d.InjectFault("Status", boom, -1)
	for range 5 {
		if _, err := d.Status(ctx, "vm"); !errors.Is(err, boom) {
			t.Fatalf("persistent fault: %v", err)
		}
	}
	d.InjectFault("Status", nil, 0)
	if _, err := d.Status(ctx, "vm"); err != nil {
		t.Fatalf("cleared fault: %v", err)
	}

	defer func() {
		if recover() == nil {
			t.Fatal("unknown method name did not panic")
		}
	}()
	d.InjectFault("Creat", boom, 1)
}

func TestDelay(t *testing.T) {
	d := New(Options{})
	d.SetDelay("Create", time.Hour)
	start := time.Now()
	err := d.Create(ctxT(t, 30*time.Millisecond), spec("vm"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("delay ignored ctx: %s", took)
	}
	if s := state(t, d, "vm"); s != hypervisor.PowerNoDomain {
		t.Fatalf("timed-out Create changed state: %s", s)
	}
	d.SetDelay("Create", 10*time.Millisecond)
	start = time.Now()
	if err := d.Create(context.Background(), spec("vm")); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 10*time.Millisecond {
		t.Fatalf("delay not applied: %s", took)
	}
}

func TestHold(t *testing.T) {
	d := New(Options{})
	release := d.Hold("Create")
	done := make(chan error, 1)
	go func() { done <- d.Create(context.Background(), spec("vm")) }()
	// Counted while held, so a test can tell the call has begun.
	for d.Calls("Create") == 0 {
		runtime.Gosched()
	}
	select {
	case err := <-done:
		t.Fatalf("held Create returned %v", err)
	default:
	}
	if s := state(t, d, "vm"); s != hypervisor.PowerNoDomain {
		t.Fatalf("held Create changed state: %s", s)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	release() // a second release is harmless
	if err := d.Delete(context.Background(), "vm"); err != nil {
		t.Fatal(err)
	}
	if err := d.Create(context.Background(), spec("vm")); err != nil {
		t.Fatalf("Create after release: %v", err)
	}

	// A held call still ends with its context.
	d.Hold("Start")
	if err := d.Start(ctxT(t, 10*time.Millisecond), "vm"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("held Start with a deadline: %v, want DeadlineExceeded", err)
	}
}

func collect(t *testing.T, ch <-chan hypervisor.Event, n int) []hypervisor.Event {
	t.Helper()
	var out []hypervisor.Event
	timeout := time.After(2 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d events: %+v", len(out), out)
			}
			out = append(out, ev)
		case <-timeout:
			t.Fatalf("got %d events, want %d: %+v", len(out), n, out)
		}
	}
	return out
}

func TestEvents(t *testing.T) {
	ctx := context.Background()
	d := New(Options{})
	ch, err := d.Events(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	d.Create(ctx, spec("vm"))
	d.Pause(ctx, "vm")
	d.Pause(ctx, "vm") // no change, no event
	d.Resume(ctx, "vm")
	d.Save(ctx, "vm")
	d.Start(ctx, "vm")
	d.PowerOff("vm")
	d.Start(ctx, "vm")
	d.Delete(ctx, "vm")

	want := []struct {
		s      hypervisor.PowerState
		reason string
	}{
		{hypervisor.PowerRunning, "booted"},
		{hypervisor.PowerPaused, "user"},
		{hypervisor.PowerRunning, "unpaused"},
		{hypervisor.PowerSavedToDisk, "saved"},
		{hypervisor.PowerRunning, "restored"},
		{hypervisor.PowerShutOff, "shutdown"},
		{hypervisor.PowerRunning, "booted"},
		{hypervisor.PowerShutOff, "destroyed"},
		{hypervisor.PowerNoDomain, "missing"},
	}
	got := collect(t, ch, len(want))
	for i, w := range want {
		if got[i].ID != "vm" || got[i].State != w.s || got[i].Reason != w.reason {
			t.Errorf("event %d = %+v, want %s/%s", i, got[i].DomainStatus, w.s, w.reason)
		}
	}
	select {
	case ev := <-ch:
		t.Fatalf("extra event %+v", ev)
	default:
	}
}

func TestEventsDropAndBreak(t *testing.T) {
	ctx := context.Background()

	t.Run("drop", func(t *testing.T) {
		d := New(Options{})
		ch, _ := d.Events(ctxT(t, time.Second))
		d.DropEvents(true)
		d.Create(ctx, spec("vm"))
		d.DropEvents(false)
		d.Pause(ctx, "vm")
		if ev := collect(t, ch, 1)[0]; ev.State != hypervisor.PowerPaused {
			t.Fatalf("first delivered event %+v, want the pause", ev)
		}
	})
	t.Run("ctx ends", func(t *testing.T) {
		d := New(Options{})
		c, cancel := context.WithCancel(ctx)
		ch, _ := d.Events(c)
		cancel()
		waitClosed(t, ch)
		d.Create(ctx, spec("vm")) // must not panic on a closed channel
	})
	t.Run("overflow cuts the subscriber off", func(t *testing.T) {
		d := New(Options{EventBuffer: 2})
		ch, _ := d.Events(ctxT(t, time.Second))
		d.Create(ctx, spec("vm"))
		d.Pause(ctx, "vm")
		d.Resume(ctx, "vm") // third event: buffer full
		if n := len(collectUntilClosed(t, ch)); n != 2 {
			t.Fatalf("got %d buffered events before close, want 2", n)
		}
	})
	t.Run("break and unavailable", func(t *testing.T) {
		d := New(Options{})
		ch, _ := d.Events(ctxT(t, time.Second))
		d.BreakEvents()
		waitClosed(t, ch)

		ch, _ = d.Events(ctxT(t, time.Second))
		d.Create(ctx, spec("vm"))
		d.SetUnavailable(true)
		if n := len(collectUntilClosed(t, ch)); n != 1 {
			t.Fatalf("got %d events, want 1", n)
		}
		if _, err := d.Status(ctx, "vm"); !errors.Is(err, hypervisor.ErrUnavailable) {
			t.Fatalf("Status during outage: %v", err)
		}
		if _, err := d.Events(ctx); !errors.Is(err, hypervisor.ErrUnavailable) {
			t.Fatalf("Events during outage: %v", err)
		}
		d.SetUnavailable(false)
		if s := state(t, d, "vm"); s != hypervisor.PowerRunning {
			t.Fatalf("domain did not survive the outage: %s", s)
		}
	})
	t.Run("close", func(t *testing.T) {
		d := New(Options{})
		ch, _ := d.Events(ctx)
		d.Close()
		waitClosed(t, ch)
		if err := d.Create(ctx, spec("vm")); !errors.Is(err, ErrClosed) {
			t.Fatalf("Create after Close: %v", err)
		}
	})
}

func waitClosed(t *testing.T, ch <-chan hypervisor.Event) {
	t.Helper()
	collectUntilClosed(t, ch)
}

func collectUntilClosed(t *testing.T, ch <-chan hypervisor.Event) []hypervisor.Event {
	t.Helper()
	var out []hypervisor.Event
	timeout := time.After(2 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, ev)
		case <-timeout:
			t.Fatal("channel not closed")
		}
	}
}

func TestCrash(t *testing.T) {
	ctx := context.Background()
	d := New(Options{})
	d.Create(ctx, spec("vm"))
	d.Crash("vm")
	if st, _ := d.Status(ctx, "vm"); st.State != hypervisor.PowerShutOff || st.Reason != "crashed" {
		t.Fatalf("default crash: %+v", st)
	}
	d = New(Options{PreserveCrashed: true})
	d.Create(ctx, spec("vm"))
	d.Crash("vm")
	if st, _ := d.Status(ctx, "vm"); st.State != hypervisor.PowerCrashed {
		t.Fatalf("preserved crash: %+v", st)
	}
}

func TestListAndCapacity(t *testing.T) {
	ctx := context.Background()
	capacity := hypervisor.Capacity{VCPUs: 8, MemoryMiB: 16384, DiskGiB: 100}
	d := New(Options{Kind: "kvm", Capacity: capacity})
	for _, id := range []string{"c", "a", "b"} {
		d.Create(ctx, spec(id))
	}
	d.Pause(ctx, "b")
	list, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].ID != "a" || list[1].State != hypervisor.PowerPaused || list[2].ID != "c" {
		t.Fatalf("List = %+v", list)
	}
	if c, _ := d.Capacity(ctx); c != capacity || d.Kind() != "kvm" || New(Options{}).Kind() != "fake" {
		t.Fatalf("capacity %+v kind %s", c, d.Kind())
	}
}

// TestConcurrency hammers one driver from many goroutines; run with -race.
func TestConcurrency(t *testing.T) {
	d := New(Options{ShutdownDelay: time.Millisecond, EventBuffer: 16})
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 { // subscribers that come and go
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
				if ch, err := d.Events(c); err == nil {
					for range ch {
					}
				}
				cancel()
			}
		}()
	}
	var workers sync.WaitGroup
	for w := range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			id := fmt.Sprintf("vm-%d", w%3) // ids shared between workers
			for i := range 200 {
				switch i % 9 {
				case 0:
					d.Create(ctx, spec(id))
				case 1:
					d.Pause(ctx, id)
				case 2:
					d.Resume(ctx, id)
				case 3:
					d.Shutdown(ctx, id, 5*time.Millisecond, true)
				case 4:
					d.Start(ctx, id)
				case 5:
					d.Save(ctx, id)
				case 6:
					d.PowerOff(id)
				case 7:
					d.List(ctx)
				case 8:
					d.Delete(ctx, id)
				}
			}
		}()
	}
	workers.Wait()
	close(stop)
	wg.Wait()
	d.Close()
}

// SetTitle renames a domain in any power state and never changes that state.
func TestSetTitle(t *testing.T) {
	for _, from := range []hypervisor.PowerState{hypervisor.PowerRunning, hypervisor.PowerShutOff, hypervisor.PowerPaused, hypervisor.PowerSavedToDisk} {
		d := inState(t, from)
		if err := d.SetTitle(context.Background(), "vm", "renamed <&>"); err != nil {
			t.Fatalf("from %s: %v", from, err)
		}
		if got, ok := d.Title("vm"); !ok || got != "renamed <&>" {
			t.Errorf("from %s: title %q", from, got)
		}
		if got := state(t, d, "vm"); got != from {
			t.Errorf("SetTitle moved %s to %s", from, got)
		}
	}
	d := New(Options{})
	if err := d.SetTitle(context.Background(), "vm", "x"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("missing domain: %v", err)
	}
	if err := inState(t, hypervisor.PowerRunning).SetTitle(context.Background(), "vm", "a\nb"); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Errorf("newline in a title: %v", err)
	}
}

func TestPreflight(t *testing.T) {
	d := New(Options{Images: []string{"img"}, DiskSize: 1000})
	ctx := context.Background()
	sp := spec("vm")
	sp.Image = "img"
	if err := d.Preflight(ctx, sp, false, 24); err != nil {
		t.Fatalf("with the default free space: %v", err)
	}
	d.SetDiskFree(1024)
	if err := d.Preflight(ctx, sp, false, 24); err != nil {
		t.Fatalf("exactly enough for the disk and the reserve: %v", err)
	}
	if err := d.Preflight(ctx, sp, false, 25); !errors.Is(err, hypervisor.ErrInsufficientDisk) {
		t.Fatalf("one byte short: %v", err)
	}
	if err := d.Preflight(ctx, sp, true, 1024); err != nil {
		t.Fatalf("a boot needs the reserve alone: %v", err)
	}
	bad := sp
	bad.Image = "other"
	if err := d.Preflight(ctx, bad, false, 0); !errors.Is(err, hypervisor.ErrImageNotFound) {
		t.Fatalf("unknown image: %v", err)
	}
	bad.Image = "../x"
	if err := d.Preflight(ctx, bad, false, 0); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Fatalf("invalid spec: %v", err)
	}
	d.InjectFault("Preflight", hypervisor.ErrUnavailable, 1)
	if err := d.Preflight(ctx, sp, true, 0); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Fatalf("injected fault: %v", err)
	}
	if n, err := d.List(ctx); err != nil || len(n) != 0 {
		t.Fatalf("a preflight made domains: %v %v", n, err)
	}
}
