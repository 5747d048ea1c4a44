package fake

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

// TestResizeTwoPasses runs the two-pass plan: freeze, copy the base while
// the guest runs, refreeze, copy the mid while it runs (the target merges
// it into its base at once), stop, copy the top, adopt.
func TestResizeTwoPasses(t *testing.T) {
	ctx := context.Background()
	src := inState(t, hypervisor.PowerRunning)
	dst := New(Options{Images: []string{"img"}})
	must(t, src.WriteDisk("vm", 100, []byte("pattern one")))

	wantErr(t, "RefreezeDisk of an unfrozen disk", src.RefreezeDisk(ctx, "vm"), hypervisor.ErrInvalidState)
	_, _, err := src.OpenDisk(ctx, "vm", hypervisor.DiskMid)
	wantErr(t, "OpenDisk(mid) of an unfrozen disk", err, hypervisor.ErrInvalidState)
	must(t, src.FreezeDisk(ctx, "vm"))
	_, _, err = src.OpenDisk(ctx, "vm", hypervisor.DiskMid)
	wantErr(t, "OpenDisk(mid) of a disk frozen once", err, hypervisor.ErrInvalidState)
	base := openLayer(t, src, "vm", hypervisor.DiskBase)

	big := spec("vm")
	big.VCPUs, big.MemoryMiB, big.DiskGiB = 2, 256, 3
	wantErr(t, "mid with nothing staged", dst.ReceiveDisk(ctx, big, hypervisor.DiskMid, bytes.NewReader(nil)), hypervisor.ErrInvalidState)
	must(t, dst.ReceiveDisk(ctx, big, hypervisor.DiskBase, bytes.NewReader(base)))

	must(t, src.WriteDisk("vm", 200000, []byte("pattern two")))
	must(t, src.RefreezeDisk(ctx, "vm"))
	must(t, src.RefreezeDisk(ctx, "vm")) // idempotent
	if info, _ := src.DiskState("vm"); !info.Frozen || !info.Refrozen {
		t.Fatalf("DiskState after RefreezeDisk = %+v", info)
	}
	mid := openLayer(t, src, "vm", hypervisor.DiskMid) // while it runs
	if len(mid) > 2*topBlock {
		t.Errorf("mid of one small write is %d bytes", len(mid))
	}
	_, _, err = src.OpenDisk(ctx, "vm", hypervisor.DiskTop)
	wantErr(t, "OpenDisk(top) while running", err, hypervisor.ErrInvalidState)
	wantErr(t, "garbage mid", dst.ReceiveDisk(ctx, big, hypervisor.DiskMid, bytes.NewReader([]byte("garbage"))), hypervisor.ErrInvalidSpec)
	must(t, dst.ReceiveDisk(ctx, big, hypervisor.DiskMid, bytes.NewReader(mid)))
	must(t, dst.ReceiveDisk(ctx, big, hypervisor.DiskMid, bytes.NewReader(mid))) // a retry is harmless
	if st, ok := dst.Staged("vm"); !ok || !st.Mid || st.Top || !bytes.Contains(st.Disk, []byte("pattern two")) {
		t.Fatalf("Staged after the mid = %+v, %v", st.Mid, ok)
	}

	must(t, src.WriteDisk("vm", 400000, []byte("pattern three")))
	if got := openLayer(t, src, "vm", hypervisor.DiskMid); !bytes.Equal(got, mid) {
		t.Fatal("the mid changed after the refreeze")
	}
	if got := openLayer(t, src, "vm", hypervisor.DiskBase); !bytes.Equal(got, base) {
		t.Fatal("the base changed after the refreeze")
	}
	must(t, src.Shutdown(ctx, "vm", 0, true))
	top := openLayer(t, src, "vm", hypervisor.DiskTop)
	if len(top) > 2*topBlock {
		t.Errorf("top of one small write is %d bytes", len(top))
	}
	must(t, dst.ReceiveDisk(ctx, big, hypervisor.DiskTop, bytes.NewReader(top)))
	must(t, dst.ReceiveDisk(ctx, big, hypervisor.DiskMid, bytes.NewReader(mid))) // a late retry of the mid
	must(t, dst.ReceiveDisk(ctx, big, hypervisor.DiskTop, bytes.NewReader(top)))
	must(t, dst.AdoptDisk(ctx, big))

	want, _ := src.Disk("vm")
	got, _ := dst.Disk("vm")
	if !bytes.Equal(got, want) {
		t.Fatal("adopted disk differs from the source's")
	}
	for _, p := range []string{"pattern one", "pattern two", "pattern three"} {
		if !bytes.Contains(got, []byte(p)) {
			t.Errorf("adopted disk lacks %q", p)
		}
	}

	// Revert: the shut-off source thaws with every write kept.
	must(t, src.ThawDisk(ctx, "vm"))
	must(t, src.ThawDisk(ctx, "vm"))
	if info, _ := src.DiskState("vm"); info.Frozen || info.Refrozen {
		t.Fatalf("DiskState after ThawDisk = %+v", info)
	}
	if got, _ := src.Disk("vm"); !bytes.Equal(got, want) {
		t.Fatal("thaw lost writes")
	}
	wantErr(t, "RefreezeDisk after thaw", src.RefreezeDisk(ctx, "vm"), hypervisor.ErrInvalidState)
}

