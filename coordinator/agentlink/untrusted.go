package agentlink

import (
	"fmt"
	"net"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/labels"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// An agent is untrusted input (docs/security.md): what it registers is
// bounded and printable, and its clock is not believed.

// Bounds of a host's registration.
const (
	maxAgentVersion = 128
	maxPeerAddress  = 255
	maxReason       = 256
	maxInventory    = 100000
	// Capacity: far above any real host (simulated ones in tests and
	// benches are huge), low enough that sums over 100,000 hosts cannot
	// overflow what the scheduler adds up.
	maxVCPUs     = 1 << 28
	maxMemoryMiB = 1 << 40
	maxDiskGiB   = 1 << 40
)

// maxSkew is how far ahead of the coordinator's clock an agent's
// timestamp may be before it is clamped to the coordinator's now: a power
// event stamped in the future would otherwise make every later, true
// event look older and be ignored.
const maxSkew = 5 * time.Second

// validRegister returns why reg's fields (other than the host id and the
// bridges, checked before) are not acceptable, or nil.
func validRegister(reg *agentv1.Register) error {
	if !optional(guestTokenRE, reg.HypervisorKind) {
		return fmt.Errorf("hypervisor_kind %q: 1-32 lowercase letters, digits, '.', '_' or '-'", labels.Truncate(reg.HypervisorKind))
	}
	if err := labels.Printable(reg.AgentVersion, maxAgentVersion); err != nil {
		return fmt.Errorf("agent_version: %w", err)
	}
	if err := labels.Check(reg.Labels); err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	if err := labels.Printable(reg.PeerAddress, maxPeerAddress); err != nil {
		return fmt.Errorf("peer_address: %w", err)
	}
	if reg.PeerAddress != "" {
		if _, _, err := net.SplitHostPort(reg.PeerAddress); err != nil {
			return fmt.Errorf("peer_address: %w", err)
		}
	}
	c := reg.GetCapacity()
	if c.GetVcpus() > maxVCPUs || c.GetMemoryMib() > maxMemoryMiB || c.GetDiskGib() > maxDiskGiB ||
		c.GetVcpus() < 0 || c.GetMemoryMib() < 0 || c.GetDiskGib() < 0 {
		return fmt.Errorf("capacity %d vCPUs, %d MiB, %d GiB: at most %d vCPUs, %d MiB, %d GiB",
			c.GetVcpus(), c.GetMemoryMib(), c.GetDiskGib(), maxVCPUs, maxMemoryMiB, maxDiskGiB)
	}
	if len(reg.Inventory) > maxInventory {
		return fmt.Errorf("inventory: at most %d domains, got %d", maxInventory, len(reg.Inventory))
	}
	return nil
}

// clock clamps one host's timestamps to the coordinator's clock, and says
// once (per session) that the host's clock runs ahead.
type clock struct {
	s      *Server
	host   string
	warned bool
	// recorded is the skew last recorded in the log for this session (ok:
	// one was).
	recorded   time.Duration
	ok         bool
	skewWarned bool
}

// skewStep is how far a host's measured skew must move from the one
// recorded before it is recorded again: a heartbeat's time in flight
// varies, and each record is a write to the log.
const skewStep = 250 * time.Millisecond

// measure takes the agent's clock at sending a message (sent) against the
// coordinator's at receiving it (now), and returns the skew and whether it is to
// be recorded: the first of the session, and then when it has moved by
// more than skewStep. The message's time in flight counts as skew (the
// agent behind); on a LAN that is far below what matters.
func (c *clock) measure(sent, now time.Time) (time.Duration, bool) {
	skew := sent.Sub(now)
	if c.ok && (skew-c.recorded).Abs() <= skewStep {
		return skew, false
	}
	c.recorded, c.ok = skew, true
	if skew.Abs() > convert.ClockSkewWarning && !c.skewWarned {
		c.skewWarned = true
		c.s.log.Warn("agent clock skew: the host's clock is off the coordinator's; check its time synchronisation",
			"host", c.host, "skew", skew.Round(time.Millisecond).String())
	}
	return skew, true
}

// clamp returns t, or now if t is more than maxSkew ahead of now.
func (c *clock) clamp(t time.Time) time.Time {
	now := c.s.cfg.Now()
	if !t.After(now.Add(maxSkew)) {
		return t
	}
	if !c.warned {
		c.warned = true
		c.s.log.Warn("agent clock ahead of the coordinator's: its future timestamps are taken as now",
			"host", c.host, "skew", t.Sub(now).Round(time.Millisecond).String(), "agent_time", t, "coordinator_time", now)
	}
	return now
}

// observations turns reported domain states into the FSM's, with times
// clamped and reasons that are not printable dropped.
func (c *clock) observations(in []*agentv1.DomainState) []fsm.Observation {
	out := make([]fsm.Observation, 0, len(in))
	for _, d := range in {
		reason := d.Reason
		if labels.Printable(reason, maxReason) != nil {
			reason = "malformed reason from the agent"
		}
		out = append(out, fsm.Observation{InstanceID: d.InstanceId, Power: convert.PowerFromPB(d.State), Reason: reason, Time: c.clamp(d.GetObservedAt().AsTime())})
	}
	return out
}
