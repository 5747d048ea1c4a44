package fsm

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/internal/fieldfill"
)

func init() {
	bodies[TypeImportImage] = func(t testing.TB) any { return fieldfill.New[ImportImage](t) }
	bodies[TypeDeleteImage] = func(t testing.TB) any { return fieldfill.New[DeleteImage](t) }
	bodies[TypeImagesHeld] = func(t testing.TB) any { return fieldfill.New[ImagesHeld](t) }
}

// newCatalogueHarness is a cluster at log version 11 with hosts h1 and h2
// (both serving other agents), h1 holding image "img".
func newCatalogueHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.mustApply(TypeSetLogVersion, SetLogVersion{Version: LogVersion11})
	for _, id := range []string{"h1", "h2", "h3"} {
		h.mustApply(TypeRegisterHost, RegisterHost{Host: state.Host{ID: id, Kind: "fake", PeerAddr: id + ":7450",
			Capacity: state.Resources{VCPUs: 4, MemoryMiB: 4096, DiskGiB: 100}}})
	}
	h.held("h1", true, "img")
	h.held("h2", true) // an agent of the catalogue that holds none; h3's is older and never lists
	return h
}

// held records that host holds images (full: and no other).
func (h *harness) held(host string, full bool, images ...string) {
	h.t.Helper()
	c := ImagesHeld{HostID: host, Full: full}
	for _, n := range images {
		c.Images = append(c.Images, ImageFile{Name: n, Format: "qcow2", VirtualSize: 1 << 30, AllocatedSize: 1 << 20, SHA256: "sum-" + n})
	}
	h.mustApply(TypeImagesHeld, c)
}

func (h *harness) catalogued(name string) (state.Image, bool) {
	h.t.Helper()
	im, err := h.store.Image(name)
	return im, err == nil
}

func TestImageCommandsNeedLogVersion11(t *testing.T) {
	for typ, body := range map[string]any{TypeImportImage: ImportImage{Name: "a"}, TypeDeleteImage: DeleteImage{Name: "a"}, TypeImagesHeld: ImagesHeld{HostID: "h"}} {
		cmd, err := Encode(typ, t0, body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Downgrade(cmd, LogVersion9); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s at version 9: %v", typ, err)
		}
		if _, err := Downgrade(cmd, LogVersion11); err != nil {
			t.Errorf("%s at version 11: %v", typ, err)
		}
	}
}

// What hosts report is what the catalogue says they hold: a full report
// drops what a host no longer has; an image nobody holds stays listed
// (FAILED) until deleted, but one being deleted goes with its last copy.
func TestImagesHeldFollowsReports(t *testing.T) {
	h := newCatalogueHarness(t)
	h.held("h2", false, "img", "other")
	im, _ := h.catalogued("img")
	if !slices.Equal(im.Hosts, []string{"h1", "h2"}) || im.SHA256 != "sum-img" || im.Status() != state.ImageAvailable || im.CreateTime.IsZero() {
		t.Fatalf("img: %+v", im)
	}
	h.held("h2", true, "other")
	if im, _ := h.catalogued("img"); !slices.Equal(im.Hosts, []string{"h1"}) {
		t.Fatalf("after h2's full report without img: %+v", im.Hosts)
	}
	h.held("h2", true)
	if im, ok := h.catalogued("other"); !ok || len(im.Hosts) != 0 || im.Status() != state.ImageFailed {
		t.Fatalf("other, held by nobody: %+v %v", im, ok)
	}
	h.mustApply(TypeDeleteImage, DeleteImage{Name: "other"})
	if _, ok := h.catalogued("other"); ok {
		t.Fatal("an image no host holds is still listed after its delete")
	}
	// A name no host could have is not catalogued.
	h.mustApply(TypeImagesHeld, ImagesHeld{HostID: "h1", Images: []ImageFile{{Name: "../etc"}}})
	if _, ok := h.catalogued("../etc"); ok {
		t.Fatal("an invalid name was catalogued")
	}
}

