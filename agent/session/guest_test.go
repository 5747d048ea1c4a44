package session_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/agent/guestchan"
	"github.com/flotilla-vm/flotilla/agent/session"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// The session sends what guests say: changes as they come, and after a
// new Register every guest's current report.
func TestGuestReportsReachTheCoordinator(t *testing.T) {
	drv := newFake()
	mustCreate(t, drv, "vm-1")
	dir, err := os.MkdirTemp("/tmp", "gcs-") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "vm-1.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	drv.SetGuestSocket("vm-1", sock)

	guests := guestchan.New(guestchan.Config{Sockets: drv})
	defer guests.Close()
	coord := newTestCoordinator(t, 50*time.Millisecond, time.Hour)
	startAgent(t, coord.Addr(), drv, t.TempDir(), func(c *session.Config) { c.Guests = guests })
	s := coord.nextSession(t)

	conn, err := lis.Accept() // the watcher learnt of vm-1 from the Register's inventory
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "HELLO flotilla-guest/1 t\nBOOT network\nREADY\n")
	is := func(st agentv1.GuestState) func(*agentv1.GuestReport) bool {
		return func(r *agentv1.GuestReport) bool { return r.GetInstanceId() == "vm-1" && r.GetState() == st }
	}
	r := s.guest(t, is(agentv1.GuestState_GUEST_STATE_READY))
	if r.GetStage() != "network" || r.GetGuestVersion() != "t" || r.GetObservedAt() == nil {
		t.Fatalf("report %v", r)
	}

	// A new coordinator session hears the current report after Register.
	coord.restart()
	s = coord.nextSession(t)
	s.guest(t, is(agentv1.GuestState_GUEST_STATE_READY))

	// The domain powers off: its guest's report is void.
	if err := drv.Destroy(context.Background(), "vm-1"); err != nil {
		t.Fatal(err)
	}
	s.guest(t, is(agentv1.GuestState_GUEST_STATE_UNSPECIFIED))
}
