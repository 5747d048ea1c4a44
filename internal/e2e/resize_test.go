package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// reachedOnTestbed says where the seed states that need two hosts are
// checked (TestSeedConformance runs on one): by which test, while the
// instance is in which canonical status.
var reachedOnTestbed = map[string]struct{ test, when string }{
	"manage-instance/resizing":        {"TestResizeAcrossHostsOnRealLibvirt", "STATUS_RESIZING"},
	"nova/RESIZED":                    {"TestResizeAcrossHostsOnRealLibvirt", "STATUS_RESIZING"},
	"nova/VERIFY_RESIZE":              {"TestResizeAcrossHostsOnRealLibvirt", "STATUS_VERIFY_RESIZE"},
	"nova/REVERT_RESIZE":              {"TestResizeRollsBackWhenTheTargetDiesOnRealLibvirt", "STATUS_RESIZING"},
	"managed-instance/EXTENDING":      {"TestResizeAcrossHostsOnRealLibvirt", "STATUS_RESIZING"},
	"managed-instance/EXTENDEDFAILED": {"TestResizeRollsBackWhenTheTargetDiesOnRealLibvirt", "STATUS_RUNNING"},
}

// checkSeedStates checks the seed states reachedOnTestbed gives test t.
func checkSeedStates(t *testing.T, h *history, id string) {
	t.Helper()
	n := 0
	for _, st := range vocabulary.Seeds {
		key := string(st.Vocabulary) + "/" + st.Word
		where, ok := reachedOnTestbed[key]
		if !ok || where.test != t.Name() {
			continue
		}
		n++
		if !h.shown(id, where.when, st) {
			t.Errorf("seed %s %q not shown while %s; the watch showed:\n%s", st.Vocabulary.Seed(), st.Word, where.when, h.of(id))
		}
	}
	if n == 0 {
		t.Errorf("no seed state is checked here")
	}
	t.Logf("seed states shown on the test bed: %d", n)
}

// Resizes on the test bed: two real hosts, each with its own libvirtd, the
// disk copied from one agent to the other over the bridge with mutual TLS.

// copyLimit slows the agents' disk copies (bytes per second, compression
// off) so that a test can act while the bulk copy runs: the test guest's
// disk is small.
const copyLimit = "--copy-rate-limit=8388608"

// startSlowAgent starts host h's agent with copies slowed, and waits for it.
func (e *tbEnv) startSlowAgent(h testenv.TestbedHost) *testenv.Agent {
	e.t.Helper()
	return e.startAgent(h, copyLimit, "--copy-compression=off")
}

// newResizeEnv is a test bed of two hosts with slowed copies, an instance
// running on tb-1 whose disk holds 24 MiB of pattern 0x5a from offset 0
// (written by the running guest's QEMU, as the guest would), and a watch
// of every vocabulary.
func newResizeEnv(t *testing.T) (e *tbEnv, id string, dstAgent *testenv.Agent, h *history) {
	e = newTestbedEnvWith(t, copyLimit, "--copy-compression=off")
	id = e.createOnSource("resizer")
	testenv.GuestDiskWrite(t, e.src.URI(), id, 0x5a, 0, 24<<20)
	dstAgent = e.startSlowAgent(e.dst)
	list := e.g.MustCall("flotilla.v1.InstanceService/ListInstances", nil)
	all := []string{"VOCABULARY_MANAGE_INSTANCE", "VOCABULARY_NOVA", "VOCABULARY_RIGHTSCALE", "VOCABULARY_AZURE", "VOCABULARY_MANAGED_INSTANCE"}
	h = &history{}
	w := e.g.Stream("flotilla.v1.InstanceService/WatchInstances", map[string]any{"startRevision": testenv.Str(list, "revision"), "vocabularies": all})
	t.Cleanup(w.Close)
	go h.record(w)
	return e, id, dstAgent, h
}

// waitStep waits until operation opID runs step name, and fails the test if
// the operation gets past it first.
func (e *tbEnv) waitStep(opID, name string) {
	e.t.Helper()
	testenv.Eventually(e.t, 60*time.Second, "step "+name+" of "+opID, func() bool {
		op := e.g.MustCall("flotilla.v1.OperationService/GetOperation", map[string]any{"id": opID})
		if testenv.Str(op, "done") == "true" {
			e.t.Fatalf("%s ended before step %s was seen running: %v", opID, name, op)
		}
		return testenv.Str(op, "step") == name
	})
}

