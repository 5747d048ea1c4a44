package clitest

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/internal/testenv"
	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// One coordinator and agent serve every command group in turn; the
// groups share one instance, created first and deleted last.
func TestCLI(t *testing.T) {
	c := startCluster(t)
	var id string
	groups := []struct {
		name string
		test func(c *cluster, id string)
	}{
		{"instances", testInstances},
		{"lifecycle", testLifecycle},
		{"wait", testWait},
		{"operations", testOperations},
		{"hosts", testHosts},
		{"networks", testNetworks},
		{"cluster", testClusterCommands},
		{"settings", testSettings},
		{"more lifecycle", testMoreLifecycle},
		{"errors", testErrors},
		{"delete", testDelete},
	}
	if !t.Run("create", func(t *testing.T) { c.t = t; id = testCreate(c) }) {
		t.FailNow()
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) { c.t = t; g.test(c, id) })
	}
}

// waited is what a waited-for change prints as a document.
type waited struct {
	Operation, Instance json.RawMessage
}

func parseWaited(c *cluster, out string) (*flotillav1.Operation, *flotillav1.Instance) {
	c.t.Helper()
	var w waited
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		c.t.Fatalf("not one document: %v\n%s", err, out)
	}
	op := fromJSON(c.t, string(w.Operation), &flotillav1.Operation{})
	var in *flotillav1.Instance
	if w.Instance != nil {
		in = fromJSON(c.t, string(w.Instance), &flotillav1.Instance{})
	}
	return op, in
}

// create with the placement and recovery flags, waited for with JSON
// output: the operation's id on stderr at once and plain progress lines
// (a pipe is no terminal), one document on stdout.
func testCreate(c *cluster) string {
	t := c.t
	r := c.ok("create", "--name", "web", "--image", "flotilla-test", "--label", "team=db", "--anti-affinity", "g1",
		"--hypervisor", "fake", "--recovery", "restart", "--max-restarts", "2", "--wait", "-o", "json")
	op, in := parseWaited(c, r.stdout)
	if op.GetState() != flotillav1.OperationState_OPERATION_STATE_SUCCEEDED || in.GetStatus() != flotillav1.Status_STATUS_RUNNING {
		t.Fatalf("create ended %v, instance %v\n%s", op.GetState(), in.GetStatus(), r)
	}
	pl, rec := in.GetPlacement(), in.GetRecovery()
	if in.GetLabels()["team"] != "db" || pl.GetAntiAffinityGroup() != "g1" || pl.GetHypervisorKind() != "fake" ||
		rec.GetPolicy() != flotillav1.RecoveryPolicy_RECOVERY_POLICY_RESTART || rec.GetMaxRestarts() != 2 {
		t.Errorf("create flags lost: labels %v placement %v recovery %v", in.GetLabels(), pl, rec)
	}
	first, _, _ := strings.Cut(r.stderr, "\n")
	if first != "operation "+op.GetId()+": CREATE of instance "+in.GetId()+" (Ctrl-C stops waiting, not the operation)" {
		t.Errorf("stderr does not start with the operation: %s", r)
	}
	if strings.ContainsAny(r.stderr, "\r\x1b") || !strings.Contains(r.stderr, "\n"+op.GetId()+" CREATE SUCCEEDED\n") {
		t.Errorf("want plain progress lines on a pipe: %q", r.stderr)
	}
	return in.GetId()
}

