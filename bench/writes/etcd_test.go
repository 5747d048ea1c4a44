package writes

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestEtcdTarget starts a real 3-member cluster; it needs Debian's etcd-server
// (bench/writes/install-etcd.sh, run by `make test`): missing, it fails in CI
// and is skipped elsewhere.
func TestEtcdTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster")
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		testenv.Missing(t, "etcd (run bench/writes/install-etcd.sh)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tg, err := NewEtcdTarget(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := tg.Etcd()
	dir := e.Dir()
	defer tg.Close()
	if n := len(e.Endpoints()); n != 3 {
		t.Fatalf("%d endpoints", n)
	}
	t.Logf("%s at %v", e.Version(), e.Endpoints())

	r := Run(ctx, Config{Clients: 4, Duration: time.Second, Warmup: 200 * time.Millisecond}, tg.Op)
	t.Logf("%+v", r)
	if r.Ops == 0 || r.Errors != 0 {
		t.Fatalf("Ops=%d Errors=%d", r.Ops, r.Errors)
	}

	// The write is readable (linearizably) from every member.
	for _, ep := range e.Endpoints() {
		c, err := dialEtcd(ep)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := pb.NewKVClient(c).Range(ctx, &pb.RangeRequest{Key: []byte("/instances/3-0")})
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != string(InstanceRecord(3, 0)) {
			t.Fatalf("%s: /instances/3-0 = %v", ep, resp.Kvs)
		}
	}

	pids := []int{}
	for _, m := range e.members {
		pids = append(pids, m.cmd.Process.Pid)
	}
	tg.Close()
	tg.Close() // idempotent
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data dir %s still there (%v)", dir, err)
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("etcd pid %d still running", pid)
		}
	}
}
