package upgrade

import (
	"context"
	"errors"
	"log/slog"
	"testing"
)

type fakeCluster struct {
	version  uint32
	members  []Member
	proposed []uint32
}

func (f *fakeCluster) ID() string                 { return "self" }
func (f *fakeCluster) LogVersion() uint32         { return f.version }
func (f *fakeCluster) Members() ([]Member, error) { return f.members, nil }
func (f *fakeCluster) SetLogVersion(_ context.Context, v uint32) error {
	f.proposed = append(f.proposed, v)
	f.version = v
	return nil
}

func TestRaise(t *testing.T) {
	members := []Member{{ID: "self", APIAddr: "a:1"}, {ID: "b", APIAddr: "b:1"}, {ID: "c", APIAddr: "c:1"}}
	for _, tc := range []struct {
		name     string
		members  []Member
		versions map[string]uint32 // by address; absent: unreachable
		want     uint32
		proposed bool
	}{
		{"every server at 2", members, map[string]uint32{"b:1": 2, "c:1": 2}, 2, true},
		{"newer servers count as 2", members, map[string]uint32{"b:1": 3, "c:1": 2}, 2, true},
		{"one old server", members, map[string]uint32{"b:1": 2, "c:1": 1}, 1, false},
		{"one server that does not say", members, map[string]uint32{"b:1": 2, "c:1": 0}, 1, false},
		{"one unreachable", members, map[string]uint32{"b:1": 2}, 1, false},
		{"an address not known yet", append(members[:2:2], Member{ID: "d"}), map[string]uint32{"b:1": 2}, 1, false},
		{"alone", members[:1], nil, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeCluster{version: 1, members: tc.members}
			probe := func(_ context.Context, addr string) (uint32, error) {
				v, ok := tc.versions[addr]
				if !ok {
					return 0, errors.New("unreachable")
				}
				return v, nil
			}
			g := New(c, probe, 2, slog.New(slog.DiscardHandler))
			got, err := g.Raise(context.Background())
			if got != tc.want || (len(c.proposed) > 0) != tc.proposed || (err == nil) != tc.proposed {
				t.Fatalf("version %d, proposed %v, err %v", got, c.proposed, err)
			}
			// Once at the newest version, nothing more is proposed.
			if tc.proposed {
				if _, err := g.Raise(context.Background()); err != nil || len(c.proposed) != 1 {
					t.Fatalf("raised again: %v %v", c.proposed, err)
				}
			}
		})
	}
}

func TestAdmit(t *testing.T) {
	for _, tc := range []struct {
		cluster, joiner uint32
		admitted        bool
	}{
		{1, 0, true}, {1, 1, true}, {1, 2, true}, {2, 2, true}, {2, 3, true},
		{2, 1, false}, {2, 0, false},
	} {
		c := &fakeCluster{version: tc.cluster}
		g := New(c, nil, 2, slog.New(slog.DiscardHandler))
		added := false
		err := g.Admit(tc.joiner, func() error { added = true; return nil })
		if added != tc.admitted || (err == nil) != tc.admitted || (err != nil && !errors.Is(err, ErrTooOld)) {
			t.Errorf("cluster at %d, joiner up to %d: added %v, %v", tc.cluster, tc.joiner, added, err)
		}
	}
}