// get, list, usage and watch in every output format.
func testInstances(c *cluster, id string) {
	t := c.t
	row := parseTable(t, c.ok("get", id).stdout).row(t, "ID", id)
	if row["NAME"] != "web" || row["STATUS"] != "RUNNING" || row["POWER"] != "RUNNING" || row["HOST"] != "fake-1" {
		t.Errorf("get table row %v", row)
	}
	wide := parseTable(t, c.ok("get", id, "-o", "wide").stdout).row(t, "ID", id)
	if wide["IMAGE"] != "flotilla-test" || wide["LABELS"] != "team=db" || !strings.Contains(wide["PLACEMENT"], "anti-affinity=g1") {
		t.Errorf("get wide row %v", wide)
	}
	nova := parseTable(t, c.ok("get", id, "--vocabulary", "nova").stdout).row(t, "ID", id)
	if nova["NOVA"] != "ACTIVE" {
		t.Errorf("get --vocabulary nova row %v", nova)
	}
	// Flags after the ID as well as before the command.
	js := c.ok("get", id, "-o", "json")
	if in := fromJSON(t, js.stdout, &flotillav1.Instance{}); in.GetId() != id || in.GetSpec().GetImage() != "flotilla-test" {
		t.Errorf("get -o json: %v", in)
	}
	sameYAML(t, c.ok("-o", "yaml", "get", id).stdout, js.stdout)

	list := c.ok("list", "-o", "json")
	if ins := items(t, list.stdout, func() *flotillav1.Instance { return &flotillav1.Instance{} }); len(ins) != 1 || ins[0].GetId() != id {
		t.Errorf("list -o json: %v", ins)
	}
	sameYAML(t, c.ok("list", "-o", "yaml").stdout, list.stdout)
	parseTable(t, c.ok("list", "--status", "running").stdout).row(t, "ID", id)
	if tb := parseTable(t, c.ok("list", "--status", "stopped").stdout); len(tb.rows) != 0 {
		t.Errorf("list --status stopped: %v", tb.rows)
	}
	if r := c.ok("list", "-o", "jsonpath={.items[*].name}/{.items[0].spec.image}"); r.stdout != "web/flotilla-test\n" {
		t.Errorf("jsonpath: %q", r.stdout)
	}

	usage := c.ok("usage", id, "-o", "json")
	us := items(t, usage.stdout, func() *flotillav1.InstanceUsage { return &flotillav1.InstanceUsage{} })
	if len(us) != 2 || us[0].GetInstanceId() != id {
		t.Errorf("usage -o json: %v", us)
	}
	if tb := parseTable(t, c.ok("usage", id, "--vocabulary", "azure").stdout); len(tb.rows) != 4 || tb.rows[0]["VOCABULARY"] != "azure" {
		t.Errorf("usage table: %v", tb.rows)
	}
	if r := c.ok("usage", id, "-o", "yaml"); !strings.HasPrefix(r.stdout, "items:\n") {
		t.Errorf("usage -o yaml: %s", r.stdout)
	}

	// watch streams one JSON object per line from the revision given; an
	// interrupt ends it normally.
	cmd := c.command(t.Context(), "watch", "--from-revision", "1", "--id", id, "-o", "json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	seen := false
	for !seen && sc.Scan() {
		ev := fromJSON(t, sc.Text(), &flotillav1.WatchInstancesResponse{})
		for _, in := range ev.GetInstances() {
			seen = seen || in.GetId() == id && in.GetStatus() == flotillav1.Status_STATUS_RUNNING
		}
	}
	if !seen {
		t.Errorf("watch ended without showing %s RUNNING: %v", id, sc.Err())
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Errorf("watch interrupted: %v", err)
	}
}

// Every lifecycle action, waited for; the instance's status in the end
// read with jsonpath.
func testLifecycle(c *cluster, id string) {
	t := c.t
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"stop", id, "--graceful", "30s"}, "STOP SUCCEEDED STATUS_STOPPED"},
		{[]string{"start", id}, "START SUCCEEDED STATUS_RUNNING"},
		{[]string{"pause", id}, "PAUSE SUCCEEDED STATUS_PAUSED"},
		{[]string{"unpause", id}, "UNPAUSE SUCCEEDED STATUS_RUNNING"},
		{[]string{"suspend", id}, "SUSPEND SUCCEEDED STATUS_SUSPENDED"},
		{[]string{"resume", id}, "RESUME SUCCEEDED STATUS_RUNNING"},
		{[]string{"restart", id}, "RESTART SUCCEEDED STATUS_RUNNING"},
		{[]string{"restart", id, "--hard"}, "HARD_RESTART SUCCEEDED STATUS_RUNNING"},
		{[]string{"update", id, "--label", "team=db", "--label", "tier=gold"}, "UPDATE SUCCEEDED STATUS_RUNNING"},
		{[]string{"resize", id, "--vcpus", "2"}, "RESIZE SUCCEEDED STATUS_VERIFY_RESIZE"},
		{[]string{"confirm-resize", id}, "CONFIRM_RESIZE SUCCEEDED STATUS_RUNNING"},
		{[]string{"resize", id, "--memory-mib", "512"}, "RESIZE SUCCEEDED STATUS_VERIFY_RESIZE"},
		{[]string{"revert-resize", id}, "REVERT_RESIZE SUCCEEDED STATUS_RUNNING"},
		{[]string{"extend", id, "--disk-gib", "20"}, "EXTEND SUCCEEDED STATUS_RUNNING"},
	}
	for _, s := range steps {
		r := c.ok(append(s.args, "--wait", "-o", "jsonpath={.operation.kind} {.operation.state} {.instance.status}")...)
		got := strings.NewReplacer("OPERATION_KIND_", "", "OPERATION_STATE_", "").Replace(strings.TrimSpace(r.stdout))
		if got != s.want {
			t.Errorf("%s: got %q, want %q", s.args, got, s.want)
		}
	}
	if r := c.ok("get", id, "-o", "jsonpath={.spec.vcpus} {.spec.memoryMib} {.spec.diskGib} {.labels.tier}"); r.stdout != "2 256 20 gold\n" {
		t.Errorf("shape after the changes: %q", r.stdout)
	}
	// What the fake cannot do is refused (exit 4) with what to look at.
	c.fails(4, "FailedPrecondition: instance \""+id+"\" is unknown: the instance is not stranded (see its state: flotctl get "+id+")",
		"mark-operational", id)
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.fails(4, "the guest has no guest side", "set-password", id, "--password-file", pw, "--wait")
	c.fails(4, "ResourceExhausted: no other host has room", "move", id, "--wait")
	c.fails(4, "FailedPrecondition: confirm-resize is not allowed while the instance is RUNNING", "confirm-resize", id)
}

