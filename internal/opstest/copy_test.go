package opstest

import (
	"testing"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// A move between two fake agents is counted by the target's disk copy
// metrics: the image's bytes, the network's, and the copy's rate.
func TestDiskCopyMetrics(t *testing.T) {
	dir := t.TempDir()
	c := testenv.StartCoordinator(t, dir)
	g := testenv.NewGrpcurl(t, c.Addr)
	c.WaitReady(t, g)
	testenv.StartAgent(t, dir, c.Addr, "fake-1", "fake")
	testenv.WaitHost(t, g, "fake-1", 0)
	id := createInstance(t, g, "moved")
	targetHTTP := testenv.FreeAddr(t)
	testenv.StartAgent(t, dir, c.Addr, "fake-2", "fake", "--http-listen="+targetHTTP)
	testenv.WaitHost(t, g, "fake-2", 0)

	mustSucceed(t, g, call(t, g, "MoveInstance", map[string]any{"id": id, "targetHostId": "fake-2", "requestId": "move-1"}))
	waitMetrics(t, targetHTTP, []expect{
		{"flotilla_agent_disk_copy_rate_bytes_per_second_count", nil, 1},
	})
	m := scrape(t, targetHTTP)
	for _, kind := range []string{"disk", "wire"} {
		if n, ok := m.value("flotilla_agent_disk_copy_bytes_total", "kind="+kind); !ok || n <= 0 {
			t.Errorf("flotilla_agent_disk_copy_bytes_total{kind=%q} = %v (present %v) after a move", kind, n, ok)
		}
	}
}
