package fsm

import (
	"errors"
	"testing"

	"github.com/flotilla-vm/flotilla/internal/fieldfill"
)

func init() {
	bodies[TypeRemoveHost] = func(t testing.TB) any { return fieldfill.New[RemoveHost](t) }
}

// A host is removed only once its agent is gone and nothing is placed on it.
func TestRemoveHost(t *testing.T) {
	h := newHarness(t)
	h.mustApply(TypeSetLogVersion, SetLogVersion{Version: LogVersion6})
	epoch := h.register("h1", 4, 4096)
	h.register("h2", 4, 4096)
	if r := h.create("i1", "h1", 1, 64, ""); r.Err != nil {
		t.Fatal(r.Err)
	}
	for _, c := range []struct {
		host string
		want error
	}{{"h1", ErrConflict}, {"nope", ErrNotFound}} {
		if r := h.apply(TypeRemoveHost, RemoveHost{HostID: c.host}); !errors.Is(r.Err, c.want) {
			t.Fatalf("remove %s: %v, want %v", c.host, r.Err, c.want)
		}
	}
	h.mustApply(TypeDisconnectHost, DisconnectHost{HostID: "h1", Epoch: epoch, Down: true})
	if r := h.apply(TypeRemoveHost, RemoveHost{HostID: "h1"}); !errors.Is(r.Err, ErrInUse) {
		t.Fatalf("remove h1 with an instance on it: %v", r.Err)
	}
	if _, err := h.store.Host("h1"); err != nil {
		t.Fatalf("a refused removal removed the host: %v", err)
	}
	h2, _ := h.store.Host("h2")
	h.mustApply(TypeDisconnectHost, DisconnectHost{HostID: "h2", Epoch: h2.Epoch})
	h.mustApply(TypeRemoveHost, RemoveHost{HostID: "h2"})
	if _, err := h.store.Host("h2"); err == nil {
		t.Fatal("h2 is still recorded")
	}
	// Registering again makes a new host.
	h.register("h2", 4, 4096)
	if _, err := h.store.Host("h2"); err != nil {
		t.Fatal(err)
	}
}
