package agentlink

import (
	"context"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type follower struct{}

func (follower) Apply(context.Context, []byte) (any, error) { return nil, nil }
func (follower) IsLeader() bool                             { return false }

// TestFollowerRefusesWithNotLeader: a follower refuses a session with
// NOT_LEADER whether or not it knows the leader, so an agent can tell a
// live member in an election from an unreachable one, and names the leader
// when it can.
func TestFollowerRefusesWithNotLeader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		leader string
	}{
		{"leader known", "127.0.0.1:7000"},
		{"during an election", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{Applier: follower{}, LeaderAPIAddr: func() (string, bool) { return tc.leader, tc.leader != "" }})
			err := s.Connect(nil) // refused before the stream is read
			st := status.Convert(err)
			if st.Code() != codes.Unavailable {
				t.Fatalf("code %s, want UNAVAILABLE: %v", st.Code(), err)
			}
			var info *errdetails.ErrorInfo
			for _, d := range st.Details() {
				if i, ok := d.(*errdetails.ErrorInfo); ok {
					info = i
				}
			}
			if info == nil || info.Reason != "NOT_LEADER" {
				t.Fatalf("details %v, want an ErrorInfo with reason NOT_LEADER", st.Details())
			}
			if got := info.Metadata["leader_api_address"]; got != tc.leader {
				t.Fatalf("leader_api_address %q, want %q", got, tc.leader)
			}
		})
	}
}
