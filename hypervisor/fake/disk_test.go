package fake

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

func readDisk(t *testing.T, d *Driver, id string) []byte {
	t.Helper()
	rc, size, err := d.OpenDisk(context.Background(), id, hypervisor.DiskWhole)
	if err != nil {
		t.Fatalf("OpenDisk(%s): %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Fatalf("OpenDisk size %d, read %d bytes", size, len(b))
	}
	return b
}

func TestOpenDiskOnlyWhenShutOff(t *testing.T) {
	for _, s := range []hypervisor.PowerState{hypervisor.PowerRunning, hypervisor.PowerPaused,
		hypervisor.PowerSavedToDisk, hypervisor.PowerShuttingDown, hypervisor.PowerCrashed} {
		d := inState(t, s)
		if _, _, err := d.OpenDisk(context.Background(), "vm", hypervisor.DiskWhole); !errors.Is(err, hypervisor.ErrInvalidState) {
			t.Errorf("OpenDisk while %s = %v, want ErrInvalidState", s, err)
		}
	}
	d := inState(t, hypervisor.PowerNoDomain)
	if _, _, err := d.OpenDisk(context.Background(), "vm", hypervisor.DiskWhole); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("OpenDisk of a missing domain = %v, want ErrNotFound", err)
	}
	if _, _, err := d.OpenDisk(context.Background(), "../vm", hypervisor.DiskWhole); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Errorf("OpenDisk of a bad id = %v, want ErrInvalidSpec", err)
	}

	d = inState(t, hypervisor.PowerShutOff)
	got := readDisk(t, d, "vm")
	if want := DiskContent("vm", DefaultDiskSize); !bytes.Equal(got, want) {
		t.Fatalf("disk of vm is not DiskContent(vm)")
	}
	if bytes.Equal(DiskContent("vm", 1024), DiskContent("vm2", 1024)) {
		t.Fatal("two ids have the same disk content")
	}
}

func TestImportDomain(t *testing.T) {
	ctx := context.Background()
	src := inState(t, hypervisor.PowerShutOff)
	disk := readDisk(t, src, "vm")

	dst := New(Options{Images: []string{"img"}})
	events, err := dst.Events(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.ImportDomain(ctx, spec("moved"), bytes.NewReader(disk)); err != nil {
		t.Fatalf("ImportDomain: %v", err)
	}
	if st := state(t, dst, "moved"); st != hypervisor.PowerShutOff {
		t.Fatalf("imported domain is %s, want shut-off", st)
	}
	if ev := <-events; ev.ID != "moved" || ev.State != hypervisor.PowerShutOff {
		t.Fatalf("event %+v, want moved shut-off", ev)
	}
	if got, _ := dst.Disk("moved"); !bytes.Equal(got, disk) {
		t.Fatal("imported disk differs from the source's")
	}

	// A retry of the same import succeeds; anything else is refused.
	if err := dst.ImportDomain(ctx, spec("moved"), bytes.NewReader(disk)); err != nil {
		t.Fatalf("repeated identical ImportDomain: %v", err)
	}
	other := bytes.Clone(disk)
	other[0] ^= 1
	if err := dst.ImportDomain(ctx, spec("moved"), bytes.NewReader(other)); !errors.Is(err, hypervisor.ErrAlreadyExists) {
		t.Fatalf("ImportDomain of another disk over an existing domain = %v, want ErrAlreadyExists", err)
	}
	changed := spec("moved")
	changed.VCPUs = 2
	if err := dst.ImportDomain(ctx, changed, bytes.NewReader(disk)); !errors.Is(err, hypervisor.ErrAlreadyExists) {
		t.Fatalf("ImportDomain of another spec = %v, want ErrAlreadyExists", err)
	}
	if got, _ := dst.Disk("moved"); !bytes.Equal(got, disk) {
		t.Fatal("a refused import changed the existing disk")
	}

	// The imported domain boots, and once started is no longer "the same import".
	if err := dst.Start(ctx, "moved"); err != nil {
		t.Fatalf("Start of the imported domain: %v", err)
	}
	if err := dst.ImportDomain(ctx, spec("moved"), bytes.NewReader(disk)); !errors.Is(err, hypervisor.ErrAlreadyExists) {
		t.Fatalf("ImportDomain over a running domain = %v, want ErrAlreadyExists", err)
	}
	// Delete removes the disk with the domain.
	if err := dst.Delete(ctx, "moved"); err != nil {
		t.Fatal(err)
	}
	if _, ok := dst.Disk("moved"); ok {
		t.Fatal("disk still there after Delete")
	}
}

func TestImportDomainFailuresLeaveNothing(t *testing.T) {
	ctx := context.Background()
	d := New(Options{Images: []string{"img"}})
	boom := errors.New("stream broke")

	if err := d.ImportDomain(ctx, spec("a"), iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("ImportDomain from a failing reader = %v, want it wrapped", err)
	}
	bad := spec("b")
	bad.Image = "other"
	if err := d.ImportDomain(ctx, bad, bytes.NewReader(nil)); !errors.Is(err, hypervisor.ErrImageNotFound) {
		t.Errorf("ImportDomain of an unknown image = %v, want ErrImageNotFound", err)
	}
	bad = spec("../c")
	if err := d.ImportDomain(ctx, bad, bytes.NewReader(nil)); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Errorf("ImportDomain of a bad id = %v, want ErrInvalidSpec", err)
	}
	d.InjectFault("ImportDomain", hypervisor.ErrUnavailable, 1)
	if err := d.ImportDomain(ctx, spec("d"), bytes.NewReader([]byte("x"))); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Errorf("ImportDomain with an injected fault = %v", err)
	}
	d.InjectFault("OpenDisk", hypervisor.ErrUnavailable, 1)
	if _, _, err := d.OpenDisk(ctx, "a", hypervisor.DiskWhole); !errors.Is(err, hypervisor.ErrUnavailable) {
		t.Errorf("OpenDisk with an injected fault = %v", err)
	}
	if l, _ := d.List(ctx); len(l) != 0 {
		t.Fatalf("failed imports left domains: %+v", l)
	}
	// The fault was used up: the next import works.
	if err := d.ImportDomain(ctx, spec("d"), bytes.NewReader([]byte("x"))); err != nil {
		t.Fatalf("ImportDomain after the fault: %v", err)
	}
}

func TestImportDomainSizeLimit(t *testing.T) {
	d := New(Options{MaxImportBytes: 4096})
	s := spec("big")
	s.DiskGiB = 1
	if err := d.ImportDomain(context.Background(), s, bytes.NewReader(make([]byte, 4097))); !errors.Is(err, hypervisor.ErrInvalidSpec) {
		t.Fatalf("ImportDomain of an oversized disk = %v, want ErrInvalidSpec", err)
	}
	if _, ok := d.Disk("big"); ok {
		t.Fatal("oversized import left a domain")
	}
	if err := d.ImportDomain(context.Background(), s, bytes.NewReader(make([]byte, 4096))); err != nil {
		t.Fatalf("ImportDomain at the limit: %v", err)
	}
}
