package main

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

var (
	testInstances = []*flotillav1.Instance{
		{Id: "i-1", Name: "web-1", Status: flotillav1.Status_STATUS_RUNNING, PowerState: flotillav1.PowerState_POWER_STATE_RUNNING,
			HostId: "host-a", Spec: &flotillav1.InstanceSpec{Vcpus: 2, MemoryMib: 512, Image: "img"}, ModifyRevision: 7},
		{Id: "i-22", Name: "database", Status: flotillav1.Status_STATUS_UNEXPECTED_SHUTOFF,
			PowerState: flotillav1.PowerState_POWER_STATE_SHUT_OFF, HostId: "host-b", CurrentOperationId: "op-9"},
		{Id: "i-3", Name: "new", Status: flotillav1.Status_STATUS_CREATING},
	}
	testOps = []*flotillav1.Operation{
		{Id: "op-1", InstanceId: "i-1", Kind: flotillav1.OperationKind_OPERATION_KIND_HARD_RESTART,
			State: flotillav1.OperationState_OPERATION_STATE_RUNNING, Step: "reset"},
		{Id: "op-2", InstanceId: "i-22", Kind: flotillav1.OperationKind_OPERATION_KIND_STOP,
			State: flotillav1.OperationState_OPERATION_STATE_FAILED, Done: true, Step: "shutdown",
			Error: &flotillav1.Fault{Code: "DEADLINE_EXCEEDED", Message: "guest did not power off"}},
	}
)

func TestInstanceTable(t *testing.T) {
	var b bytes.Buffer
	if err := printInstances(&b, "table", testInstances); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID    NAME      STATUS              POWER        HOST    OPERATION\n" +
		"i-1   web-1     RUNNING             RUNNING      host-a  -\n" +
		"i-22  database  UNEXPECTED_SHUTOFF  SHUT_OFF     host-b  op-9\n" +
		"i-3   new       CREATING            UNSPECIFIED  -       -\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestOperationTable(t *testing.T) {
	var b bytes.Buffer
	if err := printOperations(&b, "table", testOps); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID    INSTANCE  KIND          STATE    STEP      ERROR\n" +
		"op-1  i-1       HARD_RESTART  RUNNING  reset     -\n" +
		"op-2  i-22      STOP          FAILED   shutdown  DEADLINE_EXCEEDED: guest did not power off\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestEmptyTableHasHeader(t *testing.T) {
	var b bytes.Buffer
	if err := printInstances(&b, "table", nil); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "ID  NAME  STATUS  POWER  HOST  OPERATION\n" {
		t.Errorf("got %q", got)
	}
}

func TestHostTable(t *testing.T) {
	var b bytes.Buffer
	hosts := []*flotillav1.Host{{
		Id: "host-a", Status: flotillav1.HostStatus_HOST_STATUS_READY, HypervisorKind: "kvm",
		Capacity:  &flotillav1.Resources{Vcpus: 16, MemoryMib: 65536, DiskGib: 1000},
		Allocated: &flotillav1.Resources{Vcpus: 2, MemoryMib: 512, DiskGib: 10},
		Epoch:     3, InstanceCount: 1, OrphanDomains: []string{"x"}, AgentVersion: "v0.1.0",
	}}
	if err := printHosts(&b, "table", hosts); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID      STATUS  HYPERVISOR  VCPUS  MEMORY_MIB  DISK_GIB  INSTANCES  ORPHANS  EPOCH  AGENT\n" +
		"host-a  READY   kvm         2/16   512/65536   10/1000   1          1        3      v0.1.0\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// jsonLines parses one protojson object per line into fresh messages.
func jsonLines[M proto.Message](t *testing.T, out string, newM func() M) []M {
	t.Helper()
	var msgs []M
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !strings.HasPrefix(line, "{") || !strings.HasSuffix(line, "}") {
			t.Fatalf("not one JSON object per line: %q", line)
		}
		m := newM()
		if err := protojson.Unmarshal([]byte(line), m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func TestJSONOutput(t *testing.T) {
	var b bytes.Buffer
	if err := printInstances(&b, "json", testInstances); err != nil {
		t.Fatal(err)
	}
	got := jsonLines(t, b.String(), func() *flotillav1.Instance { return new(flotillav1.Instance) })
	if len(got) != len(testInstances) {
		t.Fatalf("%d lines, want %d", len(got), len(testInstances))
	}
	for i := range got {
		if !proto.Equal(got[i], testInstances[i]) {
			t.Errorf("line %d = %v, want %v", i, got[i], testInstances[i])
		}
	}
	if !strings.Contains(b.String(), `"STATUS_UNEXPECTED_SHUTOFF"`) {
		t.Errorf("enums should be rendered by name: %s", b.String())
	}

	b.Reset()
	if err := printOperations(&b, "json", testOps); err != nil {
		t.Fatal(err)
	}
	ops := jsonLines(t, b.String(), func() *flotillav1.Operation { return new(flotillav1.Operation) })
	if len(ops) != 2 || !proto.Equal(ops[1], testOps[1]) {
		t.Errorf("operations round trip: %v", ops)
	}
}

func TestWatchOutput(t *testing.T) {
	ev := &flotillav1.WatchInstancesResponse{Revision: 12, Instances: []*flotillav1.Instance{testInstances[1]}}
	var b bytes.Buffer
	if err := printWatchHeader(&b, "table"); err != nil {
		t.Fatal(err)
	}
	if err := printWatchEvent(&b, "table", ev); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %q", b.String())
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "REVISION ID NAME STATUS POWER" {
		t.Errorf("header = %q", lines[0])
	}
	if f := strings.Fields(lines[1]); strings.Join(f, " ") != "12 i-22 database UNEXPECTED_SHUTOFF SHUT_OFF" {
		t.Errorf("event = %q", lines[1])
	}
	// Columns line up with the header.
	if strings.Index(lines[0], "STATUS") != strings.Index(lines[1], "UNEXPECTED_SHUTOFF") {
		t.Errorf("misaligned:\n%s", b.String())
	}

	b.Reset()
	printWatchHeader(&b, "json")
	printWatchEvent(&b, "json", ev)
	got := jsonLines(t, b.String(), func() *flotillav1.WatchInstancesResponse { return new(flotillav1.WatchInstancesResponse) })
	if len(got) != 1 || !proto.Equal(got[0], ev) {
		t.Errorf("json watch = %v", got)
	}
}
