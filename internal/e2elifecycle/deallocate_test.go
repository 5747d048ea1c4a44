package e2elifecycle

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestDeallocateOnRealLibvirt: on a host with room for one guest, a
// running instance's deallocate is refused (stop first); a stopped one's
// undefines its domain, keeps its disk and frees the room, which another
// instance then takes; its start is refused while the host is full and,
// once there is room again, brings the guest back on the same host.
func TestDeallocateOnRealLibvirt(t *testing.T) {
	// Room for exactly one 1-vCPU guest: no vCPU overcommit (the default places 4 per CPU).
	e := newEnv(t, []string{"--cpu-overcommit=1"}, []string{"--vcpus", "1"})
	a := e.create("lc2-dealloc-a", "")
	e.waitGuestReady(a, 1)

	_, err := e.g.Call("flotilla.v1.InstanceService/DeallocateInstance", map[string]any{"id": a})
	if ce, ok := err.(*testenv.CallError); !ok || ce.Code != codes.FailedPrecondition {
		t.Fatalf("deallocate of a running instance: %v", err)
	}
	e.mustSucceed(e.do("StopInstance", map[string]any{"id": a, "gracefulTimeout": "30s", "force": true}))
	op := e.do("DeallocateInstance", map[string]any{"id": a})
	e.mustSucceed(op)
	if got := testenv.Str(op, "kind"); got != "OPERATION_KIND_DEALLOCATE" {
		t.Fatalf("kind %s", got)
	}
	e.waitStatus(a, "STATUS_DEALLOCATED", 30*time.Second)
	if s := domstate(t, a); s != "missing" {
		t.Fatalf("domain after deallocate: %s", s)
	}
	if !exists(e.disk(a)) {
		t.Fatal("the disk went with the domain")
	}
	if got := e.word(a, "VOCABULARY_AZURE"); got != "deallocated" {
		t.Fatalf("azure says %q", got)
	}

	// The room is free: another instance takes it.
	b := e.create("lc2-dealloc-b", "")
	if _, err := e.g.Call("flotilla.v1.InstanceService/StartInstance", map[string]any{"id": a}); err == nil {
		t.Fatal("start of the deallocated instance on a full host was accepted")
	}
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": b}))

	// Room again: the start defines it on the same host and boots it.
	op = e.do("StartInstance", map[string]any{"id": a})
	e.mustSucceed(op)
	e.waitStatus(a, "STATUS_RUNNING", 30*time.Second)
	if got := testenv.Str(e.instance(a), "hostId"); got != e.host {
		t.Fatalf("started on %q, want %q", got, e.host)
	}
	e.waitGuestReady(a, 2)
}