// TestReceiveMidOverAnotherBase: a mid is checked against the staged base
// as a top is, and a failed one changes nothing staged.
func TestReceiveMidOverAnotherBase(t *testing.T) {
	ctx := context.Background()
	src := inState(t, hypervisor.PowerRunning)
	dst := New(Options{Images: []string{"img"}})
	s := spec("in")
	must(t, src.FreezeDisk(ctx, "vm"))
	must(t, src.WriteDisk("vm", 0, []byte("mid")))
	must(t, src.RefreezeDisk(ctx, "vm"))
	mid := openLayer(t, src, "vm", hypervisor.DiskMid)

	other := DiskContent("other", 1000)
	must(t, dst.ReceiveDisk(ctx, s, hypervisor.DiskBase, bytes.NewReader(other)))
	wantErr(t, "foreign mid", dst.ReceiveDisk(ctx, s, hypervisor.DiskMid, bytes.NewReader(mid)), hypervisor.ErrInvalidSpec)
	if st, _ := dst.Staged("in"); st.Mid || !bytes.Equal(st.Disk, other) {
		t.Fatal("a refused mid changed what is staged")
	}
	// A new base drops the merged mid; Delete drops everything.
	must(t, dst.ReceiveDisk(ctx, s, hypervisor.DiskBase, bytes.NewReader(openLayer(t, src, "vm", hypervisor.DiskBase))))
	must(t, dst.ReceiveDisk(ctx, s, hypervisor.DiskMid, bytes.NewReader(mid)))
	must(t, dst.ReceiveDisk(ctx, s, hypervisor.DiskBase, bytes.NewReader(other)))
	if st, _ := dst.Staged("in"); st.Mid {
		t.Fatal("a new base kept the mid")
	}
	must(t, dst.Delete(ctx, "in"))
	if _, ok := dst.Staged("in"); ok {
		t.Fatal("Delete left a staged disk")
	}
}

func TestRefreezeThawStates(t *testing.T) {
	ctx := context.Background()
	for _, s := range []hypervisor.PowerState{hypervisor.PowerPaused, hypervisor.PowerSavedToDisk, hypervisor.PowerCrashed} {
		d := inState(t, s)
		wantErr(t, "RefreezeDisk of an unfrozen disk while "+string(s), d.RefreezeDisk(ctx, "vm"), hypervisor.ErrInvalidState)
	}
	d := inState(t, hypervisor.PowerNoDomain)
	wantErr(t, "RefreezeDisk of a missing domain", d.RefreezeDisk(ctx, "vm"), hypervisor.ErrNotFound)

	// Frozen while running, then paused: no refreeze; resumed: yes.
	d = inState(t, hypervisor.PowerRunning)
	must(t, d.FreezeDisk(ctx, "vm"))
	must(t, d.WriteDisk("vm", 0, []byte("mid")))
	must(t, d.Pause(ctx, "vm"))
	wantErr(t, "RefreezeDisk while paused", d.RefreezeDisk(ctx, "vm"), hypervisor.ErrInvalidState)
	must(t, d.Resume(ctx, "vm"))
	must(t, d.RefreezeDisk(ctx, "vm"))
	must(t, d.WriteDisk("vm", 10, []byte("top")))
	must(t, d.Pause(ctx, "vm"))
	must(t, d.RefreezeDisk(ctx, "vm")) // refrozen already: success in any state
	wantErr(t, "ThawDisk while paused", d.ThawDisk(ctx, "vm"), hypervisor.ErrInvalidState)
	must(t, d.Resume(ctx, "vm"))
	// Rollback while running: thaw keeps the mid's and the top's writes.
	must(t, d.ThawDisk(ctx, "vm"))
	if got, _ := d.Disk("vm"); !bytes.HasPrefix(got, []byte("mid")) || !bytes.Equal(got[10:13], []byte("top")) {
		t.Fatal("thaw lost the mid's or the top's write")
	}
	if info, _ := d.DiskState("vm"); info.Frozen || info.Refrozen {
		t.Fatalf("DiskState after ThawDisk = %+v", info)
	}
	// Shut off: refreeze makes a new overlay too.
	d = inState(t, hypervisor.PowerShutOff)
	must(t, d.FreezeDisk(ctx, "vm"))
	must(t, d.RefreezeDisk(ctx, "vm"))
	if info, _ := d.DiskState("vm"); !info.Refrozen {
		t.Fatal("a shut-off disk was not refrozen")
	}
	_ = openLayer(t, d, "vm", hypervisor.DiskTop)
	_ = openLayer(t, d, "vm", hypervisor.DiskMid)
}

func TestRefreezeFaultAfter(t *testing.T) {
	ctx := context.Background()
	d := inState(t, hypervisor.PowerRunning)
	must(t, d.FreezeDisk(ctx, "vm"))
	lost := errors.New("reply lost")
	d.InjectFaultAfter("RefreezeDisk", lost, 1)
	wantErr(t, "RefreezeDisk with a lost reply", d.RefreezeDisk(ctx, "vm"), lost)
	if info, _ := d.DiskState("vm"); !info.Refrozen {
		t.Fatal("the RefreezeDisk whose reply was lost did not refreeze")
	}
	must(t, d.WriteDisk("vm", 0, []byte("top")))
	mid := openLayer(t, d, "vm", hypervisor.DiskMid)
	must(t, d.RefreezeDisk(ctx, "vm")) // the retry adds no layer
	if got := openLayer(t, d, "vm", hypervisor.DiskMid); !bytes.Equal(got, mid) {
		t.Fatal("a retried RefreezeDisk changed the mid")
	}
	d.InjectFault("RefreezeDisk", hypervisor.ErrUnavailable, 1)
	wantErr(t, "RefreezeDisk with a fault before", d.RefreezeDisk(ctx, "vm"), hypervisor.ErrUnavailable)
}
