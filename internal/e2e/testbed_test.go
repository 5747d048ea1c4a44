package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/mtls"
	"github.com/flotilla-vm/flotilla/internal/testenv"
)

// Tests on the test bed: several real hosts on this machine, each with its
// own libvirtd (scripts/testbed.sh, docs/testbed.md).

// TestTestbedTwoLibvirtds: each of two hosts runs a domain of the same name
// at the same time, in its own namespaces; the hosts reach each other over
// the bridge; and down leaves nothing of them behind.
func TestTestbedTwoLibvirtds(t *testing.T) {
	tb := testenv.StartTestbed(t, 2)
	if _, err := exec.LookPath("ping"); err != nil {
		testenv.Missing(t, "ping (run scripts/setup-host.sh)")
	}
	img := filepath.Join(testenv.TestbedFlotillaDir, "images", "flotilla-test")
	domXML := filepath.Join(t.TempDir(), "same.xml")
	// The host's own copy of the test guest (paths as QEMU on the host sees them).
	if err := os.WriteFile(domXML, []byte(`<domain type='qemu'>
  <name>flotilla-testbed-same</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>`+img+`/vmlinuz</kernel><initrd>`+img+`/initrd.img</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline></os>
  <devices><serial type='pty'/></devices>
</domain>`), 0o644); err != nil {
		t.Fatal(err)
	}
	var qemus []int
	for _, h := range tb.Hosts {
		if out, err := h.Virsh("create", domXML); err != nil {
			t.Fatalf("%s: virsh create: %v %s", h.Name, err, out)
		}
	}
	for _, h := range tb.Hosts {
		if out, err := h.Virsh("domstate", "flotilla-testbed-same"); err != nil || out != "running" {
			t.Fatalf("%s: domain state %q %v, want running", h.Name, out, err)
		}
		if out, _ := h.Virsh("list", "--all", "--name"); out != "flotilla-testbed-same" {
			t.Fatalf("%s lists %q: it sees another host's domains", h.Name, out)
		}
		// Its QEMU runs in the host's network namespace.
		b, err := os.ReadFile(filepath.Join(h.Dir, "run-libvirt", "qemu", "flotilla-testbed-same.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		qemuNet, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		hostNet, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", h.LibvirtdPID))
		if err1 != nil || err2 != nil || qemuNet != hostNet {
			t.Fatalf("%s: QEMU (pid %d) in network namespace %s, libvirtd in %s (%v %v)", h.Name, pid, qemuNet, hostNet, err1, err2)
		}
		qemus = append(qemus, pid)
	}
	if qemus[0] == qemus[1] {
		t.Fatalf("both hosts report QEMU pid %d", qemus[0])
	}

	// Each host reaches the other's address and the bridge's.
	for i, h := range tb.Hosts {
		for _, addr := range []string{tb.Hosts[1-i].Addr, tb.BridgeAddr} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err := h.Command(ctx, "ping", "-c", "1", "-W", "5", addr).CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("%s cannot ping %s: %v\n%s", h.Name, addr, err, out)
			}
		}
	}

	tb.Down(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := testenv.Run(ctx, "ip", "netns", "list"); err != nil || strings.Contains(out, "flotilla-tb-") {
		t.Fatalf("namespaces after down: %q %v", out, err)
	}
	if out, err := testenv.Run(ctx, "ip", "link", "show"); err != nil || strings.Contains(out, "flotilla-tb") {
		t.Fatalf("links after down: %q %v", out, err)
	}
	for _, pid := range append(qemus, tb.Hosts[0].LibvirtdPID, tb.Hosts[1].LibvirtdPID) {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("process %d of the test bed still there after down (%v)", pid, err)
		}
	}
	for _, h := range tb.Hosts {
		if _, err := os.Stat(h.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after down: %v", h.Dir, err)
		}
	}
	if _, err := os.Stat(filepath.Dir(tb.Hosts[0].Dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the test bed's directory after down: %v", err)
	}
}