// readyIn waits for the guest of instance id (console log in runDir) to
// have printed FLOTILLA-GUEST-READY n times.
func readyIn(t *testing.T, runDir, id string, n int) {
	t.Helper()
	log := filepath.Join(runDir, id+".console.log")
	testenv.Eventually(t, 60*time.Second, "the guest to be ready", func() bool {
		b, err := os.ReadFile(log)
		return err == nil && strings.Count(string(b), "FLOTILLA-GUEST-READY") >= n
	})
}

// shapeOf waits for the guest of instance id (console log in runDir) to
// report the shape want.
func shapeOf(t *testing.T, runDir, id string, want testenv.GuestShape) {
	t.Helper()
	log := filepath.Join(runDir, id+".console.log")
	var got testenv.GuestShape
	testenv.Eventually(t, 60*time.Second, "the guest to report its shape", func() bool {
		var ok bool
		got, ok = testenv.LatestGuestShape(log)
		// MemTotal is what the kernel keeps of the memory, a little less.
		return ok && got.VCPUs == want.VCPUs && got.DiskBytes == want.DiskBytes &&
			got.MemKiB <= want.MemKiB && got.MemKiB > want.MemKiB*3/4
	})
}

// guestDiskSum is the SHA-256 of what the guest of instance id on host h
// sees of its disk (the whole chain, as raw bytes), and its size.
func guestDiskSum(t *testing.T, h testenv.TestbedHost, id string) (string, int) {
	t.Helper()
	out, err := h.Virsh("domblklist", "flotilla-"+id, "--details")
	if err != nil {
		t.Fatalf("domblklist: %v %s", err, out)
	}
	var disk string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[1] == "disk" {
			disk = f[3]
		}
	}
	raw := filepath.Join(testenv.TestbedFlotillaDir, "sum.raw")
	qemuImg(t, h, "convert", "-U", "-O", "raw", disk, raw)
	defer os.Remove(h.Path(raw))
	b, err := os.ReadFile(h.Path(raw))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), len(b)
}

func qemuImg(t *testing.T, h testenv.TestbedHost, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := h.Command(ctx, "qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %v on %s: %v\n%s", args, h.Name, err, out)
	}
	return string(out)
}

// noTrace fails unless host h holds no domain and no file of instance id.
func noTrace(t *testing.T, h testenv.TestbedHost, id string) {
	t.Helper()
	if out, err := h.Virsh("list", "--all", "--name"); err != nil || strings.Contains(out, id) {
		t.Fatalf("domains on %s: %q %v", h.Name, out, err)
	}
	left, err := os.ReadDir(h.Path(filepath.Join(testenv.TestbedFlotillaDir, "disks")))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, f := range left {
		if strings.Contains(f.Name(), id) {
			t.Fatalf("file %s of %s left on %s", f.Name(), id, h.Name)
		}
	}
}

