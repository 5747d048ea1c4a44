package libvirt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

const guestReady = "FLOTILLA-GUEST-READY"

func TestLifecycle(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	paths := pathsFor(cfg.DiskDir, cfg.RunDir, id)

	if d.Kind() != cfg.DomainType || (d.Kind() != "qemu" && d.Kind() != "kvm") {
		t.Fatalf("Kind() = %q", d.Kind())
	}
	if c, err := d.Capacity(ctxT(t, 10*time.Second)); err != nil || c.VCPUs == 0 || c.MemoryMiB == 0 || c.DiskGiB == 0 {
		t.Fatalf("Capacity() = %+v, %v", c, err)
	}

	// create → running, and the guest really boots
	start := time.Now()
	if err := d.Create(ctxT(t, 60*time.Second), testSpec(id)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Logf("timing: create→running %s", time.Since(start).Round(time.Millisecond))
	wantState(t, d, id, hypervisor.PowerRunning)
	if _, err := os.Stat(paths.Disk); err != nil {
		t.Fatalf("disk overlay: %v", err)
	}
	took := waitFor(t, 60*time.Second, guestReady+" on the console", func() bool {
		return fileContains(paths.ConsoleLog, guestReady)
	})
	t.Logf("timing: guest ready on console %s after Create returned", took.Round(time.Millisecond))

	// idempotent calls on a running domain
	if err := d.Create(ctxT(t, 30*time.Second), testSpec(id)); err != nil {
		t.Fatalf("second Create of a running domain: %v", err)
	}
	if err := d.Start(ctxT(t, 10*time.Second), id); err != nil {
		t.Fatalf("Start of a running domain: %v", err)
	}
	if title, _ := virsh(t, "desc", "--title", domainName(id)); strings.TrimSpace(title) != testSpec(id).Name {
		t.Fatalf("domain title = %q, want %q", title, testSpec(id).Name)
	}

	// pause / resume
	if err := d.Pause(ctxT(t, 10*time.Second), id); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	wantState(t, d, id, hypervisor.PowerPaused)
	if err := d.Resume(ctxT(t, 10*time.Second), id); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	wantState(t, d, id, hypervisor.PowerRunning)

	// save → saved-to-disk, managed save file on disk
	start = time.Now()
	if err := d.Save(ctxT(t, 120*time.Second), id); err != nil {
		t.Fatalf("Save: %v", err)
	}
	t.Logf("timing: save %s", time.Since(start).Round(time.Millisecond))
	st := wantState(t, d, id, hypervisor.PowerSavedToDisk)
	if st.Reason != "saved" {
		t.Errorf("saved reason = %q", st.Reason)
	}
	saveFile := filepath.Join("/var/lib/libvirt/qemu/save", domainName(id)+".save")
	if _, err := os.Stat(saveFile); err != nil {
		t.Fatalf("managed save file: %v", err)
	}
	if err := d.Pause(ctxT(t, 10*time.Second), id); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("Pause of a saved domain = %v, want ErrInvalidState", err)
	}

	// start → restored, running
	start = time.Now()
	if err := d.Start(ctxT(t, 120*time.Second), id); err != nil {
		t.Fatalf("Start (restore): %v", err)
	}
	t.Logf("timing: restore %s", time.Since(start).Round(time.Millisecond))
	if st := wantState(t, d, id, hypervisor.PowerRunning); st.Reason != "restored" {
		t.Errorf("restored reason = %q", st.Reason)
	}
	if _, err := os.Stat(saveFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("managed save file still present after restore: %v", err)
	}

	// graceful shutdown: the guest powers itself off on ACPI
	start = time.Now()
	if err := d.Shutdown(ctxT(t, 40*time.Second), id, 30*time.Second, false); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	t.Logf("timing: ACPI shutdown %s", time.Since(start).Round(time.Millisecond))
	if st := wantState(t, d, id, hypervisor.PowerShutOff); st.Reason != "shutdown" {
		t.Errorf("shut-off reason = %q, want shutdown", st.Reason)
	}
	if err := d.Shutdown(ctxT(t, 10*time.Second), id, time.Second, false); err != nil {
		t.Fatalf("Shutdown of a stopped domain: %v", err)
	}

	// start again, then pull the plug behind the driver's back
	if err := d.Start(ctxT(t, 60*time.Second), id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	wantState(t, d, id, hypervisor.PowerRunning)

	events, err := d.Events(ctxT(t, 60*time.Second))
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	destroyed := time.Now()
	if out, err := virsh(t, "destroy", domainName(id)); err != nil {
		t.Fatalf("virsh destroy: %v: %s", err, out)
	}
	virshTook := time.Since(destroyed)
	var observed time.Time
	// The bound only catches a missing event; its latency is logged below
	// (and measured by bench/cmd/flotilla-bench): a machine busy with the
	// whole suite can take seconds to deliver what usually takes a millisecond.
	timeout := time.After(15 * time.Second)
	for got := false; !got; {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event channel closed")
			}
			t.Logf("event: %+v", ev)
			got = ev.ID == id && ev.State == hypervisor.PowerShutOff
			observed = ev.ObservedAt
			if got && ev.Reason != "destroyed" {
				t.Errorf("event reason = %q, want destroyed", ev.Reason)
			}
		case <-timeout:
			t.Fatal("no shut-off event within 15s of virsh destroy")
		}
	}
	t.Logf("timing: shut-off event observed %s after virsh destroy started (virsh itself took %s)",
		observed.Sub(destroyed).Round(time.Millisecond), virshTook.Round(time.Millisecond))

	// list sees it; delete removes every trace
	list, err := d.List(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if !containsID(list, id) {
		t.Fatalf("List does not show %s: %+v", id, list)
	}
	if err := d.Delete(ctxT(t, 30*time.Second), id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantState(t, d, id, hypervisor.PowerNoDomain)
	for _, p := range []string{paths.Disk, paths.ConsoleLog, paths.GuestSock} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still present after Delete: %v", p, err)
		}
	}
	if out, _ := virsh(t, "list", "--all", "--name"); strings.Contains(out, domainName(id)) {
		t.Fatalf("virsh list --all still shows %s:\n%s", domainName(id), out)
	}
	if err := d.Delete(ctxT(t, 10*time.Second), id); err != nil {
		t.Fatalf("Delete of a missing domain: %v", err)
	}
	if err := d.Start(ctxT(t, 10*time.Second), id); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("Start of a missing domain = %v, want ErrNotFound", err)
	}
}

