package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// settleArgs resolves the global settings of a command line as run
// does, without running the command.
func settleArgs(args []string, getenv func(string) string) (*cli, string, error) {
	c := &cli{getenv: getenv}
	root := newRoot(c)
	cmd, rest, err := root.Find(oldStyleFlags(root, args))
	if err != nil {
		return c, "", err
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return c, "", err
	}
	return c, commandName(cmd), c.settle(cmd)
}

func TestSettings(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(home, ".config", "flotilla"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := "coordinator: [f1:1, f2:2]\ntimeout: 7s\noutput: yaml\ntls-ca: /file/ca.pem\n"
	if err := os.WriteFile(filepath.Join(home, ".config", "flotilla", "flotctl.yaml"), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("coordinater: x:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args    []string
		env     map[string]string
		coord   string
		timeout time.Duration
		output  string
		ca      string
		name    string
		wantErr string
	}{
		{args: []string{"list"}, coord: defaultAddr, timeout: 30 * time.Second, output: "table", name: "list"},
		{args: []string{"list"}, env: map[string]string{"FLOTILLA_ADDR": "coord:9000"}, coord: "coord:9000", timeout: 30 * time.Second, output: "table", name: "list"},
		{args: []string{"list"}, env: map[string]string{"FLOTILLA_COORDINATOR": "a:1, b:2", "FLOTILLA_ADDR": "old:1"}, coord: "a:1,b:2", timeout: 30 * time.Second, output: "table", name: "list"},
		{args: []string{"--addr", "x:1", "--timeout", "5s", "-o", "json", "get", "i-1"}, env: map[string]string{"FLOTILLA_ADDR": "coord:9000"},
			coord: "x:1", timeout: 5 * time.Second, output: "json", name: "get"},
		// The flag package's single dash, as before cobra.
		{args: []string{"-addr", "x:1", "-timeout=5s", "-output", "json", "get", "i-1"}, coord: "x:1", timeout: 5 * time.Second, output: "json", name: "get"},
		// Flags anywhere on the line.
		{args: []string{"get", "i-1", "-o", "yaml", "--coordinator", "a:1,b:2"}, coord: "a:1,b:2", timeout: 30 * time.Second, output: "yaml", name: "get"},
		{args: []string{"--output=wide", "op", "wait", "op-1", "--timeout", "1m"}, coord: defaultAddr, timeout: 30 * time.Second, output: "wide", name: "op wait"},
		{args: []string{"host", "drain", "h1", "--policy", "move"}, coord: defaultAddr, timeout: 30 * time.Second, output: "table", name: "host drain"},
		{args: []string{"cluster", "servers", "list", "-o", "jsonpath={.items[0].id}"}, coord: defaultAddr, timeout: 30 * time.Second, output: "jsonpath={.items[0].id}", name: "cluster servers list"},
		// The config file, under the environment and the flags.
		{args: []string{"list"}, env: map[string]string{"HOME": home}, coord: "f1:1,f2:2", timeout: 7 * time.Second, output: "yaml", ca: "/file/ca.pem", name: "list"},
		{args: []string{"list", "-o", "json"}, env: map[string]string{"HOME": home, "FLOTILLA_COORDINATOR": "e:1", "FLOTILLA_TIMEOUT": "9s"},
			coord: "e:1", timeout: 9 * time.Second, output: "json", ca: "/file/ca.pem", name: "list"},
		{args: []string{"list", "--tls-ca", "/flag/ca.pem"}, env: map[string]string{"HOME": home, "FLOTILLA_TLS_CA": "/env/ca.pem"},
			coord: "f1:1,f2:2", timeout: 7 * time.Second, output: "yaml", ca: "/flag/ca.pem", name: "list"},
		{args: []string{"list", "--config", bad}, wantErr: "field coordinater not found"},
		{args: []string{"list", "--config", filepath.Join(dir, "none.yaml")}, wantErr: "no such file"},
		{args: []string{"-o", "xml", "list"}, wantErr: "-o must be table, wide, json, yaml or jsonpath=EXPR"},
		{args: []string{"-o", "jsonpath={.items[x]}", "list"}, wantErr: "unsupported index"},
		{args: []string{"--timeout", "0s", "list"}, wantErr: "--timeout must be a positive duration"},
		{args: []string{"--coordinator", "noport", "list"}, wantErr: "want host:port"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c, name, err := settleArgs(tt.args, env(tt.env))
			if tt.wantErr != "" {
				var ue *usageError
				if !errors.As(err, &ue) || !strings.Contains(ue.msg, tt.wantErr) {
					t.Fatalf("err = %v, want usage error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(c.coordinators, ","); got != tt.coord || c.timeout != tt.timeout || c.output != tt.output || c.tls.CA != tt.ca || name != tt.name {
				t.Errorf("got coordinators=%q timeout=%v output=%q ca=%q name=%q", got, c.timeout, c.output, c.tls.CA, name)
			}
		})
	}
}

func TestParseMutation(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want proto.Message
		wait bool
	}{
		{"create", []string{"--name", "web-1", "--image", "debian-12.qcow2"}, &flotillav1.CreateInstanceRequest{
			Name: "web-1", Spec: &flotillav1.InstanceSpec{Vcpus: 1, MemoryMib: 256, Image: "debian-12.qcow2"}}, false},
		{"create", []string{"--name=db", "--image=img", "--vcpus", "4", "--memory-mib", "8192", "--disk-gib", "40", "--request-id", "r1", "--wait"},
			&flotillav1.CreateInstanceRequest{Name: "db", RequestId: "r1",
				Spec: &flotillav1.InstanceSpec{Vcpus: 4, MemoryMib: 8192, DiskGib: 40, Image: "img"}}, true},
		// Out-of-range values are passed on for the server to refuse.
		{"create", []string{"--name", "a", "--image", "i", "--vcpus", "-1", "--memory-mib", "-5", "--disk-gib", "-2"},
			&flotillav1.CreateInstanceRequest{Name: "a", Spec: &flotillav1.InstanceSpec{Vcpus: -1, MemoryMib: -5, DiskGib: -2, Image: "i"}}, false},
		{"start", []string{"i-1"}, &flotillav1.StartInstanceRequest{Id: "i-1"}, false},
		{"stop", []string{"i-1"}, &flotillav1.StopInstanceRequest{Id: "i-1", GracefulTimeout: durationpb.New(10 * time.Minute)}, false},
		// Flags after the ID, as in the documented usage.
		{"stop", []string{"i-1", "--graceful", "30s", "--force", "--wait", "--request-id", "r2"},
			&flotillav1.StopInstanceRequest{Id: "i-1", RequestId: "r2", GracefulTimeout: durationpb.New(30 * time.Second), Force: true}, true},
		{"stop", []string{"--force", "i-1"}, &flotillav1.StopInstanceRequest{Id: "i-1", GracefulTimeout: durationpb.New(10 * time.Minute), Force: true}, false},
		{"restart", []string{"i-1", "--hard"}, &flotillav1.RestartInstanceRequest{Id: "i-1", Hard: true}, false},
		{"restart", []string{"i-1"}, &flotillav1.RestartInstanceRequest{Id: "i-1"}, false},
		{"pause", []string{"i-1", "--wait"}, &flotillav1.PauseInstanceRequest{Id: "i-1"}, true},
		{"unpause", []string{"i-1"}, &flotillav1.UnpauseInstanceRequest{Id: "i-1"}, false},
		{"suspend", []string{"--request-id", "k", "i-1"}, &flotillav1.SuspendInstanceRequest{Id: "i-1", RequestId: "k"}, false},
		{"resume", []string{"i-1"}, &flotillav1.ResumeInstanceRequest{Id: "i-1"}, false},
		{"deallocate", []string{"i-1"}, &flotillav1.DeallocateInstanceRequest{Id: "i-1"}, false},
		{"upgrade", []string{"i-1", "--image", "v2", "--health-timeout", "1m"}, &flotillav1.UpgradeInstanceRequest{Id: "i-1", Image: "v2",
			HealthTimeout: durationpb.New(time.Minute), GracefulTimeout: durationpb.New(10 * time.Minute)}, false},
		{"restore", []string{"i-1", "--wait"}, &flotillav1.RestoreInstanceRequest{Id: "i-1"}, true},
		{"delete", []string{"i-1", "--force"}, &flotillav1.DeleteInstanceRequest{Id: "i-1", Force: true}, false},
		{"delete", []string{"i-1", "--wait"}, &flotillav1.DeleteInstanceRequest{Id: "i-1"}, true},
		{"create", []string{"--name", "a", "--image", "i", "--label", "team=db", "--label", "tier=gold"},
			&flotillav1.CreateInstanceRequest{Name: "a", Spec: &flotillav1.InstanceSpec{Vcpus: 1, MemoryMib: 256, Image: "i"},
				Labels: map[string]string{"team": "db", "tier": "gold"}}, false},
		{"update", []string{"i-1", "--name", "web-2", "--label", "team=web", "--wait"},
			&flotillav1.UpdateInstanceRequest{Id: "i-1", Name: "web-2", Labels: map[string]string{"team": "web"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "labels"}}}, true},
		{"update", []string{"i-1", "--clear-labels", "--recovery", "restart", "--max-restarts", "5"},
			&flotillav1.UpdateInstanceRequest{Id: "i-1", Recovery: &flotillav1.Recovery{Policy: flotillav1.RecoveryPolicy_RECOVERY_POLICY_RESTART, MaxRestarts: 5},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels", "recovery"}}}, false},
		{"resize", []string{"i-1", "--vcpus", "2", "--memory-mib", "1024", "--disk-gib", "4", "--to", "h2", "--confirm-after", "1h", "--wait"},
			&flotillav1.ResizeInstanceRequest{Id: "i-1", Vcpus: 2, MemoryMib: 1024, DiskGib: 4, TargetHostId: "h2",
				ConfirmWindow: durationpb.New(time.Hour), GracefulTimeout: durationpb.New(10 * time.Minute)}, true},
		{"resize", []string{"i-1", "--vcpus", "2"},
			&flotillav1.ResizeInstanceRequest{Id: "i-1", Vcpus: 2, GracefulTimeout: durationpb.New(10 * time.Minute)}, false},
		{"confirm-resize", []string{"i-1"}, &flotillav1.ConfirmResizeRequest{Id: "i-1"}, false},
		{"create", []string{"--name", "a", "--image", "i", "--network", "lan", "--network", "db=10.1.0.9", "--ssh-key", "ssh-ed25519 AAAA a@b"},
			&flotillav1.CreateInstanceRequest{Name: "a", Spec: &flotillav1.InstanceSpec{Vcpus: 1, MemoryMib: 256, Image: "i"},
				Interfaces:        []*flotillav1.NetworkInterfaceRequest{{Network: "lan"}, {Network: "db", Ipv4Address: "10.1.0.9"}},
				SshAuthorizedKeys: []string{"ssh-ed25519 AAAA a@b"}}, false},
		{"revert-resize", []string{"i-1", "--wait"}, &flotillav1.RevertResizeRequest{Id: "i-1", GracefulTimeout: durationpb.New(10 * time.Minute)}, true},
		{"extend", []string{"i-1", "--disk-gib", "8"}, &flotillav1.ExtendInstanceRequest{Id: "i-1", DiskGib: 8}, false},
		{"move", []string{"i-1", "--to", "h3"}, &flotillav1.MoveInstanceRequest{Id: "i-1", TargetHostId: "h3", GracefulTimeout: durationpb.New(10 * time.Minute)}, false},
		{"create", []string{"--name", "a", "--image", "i", "--hypervisor", "fake", "--anti-affinity", "db", "--preemptible",
			"--host-label", "zone=a", "--recovery", "restart", "--max-restarts", "2", "--readiness-timeout", "0s"},
			&flotillav1.CreateInstanceRequest{Name: "a", Spec: &flotillav1.InstanceSpec{Vcpus: 1, MemoryMib: 256, Image: "i"},
				Placement:        &flotillav1.Placement{HypervisorKind: "fake", AntiAffinityGroup: "db", Preemptible: true, HostLabels: map[string]string{"zone": "a"}},
				Recovery:         &flotillav1.Recovery{Policy: flotillav1.RecoveryPolicy_RECOVERY_POLICY_RESTART, MaxRestarts: 2},
				ReadinessTimeout: durationpb.New(0)}, false},
		// "--" ends the flags: an ID that looks like a flag.
		{"delete", []string{"--", "-weird"}, &flotillav1.DeleteInstanceRequest{Id: "-weird"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			m, err := parseMutation(tt.name, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(m.req, tt.want) || m.wait.on != tt.wait {
				t.Errorf("got %v wait=%v, want %v wait=%v", m.req, m.wait.on, tt.want, tt.wait)
			}
		})
	}
}

func TestParseMutationErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"create", []string{"--image", "img"}, "--name is required"},
		{"create", []string{"--name", "a"}, "--image is required"},
		{"create", []string{"--name", "a", "--image", "i", "--vcpus", "4294967296"}, "--vcpus is out of range"},
		{"create", []string{"--name", "a", "--image", "i", "--memory-mib", "lots"}, `invalid argument "lots"`},
		{"create", []string{"--name", "a", "--image", "i", "extra"}, `unexpected argument "extra"`},
		{"start", nil, "missing ID"},
		{"start", []string{"a", "b"}, `unexpected argument "b"`},
		{"start", []string{""}, "ID must not be empty"},
		{"stop", []string{"i", "--graceful", "soon"}, `invalid argument "soon"`},
		{"stop", []string{"i", "--graceful", "-1s"}, "--graceful must be positive"},
		{"pause", []string{"i", "--hard"}, "unknown flag: --hard"},
		{"update", []string{"i"}, "nothing to update"},
		{"update", []string{"i", "--label", "a=b", "--clear-labels"}, "exclude each other"},
		{"update", []string{"i", "--recovery", "sometimes"}, "--recovery must be"},
		{"create", []string{"--name", "a", "--image", "i", "--label", "novalue"}, "is not key=value"},
		{"resize", []string{"i"}, "give at least one of"},
		{"extend", []string{"i"}, "--disk-gib is required"},
		{"create", []string{"--name", "a", "--image", "i", "--network", "=10.0.0.1"}, "want NETWORK or NETWORK=IPV4"},
		{"create", []string{"--name", "a", "--image", "i", "--user-data-file", "/nonexistent/x"}, "--user-data-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := parseMutation(tt.name, tt.args)
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(ue.msg, tt.want) {
				t.Fatalf("err = %v, want usage error containing %q", err, tt.want)
			}
			if ue.cmd != tt.name {
				t.Errorf("command = %q, want %s", ue.cmd, tt.name)
			}
		})
	}
}

