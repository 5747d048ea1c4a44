package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/ipam"
	"github.com/flotilla-vm/flotilla/internal/testenv"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// TestAddressesUnderLeaderKill creates 500 instances on one /22 from 16
// clients at once, killing the leader in the middle: every acknowledged
// create has its own address (no two instances share one, on any server),
// and once every instance is deleted no address is held and the network
// can go. The hosts are fake (this is about the coordinators' allocation),
// the coordinators real processes on Raft on disk.
func TestAddressesUnderLeaderKill(t *testing.T) {
	cs, cl, _ := startFakeCluster(t, 3)
	ctx := context.Background()
	nets := func(i int) pb.NetworkServiceClient { return pb.NewNetworkServiceClient(cl.conns[i]) }
	testenv.Eventually(t, 30*time.Second, "the network to be created", func() bool {
		_, err := nets(0).CreateNetwork(ctx, &pb.CreateNetworkRequest{Name: "burst", Cidr: "10.77.0.0/22", Mode: pb.NetworkMode_NETWORK_MODE_NAT})
		return err == nil
	})
	p := netip.MustParsePrefix("10.77.0.0/22")
	gw := netip.MustParseAddr("10.77.0.1")

	const total, workers = 500, 16
	var mu sync.Mutex
	acked := map[string]string{} // request id -> operation id
	next := 0
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next == total {
			return 0, false
		}
		next++
		return next - 1, true
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	deadline, stop := context.WithTimeout(ctx, 3*time.Minute)
	defer stop()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n, ok := take(); ok; n, ok = take() {
				rid := fmt.Sprintf("burst-%d", n)
				req := &pb.CreateInstanceRequest{Name: fmt.Sprintf("b%d", n), RequestId: rid,
					Spec:       &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"},
					Interfaces: []*pb.NetworkInterfaceRequest{{Network: "burst"}}}
				if op, ok := retried(t, deadline, cl, rid, func(ctx context.Context, i int) (*pb.Operation, error) { return cl.inst(i).CreateInstance(ctx, req) }); ok {
					mu.Lock()
					acked[rid] = op.Id
					mu.Unlock()
				}
			}
		}()
	}
	testenv.Eventually(t, 60*time.Second, "150 acknowledged creates", func() bool { return count() >= 150 })
	leader := leaderIndex(t, cs, cl)
	t.Logf("killing leader %s after %d creates", cs[leader].Name, count())
	cs[leader].Kill()
	testenv.Eventually(t, 60*time.Second, "100 more creates", func() bool { return count() >= 250 })
	cs[leader].Restart()
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(acked) != total {
		t.Fatalf("%d of %d creates acknowledged", len(acked), total)
	}
	converged(t, cl)
	operationsOnce(t, cs, cl, acked)

	// Every server: 500 instances, 500 distinct usable addresses and MACs.
	for i := range cs {
		ips, macs := map[string]string{}, map[string]string{}
		var token string
		for {
			r, err := cl.inst(i).ListInstances(ctx, &pb.ListInstancesRequest{PageSize: 1000, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range r.Instances {
				if len(in.Interfaces) != 1 {
					t.Fatalf("%s: instance %s has NICs %v", cs[i].Name, in.Id, in.Interfaces)
				}
				nic := in.Interfaces[0]
				ip, err := netip.ParseAddr(nic.Ipv4Address)
				if err != nil || ipam.Usable(p, gw, ip) != nil || nic.PrefixLength != 22 || nic.Gateway != "10.77.0.1" {
					t.Errorf("%s: instance %s has %+v", cs[i].Name, in.Id, nic)
				}
				if other, dup := ips[nic.Ipv4Address]; dup {
					t.Errorf("%s: instances %s and %s share %s", cs[i].Name, in.Id, other, nic.Ipv4Address)
				}
				if other, dup := macs[nic.MacAddress]; dup {
					t.Errorf("%s: instances %s and %s share MAC %s", cs[i].Name, in.Id, other, nic.MacAddress)
				}
				ips[nic.Ipv4Address], macs[nic.MacAddress] = in.Id, in.Id
			}
			if token = r.NextPageToken; token == "" {
				break
			}
		}
		if len(ips) != total {
			t.Errorf("%s: %d addresses for %d acknowledged creates", cs[i].Name, len(ips), total)
		}
		n, err := nets(i).GetNetwork(ctx, &pb.GetNetworkRequest{Name: "burst"})
		if err != nil || n.AddressesInUse != total {
			t.Errorf("%s: network %v, %v", cs[i].Name, n, err)
		}
	}
	if t.Failed() {
		return
	}

	// Deleted, every address is free again and the network can go.
	if _, err := nets(0).DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Name: "burst"}); err == nil {
		t.Fatal("a network with 500 instances on it was deleted")
	}
	var dels sync.Map
	ids := make(chan string)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for opID := range ids {
				op := waitDone(t, cl, opID)
				rid := "del-" + op.InstanceId
				if d, ok := retried(t, deadline, cl, rid, func(ctx context.Context, i int) (*pb.Operation, error) {
					return cl.inst(i).DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: op.InstanceId, RequestId: rid})
				}); ok {
					dels.Store(rid, d.Id)
				}
			}
		}()
	}
	for _, opID := range acked {
		ids <- opID
	}
	close(ids)
	wg.Wait()
	dels.Range(func(_, v any) bool {
		if op := waitDone(t, cl, v.(string)); op.State != pb.OperationState_OPERATION_STATE_SUCCEEDED {
			t.Errorf("delete %s ended %s: %v", op.Id, op.State, op.Error)
		}
		return true
	})
	converged(t, cl)
	for i := range cs {
		if n, err := nets(i).GetNetwork(ctx, &pb.GetNetworkRequest{Name: "burst"}); err != nil || n.AddressesInUse != 0 {
			t.Errorf("%s: after every delete: %v, %v", cs[i].Name, n, err)
		}
	}
	if _, err := nets(leaderIndex(t, cs, cl)).DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Name: "burst"}); err != nil {
		t.Fatalf("deleting the emptied network: %v", err)
	}
}
