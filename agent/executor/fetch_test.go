package executor_test

import (
	"testing"

	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

func fetchStep(op, image, peer, addr string) *agentv1.RunStep {
	s := actionStep(op, op+"/fetch-image/1", "vm-1", agentv1.StepAction_STEP_ACTION_FETCH_IMAGE)
	s.Image, s.ImageSha256, s.PeerHostId, s.PeerAddress = image, "ab12", peer, addr
	return s
}

// A fetch-image step pulls the image from its peer (no offer token: the
// fleet's images need none) and refuses what it must not act on.
func TestFetchImageStep(t *testing.T) {
	for _, c := range []struct {
		name      string
		step      *agentv1.RunStep
		wantFetch bool
	}{
		{"fetches", fetchStep("op-1", "debian-12", "host-b", "10.0.0.2:7450"), true},
		{"image name with a path", fetchStep("op-2", "../etc", "host-b", "10.0.0.2:7450"), false},
		{"no peer address", fetchStep("op-3", "debian-12", "host-b", ""), false},
		{"peer is not a host id", fetchStep("op-4", "debian-12", "Host B", "10.0.0.2:7450"), false},
		{"peer is this host", fetchStep("op-5", "debian-12", "host-a", "10.0.0.2:7450"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			mv := &fakeMover{}
			e := newMoverExecutor(t, mv)
			r := e.Execute(c.step, epoch)
			calls := mv.take()
			var fetched bool
			for _, k := range calls {
				if k.method == "FetchImage" {
					fetched = true
					if k.instance != c.step.Image || k.token != "ab12" || k.peer != c.step.PeerHostId || k.addr != c.step.PeerAddress {
						t.Errorf("FetchImage call %+v", k)
					}
				}
				if k.method == "Revoke" {
					t.Errorf("a fetch revoked the instance's offers: it does not touch the domain")
				}
			}
			if fetched != c.wantFetch || r.GetSucceeded() != c.wantFetch {
				t.Fatalf("fetched %v, result %v; want fetched and success %v", fetched, r, c.wantFetch)
			}
		})
	}
}
