package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

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
			Error:       &flotillav1.Fault{Code: "DEADLINE_EXCEEDED", Message: "guest did not power off"},
			CreateTime:  timestamppb.New(time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)),
			RequestedBy: &flotillav1.Caller{Address: "127.0.0.1:5555"}},
	}
)

func TestInstanceTable(t *testing.T) {
	var b bytes.Buffer
	if err := printInstances(&b, tableOut, testInstances); err != nil {
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
	if err := printOperations(&b, tableOut, testOps); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID    INSTANCE  KIND          STATE    STEP      CREATED               REQUESTED_BY                    ERROR\n" +
		"op-1  i-1       HARD_RESTART  RUNNING  reset     -                     -                               -\n" +
		"op-2  i-22      STOP          FAILED   shutdown  2026-12-01T09:30:00Z  unauthenticated 127.0.0.1:5555  DEADLINE_EXCEEDED: guest did not power off\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestOperationTableRollingBack(t *testing.T) {
	ops := []*flotillav1.Operation{
		{Id: "op-3", InstanceId: "i-1", Kind: flotillav1.OperationKind_OPERATION_KIND_MOVE,
			State: flotillav1.OperationState_OPERATION_STATE_ROLLING_BACK, Step: "remove-from-target",
			Error: &flotillav1.Fault{Code: "INVALID_DISK", Message: "backing file outside the image directory"},
			Steps: []*flotillav1.OperationStep{{Name: "offer-disk"}}},
	}
	var b bytes.Buffer
	if err := printOperations(&b, tableOut, ops); err != nil {
		t.Fatal(err)
	}
	// op list shows one row per operation, steps or not.
	want := "" +
		"ID    INSTANCE  KIND  STATE         STEP                CREATED  REQUESTED_BY  ERROR\n" +
		"op-3  i-1       MOVE  ROLLING_BACK  remove-from-target  -        -             INVALID_DISK: backing file outside the image directory\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestOperationDetail(t *testing.T) {
	// A rolled-back move: the undo steps follow the forward ones.
	op := &flotillav1.Operation{Id: "op-4", InstanceId: "i-1", Kind: flotillav1.OperationKind_OPERATION_KIND_MOVE,
		State: flotillav1.OperationState_OPERATION_STATE_FAILED, Done: true, Step: "FAILED", TargetHostId: "h2",
		EndTime: timestamppb.New(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)),
		Error:   &flotillav1.Fault{Code: "DISK_CORRUPT", Message: "sha-256 mismatch"},
		Steps: []*flotillav1.OperationStep{
			{Name: "offer-disk", State: flotillav1.StepState_STEP_STATE_SUCCEEDED, HostId: "h1", Attempt: 1, MaxAttempts: 3},
			{Name: "copy-disk-to-target", State: flotillav1.StepState_STEP_STATE_FAILED, HostId: "h2", Attempt: 3, MaxAttempts: 3,
				Compensation: "remove-from-target", Error: &flotillav1.Fault{Code: "DISK_CORRUPT", Message: "sha-256 mismatch"}},
			{Name: "switch-host", State: flotillav1.StepState_STEP_STATE_SKIPPED, MaxAttempts: 3},
			{Name: "remove-from-source", State: flotillav1.StepState_STEP_STATE_SKIPPED, HostId: "h1", MaxAttempts: 3},
		}}
	var b bytes.Buffer
	if err := printOperation(&b, tableOut, op); err != nil {
		t.Fatal(err)
	}
	// Done: CANCELLABLE means nothing any more and is left out.
	want := "" +
		"ID    INSTANCE  KIND  STATE   STEP    CREATED  REQUESTED_BY  ERROR\n" +
		"op-4  i-1       MOVE  FAILED  FAILED  -        -             DISK_CORRUPT: sha-256 mismatch\n" +
		"\n" +
		"ENDED   2026-12-01T10:00:00Z\n" +
		"TARGET  h2\n" +
		"\n" +
		"STEP                 STATE      HOST  ATTEMPT  STARTED  ENDED  UNDO                ERROR\n" +
		"offer-disk           SUCCEEDED  h1    1/3      -        -      -                   -\n" +
		"copy-disk-to-target  FAILED     h2    3/3      -        -      remove-from-target  DISK_CORRUPT: sha-256 mismatch\n" +
		"switch-host          SKIPPED    -     -        -        -      -                   -\n" +
		"remove-from-source   SKIPPED    h1    -        -        -      -                   -\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}

	// An operation without steps or details prints its row only.
	b.Reset()
	if err := printOperation(&b, tableOut, testOps[1]); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "\n"); n != 2 {
		t.Errorf("got\n%s", b.String())
	}

	b.Reset()
	if err := printOperation(&b, jsonOut, op); err != nil {
		t.Fatal(err)
	}
	got := jsonDoc(t, b.String(), func() *flotillav1.Operation { return new(flotillav1.Operation) })
	if len(got) != 1 || !proto.Equal(got[0], op) || !strings.Contains(b.String(), `"STEP_STATE_SKIPPED"`) {
		t.Errorf("json = %s", b.String())
	}
}

func TestAttemptText(t *testing.T) {
	for _, tt := range []struct {
		attempt, maxAttempts int32
		want                 string
	}{{0, 3, ""}, {1, 3, "1/3"}, {3, 3, "3/3"}, {2, 0, "2"}} {
		if got := attemptText(tt.attempt, tt.maxAttempts); got != tt.want {
			t.Errorf("attemptText(%d, %d) = %q, want %q", tt.attempt, tt.maxAttempts, got, tt.want)
		}
	}
}