// --wait through a pipe (plain lines) and a pseudo-terminal (one live
// line), and --wait-timeout.
func testWait(c *cluster, id string) {
	t := c.t
	r := c.ok("stop", id, "--wait")
	lines := strings.Split(r.stdout, "\n")
	if !strings.HasPrefix(lines[0], "operation op-") || !strings.HasSuffix(lines[0], ": STOP of instance "+id+" (Ctrl-C stops waiting, not the operation)") {
		t.Errorf("stdout does not start with the operation: %s", r)
	}
	opID := strings.TrimSuffix(strings.Fields(lines[0])[1], ":")
	if row := parseTable(t, strings.Join(lines[1:], "\n")).row(t, "ID", opID); row["STATE"] != "SUCCEEDED" {
		t.Errorf("operation row %v", row)
	}
	if i := strings.Index(r.stdout, "\n\n"); i < 0 || parseTable(t, r.stdout[i+2:]).row(t, "ID", id)["STATUS"] != "STOPPED" {
		t.Errorf("no instance table after the operation: %s", r)
	}
	if strings.ContainsAny(r.stderr, "\r\x1b") || !strings.HasSuffix(r.stderr, opID+" STOP SUCCEEDED\n") {
		t.Errorf("stderr on a pipe: %q", r.stderr)
	}

	// On a terminal: the line is rewritten in place (CR, erase line) while
	// the start runs (the fake's Start takes 2.5 s), then left as it ended.
	code, screen := c.onTerminal("start", id, "--wait")
	if code != 0 || !strings.Contains(screen, "operation op-") || !strings.Contains(screen, "\r\x1b[K") ||
		!strings.Contains(screen, " START RUNNING") || !strings.Contains(screen, " START SUCCEEDED (") {
		t.Errorf("exit %d, terminal showed %q", code, screen)
	}

	c.ok("stop", id, "--wait")
	r = c.run("start", id, "--wait", "--wait-timeout", "300ms")
	if r.code != 5 || !strings.Contains(r.stderr, "flotctl: timed out waiting for operation op-") || !strings.Contains(r.stderr, "; it goes on: flotctl op wait op-") {
		t.Errorf("--wait-timeout: %s", r)
	}
	opID = strings.TrimSuffix(strings.Fields(r.stdout)[1], ":")
	if row := parseTable(t, c.ok("op", "wait", opID).stdout).row(t, "ID", opID); row["STATE"] != "SUCCEEDED" || row["KIND"] != "START" {
		t.Errorf("op wait after the timeout: %v", row)
	}
}

