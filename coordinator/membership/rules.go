package membership

import (
	"errors"
	"fmt"
	"time"
)

// ErrRefused is wrapped by every refused change (FAILED_PRECONDITION).
var ErrRefused = errors.New("membership change refused")

// Member is one server of the Raft configuration, with what the leader
// knows of its replication.
type Member struct {
	ID, RaftAddr, APIAddr string
	Voter                 bool
	// LastContact is when the leader last heard from it over Raft (zero:
	// never; the leader itself: now). LastIndex is its last log index then.
	LastContact time.Time
	LastIndex   uint64
}

// Policy bounds what counts as live and as caught up.
type Policy struct {
	// LiveWithin: a server heard from within this long is live.
	LiveWithin time.Duration
	// MaxLag: a server whose last index is within this many entries of the
	// leader's is caught up.
	MaxLag uint64
	// StableFor: a non-voter is promoted once caught up and live for this long.
	StableFor time.Duration
}

// Live reports whether m was heard from recently enough at now.
func (p Policy) Live(m Member, now time.Time) bool {
	return !m.LastContact.IsZero() && now.Sub(m.LastContact) <= p.LiveWithin
}

// CaughtUp reports whether m is live and within MaxLag of leaderLast.
func (p Policy) CaughtUp(m Member, leaderLast uint64, now time.Time) bool {
	return p.Live(m, now) && m.LastIndex+p.MaxLag >= leaderLast
}

// Quorum is the number of voters a configuration of n voters needs.
func Quorum(n int) int { return n/2 + 1 }

// liveVoters counts voters and live voters of members, with id left out.
func (p Policy) liveVoters(members []Member, without string, now time.Time) (voters, live int) {
	for _, m := range members {
		if !m.Voter || m.ID == without {
			continue
		}
		voters++
		if p.Live(m, now) {
			live++
		}
	}
	return voters, live
}

// CheckRemove refuses removing id when the voters left would have no
// quorum of live servers. Removing a non-voter never changes the quorum.
func (p Policy) CheckRemove(members []Member, id string, now time.Time) error {
	return p.checkWithout(members, id, now, "removing")
}

// CheckMove refuses moving voter id to new addresses when the other voters
// would have no quorum of live servers: until it answers at its new
// address, it counts for nothing.
func (p Policy) CheckMove(members []Member, id string, now time.Time) error {
	return p.checkWithout(members, id, now, "moving")
}

// checkWithout refuses a change that takes voter id out of the live
// voters unless the others have a quorum of the voters left after it.
func (p Policy) checkWithout(members []Member, id string, now time.Time, what string) error {
	var target *Member
	for k := range members {
		if members[k].ID == id {
			target = &members[k]
		}
	}
	if target == nil || !target.Voter {
		return nil
	}
	voters, live := p.liveVoters(members, id, now)
	if what == "moving" {
		voters++ // it stays a voter, silent until it answers at its new address
	}
	if voters == 0 {
		return fmt.Errorf("%w: %s is the last voter; %s it would leave no cluster", ErrRefused, id, what)
	}
	if live < Quorum(voters) {
		return fmt.Errorf("%w: %s %s would leave %d live of %d voters, short of the quorum of %d (bring the other servers back first, or see docs/cluster.md, disaster recovery)",
			ErrRefused, what, id, live, voters, Quorum(voters))
	}
	return nil
}

// CheckPromote refuses promoting id to voter when the voters after it
// would have no quorum of live servers (the new voter counts only if live).
func (p Policy) CheckPromote(members []Member, id string, now time.Time) error {
	voters, live := p.liveVoters(members, id, now)
	voters++
	for _, m := range members {
		if m.ID == id && p.Live(m, now) {
			live++
		}
	}
	if live < Quorum(voters) {
		return fmt.Errorf("%w: promoting %s would leave %d live of %d voters, short of the quorum of %d",
			ErrRefused, id, live, voters, Quorum(voters))
	}
	return nil
}

// Action is what an AddServer request comes to.
type Action int

const (
	Nothing       Action = iota // the member is there with these addresses
	AddNonvoter                 // a new server: it starts as a non-voter
	ChangeAddress               // the member itself moved; its suffrage is kept
)

// Request is an AddServer request and who made it.
type Request struct {
	ID, RaftAddr, APIAddr string
	// Caller is the authenticated identity of the client (its certificate's
	// Common Name under mutual TLS); empty when nothing is verified.
	Caller string
}

// CheckAdd says what req does to members, or why it is refused: an
// existing member's addresses change only when the member itself asks
// (under mutual TLS, its certificate's name is its id); without verified
// identities they never change through the API. Another member's
// addresses may not be taken either.
func CheckAdd(members []Member, req Request) (Action, error) {
	for _, m := range members {
		if m.ID == req.ID {
			continue
		}
		if m.RaftAddr == req.RaftAddr || (m.APIAddr != "" && m.APIAddr == req.APIAddr) {
			return 0, fmt.Errorf("%w: server %s already uses that address", ErrRefused, m.ID)
		}
	}
	for _, m := range members {
		if m.ID != req.ID {
			continue
		}
		// An API address not yet registered (a member added by an older
		// release, or before its registration) counts as unchanged.
		if m.RaftAddr == req.RaftAddr && (m.APIAddr == "" || m.APIAddr == req.APIAddr) {
			return Nothing, nil
		}
		switch {
		case req.Caller == "":
			return 0, fmt.Errorf("%w: %s is a member with other addresses (raft %s, api %s); without mutual TLS a member's addresses cannot be changed: remove it and add it again",
				ErrRefused, m.ID, m.RaftAddr, m.APIAddr)
		case req.Caller != m.ID:
			return 0, fmt.Errorf("%w: %s is a member with other addresses; only %s itself may change them (the caller is %q)", ErrRefused, m.ID, m.ID, req.Caller)
		}
		return ChangeAddress, nil
	}
	return AddNonvoter, nil
}

func (a Action) String() string {
	switch a {
	case AddNonvoter:
		return "add-nonvoter"
	case ChangeAddress:
		return "change-address"
	}
	return "nothing"
}