// TestResizeAcrossHostsOnRealLibvirt: a running guest whose disk holds a
// pattern is resized onto the other host; more is written while the bulk
// copy runs (it crosses in the second pass, the guest still up), and a
// little while the second pass runs (only that crosses once it is down). The resized
// guest reports its new vCPUs, memory and disk, and holds both writes;
// reverted, the original comes back on tb-1 byte for byte at its size,
// with nothing left on tb-2; resized again and confirmed, nothing is left
// on tb-1. Every state is seen on a watch in the seeds' words.
func TestResizeAcrossHostsOnRealLibvirt(t *testing.T) {
	e, id, dstAgent, h := newResizeEnv(t)
	src, dst := e.src, e.dst
	shapeOf(t, e.agent.RunDir, id, testenv.GuestShape{VCPUs: 1, MemKiB: 192 << 10, DiskBytes: 64 << 20})

	resize := func() map[string]any {
		op := e.g.MustCall("flotilla.v1.InstanceService/ResizeInstance", map[string]any{"id": id, "vcpus": 2, "memoryMib": 256,
			"diskGib": 1, "targetHostId": dst.Name, "gracefulTimeout": "30s"})
		opID := testenv.Str(op, "id")
		e.waitStep(opID, "copy-base-to-target")
		// Written while the base travels: it lands in the top layer, which
		// becomes the mid and crosses while the guest still runs.
		testenv.GuestDiskWrite(t, src.URI(), id, 0x6b, 32<<20, 16<<20)
		e.waitStep(opID, "copy-mid-to-target")
		// Written while the mid travels: it crosses once the guest is down.
		testenv.GuestDiskWrite(t, src.URI(), id, 0x7c, 56<<20, 1<<20)
		done := e.waitOp(opID)
		e.mustSucceed(done)
		return done
	}
	done := resize()
	steps, _ := done["steps"].([]any)
	if len(steps) != 13 {
		t.Fatalf("resize steps: %v", testenv.Str(done, "steps"))
	}
	inst := e.instance(id)
	if testenv.Str(inst, "status") != "STATUS_VERIFY_RESIZE" || testenv.Str(inst, "hostId") != dst.Name ||
		testenv.Str(inst, "spec", "vcpus") != "2" || testenv.Str(inst, "resize", "sourceHostId") != src.Name {
		t.Fatalf("resized: %v", inst)
	}
	shapeOf(t, dstAgent.RunDir, id, testenv.GuestShape{VCPUs: 2, MemKiB: 256 << 10, DiskBytes: 1 << 30})
	for _, p := range []struct{ pattern, at, n string }{{"0x5a", "0", "24M"}, {"0x6b", "32M", "16M"}, {"0x7c", "56M", "1M"}} {
		out := qemuIO(t, dst, "-r", "-U", "-c", "read -P "+p.pattern+" "+p.at+" "+p.n, diskOn(id))
		if strings.Contains(out, "Pattern verification failed") || !strings.Contains(out, "read ") {
			t.Fatalf("the resized disk on %s lacks %s at %s:\n%s", dst.Name, p.pattern, p.at, out)
		}
	}
	// The original waits on tb-1, shut off: what its guest would see.
	if out, err := src.Virsh("domstate", "flotilla-"+id); err != nil || out != "shut off" {
		t.Fatalf("the original on %s: %q %v", src.Name, out, err)
	}
	origSum, origSize := guestDiskSum(t, src, id)
	if origSize != 64<<20 {
		t.Fatalf("the original's disk is %d bytes", origSize)
	}
	// The revert's stop is a clean shutdown once the guest listens for it.
	readyIn(t, dstAgent.RunDir, id, 1)

	e.mustSucceed(e.do("RevertResize", map[string]any{"id": id, "gracefulTimeout": "30s"}))
	inst = e.instance(id)
	if testenv.Str(inst, "status") != "STATUS_RUNNING" || testenv.Str(inst, "hostId") != src.Name || testenv.Str(inst, "spec", "vcpus") != "1" {
		t.Fatalf("reverted: %v", inst)
	}
	noTrace(t, dst, id)
	shapeOf(t, e.agent.RunDir, id, testenv.GuestShape{VCPUs: 1, MemKiB: 192 << 10, DiskBytes: 64 << 20})
	e.mustSucceed(e.do("StopInstance", map[string]any{"id": id, "gracefulTimeout": "30s", "force": true}))
	if sum, size := guestDiskSum(t, src, id); sum != origSum || size != origSize {
		t.Fatalf("the reverted disk differs from the original: %s (%d bytes), was %s (%d bytes)", sum, size, origSum, origSize)
	}
	e.mustSucceed(e.do("StartInstance", map[string]any{"id": id}))
	e.waitGuestReady(id, 3)

	resize()
	e.mustSucceed(e.do("ConfirmResize", map[string]any{"id": id}))
	if inst = e.instance(id); testenv.Str(inst, "status") != "STATUS_RUNNING" || testenv.Str(inst, "hostId") != dst.Name || inst["resize"] != nil {
		t.Fatalf("confirmed: %v", inst)
	}
	noTrace(t, src, id)
	shapeOf(t, dstAgent.RunDir, id, testenv.GuestShape{VCPUs: 2, MemKiB: 256 << 10, DiskBytes: 1 << 30})
	out := qemuIO(t, dst, "-r", "-U", "-c", "read -P 0x5a 0 24M", "-c", "read -P 0x6b 32M 16M", "-c", "read -P 0x7c 56M 1M", diskOn(id))
	if strings.Contains(out, "Pattern verification failed") {
		t.Fatalf("the confirmed disk lost its data:\n%s", out)
	}

	// From offline (seed 000's resize): back to tb-1 in one pass, and it
	// stays off, shown offline again once resized.
	readyIn(t, dstAgent.RunDir, id, 1)
	e.mustSucceed(e.do("StopInstance", map[string]any{"id": id, "gracefulTimeout": "30s", "force": true}))
	done = e.do("ResizeInstance", map[string]any{"id": id, "memoryMib": 320, "targetHostId": src.Name})
	e.mustSucceed(done)
	if steps, _ := done["steps"].([]any); len(steps) != 5 {
		t.Fatalf("a resize from offline: %s", testenv.Str(done, "steps"))
	}
	if inst = e.instance(id); testenv.Str(inst, "status") != "STATUS_VERIFY_RESIZE" || testenv.Str(inst, "powerState") != "POWER_STATE_SHUT_OFF" ||
		testenv.Str(inst, "hostId") != src.Name {
		t.Fatalf("resized from offline: %v", inst)
	}
	if out, err := src.Virsh("domstate", "flotilla-"+id); err != nil || out != "shut off" {
		t.Fatalf("resized from offline on %s: %q %v", src.Name, out, err)
	}
	e.mustSucceed(e.do("ConfirmResize", map[string]any{"id": id}))
	noTrace(t, dst, id)
	e.mustSucceed(e.do("StartInstance", map[string]any{"id": id}))
	shapeOf(t, e.agent.RunDir, id, testenv.GuestShape{VCPUs: 2, MemKiB: 320 << 10, DiskBytes: 1 << 30})
	for _, st := range vocabulary.Seeds {
		if st.Vocabulary == vocabulary.ManageInstance && st.Word == "offline" && !h.shown(id, "STATUS_VERIFY_RESIZE", st) {
			t.Errorf("a resize from offline not shown offline while it waits for its confirm:\n%s", h.of(id))
		}
	}
	checkSeedStates(t, h, id)
	// A revert shows Nova's REVERT_RESIZE too.
	for _, st := range vocabulary.Seeds {
		if st.Vocabulary == vocabulary.Nova && st.Word == "REVERT_RESIZE" && !h.shown(id, "STATUS_REVERTING_RESIZE", st) {
			t.Errorf("a revert not shown as REVERT_RESIZE:\n%s", h.of(id))
		}
	}
}