// op list, get, wait and cancel.
func testOperations(c *cluster, id string) {
	t := c.t
	list := c.ok("op", "list", "--instance", id, "-o", "json")
	ops := items(t, list.stdout, func() *flotillav1.Operation { return &flotillav1.Operation{} })
	if len(ops) < 10 {
		t.Fatalf("op list: %d operations", len(ops))
	}
	for _, op := range ops {
		if op.GetInstanceId() != id || !op.GetDone() {
			t.Errorf("op list --instance: %v", op)
		}
	}
	sameYAML(t, c.ok("op", "list", "--instance", id, "-o", "yaml").stdout, list.stdout)
	last := ops[0].GetId() // newest first
	if row := parseTable(t, c.ok("op", "list", "-o", "wide").stdout).row(t, "ID", last); row["ENDED"] == "-" || row["INSTANCE"] != id {
		t.Errorf("op list -o wide: %v", row)
	}
	get := c.ok("op", "get", last)
	if !strings.Contains(get.stdout, "\nSTEP ") {
		t.Errorf("op get shows no steps: %s", get.stdout)
	}
	js := c.ok("op", "get", last, "-o", "json")
	if op := fromJSON(t, js.stdout, &flotillav1.Operation{}); op.GetId() != last || len(op.GetSteps()) == 0 {
		t.Errorf("op get -o json: %v", op)
	}
	sameYAML(t, c.ok("op", "get", last, "-o", "yaml").stdout, js.stdout)

	r := c.ok("stop", id, "-o", "json") // no --wait: the operation, at once
	op := fromJSON(t, r.stdout, &flotillav1.Operation{})
	done := fromJSON(t, c.ok("op", "wait", op.GetId(), "-o", "json", "--timeout", "1m").stdout, &flotillav1.Operation{})
	if done.GetState() != flotillav1.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Errorf("op wait: %v", done)
	}
	c.fails(4, "FailedPrecondition: operation \""+op.GetId()+"\" is succeeded: operation already finished (see its state: flotctl op get "+op.GetId()+")",
		"op", "cancel", op.GetId())
	c.fails(3, "NotFound: ", "op", "get", "op-nope")
	c.ok("start", id, "--wait")
}

