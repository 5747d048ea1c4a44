package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// TestGuestCommandsOnRealLibvirt: a v2 guest side says what OS it runs;
// one that stops answering the agent's PINGs is shown unresponsive; and
// SetPassword sets root's password inside a
// real test guest through its guest channel (the guest checks it back from
// /etc/shadow and prints its digest on the console), shown as Nova's
// PASSWORD on a watch while it runs; a user the guest lacks fails the
// operation and leaves the instance RUNNING; guests without a v2 guest side
// are refused with FAILED_PRECONDITION, bad passwords with
// INVALID_ARGUMENT; and no file of the coordinator or the agent (data
// dirs, logs, journal) holds the password, in clear or hex-encoded.
func TestGuestCommandsOnRealLibvirt(t *testing.T) {
	e := newEnv(t, nil, []string{"--vcpus=8", "--guest-ping-interval=1s"})
	list := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", nil)
	w := e.g.Stream("flotilla.v1.InstanceService/WatchInstances", map[string]any{"startRevision": testenv.Str(list, "revision"),
		"vocabularies": []string{"VOCABULARY_NOVA"}})
	t.Cleanup(w.Close)
	seen := map[string][]string{}

	pw := e.createWith("pw", "", "")
	v1 := e.createWith("old-guest", "flotilla-test: v1", "")
	silent := e.createWith("no-guest-side", "flotilla-test: silent", "")
	hung := e.createWith("hung", "flotilla-test: unresponsive=2", "")
	readinessSeen(t, w, seen, pw, "READINESS_OPERATIONAL", 90*time.Second)
	readinessSeen(t, w, seen, v1, "READINESS_OPERATIONAL", 90*time.Second)

	// What the v2 guest side says of itself.
	testenv.Eventually(t, 30*time.Second, "the guest's OS information", func() bool {
		return testenv.Str(e.instance(pw), "guest", "os") == "flotilla-test"
	})
	g := e.instance(pw)
	if testenv.Str(g, "guest", "protocol") != "2" || testenv.Str(g, "guest", "osVersion") != "6" || testenv.Str(g, "guest", "kernel") == "" {
		t.Fatalf("guest status: %v", g["guest"])
	}
	if got := testenv.Str(e.instance(v1), "guest", "protocol"); got != "1" {
		t.Fatalf("v1 guest's protocol %q", got)
	}
	// A guest that stops answering heartbeats (3 PINGs, a second apart).
	readinessSeen(t, w, seen, hung, "READINESS_OPERATIONAL", 90*time.Second)
	testenv.Eventually(t, 30*time.Second, "the hung guest to be shown unresponsive", func() bool {
		return testenv.Str(e.instance(hung), "guest", "unresponsive") == "true"
	})
	if testenv.Str(e.instance(pw), "guest", "unresponsive") == "true" {
		t.Fatal("a guest that answers its PINGs is shown unresponsive")
	}

	raw := make([]byte, 8)
	rand.Read(raw)
	secret := "pässwörd " + hex.EncodeToString(raw)
	op := e.do("SetPassword", map[string]any{"id": pw, "password": secret})
	e.mustSucceed(op)
	if testenv.Str(op, "kind") != "OPERATION_KIND_SET_PASSWORD" {
		t.Fatalf("operation %v", op)
	}
	sum := sha256.Sum256([]byte(secret))
	want := "FLOTILLA-GUEST-PASSWORD user=root verified=yes sha256=" + hex.EncodeToString(sum[:])
	console := filepath.Join(e.agent.RunDir, pw+".console.log")
	testenv.Eventually(t, 10*time.Second, "the guest to print "+want, func() bool {
		b, _ := os.ReadFile(console)
		return strings.Contains(string(b), want)
	})
	watchSeen(t, w, seen, pw, "Nova's PASSWORD", func(s string) bool { return strings.Contains(s, `"status":"PASSWORD"`) }, 30*time.Second)
	if s := e.status(pw); s != "STATUS_RUNNING" {
		t.Fatalf("after SetPassword: %s", s)
	}

	// The agent restarts: the guest says its HELLO again to the new one
	// (the same boot, so its readiness never goes back to booting), and
	// takes commands again.
	before := len(seen[pw])
	e.agent.Restart()
	e.epoch = testenv.WaitHost(t, e.g, e.host, e.epoch)
	e.mustSucceed(e.do("SetPassword", map[string]any{"id": pw, "password": secret + "2"}))
	sum = sha256.Sum256([]byte(secret + "2"))
	want = "FLOTILLA-GUEST-PASSWORD user=root verified=yes sha256=" + hex.EncodeToString(sum[:])
	testenv.Eventually(t, 10*time.Second, "the guest to print "+want, func() bool {
		b, _ := os.ReadFile(console)
		return strings.Contains(string(b), want)
	})
	for _, r := range seen[pw][before:] {
		if strings.HasPrefix(r, "READINESS_BOOTING") {
			t.Fatalf("the agent's restart showed the guest booting again: %v", seen[pw][before:])
		}
	}

	// A user the guest does not have: the guest refuses, the operation
	// fails with its reason, and the instance is as it was.
	op = e.do("SetPassword", map[string]any{"id": pw, "user": "nobody", "password": secret})
	if testenv.Str(op, "state") == "OPERATION_STATE_SUCCEEDED" || !strings.Contains(testenv.Str(op, "error", "message"), "no-such-user") {
		t.Fatalf("set password for a user the guest lacks: %v", op)
	}
	if s := e.status(pw); s != "STATUS_RUNNING" {
		t.Fatalf("after a refused SetPassword: %s", s)
	}

	// Refusals that change nothing.
	for _, c := range []struct {
		req  map[string]any
		code string
		msg  string
	}{
		{map[string]any{"id": v1, "password": secret}, "FailedPrecondition", "protocol v1"},
		{map[string]any{"id": silent, "password": secret}, "FailedPrecondition", "has not spoken"},
		{map[string]any{"id": pw, "password": ""}, "InvalidArgument", "password"},
		{map[string]any{"id": pw, "password": strings.Repeat("x", 65)}, "InvalidArgument", "at most 64"},
		{map[string]any{"id": pw, "user": "Root", "password": secret}, "InvalidArgument", "user"},
		{map[string]any{"id": "i-nope", "password": secret}, "NotFound", ""},
	} {
		_, err := e.g.Call("flotilla.v1.InstanceService/SetPassword", c.req)
		if err == nil || !strings.Contains(err.Error(), c.code) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("SetPassword %v: %v, want %s (%s)", c.req["id"], err, c.code, c.msg)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("the refusal quotes the password: %v", err)
		}
	}
	e.mustSucceed(e.do("StopInstance", map[string]any{"id": v1, "gracefulTimeout": "30s", "force": true}))
	if _, err := e.g.Call("flotilla.v1.InstanceService/SetPassword", map[string]any{"id": v1, "password": secret}); err == nil ||
		!strings.Contains(err.Error(), "FailedPrecondition") || !strings.Contains(err.Error(), "allowed: start") {
		t.Errorf("SetPassword on a stopped instance: %v", err)
	}

	// Nothing on disk holds the password: the coordinator's data dir (Raft
	// log, snapshots) and log, the agent's journal, state and log.
	e.coord.Stop()
	e.agent.Stop()
	noFileHolds(t, []string{secret, hex.EncodeToString([]byte(secret)), strings.SplitN(secret, " ", 2)[1],
		hex.EncodeToString([]byte(secret + "2"))}, e.dir, e.agent.StateDir, e.agent.RunDir)
}