func TestCreateInvalid(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)

	tests := []struct {
		name string
		mod  func(*hypervisor.DomainSpec)
		want error
	}{
		{"bad id", func(s *hypervisor.DomainSpec) { s.ID = "Bad_ID" }, hypervisor.ErrInvalidSpec},
		{"image ../etc", func(s *hypervisor.DomainSpec) { s.Image = "../etc" }, hypervisor.ErrInvalidSpec},
		{"image absent", func(s *hypervisor.DomainSpec) { s.Image = "no-such-image" }, hypervisor.ErrImageNotFound},
		{"too much memory", func(s *hypervisor.DomainSpec) { s.MemoryMiB = 1 << 30 }, hypervisor.ErrInvalidSpec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec(id)
			tt.mod(&spec)
			err := d.Create(ctxT(t, 30*time.Second), spec)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Create = %v, want %v", err, tt.want)
			}
			wantState(t, d, id, hypervisor.PowerNoDomain)
			if out, _ := virsh(t, "list", "--all", "--name"); strings.Contains(out, domainName(id)) {
				t.Fatalf("domain defined despite the error:\n%s", out)
			}
			if _, err := os.Stat(pathsFor(cfg.DiskDir, cfg.RunDir, id).Disk); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("disk overlay left behind: %v", err)
			}
		})
	}
}

// TestCreateFailureRollsBack makes libvirt refuse to start the domain and
// checks Create leaves no domain and no disk behind.
func TestCreateFailureRollsBack(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	// A RunDir that does not exist makes QEMU fail to open the console log.
	d.cfg.RunDir = filepath.Join(cfg.RunDir, "missing", "dir")
	err := d.Create(ctxT(t, 60*time.Second), testSpec(id))
	if err == nil {
		t.Fatal("Create succeeded with an unusable run directory")
	}
	t.Logf("Create error (expected): %v", err)
	wantState(t, d, id, hypervisor.PowerNoDomain)
	if _, err := os.Stat(pathsFor(cfg.DiskDir, cfg.RunDir, id).Disk); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("disk overlay left behind: %v", err)
	}
}

func containsID(list []hypervisor.DomainStatus, id string) bool {
	for _, s := range list {
		if s.ID == id {
			return true
		}
	}
	return false
}

