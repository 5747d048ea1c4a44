package fsm

import (
	"errors"
	"fmt"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/lifecycle"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Command types of guest reports (log version 4).
const (
	TypeGuestReport = "guest.report"
	TypeStrand      = "guest.strand"
)

// GuestReport records what a guest said about its boot on its guest
// channel, as its host's agent heard it (validated there and by the API's
// agent link).
type GuestReport struct {
	HostID     string          `json:"host_id"`
	Epoch      uint64          `json:"epoch"`
	InstanceID string          `json:"instance_id"`
	State      lifecycle.Guest `json:"state"` // booting, ready or failed
	Stage      string          `json:"stage,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Version    string          `json:"version,omitempty"`
	Time       time.Time       `json:"time"`
	// Side is log version 5's: the agentlink leaves it zero below.
	Side state.GuestSide `json:"side,omitzero"`
}

// Strand marks an instance whose guest is still booting at its deadline
// stranded. Since names the boot judged, so that a verdict on a boot that
// has meanwhile ended (a reboot, a report) changes nothing. With
// Operational, it is an operator's word (By) that a stranded guest is
// ready for work after all: Since is then ignored.
type Strand struct {
	InstanceID  string    `json:"instance_id"`
	Since       time.Time `json:"since"`
	Operational bool      `json:"operational,omitempty"`
	By          string    `json:"by,omitempty"`
}

// ErrNotStranded refuses to mark operational an instance that is not stranded.
var ErrNotStranded = errors.New("the instance is not stranded")

func applyGuestReport(tx *state.Tx, c *GuestReport) (any, error) {
	switch c.State {
	case lifecycle.GuestBooting, lifecycle.GuestReady, lifecycle.GuestFailed:
	default:
		return nil, fmt.Errorf("guest state %q: %w", c.State, ErrInvalid)
	}
	h, ok := tx.Host(c.HostID)
	if !ok {
		return nil, fmt.Errorf("host %q: %w", c.HostID, ErrNotFound)
	}
	if h.Epoch != c.Epoch {
		return nil, fmt.Errorf("host %q epoch %d, current %d: %w", h.ID, c.Epoch, h.Epoch, ErrStaleEpoch)
	}
	inst, ok := tx.Instance(c.InstanceID)
	if !ok {
		return nil, fmt.Errorf("instance %q: %w", c.InstanceID, ErrNotFound)
	}
	// An agent speaks only for the guests on its own host.
	if inst.HostID != c.HostID {
		return nil, fmt.Errorf("instance %q is on host %q, not %q: %w", inst.ID, inst.HostID, c.HostID, ErrWrongHost)
	}
	g := inst.Guest
	// A report from before the domain last changed power state speaks of an
	// earlier boot; one older than the last report, of an earlier moment.
	if !inst.Power.Up() || c.Time.Before(inst.PowerTime) || c.Time.Before(g.Time) {
		return nil, nil
	}
	switch {
	case c.Side.Boot != "" && c.Side.Boot == g.Side.Boot && c.State == lifecycle.GuestBooting && c.Stage == "":
		// A v2 guest side's HELLO said again for a boot already reported
		// (to an agent that restarted or reconnected): nothing new of the
		// boot, whatever it had reached.
		g.Time = c.Time
	case g.State == lifecycle.GuestStranded && c.State == lifecycle.GuestBooting:
		// Still booting after its deadline: it stays stranded, with its progress.
		g.Stage, g.Time = c.Stage, c.Time
	default:
		if g.State != c.State {
			g.Since = c.Time
		}
		g.State, g.Stage, g.Reason, g.Time = c.State, c.Stage, c.Reason, c.Time
	}
	if c.Version != "" {
		g.Version = c.Version
	}
	side := c.Side
	if side.Boot != "" && side.Boot == g.Side.Boot && side.OS == "" {
		// The same boot, heard by an agent that has not asked its OS yet.
		side.OS, side.OSVersion, side.Kernel = g.Side.OS, g.Side.OSVersion, g.Side.Kernel
	}
	g.Side = side
	if g == inst.Guest {
		return nil, nil
	}
	inst.Guest = g
	tx.PutInstance(inst)
	return nil, nil
}

func applyStrand(tx *state.Tx, c *Strand) (any, error) {
	inst, ok := tx.Instance(c.InstanceID)
	if !ok {
		return nil, fmt.Errorf("instance %q: %w", c.InstanceID, ErrNotFound)
	}
	if c.Operational {
		if r := inst.Readiness(); r != lifecycle.ReadinessStranded {
			return nil, fmt.Errorf("instance %q is %s: %w", inst.ID, r, ErrNotStranded)
		}
		inst.Guest.State, inst.Guest.Since = lifecycle.GuestReady, tx.Now()
		inst.Guest.Reason = "marked operational by " + c.By
		tx.PutInstance(inst)
		return nil, nil
	}
	if inst.Guest.State != lifecycle.GuestBooting || !inst.Guest.Since.Equal(c.Since) {
		return nil, nil // that boot ended meanwhile
	}
	inst.Guest.State, inst.Guest.Since = lifecycle.GuestStranded, tx.Now()
	inst.Guest.Reason = "not ready within " + inst.ReadyTimeout.String()
	tx.PutInstance(inst)
	return nil, nil
}
