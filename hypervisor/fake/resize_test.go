package fake

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/flotilla-vm/flotilla/hypervisor"
)

func openLayer(t *testing.T, d *Driver, id string, layer hypervisor.DiskLayer) []byte {
	t.Helper()
	rc, size, err := d.OpenDisk(context.Background(), id, layer)
	if err != nil {
		t.Fatalf("OpenDisk(%s, %q): %v", id, layer, err)
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

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", what, err, want)
	}
}

// TestResizeToAnotherHost runs the coordinator's plan for a running guest:
// freeze, copy the base while it runs, stop, copy the top, adopt, start.
func TestResizeToAnotherHost(t *testing.T) {
	ctx := context.Background()
	src := inState(t, hypervisor.PowerRunning)
	dst := New(Options{Images: []string{"img"}})
	must(t, src.WriteDisk("vm", 100, []byte("before the freeze")))

	must(t, src.FreezeDisk(ctx, "vm"))
	must(t, src.FreezeDisk(ctx, "vm")) // idempotent
	if info, _ := src.DiskState("vm"); !info.Frozen {
		t.Fatal("not frozen after FreezeDisk")
	}
	_, _, err := src.OpenDisk(ctx, "vm", hypervisor.DiskTop)
	wantErr(t, "OpenDisk(top) while running", err, hypervisor.ErrInvalidState)
	base := openLayer(t, src, "vm", hypervisor.DiskBase) // while it runs

	big := spec("vm")
	big.VCPUs, big.MemoryMiB, big.DiskGiB = 2, 256, 3
	must(t, dst.ReceiveDisk(ctx, big, hypervisor.DiskBase, bytes.NewReader(base)))
	must(t, dst.ReceiveDisk(ctx, big, hypervisor.DiskBase, bytes.NewReader(base))) // a retry replaces it

	must(t, src.WriteDisk("vm", 300000, []byte("after the freeze")))
	must(t, src.WriteDisk("vm", 100, []byte("BEFORE")))
	if got := openLayer(t, src, "vm", hypervisor.DiskBase); !bytes.Equal(got, base) {
		t.Fatal("the base changed after the freeze")
	}
	must(t, src.Shutdown(ctx, "vm", 0, true))
	_, _, err = src.OpenDisk(ctx, "vm", hypervisor.DiskWhole)
	wantErr(t, "OpenDisk(whole) of a frozen disk", err, hypervisor.ErrInvalidState)
	top := openLayer(t, src, "vm", hypervisor.DiskTop)
	if len(top) > 3*topBlock {
		t.Errorf("top of two small writes is %d bytes", len(top))
	}
	must(t, dst.ReceiveDisk(ctx, big, hypervisor.DiskTop, bytes.NewReader(top)))
	must(t, dst.ReceiveDisk(ctx, big, hypervisor.DiskTop, bytes.NewReader(top)))
	if st, ok := dst.Staged("vm"); !ok || !st.Top || st.Layer != hypervisor.DiskBase {
		t.Fatalf("Staged = %+v, %v", st, ok)
	}

	must(t, dst.AdoptDisk(ctx, big))
	must(t, dst.AdoptDisk(ctx, big)) // idempotent
	if _, ok := dst.Staged("vm"); ok {
		t.Fatal("still staged after AdoptDisk")
	}
	if st := state(t, dst, "vm"); st != hypervisor.PowerShutOff {
		t.Fatalf("adopted domain is %s", st)
	}
	want, _ := src.Disk("vm")
	if got, _ := dst.Disk("vm"); !bytes.Equal(got, want) {
		t.Fatal("adopted disk differs from the source's")
	}
	if info, _ := dst.DiskState("vm"); info.Size != 3<<30 || info.Frozen {
		t.Fatalf("adopted disk %+v, want 3 GiB unfrozen", info)
	}
	if s, _ := dst.Spec("vm"); !sameShape(s, big) {
		t.Fatalf("adopted spec %+v", s)
	}
	must(t, dst.Start(ctx, "vm"))
	wantErr(t, "AdoptDisk of a running adopted domain", dst.AdoptDisk(ctx, big), hypervisor.ErrAlreadyExists)
	wantErr(t, "ReceiveDisk over a defined domain", dst.ReceiveDisk(ctx, big, hypervisor.DiskBase, bytes.NewReader(base)), hypervisor.ErrAlreadyExists)

	// Revert: the source thaws its shut-off disk and boots it with every write.
	must(t, src.ThawDisk(ctx, "vm"))
	must(t, src.ThawDisk(ctx, "vm"))
	if got, _ := src.Disk("vm"); !bytes.Equal(got, want) {
		t.Fatal("thaw lost writes")
	}
	if got := openLayer(t, src, "vm", hypervisor.DiskWhole); !bytes.Equal(got, want) {
		t.Fatal("whole disk after thaw differs")
	}
	_, _, err = src.OpenDisk(ctx, "vm", hypervisor.DiskBase)
	wantErr(t, "OpenDisk(base) after thaw", err, hypervisor.ErrInvalidState)
}

