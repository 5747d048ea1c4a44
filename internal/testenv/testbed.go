package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/freeport"
)

// A test bed is several real hypervisor hosts on this machine, each with
// its own libvirtd in its own mount and network namespaces, made by
// scripts/testbed.sh (see docs/testbed.md). Its agents run inside their
// host's namespaces: each listens for disk pulls on its host's address and
// sees the host's own /var/lib/flotilla (images, disks, journal), as on a
// real host. The coordinator runs in the machine's own namespace, on the
// bridge's address, which every host reaches.

// TestbedFlotillaDir is /var/lib/flotilla as each test bed host has it:
// its agents keep their images, disks, console logs and journal there.
const TestbedFlotillaDir = "/var/lib/flotilla"

// TestbedPeerPort is where a test bed agent serves disks, on its host's
// address (each host has its own ports).
const TestbedPeerPort = 7450

// Testbed is a running test bed.
type Testbed struct {
	// BridgeAddr is the machine's own address on the bridge: what the
	// hosts dial to reach a process of the test (a coordinator).
	BridgeAddr string
	Hosts      []TestbedHost

	run func(args ...string) (string, error) // runs scripts/testbed.sh
}

// TestbedHost is one host of a test bed.
type TestbedHost struct {
	Index  int    // 1..n
	Name   string // the host id its agent registers as: "tb-<index>"
	Addr   string // its address on the bridge
	Netns  string // its network namespace
	Socket string // its libvirtd's unix socket (reachable from anywhere)
	Dir    string // its state directory, as the test sees it
	// LibvirtdPID is its libvirtd, whose namespaces are the host's.
	LibvirtdPID int
}

// URI is the libvirt URI of the host's libvirtd.
func (h TestbedHost) URI() string { return "qemu:///system?socket=" + h.Socket }

// Path is where the test sees path p of the host, a path under
// TestbedFlotillaDir (the host's own copy of that directory).
func (h TestbedHost) Path(p string) string {
	rel, err := filepath.Rel(TestbedFlotillaDir, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		panic(fmt.Sprintf("testbed: %s is not under %s", p, TestbedFlotillaDir))
	}
	return filepath.Join(h.Dir, "flotilla", rel)
}

// Command runs name on the host: in its mount and network namespaces, so
// it sees the host's files and address.
func (h TestbedHost) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append(h.nsenter(), append([]string{name}, args...)...)...)
}

func (h TestbedHost) nsenter() []string {
	return []string{"--target", strconv.Itoa(h.LibvirtdPID), "--mount", "--net", "--"}
}

// Virsh runs virsh against the host's libvirtd.
func (h TestbedHost) Virsh(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return Run(ctx, "virsh", append([]string{"-q", "-c", h.URI()}, args...)...)
}

// RequireTestbed checks what a test bed needs: root, the commands
// scripts/testbed.sh runs, and the test guest image it copies to each host.
func RequireTestbed(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: not run with -short")
	}
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the test bed makes namespaces and starts libvirtd)")
	}
	for _, cmd := range []string{"ip", "unshare", "nsenter", "virsh", "libvirtd", "virtlogd", "qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, cmd+" (run scripts/setup-host.sh)")
		}
	}
	if _, err := os.Stat(filepath.Join(ImageDir(), "flotilla-test", ".complete")); err != nil {
		missing = append(missing, "test guest image (run scripts/build-test-guest.sh)")
	}
	if len(missing) > 0 {
		Missing(t, strings.Join(missing, "; "))
	}
}

// StartTestbed brings up a test bed of n hosts and takes it down again when
// the test ends. One test bed exists at a time on a machine: a test waits
// here while another (of any package) has one.
func StartTestbed(t testing.TB, n int) *Testbed {
	t.Helper()
	RequireTestbed(t)
	lockTestbed(t)
	script := filepath.Join(RepoRoot(t), "scripts", "testbed.sh")
	// Bounded: a daemon that hangs must not hang the test.
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, script, args...).CombinedOutput()
		return string(out), err
	}
	// Registered first, so that it runs after the test's own cleanups have
	// stopped the agents it started on the hosts.
	t.Cleanup(func() {
		if out, err := run("down"); err != nil {
			t.Errorf("testbed.sh down: %v\n%s", err, out)
		}
	})
	if out, err := run("up", strconv.Itoa(n)); err != nil {
		t.Fatalf("testbed.sh up %d: %v\n%s", n, err, out)
	}
	out, err := run("status")
	if err != nil {
		t.Fatalf("testbed.sh status: %v\n%s", err, out)
	}
	tb, err := parseTestbedStatus(out)
	if err != nil {
		t.Fatalf("testbed.sh status: %v\n%s", err, out)
	}
	if len(tb.Hosts) != n {
		t.Fatalf("testbed.sh status lists %d hosts, want %d:\n%s", len(tb.Hosts), n, out)
	}
	tb.run = run
	return tb
}

