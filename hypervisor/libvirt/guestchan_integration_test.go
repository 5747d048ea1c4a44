package libvirt

import (
	"log/slog"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/agent/guestchan"
	"github.com/flotilla-vm/flotilla/hypervisor"
)

// The real test guest (scripts/build-test-guest.sh, recipe 6 or later: protocol v2)
// speaks on the real channel: the agent's watcher hears it boot and be
// ready, tells a restarted agent again, and boots anew after a reboot.
func TestGuestChannelBootAndReady(t *testing.T) {
	d, _ := newTestDriver(t)
	id := testID(t, d)
	w := watchGuests(t, d)

	if err := d.Create(ctxT(t, 60*time.Second), testSpec(id)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	w.Observe(hypervisor.DomainStatus{ID: id, State: hypervisor.PowerRunning})
	r := nextGuest(t, w, id, "booting", func(r guestchan.Report) bool { return r.State == guestchan.Booting })
	if r.Version != "test-6" || r.Protocol != 2 || r.Boot == "" {
		t.Errorf("booting report %+v, want version test-6, protocol 2 and a boot id", r)
	}
	r = nextGuest(t, w, id, "ready", func(r guestchan.Report) bool { return r.State == guestchan.Ready })
	if r.Dropped != 0 || r.Stage != "network" { // no NIC: no httpd stage
		t.Errorf("ready report %+v", r)
	}

	// The agent restarts (a new watcher, knowing nothing): the guest says
	// its HELLO (the same boot id) and where it is again.
	w.Close()
	w = watchGuests(t, d)
	w.Observe(hypervisor.DomainStatus{ID: id, State: hypervisor.PowerRunning})
	boot := r.Boot
	r = nextGuest(t, w, id, "ready to a restarted agent", func(r guestchan.Report) bool { return r.State == guestchan.Ready })
	if r.Boot != boot {
		t.Errorf("a restarted agent heard boot %q, the guest booted as %q", r.Boot, boot)
	}

	// A reboot is a new boot: HELLO again, then READY.
	if err := d.Reboot(ctxT(t, 30*time.Second), id, true); err != nil {
		t.Fatalf("Reboot: %v", err)
	}
	nextGuest(t, w, id, "booting after the reboot", func(r guestchan.Report) bool { return r.State == guestchan.Booting && r.Boot != boot })
	nextGuest(t, w, id, "ready after the reboot", func(r guestchan.Report) bool { return r.State == guestchan.Ready })
}

// A guest told to flood its channel and fail its boot scripts: the agent
// drops the flood, keeps listening and hears FAILED.
func TestGuestChannelFloodThenFailed(t *testing.T) {
	d, _ := newTestDriver(t)
	id := testID(t, d)
	w := watchGuests(t, d)

	spec := testSpec(id)
	spec.Seed = &hypervisor.GuestSeed{UserData: "#cloud-config\nflotilla-test: flood\nflotilla-test: fail\n"}
	if err := d.Create(ctxT(t, 60*time.Second), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	w.Observe(hypervisor.DomainStatus{ID: id, State: hypervisor.PowerRunning})
	r := nextGuest(t, w, id, "failed", func(r guestchan.Report) bool { return r.State == guestchan.Failed })
	if r.Reason != "boot-script" || r.Dropped < 100 {
		t.Errorf("failed report %+v, want reason boot-script and the flood counted", r)
	}
	if rs := w.Reports(); len(rs) != 1 || rs[0].State != guestchan.Failed {
		t.Errorf("Reports() = %+v", rs)
	}
}

func watchGuests(t *testing.T, d *Driver) *guestchan.Watcher {
	w := guestchan.New(guestchan.Config{Sockets: d, PingInterval: time.Second,
		Logger: slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))})
	t.Cleanup(w.Close)
	return w
}

// nextGuest waits (a TCG boot takes seconds) for a report of id for which
// ok holds, skipping others.
func nextGuest(t *testing.T, w *guestchan.Watcher, id, what string, ok func(guestchan.Report) bool) guestchan.Report {
	t.Helper()
	timeout := time.After(120 * time.Second)
	for {
		select {
		case r := <-w.Updates():
			t.Logf("guest report %+v", r)
			if r.InstanceID == id && ok(r) {
				return r
			}
		case <-timeout:
			t.Fatalf("no guest report: %s", what)
		}
	}
}

// The test guest's switches: silent never speaks (its console says READY
// all the same), slow=N says READY N seconds after it started.
func TestGuestChannelSilentAndSlow(t *testing.T) {
	d, cfg := newTestDriver(t)
	w := watchGuests(t, d)

	silent := testID(t, d)
	spec := testSpec(silent)
	spec.Seed = &hypervisor.GuestSeed{UserData: "flotilla-test: silent\n"}
	if err := d.Create(ctxT(t, 60*time.Second), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	w.Observe(hypervisor.DomainStatus{ID: silent, State: hypervisor.PowerRunning})
	waitFor(t, 120*time.Second, "the silent guest's console READY", func() bool {
		return fileContains(pathsFor(cfg.DiskDir, cfg.RunDir, silent).ConsoleLog, guestReady)
	})
	if err := d.Destroy(ctxT(t, 30*time.Second), silent); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	w.Observe(hypervisor.DomainStatus{ID: silent, State: hypervisor.PowerShutOff})
	if rs := w.Reports(); len(rs) != 0 {
		t.Fatalf("a silent guest was heard: %+v", rs)
	}

	slow := testID(t, d)
	spec = testSpec(slow)
	spec.Seed = &hypervisor.GuestSeed{UserData: "flotilla-test: slow=3\n"}
	if err := d.Create(ctxT(t, 60*time.Second), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	w.Observe(hypervisor.DomainStatus{ID: slow, State: hypervisor.PowerRunning})
	booting := nextGuest(t, w, slow, "booting", func(r guestchan.Report) bool { return r.State == guestchan.Booting })
	ready := nextGuest(t, w, slow, "ready", func(r guestchan.Report) bool { return r.State == guestchan.Ready })
	if took := ready.ObservedAt.Sub(booting.ObservedAt); took < 3*time.Second {
		t.Errorf("slow=3 guest ready %s after HELLO", took)
	}
}