func TestReceiveDiskRefusals(t *testing.T) {
	ctx := context.Background()
	src := inState(t, hypervisor.PowerShutOff)
	dst := New(Options{Images: []string{"img"}, MaxImportBytes: 1 << 20})
	s := spec("in")

	wantErr(t, "top with nothing staged", dst.ReceiveDisk(ctx, s, hypervisor.DiskTop, bytes.NewReader(nil)), hypervisor.ErrInvalidState)
	wantErr(t, "AdoptDisk with nothing staged", dst.AdoptDisk(ctx, s), hypervisor.ErrInvalidState)
	wantErr(t, "unknown layer", dst.ReceiveDisk(ctx, s, "middle", bytes.NewReader(nil)), hypervisor.ErrInvalidSpec)
	bad := s
	bad.ID = "../in"
	wantErr(t, "bad id", dst.ReceiveDisk(ctx, bad, hypervisor.DiskBase, bytes.NewReader(nil)), hypervisor.ErrInvalidSpec)
	wantErr(t, "too large", dst.ReceiveDisk(ctx, s, hypervisor.DiskBase, bytes.NewReader(make([]byte, 1<<20+1))), hypervisor.ErrInvalidSpec)
	err := dst.ReceiveDisk(ctx, s, hypervisor.DiskBase, iotest.ErrReader(io.ErrUnexpectedEOF))
	wantErr(t, "failing reader", err, io.ErrUnexpectedEOF)
	if _, ok := dst.Staged("in"); ok {
		t.Fatal("a failed ReceiveDisk staged something")
	}

	whole := openLayer(t, src, "vm", hypervisor.DiskWhole)
	must(t, dst.ReceiveDisk(ctx, s, hypervisor.DiskWhole, bytes.NewReader(whole)))
	wantErr(t, "garbage top over a whole disk", dst.ReceiveDisk(ctx, s, hypervisor.DiskTop, bytes.NewReader(nil)), hypervisor.ErrInvalidSpec)

	// A top made over another base is refused, and so is garbage.
	must(t, src.FreezeDisk(ctx, "vm"))
	must(t, dst.ReceiveDisk(ctx, s, hypervisor.DiskBase, bytes.NewReader(DiskContent("other", 1000))))
	top := openLayer(t, src, "vm", hypervisor.DiskTop)
	wantErr(t, "foreign top", dst.ReceiveDisk(ctx, s, hypervisor.DiskTop, bytes.NewReader(top)), hypervisor.ErrInvalidSpec)
	wantErr(t, "garbage top", dst.ReceiveDisk(ctx, s, hypervisor.DiskTop, bytes.NewReader([]byte("garbage"))), hypervisor.ErrInvalidSpec)
	forged := append([]byte(nil), top...)
	forged = append(forged, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100) // a block past the end
	must(t, dst.ReceiveDisk(ctx, s, hypervisor.DiskBase, bytes.NewReader(openLayer(t, src, "vm", hypervisor.DiskBase))))
	wantErr(t, "truncated top", dst.ReceiveDisk(ctx, s, hypervisor.DiskTop, bytes.NewReader(forged)), hypervisor.ErrInvalidSpec)
	must(t, dst.ReceiveDisk(ctx, s, hypervisor.DiskTop, bytes.NewReader(top)))

	// Delete removes what is staged even with no domain.
	must(t, dst.Delete(ctx, "in"))
	if _, ok := dst.Staged("in"); ok {
		t.Fatal("Delete left a staged disk")
	}
	wantErr(t, "AdoptDisk after Delete", dst.AdoptDisk(ctx, s), hypervisor.ErrInvalidState)
}