// host list, get, cordon, uncordon and drain.
func testHosts(c *cluster, id string) {
	t := c.t
	if row := parseTable(t, c.ok("host", "list").stdout).row(t, "ID", "fake-1"); row["STATUS"] != "READY" || row["HYPERVISOR"] != "fake" || row["INSTANCES"] != "1" {
		t.Errorf("host list: %v", row)
	}
	if row := parseTable(t, c.ok("host", "list", "-o", "wide").stdout).row(t, "ID", "fake-1"); row["REGISTERED"] == "-" {
		t.Errorf("host list -o wide: %v", row)
	}
	js := c.ok("host", "list", "-o", "json")
	if hs := items(t, js.stdout, func() *flotillav1.Host { return &flotillav1.Host{} }); len(hs) != 1 || hs[0].GetId() != "fake-1" {
		t.Errorf("host list -o json: %v", hs)
	}
	sameYAML(t, c.ok("host", "list", "-o", "yaml").stdout, js.stdout)
	if h := fromJSON(t, c.ok("host", "get", "fake-1", "-o", "json").stdout, &flotillav1.Host{}); h.GetHypervisorKind() != "fake" {
		t.Errorf("host get: %v", h)
	}
	if row := parseTable(t, c.ok("host", "cordon", "fake-1").stdout).row(t, "ID", "fake-1"); row["STATUS"] != "CORDONED" {
		t.Errorf("cordon: %v", row)
	}
	if row := parseTable(t, c.ok("host", "uncordon", "fake-1").stdout).row(t, "ID", "fake-1"); row["STATUS"] != "READY" {
		t.Errorf("uncordon: %v", row)
	}
	if h := fromJSON(t, c.ok("host", "drain", "fake-1", "--policy", "stop", "-o", "json").stdout, &flotillav1.Host{}); h.GetStatus() != flotillav1.HostStatus_HOST_STATUS_DRAINING {
		t.Errorf("drain: %v", h)
	}
	// The drain stops the instance: wait for that, then take the host back.
	stop := strings.TrimSpace(c.ok("op", "list", "--instance", id, "-o", "jsonpath={.items[0].id}").stdout)
	if row := parseTable(t, c.ok("op", "wait", stop).stdout).row(t, "ID", stop); row["KIND"] != "STOP" || row["STATE"] != "SUCCEEDED" {
		t.Errorf("the drain's stop: %v", row)
	}
	c.ok("host", "uncordon", "fake-1")
	c.ok("start", id, "--wait")

	// --wait: the host first, progress on stderr (a pipe: plain lines),
	// then the host once nothing runs or is acted on there.
	r := c.ok("host", "drain", "fake-1", "--policy", "stop", "--wait")
	first, table, _ := strings.Cut(r.stdout, "\n")
	if first != "host fake-1: draining, policy stop (Ctrl-C stops waiting, not the drain)" {
		t.Errorf("drain --wait first line: %s", r)
	}
	if row := parseTable(t, table).row(t, "ID", "fake-1"); row["STATUS"] != "CORDONED" {
		t.Errorf("drain --wait: %v\n%s", row, r)
	}
	if !strings.Contains(r.stderr, "host fake-1 DRAINING: 1 instance(s) on the host") {
		t.Errorf("drain --wait progress: %s", r)
	}
	if in := fromJSON(t, c.ok("get", id, "-o", "json").stdout, &flotillav1.Instance{}); in.GetStatus() != flotillav1.Status_STATUS_STOPPED || in.GetCurrentOperationId() != "" {
		t.Errorf("after drain --wait: %v", in)
	}
	// Nothing left to drain: done at once; a document on stdout, the note on stderr.
	r = c.ok("host", "drain", "fake-1", "--wait", "-o", "json")
	if h := fromJSON(t, r.stdout, &flotillav1.Host{}); h.GetStatus() != flotillav1.HostStatus_HOST_STATUS_CORDONED || !strings.HasPrefix(r.stderr, "host fake-1: draining") {
		t.Errorf("drain --wait -o json: %s", r)
	}
	c.ok("host", "uncordon", "fake-1")
	c.ok("start", id, "--wait")
	// --wait-timeout passed while the stop runs: exit 5, the drain goes on.
	r = c.run("host", "drain", "fake-1", "--wait", "--wait-timeout", "1ms", "-o", "json")
	if r.code != 5 || !strings.Contains(r.stderr, "flotctl: timed out waiting for the drain of host fake-1") || r.stdout != "" {
		t.Errorf("drain --wait-timeout 1ms: %s", r)
	}
	c.ok("host", "drain", "fake-1", "--wait")
	c.ok("host", "uncordon", "fake-1")
	c.ok("start", id, "--wait")
	// On a terminal: one progress line rewritten in place.
	code, screen := c.onTerminal("host", "drain", "fake-1", "--wait")
	if code != 0 || !strings.Contains(screen, "host fake-1: draining") || !strings.Contains(screen, "\r\x1b[K") ||
		!strings.Contains(screen, "host fake-1 DRAINING: ") || !strings.Contains(screen, "CORDONED") {
		t.Errorf("drain --wait on a terminal: exit %d, terminal showed %q", code, screen)
	}
	c.ok("host", "uncordon", "fake-1")
	c.ok("start", id, "--wait")

	// The agent's clock skew, measured from its registration and heartbeats.
	testenv.Eventually(t, 30*time.Second, "the host's clock skew", func() bool {
		h := fromJSON(t, c.ok("host", "get", "fake-1", "-o", "json").stdout, &flotillav1.Host{})
		return h.GetClockSkew() != nil && h.GetClockSkew().AsDuration().Abs() < 2*time.Second && len(h.GetWarnings()) == 0
	})
	if row := parseTable(t, c.ok("host", "list", "-o", "wide").stdout).row(t, "ID", "fake-1"); row["CLOCK_SKEW"] == "-" || row["WARNINGS"] != "0" {
		t.Errorf("host list -o wide: %v", row)
	}
	c.fails(3, "NotFound: host \"nope\": not found (check the id: flotctl host list)", "host", "get", "nope")
}

