package membership

import (
	"errors"
	"testing"
	"time"
)

var (
	now    = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	policy = Policy{LiveWithin: time.Second, MaxLag: 100, StableFor: 2 * time.Second}
)

func live(id string, voter bool) Member {
	return Member{ID: id, RaftAddr: id + ":7000", APIAddr: id + ":7443", Voter: voter, LastContact: now.Add(-100 * time.Millisecond), LastIndex: 1000}
}

func dead(id string, voter bool) Member {
	m := live(id, voter)
	m.LastContact = now.Add(-time.Minute)
	return m
}

func never(id string, voter bool) Member {
	m := live(id, voter)
	m.LastContact, m.LastIndex = time.Time{}, 0
	return m
}

func TestCheckRemove(t *testing.T) {
	for _, c := range []struct {
		name    string
		members []Member
		remove  string
		refused bool
	}{
		{"healthy three, remove a follower", []Member{live("a", true), live("b", true), live("c", true)}, "c", false},
		{"three with one dead, remove the dead one", []Member{live("a", true), live("b", true), dead("c", true)}, "c", false},
		{"three with one dead, remove a live one", []Member{live("a", true), live("b", true), dead("c", true)}, "b", true},
		{"three with two dead, remove a dead one", []Member{live("a", true), dead("b", true), dead("c", true)}, "c", true},
		{"the last voter", []Member{live("a", true), live("n", false)}, "a", true},
		{"a non-voter never matters", []Member{live("a", true), dead("b", true), dead("c", true), never("n", false)}, "n", false},
		{"unknown id", []Member{live("a", true)}, "zz", false},
		{"made-up voter that never answered", []Member{live("a", true), live("b", true), live("c", true), never("x", true)}, "x", false},
		{"five with two dead, remove a live one", []Member{live("a", true), live("b", true), live("c", true), dead("d", true), dead("e", true)}, "a", true},
		{"five with two dead, remove a dead one", []Member{live("a", true), live("b", true), live("c", true), dead("d", true), dead("e", true)}, "e", false},
	} {
		err := policy.CheckRemove(c.members, c.remove, now)
		if (err != nil) != c.refused || (err != nil && !errors.Is(err, ErrRefused)) {
			t.Errorf("%s: err = %v, want refused %v", c.name, err, c.refused)
		}
	}
}

func TestCheckMove(t *testing.T) {
	for _, c := range []struct {
		name    string
		members []Member
		move    string
		refused bool
	}{
		{"healthy three", []Member{live("a", true), live("b", true), live("c", true)}, "c", false},
		{"three with one dead, move a live one", []Member{live("a", true), live("b", true), dead("c", true)}, "b", true},
		{"three with one dead, move the dead one", []Member{live("a", true), live("b", true), dead("c", true)}, "c", false},
		{"a single voter", []Member{live("a", true)}, "a", true},
		{"a non-voter", []Member{live("a", true), dead("n", false)}, "n", false},
	} {
		err := policy.CheckMove(c.members, c.move, now)
		if (err != nil) != c.refused || (err != nil && !errors.Is(err, ErrRefused)) {
			t.Errorf("%s: err = %v, want refused %v", c.name, err, c.refused)
		}
	}
}

func TestCheckPromote(t *testing.T) {
	for _, c := range []struct {
		name    string
		members []Member
		promote string
		refused bool
	}{
		{"live learner to a healthy three", []Member{live("a", true), live("b", true), live("c", true), live("n", false)}, "n", false},
		{"silent learner to a single voter", []Member{live("a", true), never("n", false)}, "n", true},
		{"live learner to one live of two", []Member{live("a", true), dead("b", true), live("n", false)}, "n", false},
		{"live learner to one live of three", []Member{live("a", true), dead("b", true), dead("c", true), live("n", false)}, "n", true},
	} {
		err := policy.CheckPromote(c.members, c.promote, now)
		if (err != nil) != c.refused {
			t.Errorf("%s: err = %v, want refused %v", c.name, err, c.refused)
		}
	}
}

func TestCaughtUp(t *testing.T) {
	for _, c := range []struct {
		name string
		m    Member
		last uint64
		want bool
	}{
		{"within the lag", live("n", false), 1100, true},
		{"behind the lag", live("n", false), 1101, false},
		{"silent", dead("n", false), 1000, false},
		{"never heard from", never("n", false), 0, false},
	} {
		if got := policy.CaughtUp(c.m, c.last, now); got != c.want {
			t.Errorf("%s: caught up = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCheckAdd(t *testing.T) {
	members := []Member{live("a", true), live("b", true), {ID: "old", RaftAddr: "old:7000", Voter: true}}
	for _, c := range []struct {
		name    string
		req     Request
		want    Action
		refused bool
	}{
		{"a new server", Request{ID: "n", RaftAddr: "n:7000", APIAddr: "n:7443"}, AddNonvoter, false},
		{"a member again, same addresses", Request{ID: "a", RaftAddr: "a:7000", APIAddr: "a:7443"}, Nothing, false},
		{"a member with no API address registered yet", Request{ID: "old", RaftAddr: "old:7000", APIAddr: "old:7443"}, Nothing, false},
		{"takeover of a member's id, plaintext", Request{ID: "a", RaftAddr: "evil:7000", APIAddr: "evil:7443"}, 0, true},
		{"takeover of a member's API address only, plaintext", Request{ID: "a", RaftAddr: "a:7000", APIAddr: "evil:7443"}, 0, true},
		{"takeover of a member's id by another certificate", Request{ID: "a", RaftAddr: "evil:7000", APIAddr: "evil:7443", Caller: "b"}, 0, true},
		{"a member moving itself", Request{ID: "a", RaftAddr: "a2:7000", APIAddr: "a2:7443", Caller: "a"}, ChangeAddress, false},
		{"a new id on a member's Raft address", Request{ID: "n", RaftAddr: "a:7000", APIAddr: "n:7443"}, 0, true},
		{"a new id on a member's API address", Request{ID: "n", RaftAddr: "n:7000", APIAddr: "b:7443"}, 0, true},
		{"a member moving onto another's address", Request{ID: "a", RaftAddr: "b:7000", APIAddr: "a:7443", Caller: "a"}, 0, true},
	} {
		got, err := CheckAdd(members, c.req)
		if (err != nil) != c.refused || (err != nil && !errors.Is(err, ErrRefused)) || (err == nil && got != c.want) {
			t.Errorf("%s: %v, %v; want %v, refused %v", c.name, got, err, c.want, c.refused)
		}
	}
}
