package session_test

import (
	"testing"
	"time"

	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

func (s *testSession) imageTask(task *agentv1.ImageTask) {
	s.out <- &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_ImageTask{ImageTask: task}}
}

// imageReport waits for an image report matching ok.
func (s *testSession) imageReport(t testing.TB, ok func(*agentv1.ImageReport) bool) *agentv1.ImageReport {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case r := <-s.images:
			if ok(r) {
				return r
			}
		case <-timeout:
			t.Fatal("no matching image report")
			return nil
		}
	}
}

// The registration lists the host's images; each image task ends in a
// report: the image held, removed, or the task's fault.
func TestImageTasksAreReported(t *testing.T) {
	drv := newFake()
	coord := newTestCoordinator(t, time.Second, time.Hour)
	startAgent(t, coord.Addr(), drv, t.TempDir())
	s := coord.nextSession(t)
	if reg := s.register; !reg.GetImagesListed() || len(reg.GetImages()) != 1 || reg.GetImages()[0].GetName() != "flotilla-test" || reg.GetImages()[0].GetSha256() == "" {
		t.Fatalf("registration's images: %v (listed %v)", reg.GetImages(), reg.GetImagesListed())
	}
	for _, c := range []struct {
		name string
		task *agentv1.ImageTask
		ok   func(*agentv1.ImageReport) bool
	}{
		{"adopt", &agentv1.ImageTask{Name: "new", Path: "uploads/new.raw"}, func(r *agentv1.ImageReport) bool {
			return len(r.GetImages()) == 1 && r.GetImages()[0].GetName() == "new" && !r.GetFull()
		}},
		{"adopt out of the directory", &agentv1.ImageTask{Name: "evil", Path: "../etc/shadow"}, func(r *agentv1.ImageReport) bool {
			return len(r.GetFailures()) == 1 && r.GetFailures()[0].GetName() == "evil" && r.GetFailures()[0].GetFault().GetCode() == "INVALID_DISK"
		}},
		{"adopt over an image", &agentv1.ImageTask{Name: "new", Path: "uploads/other.raw"}, func(r *agentv1.ImageReport) bool {
			return len(r.GetFailures()) == 1 && r.GetFailures()[0].GetFault().GetCode() == "IMAGE_EXISTS"
		}},
		{"remove", &agentv1.ImageTask{Name: "new", Remove: true}, func(r *agentv1.ImageReport) bool {
			return len(r.GetRemoved()) == 1 && r.GetRemoved()[0] == "new"
		}},
		{"fetch without a peer service", &agentv1.ImageTask{Name: "far", PeerHostId: "h2", PeerAddress: "10.0.0.2:7450"}, func(r *agentv1.ImageReport) bool {
			return len(r.GetFailures()) == 1 && r.GetFailures()[0].GetFault().GetCode() == "PEER_UNAVAILABLE"
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s.imageTask(c.task)
			s.imageReport(t, c.ok)
		})
	}
}