// network create, list, get and delete.
func testNetworks(c *cluster, _ string) {
	t := c.t
	if row := parseTable(t, c.ok("network", "create", "lan", "--cidr", "10.20.0.0/24").stdout).row(t, "NAME", "lan"); row["MODE"] != "nat" || row["GATEWAY"] != "10.20.0.1" {
		t.Errorf("network create: %v", row)
	}
	js := c.ok("network", "list", "-o", "json")
	if ns := items(t, js.stdout, func() *flotillav1.Network { return &flotillav1.Network{} }); len(ns) != 1 || ns[0].GetCidr() != "10.20.0.0/24" {
		t.Errorf("network list -o json: %v", ns)
	}
	sameYAML(t, c.ok("network", "list", "-o", "yaml").stdout, js.stdout)
	if n := fromJSON(t, c.ok("network", "get", "lan", "-o", "json").stdout, &flotillav1.Network{}); n.GetName() != "lan" {
		t.Errorf("network get: %v", n)
	}
	c.fails(4, "AlreadyExists: network \"lan\": already exists", "network", "create", "lan", "--cidr", "10.20.0.0/24")
	c.fails(2, "--mode must be nat, isolated or bridge", "network", "create", "x", "--cidr", "10.30.0.0/24", "--mode", "mesh")
	if r := c.ok("network", "delete", "lan"); r.stdout != "deleted network lan\n" {
		t.Errorf("network delete: %q", r.stdout)
	}
	c.fails(3, "(check the id: flotctl network list)", "network", "get", "lan")
}

// cluster servers, status, snapshot, and version.
func testClusterCommands(c *cluster, _ string) {
	t := c.t
	if row := parseTable(t, c.ok("cluster", "servers", "list").stdout).row(t, "ID", "c1"); row["LEADER"] != "yes" || row["API_ADDRESS"] != c.addr {
		t.Errorf("servers list: %v", row)
	}
	js := c.ok("cluster", "servers", "list", "-o", "json")
	if ss := items(t, js.stdout, func() *flotillav1.Server { return &flotillav1.Server{} }); len(ss) != 1 || ss[0].GetSuffrage() != "voter" {
		t.Errorf("servers list -o json: %v", ss)
	}
	sameYAML(t, c.ok("cluster", "servers", "list", "-o", "yaml").stdout, js.stdout, "lastContact", "lastIndex")
	c.fails(2, "--raft-address and --api-address are required", "cluster", "servers", "add", "c9")
	status := parseTable(t, "NAME  VALUE\n"+c.ok("cluster", "status").stdout)
	if status.row(t, "NAME", "RAFT_STATE")["VALUE"] != "Leader" || status.row(t, "NAME", "NODE")["VALUE"] != "c1" {
		t.Errorf("cluster status: %v", status.rows)
	}
	if r := c.ok("cluster", "status", "-o", "jsonpath={.nodeId} {.leaderId}"); r.stdout != "c1 c1\n" {
		t.Errorf("cluster status jsonpath: %q", r.stdout)
	}
	if r := c.ok("cluster", "snapshot"); !strings.HasPrefix(r.stdout, "snapshot taken at index ") {
		t.Errorf("snapshot: %q", r.stdout)
	}
	snap := fromJSON(t, c.ok("cluster", "snapshot", "-o", "json").stdout, &flotillav1.TakeSnapshotResponse{})
	if snap.GetSnapshotIndex() == 0 {
		t.Errorf("snapshot index 0")
	}
	v := c.ok("version")
	if !strings.HasPrefix(v.stdout, "client: flotctl ") || !strings.Contains(v.stdout, "\nserver: coordinator c1 does not report its version") ||
		!strings.Contains(v.stdout, "\nagents: fake-1 ") {
		t.Errorf("version: %s", v.stdout)
	}
	var doc struct {
		Client struct{ Version string }
		Server struct{ Agents map[string]string }
	}
	if err := json.Unmarshal([]byte(c.ok("version", "-o", "json").stdout), &doc); err != nil || doc.Client.Version == "" || doc.Server.Agents["fake-1"] == "" {
		t.Errorf("version -o json: %v %+v", err, doc)
	}
}