func TestImportImageRules(t *testing.T) {
	for _, c := range []struct {
		name string
		imp  ImportImage
		want error // nil: accepted
	}{
		{"from a file", ImportImage{Name: "new", Import: state.ImageImport{HostID: "h2", Path: "uploads/new.qcow2"}}, nil},
		{"from a holder", ImportImage{Name: "img", Import: state.ImageImport{HostID: "h2", FromHost: "h1"}}, nil},
		{"neither", ImportImage{Name: "new", Import: state.ImageImport{HostID: "h2"}}, ErrInvalid},
		{"both", ImportImage{Name: "img", Import: state.ImageImport{HostID: "h2", Path: "x", FromHost: "h1"}}, ErrInvalid},
		{"absolute path", ImportImage{Name: "new", Import: state.ImageImport{HostID: "h2", Path: "/etc/shadow"}}, ErrInvalid},
		{"path with ..", ImportImage{Name: "new", Import: state.ImageImport{HostID: "h2", Path: "uploads/../../etc/shadow"}}, ErrInvalid},
		{"bad name", ImportImage{Name: "a/b", Import: state.ImageImport{HostID: "h2", Path: "x"}}, ErrInvalid},
		{"unknown host", ImportImage{Name: "new", Import: state.ImageImport{HostID: "h9", Path: "x"}}, ErrNotFound},
		{"from a host without it", ImportImage{Name: "img", Import: state.ImageImport{HostID: "h1", FromHost: "h2"}}, ErrConflict},
		{"from itself", ImportImage{Name: "img", Import: state.ImageImport{HostID: "h1", FromHost: "h1"}}, ErrInvalid},
		{"a file onto a holder", ImportImage{Name: "img", Import: state.ImageImport{HostID: "h1", Path: "x"}}, ErrAlreadyExists},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newCatalogueHarness(t)
			r := h.apply(TypeImportImage, c.imp)
			if c.want == nil && r.Err != nil || c.want != nil && !errors.Is(r.Err, c.want) {
				t.Fatalf("import: %v, want %v", r.Err, c.want)
			}
			if c.want != nil {
				return
			}
			im, _ := h.catalogued(c.imp.Name)
			if len(im.Imports) != 1 || im.Imports[0].HostID != "h2" {
				t.Fatalf("import not recorded: %+v", im)
			}
		})
	}
}

// An import ends when the host reports the image, or fails with the
// host's fault; an image nothing holds then shows the fault.
func TestImportImageEnds(t *testing.T) {
	h := newCatalogueHarness(t)
	h.mustApply(TypeImportImage, ImportImage{Name: "new", Import: state.ImageImport{HostID: "h2", Path: "uploads/new.qcow2"}})
	if im, _ := h.catalogued("new"); im.Status() != state.ImageImporting {
		t.Fatalf("while importing: %s", im.Status())
	}
	h.mustApply(TypeImagesHeld, ImagesHeld{HostID: "h2", Failures: []ImageFailure{{Name: "new", Fault: state.Fault{Code: "INVALID_DISK", Message: "not a disk"}}}})
	im, _ := h.catalogued("new")
	if im.Status() != state.ImageFailed || im.Fault == nil || im.Fault.Code != "INVALID_DISK" || im.Fault.HostID != "h2" || len(im.Imports) != 0 {
		t.Fatalf("after the failure: %+v", im)
	}
	h.mustApply(TypeImportImage, ImportImage{Name: "img", Import: state.ImageImport{HostID: "h2", FromHost: "h1"}})
	h.held("h2", false, "img")
	if im, _ := h.catalogued("img"); !slices.Equal(im.Hosts, []string{"h1", "h2"}) || len(im.Imports) != 0 || im.Fault != nil {
		t.Fatalf("after the copy: %+v", im)
	}
}