// tbEnv is a coordinator and the agent of host tb-1 on a test bed of two
// hosts, with mutual TLS everywhere: an operator's grpcurl, the agents'
// sessions, and the disk pulls between agents, which go from one host's
// address to the other's over the bridge.
type tbEnv struct {
	*env
	src, dst testenv.TestbedHost
	issue    func(name, role string, hosts ...string) mtls.Files
}

func newTestbedEnv(t *testing.T) *tbEnv {
	t.Helper()
	return newTestbedEnvWith(t)
}

// newTestbedEnvWith is newTestbedEnv with extra flags for tb-1's agent.
func newTestbedEnvWith(t *testing.T, agentFlags ...string) *tbEnv {
	t.Helper()
	tb := testenv.StartTestbed(t, 2)
	dir := t.TempDir()
	issue := testCA(t, dir)
	coord := testenv.StartCoordinatorAt(t, dir, tb.FreeAddr(t),
		append(tlsFlags(issue("c1", mtls.RoleCoordinator, tb.BridgeAddr)), "--agent-heartbeat-interval=500ms")...)
	g := testenv.NewGrpcurlTLS(t, coord.Addr, issue("alice", "admin")) // drains hosts, makes networks: an admin
	coord.WaitReady(t, g)
	e := &tbEnv{env: &env{t: t, dir: dir, coord: coord, g: g}, src: tb.Hosts[0], dst: tb.Hosts[1], issue: issue}
	e.agent, e.host = e.startAgent(e.src, agentFlags...), e.src.Name
	return e
}

// startAgent starts host h's agent and waits until it is READY.
func (e *tbEnv) startAgent(h testenv.TestbedHost, extra ...string) *testenv.Agent {
	e.t.Helper()
	a := testenv.StartTestbedAgent(e.t, e.dir, e.coord.Addr, h, append(tlsFlags(e.issue(h.Name, mtls.RoleAgent, h.Addr)), extra...)...)
	testenv.WaitHost(e.t, e.g, h.Name, 0)
	return a
}

// createOnSource creates a running instance on tb-1 and waits for its
// guest to be up.
func (e *tbEnv) createOnSource(name string) string {
	e.t.Helper()
	op := e.do("CreateInstance", map[string]any{"name": name, "spec": map[string]any{"vcpus": 1, "memoryMib": 192, "image": "flotilla-test"}})
	e.mustSucceed(op)
	id := testenv.Str(op, "instanceId")
	e.waitGuestReady(id, 1)
	return id
}

// drainSource drains tb-1 with the MOVE policy.
func (e *tbEnv) drainSource() {
	e.t.Helper()
	h := e.g.MustCall("flotilla.v1.HostService/DrainHost", map[string]any{"id": e.src.Name, "policy": "DRAIN_POLICY_MOVE", "gracefulTimeout": "30s"})
	if testenv.Str(h, "status") != "HOST_STATUS_DRAINING" {
		e.t.Fatalf("drained host: %v", h)
	}
}

