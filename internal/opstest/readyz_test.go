package opstest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// In a three-coordinator cluster, /readyz of a member goes 503 when the two
// others stop (quorum lost: no leader) and 200 again when they are back.
func TestReadyzFollowsQuorum(t *testing.T) {
	dir := t.TempDir()
	https := []string{testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)}
	cs := []*testenv.Coordinator{testenv.StartNode(t, dir, "c1", "--raft-fast", "--http-listen="+https[0])}
	for i := 2; i <= 3; i++ {
		cs = append(cs, testenv.StartNode(t, dir, fmt.Sprintf("c%d", i), "--raft-fast", "--join="+cs[0].Addr, "--http-listen="+https[i-1]))
	}
	// Every member ready, and all three voters (so that two make a quorum
	// and one alone does not).
	for _, addr := range https {
		waitReadyz(t, addr, http.StatusOK, "")
	}
	g := testenv.NewGrpcurl(t, cs[0].Addr)
	testenv.Eventually(t, 60*time.Second, "three members with a leader", func() bool {
		r, err := g.Call("flotilla.v1.ClusterService/ListServers", map[string]any{})
		servers, _ := r["servers"].([]any)
		return err == nil && len(servers) == 3 && testenv.Str(r, "leaderId") != ""
	})

	cs[1].Stop()
	cs[2].Stop()
	waitReadyz(t, https[0], http.StatusServiceUnavailable, "not ready: no known raft leader")
	if code, _ := get(https[0], "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz of the cut-off member: %d, want 200 (the process is alive)", code)
	}

	cs[1].Restart()
	cs[2].Restart()
	for _, addr := range https {
		waitReadyz(t, addr, http.StatusOK, "")
	}
}

// waitReadyz waits until addr's /readyz answers code, with a body that
// begins with prefix.
func waitReadyz(t *testing.T, addr string, code int, prefix string) {
	t.Helper()
	var got int
	var body string
	testenv.Eventually(t, 60*time.Second, fmt.Sprintf("%s/readyz to answer %d", addr, code), func() bool {
		got, body = get(addr, "/readyz")
		return got == code && strings.HasPrefix(body, prefix)
	})
	if code == http.StatusServiceUnavailable && strings.Count(body, "\n") != 1 {
		t.Errorf("/readyz body %q: want one line", body)
	}
}