// An image an instance uses is not deleted, and the refusal names the
// instance; one nobody uses is removed from its hosts, then the catalogue.
func TestDeleteImageInUse(t *testing.T) {
	h := newCatalogueHarness(t)
	h.create("i", "h1", 1, 512, "")
	r := h.apply(TypeDeleteImage, DeleteImage{Name: "img"})
	if !errors.Is(r.Err, ErrInUse) || !strings.Contains(r.Err.Error(), `"i"`) && !strings.Contains(r.Err.Error(), " i") {
		t.Fatalf("delete of a used image: %v", r.Err)
	}
	h.finishAll("op-i")
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionDelete, Operation: state.Operation{ID: "op-del", InstanceID: "i", Deadline: h.now.Add(time.Hour)}})
	if r := h.apply(TypeDeleteImage, DeleteImage{Name: "img"}); !errors.Is(r.Err, ErrInUse) {
		t.Fatalf("delete while the instance's delete runs: %v", r.Err)
	}
	h.finishAll("op-del")
	h.mustApply(TypeDeleteImage, DeleteImage{Name: "img"})
	if im, _ := h.catalogued("img"); im.Status() != state.ImageDeleting {
		t.Fatalf("after the delete: %s", im.Status())
	}
	if r := h.apply(TypeImportImage, ImportImage{Name: "img", Import: state.ImageImport{HostID: "h2", FromHost: "h1"}}); !errors.Is(r.Err, ErrConflict) {
		t.Fatalf("import of an image being deleted: %v", r.Err)
	}
	h.mustApply(TypeImagesHeld, ImagesHeld{HostID: "h1", Removed: []string{"img"}})
	if _, ok := h.catalogued("img"); ok {
		t.Fatal("the image is still listed once its last copy is gone")
	}
}

// A create placed on a host without its image fetches it first, from a
// host that holds it; once fetched the host holds it. On a holder, and for
// an image the catalogue does not know, the plan is the usual one.
func TestCreateFetchesAMissingImage(t *testing.T) {
	for _, c := range []struct {
		name, host, image string
		fetch             bool
	}{
		{"host lacks it", "h2", "img", true},
		{"host holds it", "h1", "img", false},
		{"image not catalogued", "h2", "unknown", false},
		// An older agent knows no fetch step: its preflight says whether
		// it has the image, as before the catalogue.
		{"agent older than the catalogue", "h3", "img", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newCatalogueHarness(t)
			h.mustApply(TypeCreateInstance, CreateInstance{
				Instance:  state.Instance{ID: "i", Name: "i", HostID: c.host, Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: c.image}},
				Operation: state.Operation{ID: "op-i", InstanceID: "i", Deadline: h.now.Add(time.Hour)},
			})
			op := h.op("op-i")
			first := op.Steps[0]
			if got := first.Action == lifecycle.ActFetchImage; got != c.fetch {
				t.Fatalf("first step %s, want a fetch: %v", first.Action, c.fetch)
			}
			if !c.fetch {
				return
			}
			if op.ImageSource != "h1" || first.OnTarget || !first.Irreversible && first.Undo != nil {
				t.Fatalf("fetch step %+v from %q", first, op.ImageSource)
			}
			h.running("op-i")
			if im, _ := h.catalogued("img"); !slices.Equal(im.Hosts, []string{"h1", "h2"}) {
				t.Fatalf("after the fetch: %+v", im.Hosts)
			}
			h.finishAll("op-i")
			if s := h.status("i"); s != lifecycle.StatusRunning {
				t.Fatalf("status %s", s)
			}
		})
	}
}