func TestEmptyTableHasHeader(t *testing.T) {
	var b bytes.Buffer
	if err := printInstances(&b, tableOut, nil); err != nil {
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
	if err := printHosts(&b, tableOut, hosts); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID      STATUS  HYPERVISOR  VCPUS  MEMORY_MIB  DISK_GIB  INSTANCES  ORPHANS  EPOCH  AGENT\n" +
		"host-a  READY   kvm         2/16   512/65536   10/1000   1          1        3      v0.1.0\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// A host's clock skew shows in the wide table; its warnings under every
// table.
func TestHostClockSkew(t *testing.T) {
	hosts := []*flotillav1.Host{
		{Id: "ok", ClockSkew: durationpb.New(-120 * time.Millisecond)},
		{Id: "late", ClockSkew: durationpb.New(12 * time.Second), Warnings: []string{"clock skew 12s exceeds 2s: check NTP"}},
		{Id: "new"},
	}
	for _, tc := range []struct {
		out  outFmt
		want []string
	}{
		{tableOut, []string{"warning: host late: clock skew 12s exceeds 2s: check NTP"}},
		{outFmt{name: "wide"}, []string{"-120ms", "+12s", "warning: host late: clock skew 12s exceeds 2s: check NTP"}},
	} {
		var b bytes.Buffer
		if err := printHosts(&b, tc.out, hosts); err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%v output lacks %q:\n%s", tc.out, w, b.String())
			}
		}
		if n := strings.Count(b.String(), "warning:"); n != 1 {
			t.Errorf("%d warnings:\n%s", n, b.String())
		}
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

// jsonDoc parses one JSON document: {"items": [...]} or a single message.
func jsonDoc[M proto.Message](t *testing.T, out string, newM func() M) []M {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, out)
	}
	raw := []json.RawMessage{[]byte(out)}
	if items, ok := doc["items"]; ok {
		raw = nil
		if err := json.Unmarshal(items, &raw); err != nil {
			t.Fatalf("items: %v", err)
		}
	}
	var msgs []M
	for _, r := range raw {
		m := newM()
		if err := protojson.Unmarshal(r, m); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func TestJSONOutput(t *testing.T) {
	var b bytes.Buffer
	if err := printInstances(&b, jsonOut.asList(), testInstances); err != nil {
		t.Fatal(err)
	}
	got := jsonDoc(t, b.String(), func() *flotillav1.Instance { return new(flotillav1.Instance) })
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
	if err := printOperations(&b, jsonOut.asList(), testOps); err != nil {
		t.Fatal(err)
	}
	ops := jsonDoc(t, b.String(), func() *flotillav1.Operation { return new(flotillav1.Operation) })
	if len(ops) != 2 || !proto.Equal(ops[1], testOps[1]) {
		t.Errorf("operations round trip: %v", ops)
	}
}

func TestWatchOutput(t *testing.T) {
	ev := &flotillav1.WatchInstancesResponse{Revision: 12, Instances: []*flotillav1.Instance{testInstances[1]}}
	var b bytes.Buffer
	if err := printWatchHeader(&b, tableOut); err != nil {
		t.Fatal(err)
	}
	if err := printWatchEvent(&b, tableOut, ev); err != nil {
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
	printWatchHeader(&b, jsonOut)
	printWatchEvent(&b, jsonOut, ev)
	got := jsonLines(t, b.String(), func() *flotillav1.WatchInstancesResponse { return new(flotillav1.WatchInstancesResponse) })
	if len(got) != 1 || !proto.Equal(got[0], ev) {
		t.Errorf("json watch = %v", got)
	}
}

func TestInstanceTableWithViews(t *testing.T) {
	in := proto.CloneOf(testInstances[0])
	in.Views = []*flotillav1.VocabularyView{
		{Vocabulary: flotillav1.Vocabulary_VOCABULARY_NOVA, Status: "REBOOT", Mapped: true, Fields: map[string]string{"vm_state": "active", "task_state": "rebooting"}},
		{Vocabulary: flotillav1.Vocabulary_VOCABULARY_AZURE, Status: "running", Mapped: true, Fields: map[string]string{"provisioning": "ProvisioningState/succeeded"}},
		{Vocabulary: flotillav1.Vocabulary_VOCABULARY_MANAGE_INSTANCE, Status: "UNMAPPED"},
	}
	vocabs := []flotillav1.Vocabulary{flotillav1.Vocabulary_VOCABULARY_MANAGE_INSTANCE, flotillav1.Vocabulary_VOCABULARY_NOVA,
		flotillav1.Vocabulary_VOCABULARY_AZURE, flotillav1.Vocabulary_VOCABULARY_RIGHTSCALE}
	var b bytes.Buffer
	if err := printInstances(&b, tableOut, []*flotillav1.Instance{in}, vocabs...); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID   NAME   STATUS   POWER    HOST    OPERATION  MANAGE-INSTANCE  NOVA                AZURE                RIGHTSCALE\n" +
		"i-1  web-1  RUNNING  RUNNING  host-a  -          UNMAPPED         REBOOT (rebooting)  running (succeeded)  -\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// A step that succeeded without its work shows why where a fault would be.
func TestStepNote(t *testing.T) {
	var b bytes.Buffer
	err := printSteps(&b, []*flotillav1.OperationStep{
		{Name: "decommission", State: flotillav1.StepState_STEP_STATE_SUCCEEDED, HostId: "h1", Attempt: 1, MaxAttempts: 1,
			Note: "decommissioning skipped: the guest has no guest side"},
		{Name: "delete-domain", State: flotillav1.StepState_STEP_STATE_SUCCEEDED, HostId: "h1", Attempt: 1, MaxAttempts: 3},
	})
	if err != nil || !strings.Contains(b.String(), "1/1      -        -      -     decommissioning skipped: the guest has no guest side\n") {
		t.Errorf("%v\n%s", err, b.String())
	}
}