// The coordinator list, the environment and the config file; completion.
func testSettings(c *cluster, id string) {
	t := c.t
	dead := testenv.FreeAddr(t)
	// A member that is down is skipped.
	parseTable(t, c.ok("--coordinator", dead+","+c.addr, "get", id).stdout).row(t, "ID", id)

	cfg := filepath.Join(c.home, ".config", "flotilla", "flotctl.yaml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("coordinator: ["+dead+", "+c.addr+"]\noutput: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cfg)
	env := c.env
	c.env = []string{"HOME=" + c.home, "PATH=" + os.Getenv("PATH")} // no FLOTILLA_COORDINATOR: the file's
	defer func() { c.env = env }()
	fromJSON(t, c.ok("get", id).stdout, &flotillav1.Instance{})           // the file's output
	parseTable(t, c.ok("get", id, "-o", "table").stdout).row(t, "ID", id) // a flag over the file
	c.env = append(c.env, "FLOTILLA_OUTPUT=yaml")                         // the environment over the file
	if r := c.ok("get", id); !strings.HasPrefix(r.stdout, "id: "+id+"\n") {
		t.Errorf("FLOTILLA_OUTPUT=yaml: %s", r.stdout)
	}
	if err := os.WriteFile(cfg, []byte("coordinators: x:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.fails(2, "field coordinators not found", "list")
	os.Remove(cfg)
	c.env = env

	for _, shell := range []string{"bash", "zsh", "fish"} {
		if r := c.ok("completion", shell); !strings.Contains(r.stdout, "flotctl") {
			t.Errorf("completion %s: %s", shell, r.stdout)
		}
	}
	if r := c.ok("__complete", "host", ""); !strings.Contains(r.stdout, "drain") {
		t.Errorf("completion of host: %s", r.stdout)
	}
	// IDs complete from the cluster, with what they are.
	if r := c.ok("__complete", "stop", ""); !strings.Contains(r.stdout, id+"\tweb\n") {
		t.Errorf("completion of an instance id: %s", r.stdout)
	}
	if r := c.ok("__complete", "host", "cordon", ""); !strings.Contains(r.stdout, "fake-1\tREADY\n") {
		t.Errorf("completion of a host id: %s", r.stdout)
	}
}

// Exit codes and one-line messages that say what to do.
func testErrors(c *cluster, id string) {
	dead := testenv.FreeAddr(c.t)
	c.fails(6, "Unavailable: ", "--coordinator", dead, "list")
	c.fails(6, "(is a coordinator running at "+dead+"? set --coordinator or FLOTILLA_COORDINATOR)", "list", "--coordinator", dead)
	c.fails(2, "missing ID (see: flotctl stop --help)", "stop")
	c.fails(2, "unknown command \"frobnicate\" (see: flotctl --help)", "frobnicate")
	c.fails(2, "unknown flag: --bogus (see: flotctl list --help)", "list", "--bogus")
	c.fails(2, "-o must be table, wide, json, yaml or jsonpath=EXPR, not \"xml\"", "get", id, "-o", "xml")
	c.fails(2, "--recovery must be leave, restart or mark-failed", "create", "--name", "x", "--image", "i", "--recovery", "often")
	c.fails(3, "NotFound: instance \"i-nope\": not found (check the id: flotctl list)", "get", "i-nope")
	c.fails(4, "InvalidArgument: name must be", "create", "--name", "BAD_NAME", "--image", "flotilla-test")
	c.fails(5, "DeadlineExceeded: ", "--timeout", "1ns", "list")
	// -o jsonpath that does not fit the document.
	c.fails(1, "-o jsonpath: index [3] out of range", "list", "-o", "jsonpath={.items[3].id}")
}

// delete, waited for, as YAML: the operation (and the instance, now
// DELETED) in one document.
func testDelete(c *cluster, id string) {
	t := c.t
	r := c.ok("delete", id, "--force", "--wait", "-o", "yaml")
	var doc struct {
		Operation struct{ Kind, State string }
		Instance  struct{ Status string }
	}
	if err := yamlUnmarshal(r.stdout, &doc); err != nil || doc.Operation.State != "OPERATION_STATE_SUCCEEDED" || doc.Operation.Kind != "OPERATION_KIND_DELETE" {
		t.Errorf("delete -o yaml: %v %+v\n%s", err, doc, r)
	}
	if tb := parseTable(t, c.ok("list").stdout); len(tb.rows) != 0 {
		t.Errorf("list after delete: %v", tb.rows)
	}
	if row := parseTable(t, c.ok("list", "--all").stdout).row(t, "ID", id); row["STATUS"] != "DELETED" {
		t.Errorf("list --all: %v", row)
	}
}