// A create that waits for capacity plans its fetch when it is placed.
func TestPlacedCreateFetchesAMissingImage(t *testing.T) {
	h := newCatalogueHarness(t)
	h.mustApply(TypeCreateInstance, CreateInstance{
		Instance:  state.Instance{ID: "i", Name: "i", Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}},
		Operation: state.Operation{ID: "op-i", InstanceID: "i", Deadline: h.now.Add(time.Hour)},
	})
	h.mustApply(TypePlace, Place{InstanceID: "i", HostID: "h2", Deadline: h.now.Add(time.Hour)})
	if op := h.op("op-i"); op.Steps[0].Action != lifecycle.ActFetchImage || op.ImageSource != "h1" {
		t.Fatalf("placed create's plan %+v from %q", op.Steps, op.ImageSource)
	}
}

// A bundle's image is in the catalogue as soon as the bundle succeeds.
func TestBundleCataloguesItsImage(t *testing.T) {
	h := newCatalogueHarness(t)
	h.create("i", "h1", 1, 512, "")
	h.finishAll("op-i")
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionStop, Operation: state.Operation{ID: "op-stop", InstanceID: "i", Deadline: h.now.Add(time.Hour)}})
	h.finishAs("op-stop", "i", lifecycle.PowerShutOff)
	h.mustApply(TypeInstanceAction, InstanceAction{Action: lifecycle.ActionBundle, Operation: state.Operation{ID: "op-b", InstanceID: "i", Deadline: h.now.Add(time.Hour), Image: "snap"}})
	h.finishAs("op-b", "i", lifecycle.PowerShutOff)
	im, ok := h.catalogued("snap")
	if !ok || !slices.Equal(im.Hosts, []string{"h1"}) || im.Status() != state.ImageAvailable {
		t.Fatalf("bundle's image: %+v %v", im, ok)
	}
}

// The catalogue survives a snapshot, in the protobuf format and in the
// JSON one (state.View.Write).
func TestCatalogueSnapshot(t *testing.T) {
	h := newCatalogueHarness(t)
	h.mustApply(TypeImportImage, ImportImage{Name: "img", Import: state.ImageImport{HostID: "h2", FromHost: "h1"}})
	h.mustApply(TypeImportImage, ImportImage{Name: "bad", Import: state.ImageImport{HostID: "h2", Path: "x"}})
	h.mustApply(TypeImagesHeld, ImagesHeld{HostID: "h2", Failures: []ImageFailure{{Name: "bad", Fault: state.Fault{Code: "INVALID_DISK"}}}})
	want, _ := h.store.Images()

	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t)
	if err := h2.fsm.Restore(nopCloser{&sink.buf}); err != nil {
		t.Fatal(err)
	}
	if got, _ := h2.store.Images(); !reflect.DeepEqual(got, want) {
		t.Fatalf("protobuf snapshot: images\n%+v\nwant\n%+v", got, want)
	}

	var buf bytes.Buffer
	if err := h.store.View().Write(&buf); err != nil {
		t.Fatal(err)
	}
	s3 := state.New(0)
	if err := s3.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got, _ := s3.Images(); !reflect.DeepEqual(got, want) {
		t.Fatalf("JSON snapshot: images\n%+v\nwant\n%+v", got, want)
	}
}

// A removed host's copies leave the catalogue with it.
func TestRemovedHostLeavesTheCatalogue(t *testing.T) {
	h := newCatalogueHarness(t)
	h.held("h2", false, "img")
	h.mustApply(TypeDeleteImage, DeleteImage{Name: "img"})
	h.mustApply(TypeDisconnectHost, DisconnectHost{HostID: "h1", Epoch: 1})
	h.mustApply(TypeRemoveHost, RemoveHost{HostID: "h1"})
	if im, _ := h.catalogued("img"); !slices.Equal(im.Hosts, []string{"h2"}) || im.Status() != state.ImageDeleting {
		t.Fatalf("after h1's removal: %+v", im)
	}
	h.mustApply(TypeDisconnectHost, DisconnectHost{HostID: "h2", Epoch: 1})
	h.mustApply(TypeRemoveHost, RemoveHost{HostID: "h2"})
	if _, ok := h.catalogued("img"); ok {
		t.Fatal("an image being deleted outlived its last host")
	}
}