// TestSetPasswordThroughAFollowerOnRealLibvirt: a SetPassword sent to a
// follower of a three-coordinator cluster is relayed to the leader and sets
// the password inside the real guest; no coordinator's data dir or log
// (Raft log, snapshots taken after it) nor the agent's files hold it.
func TestSetPasswordThroughAFollowerOnRealLibvirt(t *testing.T) {
	testenv.LockLibvirt(t, false)
	testenv.RequireLibvirt(t)
	dir := t.TempDir()
	cs := testenv.StartCluster(t, dir, 3)
	addrs := make([]string, len(cs))
	for i, c := range cs {
		addrs[i] = c.Addr
	}
	host := "e2e-password-cluster"
	agent := testenv.StartAgentEnv(t, dir, strings.Join(addrs, ","), host, "libvirt", nil, "--vcpus=4")
	g0 := testenv.NewGrpcurl(t, cs[0].Addr)
	testenv.WaitHost(t, g0, host, 0)
	// A follower: a member whose leader is another.
	var follower *testenv.Coordinator
	testenv.Eventually(t, 30*time.Second, "a follower that knows its leader", func() bool {
		for _, c := range cs {
			st, err := testenv.NewGrpcurl(t, c.Addr).Call("flotilla.v1.ClusterService/GetNodeStatus", nil)
			if err == nil && testenv.Str(st, "leaderId") != "" && testenv.Str(st, "leaderId") != testenv.Str(st, "nodeId") {
				follower = c
				return true
			}
		}
		return false
	})
	g := testenv.NewGrpcurl(t, follower.Addr)
	e := &env{t: t, dir: dir, coord: follower, agent: agent, g: g, host: host}
	id := e.createWith("pw-cluster", "", "")
	testenv.Eventually(t, 90*time.Second, "the guest side to say it takes commands", func() bool {
		return testenv.Str(e.instance(id), "guest", "protocol") == "2"
	})
	raw := make([]byte, 8)
	rand.Read(raw)
	secret := "follower-" + hex.EncodeToString(raw)
	e.mustSucceed(e.do("SetPassword", map[string]any{"id": id, "password": secret}))
	sum := sha256.Sum256([]byte(secret))
	want := "FLOTILLA-GUEST-PASSWORD user=root verified=yes sha256=" + hex.EncodeToString(sum[:])
	console := filepath.Join(agent.RunDir, id+".console.log")
	testenv.Eventually(t, 10*time.Second, "the guest to print "+want, func() bool {
		b, _ := os.ReadFile(console)
		return strings.Contains(string(b), want)
	})
	// Snapshots too: every member takes one, then all stop.
	for _, c := range cs {
		testenv.NewGrpcurl(t, c.Addr).MustCall("flotilla.v1.ClusterService/TakeSnapshot", nil)
	}
	e.mustSucceed(e.do("DeleteInstance", map[string]any{"id": id}))
	agent.Stop()
	for _, c := range cs {
		c.Stop()
	}
	noFileHolds(t, []string{secret, hex.EncodeToString([]byte(secret))}, dir, agent.StateDir, agent.RunDir)
}

// noFileHolds fails the test for every file under dirs holding a needle.
func noFileHolds(t *testing.T, needles []string, dirs ...string) {
	t.Helper()
	files := 0
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Type()&fs.ModeSocket != 0 {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			files++
			for _, n := range needles {
				if strings.Contains(string(b), n) {
					t.Errorf("%s holds the password (%q...)", path, n[:8])
				}
			}
			return nil
		})
	}
	if files < 5 {
		t.Fatalf("only %d files looked at: the search looked in the wrong places", files)
	}
}