// TestDrainMovesInstancesOnRealLibvirt is TestDrainMovesInstances on two
// real hosts: tb-1 is drained with the MOVE policy, and a running and a
// stopped instance move to tb-2 (tb-2's agent pulls each disk from tb-1's)
// and end as they were, there. A pattern written into each disk on tb-1 is
// read back from the copy on tb-2.
func TestDrainMovesInstancesOnRealLibvirt(t *testing.T) {
	e := newTestbedEnv(t)
	src, dst := e.src, e.dst

	// Two instances on tb-1, the only host yet; each gets a pattern written
	// into its disk while it is stopped.
	patterns := map[string]string{}
	running, stopped := e.createOnSource("mover-running"), e.createOnSource("mover-stopped")
	for i, id := range []string{running, stopped} {
		e.mustSucceed(e.do("StopInstance", map[string]any{"id": id, "gracefulTimeout": "60s", "force": true}))
		patterns[id] = fmt.Sprintf("0x%x", 0x5a+i)
		qemuIO(t, src, "-c", "write -P "+patterns[id]+" 1M 4k", diskOn(id))
	}
	e.mustSucceed(e.do("StartInstance", map[string]any{"id": running}))
	e.waitGuestReady(running, 2) // so that the move's stop is a clean guest shutdown
	e.startAgent(dst)

	e.drainSource()
	for _, c := range []struct {
		id, status, domstate string
		steps                int
	}{{running, "STATUS_RUNNING", "running", 6}, {stopped, "STATUS_STOPPED", "shut off", 4}} {
		done := e.waitOp(moveOf(t, e.g, c.id))
		steps, _ := done["steps"].([]any)
		if testenv.Str(done, "state") != "OPERATION_STATE_SUCCEEDED" || len(steps) != c.steps || testenv.Str(done, "targetHostId") != dst.Name {
			t.Fatalf("move of %s: %s %s, %d steps %s", c.id, testenv.Str(done, "state"), testenv.Str(done, "error"), len(steps), testenv.Str(done, "steps"))
		}
		for _, s := range steps {
			s, _ := s.(map[string]any)
			if testenv.Str(s, "state") != "STEP_STATE_SUCCEEDED" || testenv.Str(s, "attempt") != "1" {
				t.Fatalf("move of %s: step %v", c.id, s)
			}
		}
		inst := e.instance(c.id)
		if testenv.Str(inst, "hostId") != dst.Name || testenv.Str(inst, "status") != c.status {
			t.Fatalf("after the move: on %s, %s (want %s, %s)", testenv.Str(inst, "hostId"), testenv.Str(inst, "status"), dst.Name, c.status)
		}
		// What the two libvirtds and the two hosts' disk directories say.
		if out, err := dst.Virsh("domstate", "flotilla-"+c.id); err != nil || out != c.domstate {
			t.Fatalf("%s on %s: %q %v, want %s", c.id, dst.Name, out, err, c.domstate)
		}
		if out, err := src.Virsh("domstate", "flotilla-"+c.id); err == nil {
			t.Fatalf("%s still defined on %s: %s", c.id, src.Name, out)
		}
		if _, err := os.Stat(src.Path(diskOn(c.id))); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s's disk on %s after the move: %v", c.id, src.Name, err)
		}
		// Read-only and without taking QEMU's locks: the guest may be running.
		out := qemuIO(t, dst, "-r", "-U", "-c", "read -P "+patterns[c.id]+" 1M 4k", diskOn(c.id))
		if !strings.Contains(out, "read 4096/4096 bytes") || strings.Contains(out, "Pattern verification failed") {
			t.Fatalf("%s's disk on %s does not hold the pattern written on %s:\n%s", c.id, dst.Name, src.Name, out)
		}
	}

	// Nothing is left on tb-1, nor did anything become an orphan.
	testenv.Eventually(t, 10*time.Second, src.Name+" to be empty", func() bool {
		h := e.g.MustCall("flotilla.v1.HostService/GetHost", map[string]any{"id": src.Name})
		return testenv.Str(h, "instanceCount") == "0" && testenv.Str(h, "orphanDomains") == "[]"
	})
	if h := e.g.MustCall("flotilla.v1.HostService/GetHost", map[string]any{"id": dst.Name}); testenv.Str(h, "instanceCount") != "2" || testenv.Str(h, "orphanDomains") != "[]" {
		t.Fatalf("%s after the drain: %v", dst.Name, h)
	}
	// Each disk went from tb-1's address to tb-2's, over mutual TLS.
	srcLog, _ := os.ReadFile(e.agent.Log)
	for _, want := range []string{
		fmt.Sprintf(`"listen":"%s:%d"`, src.Addr, testenv.TestbedPeerPort), `"tls":true`,
	} {
		if !strings.Contains(string(srcLog), want) {
			t.Fatalf("%s's agent log has no %s", src.Name, want)
		}
	}
	pulled := 0
	for _, line := range strings.Split(string(srcLog), "\n") {
		if strings.Contains(line, `"msg":"disk pulled"`) {
			if !strings.Contains(line, `"peer_addr":"`+dst.Addr+`:`) || !strings.Contains(line, `"peer_host":"`+dst.Name+`"`) {
				t.Fatalf("a disk pulled by someone else: %s", line)
			}
			pulled++
		}
	}
	if pulled != 2 {
		t.Fatalf("%s's agent served %d disks, want 2", src.Name, pulled)
	}
}

