package writes

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// TestFlotillaTarget builds the binaries and starts a real 3-coordinator
// cluster with an agent; skipped under -short.
func TestFlotillaTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and starts a 3-coordinator cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin, err := BuildFlotilla(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opt  FlotillaOptions
	}{
		{"flotilla", FlotillaOptions{}},
		{"flotilla+agent", FlotillaOptions{Agent: true}},
		{"flotilla@leader", FlotillaOptions{LeaderOnly: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := tc.opt.Agent
			tc.opt.BinDir = bin
			tg, err := NewFlotillaTarget(ctx, t.TempDir(), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Close()
			if tg.Name() != tc.name {
				t.Errorf("Name() = %q", tg.Name())
			}
			if pid := tg.LeaderPid(ctx); pid <= 0 {
				t.Errorf("LeaderPid = %d (pids %v)", pid, tg.Pids())
			}
			// The pool is spread over the members, or all on the leader.
			leader, err := tg.Leader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pool := tg.conns[len(tg.conns)-FlotillaConnections:]
			targets := map[string]int{}
			for _, c := range pool {
				targets[c.CanonicalTarget()[strings.LastIndex(c.CanonicalTarget(), "/")+1:]]++
			}
			if tc.opt.LeaderOnly && targets[tg.Addrs()[leader]] != FlotillaConnections {
				t.Errorf("leader-only pool connects to %v, leader is %s", targets, tg.Addrs()[leader])
			}
			if !tc.opt.LeaderOnly && len(targets) != FlotillaMembers {
				t.Errorf("pool connects to %v, want all %d members", targets, FlotillaMembers)
			}
			r := Run(ctx, Config{Clients: 4, Duration: time.Second, Warmup: 200 * time.Millisecond}, tg.Op)
			t.Logf("%+v", r)
			if r.Ops == 0 || r.Errors != 0 {
				t.Fatalf("Ops=%d Errors=%d", r.Ops, r.Errors)
			}
			// An op is a committed instance, readable (with min_revision) on every member.
			c, err := grpc.NewClient(tg.Addrs()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := tg.Op(ctx, 99, 0); err != nil {
				t.Fatal(err)
			}
			// Every page: a fast run creates more than one page holds.
			var found *pb.Instance
			listed, token, rev := 0, "", int64(0)
			for {
				list, err := pb.NewInstanceServiceClient(c).ListInstances(ctx, &pb.ListInstancesRequest{PageSize: 1000, PageToken: token})
				if err != nil {
					t.Fatal(err)
				}
				listed, rev = listed+len(list.Instances), max(rev, list.Revision)
				for _, in := range list.Instances {
					if in.Name == "w-99-0" {
						found = in
					}
				}
				if token = list.NextPageToken; token == "" {
					break
				}
			}
			if found == nil {
				t.Fatalf("w-99-0 not among %d instances", listed)
			}
			placed := found.HostId != ""
			if placed != agent {
				t.Errorf("w-99-0 placed on %q with agent=%v", found.HostId, agent)
			}
			for _, addr := range tg.Addrs() {
				cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				_, err = pb.NewInstanceServiceClient(cc).GetInstance(ctx, &pb.GetInstanceRequest{Id: found.Id, MinRevision: rev})
				cc.Close()
				if err != nil {
					t.Errorf("%s: %v", addr, err)
				}
			}
			dir := tg.Dir()
			pids := tg.Pids()
			tg.Close()
			tg.Close()
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("data dir %s still there (%v)", dir, err)
			}
			for _, pid := range pids {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
					t.Errorf("pid %d still running", pid)
				}
			}
		})
	}
}
