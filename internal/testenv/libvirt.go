package testenv

import (
	"context"
	"strings"
	"testing"
	"time"
)

// virshTimeout bounds one virsh call. libvirtd gives up waiting for a
// domain's job after 30 s, so a call that waits for one ends before this.
const virshTimeout = 45 * time.Second

func virsh(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), virshTimeout)
	defer cancel()
	return Run(ctx, "virsh", append([]string{"-q", "-c", "qemu:///system"}, args...)...)
}

// WaitDomainsReconnected waits until a just restarted libvirtd has taken
// back each named domain, and fails the test if one did not survive the
// restart.
//
// libvirtd answers calls (`virsh version`, domstate, lookups) before it has
// reconnected to the QEMU processes it left running: each reconnection runs
// in its own thread under the domain's job. A call that kills QEMU before it
// takes the job (virsh destroy) then races the reconnection, which loses its
// monitor, gives up and marks the domain shut off ("daemon"); the destroy
// then reports "domain is not running". So tests that act on domains after
// a restart wait here first. dommemstat needs the domain's job, so it
// returns only once the reconnection has ended, either way.
func WaitDomainsReconnected(t testing.TB, timeout time.Duration, domains ...string) {
	t.Helper()
	for _, dom := range domains {
		Eventually(t, timeout, "libvirtd to reconnect to "+dom, func() bool {
			out, err := virsh("dommemstat", dom)
			if err == nil {
				return true
			}
			// Failing because the domain is gone or stopped means the
			// reconnection is over and lost it; anything else (libvirtd
			// still starting, its 30 s job wait) is worth another try.
			st, serr := virsh("domstate", "--reason", dom)
			if (serr == nil && !isActiveState(st)) || strings.Contains(st, "Domain not found") {
				t.Fatalf("domain %s did not survive the libvirtd restart: %s (dommemstat: %s)", dom, st, out)
			}
			return false
		})
	}
}

// isActiveState reports whether virsh domstate's answer is a state in
// which QEMU runs.
func isActiveState(s string) bool {
	for _, w := range []string{"running", "paused", "in shutdown", "pmsuspended", "idle", "blocked"} {
		if strings.HasPrefix(s, w) {
			return true
		}
	}
	return false
}