func TestParseStatuses(t *testing.T) {
	S := func(v ...flotillav1.Status) []flotillav1.Status { return v }
	tests := []struct {
		in      string
		want    []flotillav1.Status
		wantErr string
	}{
		{"RUNNING", S(flotillav1.Status_STATUS_RUNNING), ""},
		{"running,stopped", S(flotillav1.Status_STATUS_RUNNING, flotillav1.Status_STATUS_STOPPED), ""},
		{"STATUS_PAUSED, status_error ,Unexpected_Shutoff", S(flotillav1.Status_STATUS_PAUSED, flotillav1.Status_STATUS_ERROR,
			flotillav1.Status_STATUS_UNEXPECTED_SHUTOFF), ""},
		{"running,", S(flotillav1.Status_STATUS_RUNNING), ""},
		{"", nil, ""},
		{"runing", nil, `unknown status "runing"`},
		{"RUNNING,bogus", nil, `unknown status "bogus"`},
		{"unspecified", nil, "unknown status"},
		{"STATUS_", nil, "unknown status"},
		{"POWER_STATE_RUNNING", nil, "unknown status"},
	}
	for _, tt := range tests {
		got, err := parseStatuses(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseStatuses(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("parseStatuses(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseList(t *testing.T) {
	req, err := parseList("list", []string{"--status", "running,STOPPED", "--all", "--status", "status_error"})
	if err != nil {
		t.Fatal(err)
	}
	want := &flotillav1.ListInstancesRequest{ShowDeleted: true, StatusFilter: []flotillav1.Status{
		flotillav1.Status_STATUS_RUNNING, flotillav1.Status_STATUS_STOPPED, flotillav1.Status_STATUS_ERROR}}
	if !proto.Equal(req, want) {
		t.Errorf("got %v, want %v", req, want)
	}
	_, err = parseList("list", []string{"--status", "sleeping"})
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(ue.msg, `unknown status "sleeping"`) {
		t.Errorf("err = %v, want usage error for the unknown status", err)
	}
}

func TestParseWatchAndOpWait(t *testing.T) {
	req, err := parseWatch("watch", []string{"--from-revision", "42", "--id", "i-1"})
	if err != nil || !proto.Equal(req, &flotillav1.WatchInstancesRequest{StartRevision: 42, InstanceId: "i-1"}) {
		t.Errorf("parseWatch = %v, %v", req, err)
	}
	if _, err := parseWatch("watch", []string{"--from-revision", "-1"}); err == nil {
		t.Error("negative revision accepted")
	}
	id, d, err := parseOpWait("op wait", []string{"op-1"})
	if err != nil || id != "op-1" || d != 5*time.Minute {
		t.Errorf("parseOpWait default = %q %v %v", id, d, err)
	}
	id, d, err = parseOpWait("op wait", []string{"op-1", "--timeout", "90s"})
	if err != nil || id != "op-1" || d != 90*time.Second {
		t.Errorf("parseOpWait = %q %v %v", id, d, err)
	}
}

// TestRunUsageExitCodes runs whole command lines that fail before any RPC.
func TestRunUsageExitCodes(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stderr string
		stdout string
	}{
		{nil, 2, "flotctl: missing command (see: flotctl --help)\n", ""},
		{[]string{"frobnicate"}, 2, "flotctl: unknown command \"frobnicate\" (see: flotctl --help)\n", ""},
		{[]string{"op"}, 2, "flotctl: missing op subcommand (see: flotctl op --help)\n", ""},
		{[]string{"op", "frob"}, 2, "flotctl: unknown command \"op frob\" (see: flotctl op --help)\n", ""},
		{[]string{"list", "--bogus"}, 2, "flotctl: unknown flag: --bogus (see: flotctl list --help)\n", ""},
		{[]string{"stop"}, 2, "flotctl: missing ID (see: flotctl stop --help)\n", ""},
		{[]string{"list", "--status", "nope"}, 2, `unknown status "nope"`, ""},
		{[]string{"op", "wait"}, 2, "flotctl: missing ID (see: flotctl op wait --help)\n", ""},
		{[]string{"get", "-h"}, 0, "", "flotctl get ID [flags]"},
		{[]string{"help"}, 0, "", "mark-operational"},
		{[]string{"--version"}, 0, "", "flotctl devel"},
		{[]string{"host", "cordon"}, 2, "flotctl: missing ID (see: flotctl host cordon --help)\n", ""},
		{[]string{"host", "drain", "h1", "--policy", "evacuate"}, 2, `--policy must be stop or move, not "evacuate"`, ""},
		{[]string{"host", "drain", "-h"}, 0, "", "--policy string"},
		{[]string{"usage"}, 2, "flotctl: missing ID (see: flotctl usage --help)\n", ""},
		{[]string{"stop", "i-1", "-graceful", "soon"}, 2, `flotctl: invalid argument "soon" for "--graceful" flag`, ""},
		{[]string{"completion", "bash"}, 0, "", "bash completion"},
		{[]string{"usage", "i-1", "--vocabulary", "nova"}, 2, `--vocabulary must be rightscale or azure, not "nova"`, ""},
		{[]string{"usage", "i-1", "--from", "yesterday"}, 2, `--from: want RFC 3339`, ""},
		{[]string{"usage", "i-1", "--from", "2026-12-02", "--to", "2026-12-01"}, 2, "--to must be after --from", ""},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, env(nil), &stdout, &stderr)
		if code != tt.code || !strings.Contains(stderr.String(), tt.stderr) || !strings.Contains(stdout.String(), tt.stdout) {
			t.Errorf("run(%q) = %d\nstdout: %s\nstderr: %s", tt.args, code, stdout.String(), stderr.String())
		}
	}
}

func TestParseDrain(t *testing.T) {
	tests := []struct {
		args []string
		want *flotillav1.DrainHostRequest
	}{
		{[]string{"h1"}, &flotillav1.DrainHostRequest{Id: "h1", Policy: flotillav1.DrainPolicy_DRAIN_POLICY_STOP,
			GracefulTimeout: durationpb.New(10 * time.Minute)}},
		{[]string{"h1", "--policy", "move", "--graceful", "5m"}, &flotillav1.DrainHostRequest{Id: "h1",
			Policy: flotillav1.DrainPolicy_DRAIN_POLICY_MOVE, GracefulTimeout: durationpb.New(5 * time.Minute)}},
		{[]string{"--policy", "Stop", "h1"}, &flotillav1.DrainHostRequest{Id: "h1", Policy: flotillav1.DrainPolicy_DRAIN_POLICY_STOP,
			GracefulTimeout: durationpb.New(10 * time.Minute)}},
	}
	for _, tt := range tests {
		got, err := parseDrain("host drain", tt.args)
		if err != nil || !proto.Equal(got, tt.want) {
			t.Errorf("parseDrain(%q) = %v, %v; want %v", tt.args, got, err, tt.want)
		}
	}
	for _, args := range [][]string{
		{"h1", "--policy", "unspecified"},
		{"h1", "--policy", "DRAIN_POLICY_MOVE"},
		{"h1", "--policy", "live"},
		{"h1", "--graceful", "-1s"},
		{"h1", "--force"},
		{},
	} {
		_, err := parseDrain("host drain", args)
		var ue *usageError
		if !errors.As(err, &ue) || ue.cmd != "host drain" {
			t.Errorf("parseDrain(%q) err = %v, want a host drain usage error", args, err)
		}
	}
}

func TestParseVocabulary(t *testing.T) {
	get, err := parseGet("get", []string{"i-1", "--vocabulary", "nova,Azure", "--vocabulary", "managed-instance"})
	want := &flotillav1.GetInstanceRequest{Id: "i-1", Vocabularies: []flotillav1.Vocabulary{flotillav1.Vocabulary_VOCABULARY_NOVA,
		flotillav1.Vocabulary_VOCABULARY_AZURE, flotillav1.Vocabulary_VOCABULARY_MANAGED_INSTANCE}}
	if err != nil || !proto.Equal(get, want) {
		t.Errorf("parseGet = %v, %v", get, err)
	}
	list, err := parseList("list", []string{"--vocabulary", "rightscale"})
	if err != nil || !proto.Equal(list, &flotillav1.ListInstancesRequest{Vocabularies: []flotillav1.Vocabulary{flotillav1.Vocabulary_VOCABULARY_RIGHTSCALE}}) {
		t.Errorf("parseList = %v, %v", list, err)
	}
	watch, err := parseWatch("watch", []string{"--vocabulary", "manage-instance"})
	if err != nil || !proto.Equal(watch, &flotillav1.WatchInstancesRequest{Vocabularies: []flotillav1.Vocabulary{flotillav1.Vocabulary_VOCABULARY_MANAGE_INSTANCE}}) {
		t.Errorf("parseWatch = %v, %v", watch, err)
	}
	_, err = parseList("list", []string{"--vocabulary", "ec2"})
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(ue.msg, `unknown vocabulary "ec2"`) {
		t.Errorf("err = %v, want usage error for the unknown vocabulary", err)
	}
}

func TestParseUsage(t *testing.T) {
	reqs, err := parseUsage("usage", []string{"i-1", "--vocabulary", "AZURE", "--from", "2026-12-01T08:00:00+01:00"})
	if err != nil || len(reqs) != 1 || reqs[0].GetVocabulary() != flotillav1.Vocabulary_VOCABULARY_AZURE ||
		!reqs[0].GetStartTime().AsTime().Equal(time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC)) || reqs[0].GetEndTime() != nil {
		t.Fatalf("parseUsage = %v, %v", reqs, err)
	}
	reqs, err = parseUsage("usage", []string{"--to", "2026-12-31", "i-1"})
	if err != nil || len(reqs) != 2 || reqs[0].GetInstanceId() != "i-1" || reqs[1].GetVocabulary() != flotillav1.Vocabulary_VOCABULARY_AZURE ||
		!reqs[1].GetEndTime().AsTime().Equal(time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("parseUsage = %v, %v", reqs, err)
	}
}

func TestParseNetworkCreate(t *testing.T) {
	got, err := parseNetworkCreate("network create", []string{"tb", "--cidr", "198.19.0.0/24", "--mode", "bridge", "--bridge", "br0"})
	want := &flotillav1.CreateNetworkRequest{Name: "tb", Cidr: "198.19.0.0/24", Mode: flotillav1.NetworkMode_NETWORK_MODE_BRIDGE, Bridge: "br0"}
	if err != nil || !proto.Equal(got, want) {
		t.Fatalf("got %v, %v", got, err)
	}
	got, err = parseNetworkCreate("network create", []string{"--cidr=10.0.0.0/24", "lan"})
	if err != nil || got.Mode != flotillav1.NetworkMode_NETWORK_MODE_NAT || got.Name != "lan" {
		t.Fatalf("default mode: %v, %v", got, err)
	}
	for args, msg := range map[string]string{"lan": "--cidr is required", "lan --cidr 10.0.0.0/24 --mode vxlan": "--mode must be"} {
		_, err := parseNetworkCreate("network create", strings.Fields(args))
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(ue.msg, msg) {
			t.Errorf("%s: %v, want %q", args, err, msg)
		}
	}
}

func TestParseProjectCommands(t *testing.T) {
	got, err := parseWith("project create", []string{"team-a", "--max-instances", "3", "--max-vcpus=8", "--billed", "--balance-milli", "5000",
		"--price", "hardware-and-software=1000"}, 1, defineProjectCreate)
	want := &flotillav1.CreateProjectRequest{Project: &flotillav1.Project{Name: "team-a", Quota: &flotillav1.ProjectQuota{Instances: 3, Vcpus: 8},
		Billed: true, BalanceMilli: 5000, PricesMilli: map[string]int64{"hardware-and-software": 1000}}}
	if err != nil || !proto.Equal(got, want) {
		t.Fatalf("create: %v, %v", got, err)
	}
	if _, err := parseWith("project create", []string{"a", "--price", "x=cheap"}, 1, defineProjectCreate); err == nil {
		t.Fatal("a price that is not a number was accepted")
	}
	up, err := parseWith("project top-up", []string{"team-a", "--amount-milli", "250"}, 1, defineTopUp)
	if err != nil || up.Name != "team-a" || up.AmountMilli != 250 {
		t.Fatalf("top-up: %v, %v", up, err)
	}
	var ue *usageError
	if _, err := parseWith("project top-up", []string{"team-a"}, 1, defineTopUp); !errors.As(err, &ue) {
		t.Fatalf("top-up without an amount: %v", err)
	}
	inst, err := parseWith("create", []string{"--name", "web", "--image", "img", "--project", "team-a"}, 0, defineMutation("create"))
	if err != nil || inst.req.(*flotillav1.CreateInstanceRequest).GetProject() != "team-a" {
		t.Fatalf("create --project: %v, %v", inst, err)
	}
}

func TestParseImageImport(t *testing.T) {
	for _, c := range []struct {
		args string
		want *flotillav1.ImportImageRequest
		err  string
	}{
		{"debian --host h1 --path uploads/debian.qcow2", &flotillav1.ImportImageRequest{Name: "debian", HostId: "h1", Path: "uploads/debian.qcow2"}, ""},
		{"debian --host=h2 --from-host=h1", &flotillav1.ImportImageRequest{Name: "debian", HostId: "h2", FromHostId: "h1"}, ""},
		{"debian --path x", nil, "--host is required"},
		{"debian --host h1", nil, "exactly one of --path and --from-host"},
		{"debian --host h2 --path x --from-host h1", nil, "exactly one of --path and --from-host"},
	} {
		got, err := parseImageImport("image import", strings.Fields(c.args))
		if c.err != "" {
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(ue.msg, c.err) {
				t.Errorf("%s: %v, want %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil || !proto.Equal(got, c.want) {
			t.Errorf("%s: %v, %v", c.args, got, err)
		}
	}
}