// TestResizeRollsBackWhenTheTargetDiesOnRealLibvirt: the target's agent is
// killed while the base crosses; once it is back, the resize rolls back
// (Nova's REVERT_RESIZE while it does, seed 004's EXTENDEDFAILED after),
// the guest runs on tb-1 from its own disk with its data, and nothing of it
// is left on tb-2.
func TestResizeRollsBackWhenTheTargetDiesOnRealLibvirt(t *testing.T) {
	e, id, dstAgent, h := newResizeEnv(t)
	src, dst := e.src, e.dst
	op := e.g.MustCall("flotilla.v1.InstanceService/ResizeInstance", map[string]any{"id": id, "vcpus": 2, "targetHostId": dst.Name})
	opID := testenv.Str(op, "id")
	e.waitStep(opID, "copy-base-to-target")
	// Killed once the copy runs there (its progress shows bytes arrived):
	// killed before the step reached it, the agent would rightly say it never
	// got it, and the step would just be sent again.
	testenv.Eventually(t, 60*time.Second, "the base's copy to be under way on "+dst.Name, func() bool {
		cur := e.g.MustCall("flotilla.v1.OperationService/GetOperation", map[string]any{"id": opID})
		if testenv.Str(cur, "step") != "copy-base-to-target" {
			t.Fatalf("the copy ended before it was seen under way: %v", cur)
		}
		done, _ := strconv.ParseUint(testenv.Str(cur, "copy", "bytesDone"), 10, 64)
		return done > 0
	})
	// A receive cut off is not done (a layer is staged whole, by a rename,
	// or not at all): the restarted agent runs it again, once (issue 19).
	// Killed in that rerun too, it runs it no more, and the resize rolls back.
	dstAgent.Kill()
	dstAgent.Restart()
	testenv.Eventually(t, 60*time.Second, "the copy to run again on "+dst.Name, func() bool { return receiveRuns(t, dstAgent, opID) >= 2 })
	dstAgent.Kill()
	dstAgent.Restart()
	done := e.waitOp(opID)
	if testenv.Str(done, "state") != "OPERATION_STATE_FAILED" || testenv.Str(done, "error", "code") != "AGENT_RESTARTED" {
		t.Fatalf("resize with its target killed twice: %s %v %s", testenv.Str(done, "state"), done["error"], testenv.Str(done, "steps"))
	}
	inst := e.instance(id)
	if testenv.Str(inst, "status") != "STATUS_RUNNING" || testenv.Str(inst, "hostId") != src.Name || testenv.Str(inst, "spec", "vcpus") != "1" || inst["resize"] != nil {
		t.Fatalf("after the rollback: %v", inst)
	}
	if out, err := src.Virsh("domstate", "flotilla-"+id); err != nil || out != "running" {
		t.Fatalf("%s on %s: %q %v", id, src.Name, out, err)
	}
	noTrace(t, dst, id)
	// Thawed: the guest runs from its own disk again, holding its data.
	if out, err := src.Virsh("domblklist", "flotilla-"+id); err != nil || !strings.Contains(out, diskOn(id)) {
		t.Fatalf("the guest's disk after the rollback: %q %v", out, err)
	}
	if out := qemuIO(t, src, "-r", "-U", "-c", "read -P 0x5a 0 24M", diskOn(id)); strings.Contains(out, "Pattern verification failed") {
		t.Fatalf("the disk lost its data:\n%s", out)
	}
	checkSeedStates(t, h, id)
}