// TestMoveRollsBackOnRealLibvirt is TestMoveRollsBackWhenTheCopyFails on
// two real hosts: tb-2 lacks the instance's image, so its import fails
// (IMAGE_NOT_FOUND, permanent); the move rolls back and the instance runs
// on tb-1 again, from its own disk, with nothing left on tb-2.
func TestMoveRollsBackOnRealLibvirt(t *testing.T) {
	e := newTestbedEnv(t)
	src, dst := e.src, e.dst
	id := e.createOnSource("unmovable")
	if err := os.RemoveAll(dst.Path(filepath.Join(testenv.TestbedFlotillaDir, "images", "flotilla-test"))); err != nil {
		t.Fatal(err)
	}
	e.startAgent(dst)

	e.drainSource()
	done := e.waitOp(moveOf(t, e.g, id))
	want := []string{"stop-on-source:STEP_STATE_COMPENSATED", "offer-disk:STEP_STATE_SUCCEEDED", "copy-disk-to-target:STEP_STATE_FAILED",
		"start-on-target:STEP_STATE_SKIPPED", "switch-host:STEP_STATE_SKIPPED", "remove-from-source:STEP_STATE_SKIPPED", "start-on-source:STEP_STATE_SUCCEEDED"}
	var got []string
	steps, _ := done["steps"].([]any)
	for _, s := range steps {
		s, _ := s.(map[string]any)
		got = append(got, testenv.Str(s, "name")+":"+testenv.Str(s, "state"))
	}
	if testenv.Str(done, "state") != "OPERATION_STATE_FAILED" || testenv.Str(done, "error", "code") != "IMAGE_NOT_FOUND" || !slices.Equal(got, want) {
		t.Fatalf("failed move: %s %s %v", testenv.Str(done, "state"), testenv.Str(done, "error"), got)
	}
	inst := e.instance(id)
	if testenv.Str(inst, "hostId") != src.Name || testenv.Str(inst, "status") != "STATUS_RUNNING" {
		t.Fatalf("after the rolled-back move: on %s, %s", testenv.Str(inst, "hostId"), testenv.Str(inst, "status"))
	}
	if out, err := src.Virsh("domstate", "flotilla-"+id); err != nil || out != "running" {
		t.Fatalf("%s on %s: %q %v, want running", id, src.Name, out, err)
	}
	if out, err := dst.Virsh("list", "--all", "--name"); err != nil || out != "" {
		t.Fatalf("domains left on %s: %q %v", dst.Name, out, err)
	}
	left, err := os.ReadDir(dst.Path(filepath.Join(testenv.TestbedFlotillaDir, "disks")))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("files left in %s's disk directory: %v", dst.Name, left)
	}
}

// diskOn is the path of an instance's disk on a test bed host.
func diskOn(id string) string {
	return filepath.Join(testenv.TestbedFlotillaDir, "disks", id+".qcow2")
}

// qemuIO runs qemu-io on a qcow2 file on host h and returns its output.
func qemuIO(t *testing.T, h testenv.TestbedHost, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := h.Command(ctx, "qemu-io", append([]string{"-f", "qcow2"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io %v on %s: %v\n%s", args, h.Name, err, out)
	}
	return string(out)
}

// moveOf waits for the instance's MOVE operation to exist and returns its id.
func moveOf(t *testing.T, g *testenv.Grpcurl, instanceID string) string {
	t.Helper()
	var id string
	testenv.Eventually(t, 10*time.Second, "a move of "+instanceID, func() bool {
		r := g.MustCall("flotilla.v1.OperationService/ListOperations", map[string]any{"instanceId": instanceID})
		ops, _ := r["operations"].([]any)
		for _, o := range ops {
			if o, _ := o.(map[string]any); testenv.Str(o, "kind") == "OPERATION_KIND_MOVE" {
				id = testenv.Str(o, "id")
				return true
			}
		}
		return false
	})
	return id
}
