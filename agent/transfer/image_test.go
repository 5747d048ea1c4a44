package transfer

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/flotilla-vm/flotilla/hypervisor/fake"
)

func images(t *testing.T, d *fake.Driver) map[string]string {
	t.Helper()
	list, err := d.Images(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, im := range list {
		out[im.Name] = im.SHA256
	}
	return out
}

// An image travels from a host that holds it to one that does not,
// verified, with the checksum the catalogue knows; a wrong checksum or an
// image the source lacks fails, and nothing is left on the target.
func TestFetchImage(t *testing.T) {
	src, dst := newNode(t, "host-a", nodeOpts{}), newNode(t, "host-b", nodeOpts{})
	ctx := ctxT(t)
	if err := src.drv.AdoptImage(ctx, "uploads/debian.qcow2", "debian-12"); err != nil {
		t.Fatal(err)
	}
	sum := images(t, src.drv)["debian-12"]
	if sum == "" {
		t.Fatal("the source does not list its image")
	}

	if err := dst.tr.FetchImage(ctx, "missing", "", src.host, src.addr); !hasCode(err, codes.NotFound) {
		t.Errorf("fetch of an image the source lacks: %v, want NotFound", err)
	}
	if err := dst.tr.FetchImage(ctx, "debian-12", "00"+sum[2:], src.host, src.addr); err == nil {
		t.Error("a fetch whose copy has another checksum succeeded")
	}
	if _, ok := images(t, dst.drv)["debian-12"]; ok {
		t.Fatal("a refused copy was kept")
	}
	if err := dst.tr.FetchImage(ctx, "debian-12", sum, src.host, src.addr); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if got := images(t, dst.drv)["debian-12"]; got != sum {
		t.Fatalf("target's copy has checksum %q, want %q", got, sum)
	}
	// Held already: no pull at all.
	before := src.drv.Calls("OpenImage")
	if err := dst.tr.FetchImage(ctx, "debian-12", sum, src.host, src.addr); err != nil || src.drv.Calls("OpenImage") != before {
		t.Fatalf("second fetch: %v, opened the source's image %d times more", err, src.drv.Calls("OpenImage")-before)
	}
	if err := dst.tr.FetchImage(ctx, "../x", "", src.host, src.addr); err == nil {
		t.Error("an image name with a path was pulled")
	}
}