func TestFreezeThawStates(t *testing.T) {
	ctx := context.Background()
	for _, s := range []hypervisor.PowerState{hypervisor.PowerPaused, hypervisor.PowerSavedToDisk, hypervisor.PowerCrashed} {
		d := inState(t, s)
		wantErr(t, "FreezeDisk while "+string(s), d.FreezeDisk(ctx, "vm"), hypervisor.ErrInvalidState)
		must(t, d.ThawDisk(ctx, "vm")) // not frozen: nothing to do
	}
	d := inState(t, hypervisor.PowerNoDomain)
	wantErr(t, "FreezeDisk of a missing domain", d.FreezeDisk(ctx, "vm"), hypervisor.ErrNotFound)
	wantErr(t, "ThawDisk of a missing domain", d.ThawDisk(ctx, "vm"), hypervisor.ErrNotFound)
	wantErr(t, "FreezeDisk of a bad id", d.FreezeDisk(ctx, "VM"), hypervisor.ErrInvalidSpec)

	// Rollback while running: thaw keeps the writes made since the freeze.
	d = inState(t, hypervisor.PowerRunning)
	must(t, d.FreezeDisk(ctx, "vm"))
	must(t, d.WriteDisk("vm", 0, []byte("top")))
	must(t, d.Pause(ctx, "vm"))
	wantErr(t, "ThawDisk while paused", d.ThawDisk(ctx, "vm"), hypervisor.ErrInvalidState)
	must(t, d.Resume(ctx, "vm"))
	must(t, d.ThawDisk(ctx, "vm"))
	if got, _ := d.Disk("vm"); !bytes.HasPrefix(got, []byte("top")) {
		t.Fatal("thaw lost the top's write")
	}
	if info, _ := d.DiskState("vm"); info.Frozen {
		t.Fatal("frozen after ThawDisk")
	}
	wantErr(t, "WriteDisk past the end", d.WriteDisk("vm", DefaultDiskSize, []byte("x")), hypervisor.ErrInvalidSpec)
}

func TestReshapeUnshape(t *testing.T) {
	ctx := context.Background()
	d := inState(t, hypervisor.PowerRunning)
	must(t, d.WriteDisk("vm", 10, []byte("data")))
	before, _ := d.Disk("vm")
	old := spec("vm")
	big := old
	big.VCPUs, big.MemoryMiB, big.DiskGiB = 4, 512, 2

	wantErr(t, "Reshape while running", d.Reshape(ctx, big), hypervisor.ErrInvalidState)
	must(t, d.Shutdown(ctx, "vm", 0, true))
	must(t, d.Reshape(ctx, big))
	must(t, d.Reshape(ctx, big))
	other := big
	other.VCPUs = 3
	wantErr(t, "Reshape to another shape with an original kept", d.Reshape(ctx, other), hypervisor.ErrInvalidState)
	if info, _ := d.DiskState("vm"); !info.OriginalKept || info.Size != 2<<30 {
		t.Fatalf("after Reshape: %+v", info)
	}
	if s, _ := d.Spec("vm"); !sameShape(s, big) {
		t.Fatalf("after Reshape: spec %+v", s)
	}
	must(t, d.Start(ctx, "vm"))
	must(t, d.WriteDisk("vm", 10, []byte("DATA")))
	wantErr(t, "Unshape while running", d.Unshape(ctx, old), hypervisor.ErrInvalidState)
	must(t, d.Shutdown(ctx, "vm", 0, true))
	must(t, d.Unshape(ctx, old))
	must(t, d.Unshape(ctx, old))
	wantErr(t, "Unshape to another shape with nothing kept", d.Unshape(ctx, big), hypervisor.ErrInvalidState)
	if got, _ := d.Disk("vm"); !bytes.Equal(got, before) {
		t.Fatal("Unshape did not restore the original byte for byte")
	}
	if info, _ := d.DiskState("vm"); info.OriginalKept || info.Size != DefaultDiskSize {
		t.Fatalf("after Unshape: %+v", info)
	}

	// Confirm: DropOriginal keeps the resized disk.
	must(t, d.Reshape(ctx, big))
	must(t, d.DropOriginal(ctx, "vm"))
	must(t, d.DropOriginal(ctx, "vm"))
	must(t, d.DropOriginal(ctx, "gone"))
	if info, _ := d.DiskState("vm"); info.OriginalKept || info.Size != 2<<30 {
		t.Fatalf("after DropOriginal: %+v", info)
	}
	wantErr(t, "Unshape after DropOriginal", d.Unshape(ctx, old), hypervisor.ErrInvalidState)
	shrink := big
	shrink.DiskGiB = 1
	wantErr(t, "Reshape to a smaller disk", d.Reshape(ctx, shrink), hypervisor.ErrInvalidSpec)
}

