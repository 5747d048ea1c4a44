package readyz

import (
	"errors"
	"testing"
)

type fakeRaft struct {
	leader          string
	commit, applied uint64
}

func (f fakeRaft) Leader() (string, string)                { return "", f.leader }
func (f fakeRaft) Indexes() (last, commit, applied uint64) { return commit, f.commit, f.applied }

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		raft  fakeRaft
		ready bool
		want  string
	}{
		{"leader known, caught up", fakeRaft{"c1", 10, 10}, true, ""},
		{"fresh cluster", fakeRaft{"c1", 0, 0}, true, ""},
		{"no leader", fakeRaft{"", 10, 10}, false, "no known raft leader"},
		{"no leader and behind", fakeRaft{"", 10, 3}, false, "no known raft leader"},
		{"behind", fakeRaft{"c2", 10, 9}, false, "applied index 9 is behind commit index 10"},
		{"applied ahead of a stale commit index", fakeRaft{"c2", 9, 10}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.raft)
			if (err == nil) != tc.ready {
				t.Fatalf("Check = %v, want ready=%v", err, tc.ready)
			}
			if err != nil && err.Error() != tc.want {
				t.Fatalf("Check = %q, want %q", err, tc.want)
			}
			if tc.raft.leader == "" && !errors.Is(err, ErrNoLeader) {
				t.Fatalf("Check = %v, want ErrNoLeader", err)
			}
		})
	}
}
