package e2eimages

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/hypervisor/fake"
	"github.com/flotilla-vm/flotilla/internal/freeport"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// stepRuns counts the times the agent began the operation's step of action.
func stepRuns(t *testing.T, a *testenv.Agent, opID, action string) int {
	t.Helper()
	b, err := os.ReadFile(a.Log)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"msg":"running step"`) && strings.Contains(line, `"operation":"`+opID+`"`) &&
			strings.Contains(line, `"action":"`+action+`"`) {
			n++
		}
	}
	return n
}

// cluster is three coordinators on loopback and a client of each.
type cluster struct {
	t  *testing.T
	cs []*testenv.Coordinator
	gs []*testenv.Grpcurl
}

func (c *cluster) addrs() string {
	var out []string
	for _, x := range c.cs {
		out = append(out, x.Addr)
	}
	return strings.Join(out, ",")
}

// leader is the index of the coordinator that leads now.
func (c *cluster) leader() int {
	c.t.Helper()
	idx := -1
	testenv.Eventually(c.t, 30*time.Second, "a leader", func() bool {
		for i, g := range c.gs {
			st, err := g.Call("flotilla.v1.ClusterService/GetNodeStatus", map[string]any{})
			if err == nil && testenv.Str(st, "raftState") == "Leader" {
				idx = i
				return true
			}
		}
		return false
	})
	return idx
}

// waitOp waits, through coordinator via, for the operation to end.
func (c *cluster) waitOp(via int, id string) map[string]any {
	c.t.Helper()
	var op map[string]any
	testenv.Eventually(c.t, 3*time.Minute, "operation "+id+" to end", func() bool {
		m, err := c.gs[via].Call("flotilla.v1.OperationService/WaitOperation", map[string]any{"id": id, "timeout": "20s"})
		op = m
		return err == nil && testenv.Str(m, "done") == "true"
	})
	return op
}

func (c *cluster) mustSucceed(via int, id string) map[string]any {
	c.t.Helper()
	op := c.waitOp(via, id)
	if s := testenv.Str(op, "state"); s != "OPERATION_STATE_SUCCEEDED" {
		c.t.Fatalf("operation %s ended %s: %s", id, s, testenv.Str(op, "error"))
	}
	return op
}

// TestLeaderKilledMidImageOperation kills the leader coordinator (SIGKILL)
// while each new operation's long step runs on its agent: a rebuild's
// rebuild-disk, a rescue's rescue-domain, a bundle's bundle-disk and a
// create's fetch-image. The agent finishes the step once and the new
// leader records it; the operation succeeds exactly once, and what it
// acknowledged (the bundled image, the fetched copy) is in the catalogue.
func TestLeaderKilledMidImageOperation(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: not run with -short")
	}
	dir := t.TempDir()
	c := &cluster{t: t, cs: testenv.StartCluster(t, dir, 3, "--agent-heartbeat-interval=500ms", "--agent-resync-interval=2s")}
	for _, x := range c.cs {
		c.gs = append(c.gs, testenv.NewGrpcurl(t, x.Addr))
	}
	c.leader()
	// The catalogue needs log version 11, which the cluster reaches once
	// every voter says it supports it.
	testenv.Eventually(t, time.Minute, "the image catalogue (log version 11)", func() bool {
		st, err := c.gs[0].Call("flotilla.v1.ClusterService/GetNodeStatus", map[string]any{})
		return err == nil && testenv.Atoi(testenv.Str(st, "logVersion")) >= 11
	})
	agent := func(name, faults string, extra ...string) *testenv.Agent {
		t.Helper()
		// Each agent its own state directory (under dir/name).
		a := testenv.StartAgentEnv(t, dir, c.addrs(), name, "fake", []string{fake.FaultsEnv + "=" + faults}, extra...)
		testenv.WaitHost(t, c.gs[0], name, 0)
		return a
	}
	create := func(via int, name, host, image string) string {
		t.Helper()
		op := c.gs[via].MustCall("flotilla.v1.InstanceService/CreateInstance", map[string]any{"name": name, "requestId": "create-" + name,
			"spec": map[string]any{"vcpus": 1, "memoryMib": 64, "image": image}, "placement": map[string]any{"hostLabels": map[string]string{"host": host}}})
		c.mustSucceed(via, testenv.Str(op, "id"))
		return testenv.Str(op, "instanceId")
	}

	for _, k := range []struct {
		name, method, action, want string
		prepare                    func(via int, a *testenv.Agent, id string)
		call                       func(via int, id string) string // starts the operation, returns its id
	}{
		{name: "rebuild", method: "RebuildDisk", action: "STEP_ACTION_REBUILD_DISK", want: "STATUS_RUNNING",
			call: func(via int, id string) string {
				return testenv.Str(c.gs[via].MustCall("flotilla.v1.InstanceService/RebuildInstance", map[string]any{"id": id}), "id")
			}},
		{name: "rescue", method: "RescueDomain", action: "STEP_ACTION_RESCUE_DOMAIN", want: "STATUS_RESCUED",
			call: func(via int, id string) string {
				return testenv.Str(c.gs[via].MustCall("flotilla.v1.InstanceService/RescueInstance", map[string]any{"id": id}), "id")
			}},
		{name: "bundle", method: "BundleDisk", action: "STEP_ACTION_BUNDLE_DISK", want: "STATUS_STOPPED",
			prepare: func(via int, _ *testenv.Agent, id string) {
				op := c.gs[via].MustCall("flotilla.v1.InstanceService/StopInstance", map[string]any{"id": id, "force": true, "gracefulTimeout": "1s"})
				c.mustSucceed(via, testenv.Str(op, "id"))
			},
			call: func(via int, id string) string {
				return testenv.Str(c.gs[via].MustCall("flotilla.v1.InstanceService/BundleInstance", map[string]any{"id": id, "image": "lk-bundled"}), "id")
			}},
	} {
		t.Run(k.name, func(t *testing.T) {
			c.t = t
			host := "lk-" + k.name
			a := agent(host, "delay:"+k.method+"=4s", "--label=host="+host)
			leader := c.leader()
			via := (leader + 1) % 3
			id := create(via, k.name, host, guestImage)
			if k.prepare != nil {
				k.prepare(via, a, id)
			}
			opID := k.call(via, id)
			testenv.Eventually(t, 30*time.Second, "the "+k.action+" step to run", func() bool { return stepRuns(t, a, opID, k.action) > 0 })
			c.cs[leader].Kill()
			c.mustSucceed(via, opID)
			if n := stepRuns(t, a, opID, k.action); n != 1 {
				t.Fatalf("%s ran %d times", k.action, n)
			}
			if s := testenv.Str(c.gs[via].MustCall("flotilla.v1.InstanceService/GetInstance", map[string]any{"id": id}), "status"); s != k.want {
				t.Fatalf("instance after the %s: %s, want %s", k.name, s, k.want)
			}
			if k.name == "bundle" {
				im, err := getImage(t, c.gs[via], "lk-bundled")
				if err != nil || len(im.hosts) != 1 || im.hosts[0] != host {
					t.Fatalf("the bundle's image in the catalogue: %+v %v", im, err)
				}
			}
			c.cs[leader].Restart()
			c.leader()
		})
	}

	// A create whose host lacks its image: the leader dies while the host
	// fetches it from the one that holds it.
	t.Run("fetch", func(t *testing.T) {
		c.t = t
		peer := func() string {
			addr, err := freeport.AddrOn("127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			return addr
		}
		src := agent("lk-src", "", "--label=host=lk-src", "--peer-listen="+peer())
		dst := agent("lk-dst", "delay:WriteImage=4s", "--label=host=lk-dst", "--peer-listen="+peer())
		leader := c.leader()
		via := (leader + 1) % 3
		// An image only lk-src holds: a bundle there.
		id := create(via, "fetch-src", "lk-src", guestImage)
		op := c.gs[via].MustCall("flotilla.v1.InstanceService/StopInstance", map[string]any{"id": id, "force": true, "gracefulTimeout": "1s"})
		c.mustSucceed(via, testenv.Str(op, "id"))
		op = c.gs[via].MustCall("flotilla.v1.InstanceService/BundleInstance", map[string]any{"id": id, "image": "lk-only-src"})
		c.mustSucceed(via, testenv.Str(op, "id"))
		waitImage(t, c.gs[via], "lk-only-src", "reported by lk-src", func(im catalogueImage) bool { return im.sha256 != "" })

		op = c.gs[via].MustCall("flotilla.v1.InstanceService/CreateInstance", map[string]any{"name": "fetched", "requestId": "create-fetched",
			"spec": map[string]any{"vcpus": 1, "memoryMib": 64, "image": "lk-only-src"}, "placement": map[string]any{"hostLabels": map[string]string{"host": "lk-dst"}}})
		opID := testenv.Str(op, "id")
		testenv.Eventually(t, 30*time.Second, "the fetch to run", func() bool { return stepRuns(t, dst, opID, "STEP_ACTION_FETCH_IMAGE") > 0 })
		c.cs[leader].Kill()
		done := c.mustSucceed(via, opID)
		if n := stepRuns(t, dst, opID, "STEP_ACTION_FETCH_IMAGE"); n != 1 {
			t.Fatalf("the fetch ran %d times", n)
		}
		steps, _ := done["steps"].([]any)
		if len(steps) == 0 || testenv.Str(steps[0].(map[string]any), "name") != "fetch-image" {
			t.Fatalf("steps %v", done["steps"])
		}
		waitImage(t, c.gs[via], "lk-only-src", "held by both hosts", func(im catalogueImage) bool {
			return fmt.Sprint(im.hosts) == "[lk-dst lk-src]"
		})
		_ = src
		c.cs[leader].Restart()
		c.leader()
	})
}