// Down takes the test bed down now (the test's end would do it too, and
// does nothing then).
func (tb *Testbed) Down(t testing.TB) {
	t.Helper()
	if out, err := tb.run("down"); err != nil {
		t.Fatalf("testbed.sh down: %v\n%s", err, out)
	}
}

// lockTestbed holds the machine's one test bed for the rest of the test
// (not the shared libvirtd's lock: the test bed has daemons of its own).
func lockTestbed(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/tmp/flotilla-testbed-tests.lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() })
}

// parseTestbedStatus reads `testbed.sh status`: a bridge line and one line
// per host, each of key=value words.
func parseTestbedStatus(out string) (*Testbed, error) {
	tb := &Testbed{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		kv := map[string]string{}
		for _, w := range f[1:] {
			if k, v, ok := strings.Cut(w, "="); ok {
				kv[k] = v
			}
		}
		switch f[0] {
		case "bridge":
			tb.BridgeAddr = kv["addr"]
		case "host":
			idx, err1 := strconv.Atoi(kv["id"])
			pid, err2 := strconv.Atoi(kv["libvirtd"])
			if err1 != nil || err2 != nil || kv["state"] != "ok" {
				return nil, fmt.Errorf("host line %q", line)
			}
			tb.Hosts = append(tb.Hosts, TestbedHost{Index: idx, Name: fmt.Sprintf("tb-%d", idx), Addr: kv["addr"],
				Netns: kv["ns"], Socket: kv["socket"], Dir: kv["dir"], LibvirtdPID: pid})
		}
	}
	if tb.BridgeAddr == "" {
		return nil, fmt.Errorf("no bridge address")
	}
	return tb, nil
}

// FreeAddr returns a free address on the bridge, for a coordinator the
// hosts' agents dial.
func (tb *Testbed) FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeport.AddrOn(tb.BridgeAddr)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// StartTestbedAgent starts a libvirt agent for host h, registering as
// h.Name with the coordinator at coordAddr (on the bridge). It runs in the
// host's namespaces, with the host's own directories under
// TestbedFlotillaDir, and serves disks on the host's address: extra must
// give it --tls-* (a certificate for h.Name that names h.Addr) or
// --peer-insecure. Its log goes to dir. The Agent's directories are paths
// as the test sees them.
func StartTestbedAgent(t testing.TB, dir, coordAddr string, h TestbedHost, extra ...string) *Agent {
	t.Helper()
	in := func(sub string) string { return filepath.Join(TestbedFlotillaDir, sub) }
	a := &Agent{HostID: h.Name, RunDir: h.Path(in("run")), DiskDir: h.Path(in("disks")), StateDir: h.Path(in("agent"))}
	args := append([]string{
		"--coordinator=" + coordAddr, "--host-id=" + h.Name, "--hypervisor=libvirt", "--libvirt-socket=" + h.Socket,
		"--image-dir=" + in("images"), "--disk-dir=" + in("disks"), "--run-dir=" + in("run"), "--state-dir=" + in("agent"),
		fmt.Sprintf("--peer-listen=%s:%d", h.Addr, TestbedPeerPort), "--log-level=debug",
	}, extra...)
	a.Proc = startWrapped(t, "flotilla-agent", "agent-"+h.Name, dir, append([]string{"nsenter"}, h.nsenter()...), nil, args...)
	return a
}

// RestartLibvirtd stops the libvirtd of tb.Hosts[i] (the host's own,
// never the machine's) and starts it again; its guests run on. It returns
// the host as it is now (its daemon's new pid) and records it in tb.
func (tb *Testbed) RestartLibvirtd(t testing.TB, i int) TestbedHost {
	t.Helper()
	if out, err := tb.run("restart-libvirtd", strconv.Itoa(tb.Hosts[i].Index)); err != nil {
		t.Fatalf("testbed.sh restart-libvirtd %d: %v\n%s", tb.Hosts[i].Index, err, out)
	}
	out, err := tb.run("status")
	if err != nil {
		t.Fatalf("testbed.sh status: %v\n%s", err, out)
	}
	now, err := parseTestbedStatus(out)
	if err != nil {
		t.Fatalf("testbed.sh status: %v\n%s", err, out)
	}
	for _, h := range now.Hosts {
		if h.Index == tb.Hosts[i].Index {
			tb.Hosts[i] = h
		}
	}
	return tb.Hosts[i]
}