// receiveRuns counts the receive steps of operation opID agent a began.
func receiveRuns(t *testing.T, a *testenv.Agent, opID string) int {
	t.Helper()
	b, err := os.ReadFile(a.Log)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"msg":"running step"`) && strings.Contains(line, opID) && strings.Contains(line, "STEP_ACTION_RECEIVE_DISK") {
			n++
		}
	}
	return n
}

// TestExtendOnRealLibvirt: the disk of a running guest grows in place and
// the guest sees the new size without a reboot; a stopped one's grows too,
// and it boots with it.
func TestExtendOnRealLibvirt(t *testing.T) {
	e := newEnv(t, nil, nil)
	id := e.create("extender")
	e.waitGuestReady(id, 1)
	shape := testenv.GuestShape{VCPUs: 1, MemKiB: 192 << 10, DiskBytes: 64 << 20}
	shapeOf(t, e.agent.RunDir, id, shape)

	e.mustSucceed(e.do("ExtendInstance", map[string]any{"id": id, "diskGib": 1}))
	shape.DiskBytes = 1 << 30
	shapeOf(t, e.agent.RunDir, id, shape)
	inst := e.instance(id)
	if testenv.Str(inst, "status") != "STATUS_RUNNING" || testenv.Str(inst, "spec", "diskGib") != "1" {
		t.Fatalf("extended: %v", inst)
	}
	log, _ := os.ReadFile(filepath.Join(e.agent.RunDir, id+".console.log"))
	if n := strings.Count(string(log), "FLOTILLA-GUEST-READY"); n != 1 {
		t.Fatalf("the guest booted %d times: the extend rebooted it", n)
	}

	e.mustSucceed(e.do("StopInstance", map[string]any{"id": id, "gracefulTimeout": "30s", "force": true}))
	e.mustSucceed(e.do("ExtendInstance", map[string]any{"id": id, "diskGib": 2}))
	e.mustSucceed(e.do("StartInstance", map[string]any{"id": id}))
	e.waitGuestReady(id, 2)
	shape.DiskBytes = 2 << 30
	shapeOf(t, e.agent.RunDir, id, shape)
}