func TestGrowDisk(t *testing.T) {
	ctx := context.Background()
	d := inState(t, hypervisor.PowerRunning)
	must(t, d.GrowDisk(ctx, "vm", 2))
	must(t, d.GrowDisk(ctx, "vm", 2))
	if info, _ := d.DiskState("vm"); info.Size != 2<<30 {
		t.Fatalf("size %d after GrowDisk", info.Size)
	}
	if s, _ := d.Spec("vm"); s.DiskGiB != 2 {
		t.Fatalf("spec DiskGiB %d", s.DiskGiB)
	}
	wantErr(t, "GrowDisk smaller", d.GrowDisk(ctx, "vm", 1), hypervisor.ErrInvalidSpec)
	wantErr(t, "GrowDisk too large", d.GrowDisk(ctx, "vm", hypervisor.MaxDiskGiB+1), hypervisor.ErrInvalidSpec)
	must(t, d.WriteDisk("vm", 2<<30-4, []byte("end!"))) // the guest sees the new size
	must(t, d.Save(ctx, "vm"))
	wantErr(t, "GrowDisk while saved", d.GrowDisk(ctx, "vm", 3), hypervisor.ErrInvalidState)
	must(t, d.GrowDisk(ctx, "vm", 2)) // same size: success in any state
	must(t, d.Start(ctx, "vm"))
	must(t, d.Shutdown(ctx, "vm", 0, true))
	must(t, d.GrowDisk(ctx, "vm", 3))
	wantErr(t, "GrowDisk of a missing domain", d.GrowDisk(ctx, "nope", 3), hypervisor.ErrNotFound)
}

func TestInjectFaultAfter(t *testing.T) {
	ctx := context.Background()
	d := inState(t, hypervisor.PowerRunning)
	lost := errors.New("reply lost")
	d.InjectFaultAfter("FreezeDisk", lost, 1)
	wantErr(t, "FreezeDisk with a lost reply", d.FreezeDisk(ctx, "vm"), lost)
	if info, _ := d.DiskState("vm"); !info.Frozen {
		t.Fatal("the FreezeDisk whose reply was lost did not freeze")
	}
	must(t, d.FreezeDisk(ctx, "vm")) // the retry
	d.InjectFault("ThawDisk", hypervisor.ErrUnavailable, 1)
	wantErr(t, "ThawDisk with a fault before", d.ThawDisk(ctx, "vm"), hypervisor.ErrUnavailable)
	if info, _ := d.DiskState("vm"); !info.Frozen {
		t.Fatal("a ThawDisk that failed before its work thawed")
	}
	defer func() {
		if recover() == nil {
			t.Error("InjectFaultAfter of Start did not panic")
		}
	}()
	d.InjectFaultAfter("Start", lost, 1)
}
