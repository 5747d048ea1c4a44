// Package secrets holds what must reach a host's agent but never the
// replicated log: a SetPassword's password. It lives in the memory of the
// server that accepted the call (the leader: writes are forwarded there)
// from the call until its operation's step has been answered or its
// deadline has passed. A leader change or restart loses it, and the
// operation then fails (PASSWORD_LOST) rather than set a password nobody
// can know; the caller calls again.
package secrets

import (
	"log/slog"
	"sync"
	"time"
)

// Password is a user's new password. Its String, GoString and LogValue
// never show it, so that formatting or logging one by mistake leaks
// nothing; Reveal is the one way to read it.
type Password struct {
	User string
	pw   string
}

// NewPassword wraps password for user.
func NewPassword(user, password string) Password { return Password{User: user, pw: password} }

// Reveal returns the password itself, for the message to the agent.
func (p Password) Reveal() string { return p.pw }

const redacted = "[redacted]"

func (p Password) String() string       { return "password for " + p.User + " " + redacted }
func (p Password) GoString() string     { return p.String() }
func (p Password) LogValue() slog.Value { return slog.StringValue(p.String()) }

type entry struct {
	pw    Password
	until time.Time
}

// Store holds passwords by operation id. Safe for concurrent use.
type Store struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]entry
}

// New returns an empty Store; now is the clock (nil: time.Now).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, m: map[string]entry{}}
}

// Put holds pw for operation opID until until.
func (s *Store) Put(opID string, pw Password, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked()
	s.m[opID] = entry{pw: pw, until: until}
}

// Get returns the password held for opID, if it is held and not expired.
func (s *Store) Get(opID string) (Password, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked()
	e, ok := s.m[opID]
	return e.pw, ok
}

// Drop forgets opID's password (its step was answered, or the call failed).
func (s *Store) Drop(opID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, opID)
}

// IDs lists the operations whose passwords are held.
func (s *Store) IDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked()
	ids := make([]string, 0, len(s.m))
	for id := range s.m {
		ids = append(ids, id)
	}
	return ids
}

// Len is how many passwords are held (for tests and metrics).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked()
	return len(s.m)
}

func (s *Store) sweepLocked() {
	now := s.now()
	for id, e := range s.m {
		if now.After(e.until) {
			delete(s.m, id)
		}
	}
}