// TestReboot checks both reboots really restart the guest: each one prints
// the ready marker on the console again.
func TestReboot(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	console := pathsFor(cfg.DiskDir, cfg.RunDir, id).ConsoleLog
	if err := d.Create(ctxT(t, 60*time.Second), testSpec(id)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	readyCount := func() int {
		b, _ := os.ReadFile(console)
		return strings.Count(string(b), guestReady)
	}
	waitFor(t, 60*time.Second, "first boot", func() bool { return readyCount() >= 1 })

	for i, hard := range []bool{true, false} {
		// The test guest prints its marker a moment before it listens for
		// the power button, so a soft reboot is pressed again until seen,
		// as a caller would retry a reboot that changed nothing.
		start := time.Now()
		lastPress := time.Time{}
		waitFor(t, 40*time.Second, fmt.Sprintf("boot after reboot (hard=%v)", hard), func() bool {
			if readyCount() >= i+2 {
				return true
			}
			if lastPress.IsZero() || (!hard && time.Since(lastPress) > 5*time.Second) {
				if err := d.Reboot(ctxT(t, 10*time.Second), id, hard); err != nil {
					t.Fatalf("Reboot(hard=%v): %v", hard, err)
				}
				lastPress = time.Now()
			}
			return false
		})
		t.Logf("timing: reboot (hard=%v) to guest ready %s", hard, time.Since(start).Round(time.Millisecond))
		wantState(t, d, id, hypervisor.PowerRunning)
	}

	// Shut off, a soft reboot has no guest to ask; a hard one boots it.
	if err := d.Destroy(ctxT(t, 10*time.Second), id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if err := d.Reboot(ctxT(t, 10*time.Second), id, false); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("soft Reboot of a shut-off domain = %v, want ErrInvalidState", err)
	}
	before := readyCount()
	if err := d.Reboot(ctxT(t, 30*time.Second), id, true); err != nil {
		t.Fatalf("hard Reboot of a shut-off domain: %v", err)
	}
	wantState(t, d, id, hypervisor.PowerRunning)
	waitFor(t, 60*time.Second, "boot after a hard reboot of the shut-off domain", func() bool { return readyCount() > before })

	// Delete of a saved domain removes the managed save image too.
	if err := d.Save(ctxT(t, 120*time.Second), id); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := d.Reboot(ctxT(t, 10*time.Second), id, true); !errors.Is(err, hypervisor.ErrInvalidState) {
		t.Fatalf("Reboot of a saved domain = %v, want ErrInvalidState", err)
	}
	if err := d.Destroy(ctxT(t, 10*time.Second), id); err != nil {
		t.Fatalf("Destroy of a stopped domain: %v", err)
	}
	if err := d.Delete(ctxT(t, 30*time.Second), id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	saveFile := filepath.Join("/var/lib/libvirt/qemu/save", domainName(id)+".save")
	if _, err := os.Stat(saveFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("managed save image left after Delete: %v", err)
	}
}

// TestPreflight checks, with no domain made, what a create or a boot would
// need: the image, and free space in the disk directory.
func TestPreflight(t *testing.T) {
	d, cfg := newTestDriver(t)
	id := testID(t, d)
	const huge = 1 << 62 // more than any disk holds
	tests := []struct {
		name    string
		mod     func(*hypervisor.DomainSpec)
		boot    bool
		reserve uint64
		want    error
	}{
		{"create", nil, false, 0, nil},
		{"create with a reserve", nil, false, 1 << 20, nil},
		{"boot", nil, true, 0, nil},
		{"create on a full disk", nil, false, huge, hypervisor.ErrInsufficientDisk},
		{"boot on a full disk", nil, true, huge, hypervisor.ErrInsufficientDisk},
		{"image absent", func(s *hypervisor.DomainSpec) { s.Image = "no-such-image" }, false, 0, hypervisor.ErrImageNotFound},
		{"image absent at boot", func(s *hypervisor.DomainSpec) { s.Image = "no-such-image" }, true, 0, hypervisor.ErrImageNotFound},
		{"image ../etc", func(s *hypervisor.DomainSpec) { s.Image = "../etc" }, false, 0, hypervisor.ErrInvalidSpec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec(id)
			if tt.mod != nil {
				tt.mod(&spec)
			}
			err := d.Preflight(ctxT(t, 30*time.Second), spec, tt.boot, tt.reserve)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Preflight = %v, want %v", err, tt.want)
			}
			if errors.Is(err, hypervisor.ErrInsufficientDisk) && !strings.Contains(err.Error(), "disk directory "+cfg.DiskDir+" has ") {
				t.Fatalf("Preflight's fault does not say where and how much: %v", err)
			}
			wantState(t, d, id, hypervisor.PowerNoDomain)
			if entries, _ := os.ReadDir(cfg.DiskDir); len(entries) != 0 {
				t.Fatalf("Preflight left files in the disk directory: %v", entries)
			}
		})
	}
}
