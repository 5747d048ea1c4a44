package inproc

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/hypervisor"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

var smallSpec = &pb.InstanceSpec{Vcpus: 1, MemoryMib: 64, Image: "flotilla-test"}

// create makes a running instance and returns its id.
func create(t *testing.T, c *Cluster, name string, placement *pb.Placement) string {
	t.Helper()
	op, err := c.Instances.CreateInstance(context.Background(), &pb.CreateInstanceRequest{Name: name, Spec: smallSpec, Placement: placement})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if op = c.Wait(op); op.GetState() != pb.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("create %s: %v", name, op)
	}
	return op.GetInstanceId()
}

func instance(t *testing.T, c *Cluster, id string) *pb.Instance {
	t.Helper()
	inst, err := c.Instances.GetInstance(context.Background(), &pb.GetInstanceRequest{Id: id})
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return inst
}

// TestInstanceLifecycle drives one instance through the API to its agent's
// hypervisor and back: every operation succeeds, the instance's status
// follows, and the fake hypervisor holds the domain as the status says.
func TestInstanceLifecycle(t *testing.T) {
	c := Start(t, Options{})
	ctx := context.Background()
	id := create(t, c, "web-1", nil)
	h := c.Host(instance(t, c, id).GetHostId())
	if h == nil {
		t.Fatalf("instance placed on %q, not one of the cluster's hosts", instance(t, c, id).GetHostId())
	}
	for _, step := range []struct {
		name  string
		call  func() (*pb.Operation, error)
		want  pb.Status
		power hypervisor.PowerState
	}{
		{"created", nil, pb.Status_STATUS_RUNNING, hypervisor.PowerRunning},
		{"stop", func() (*pb.Operation, error) {
			return c.Instances.StopInstance(ctx, &pb.StopInstanceRequest{Id: id, GracefulTimeout: durationpb.New(10e9), Force: true})
		}, pb.Status_STATUS_STOPPED, hypervisor.PowerShutOff},
		{"start", func() (*pb.Operation, error) { return c.Instances.StartInstance(ctx, &pb.StartInstanceRequest{Id: id}) },
			pb.Status_STATUS_RUNNING, hypervisor.PowerRunning},
		{"pause", func() (*pb.Operation, error) { return c.Instances.PauseInstance(ctx, &pb.PauseInstanceRequest{Id: id}) },
			pb.Status_STATUS_PAUSED, hypervisor.PowerPaused},
		{"unpause", func() (*pb.Operation, error) {
			return c.Instances.UnpauseInstance(ctx, &pb.UnpauseInstanceRequest{Id: id})
		},
			pb.Status_STATUS_RUNNING, hypervisor.PowerRunning},
		{"delete", func() (*pb.Operation, error) {
			return c.Instances.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: id})
		},
			pb.Status_STATUS_DELETED, hypervisor.PowerNoDomain},
	} {
		if step.call != nil {
			op, err := step.call()
			if err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			if op = c.Wait(op); op.GetState() != pb.OperationState_OPERATION_STATE_SUCCEEDED {
				t.Fatalf("%s: %v", step.name, op)
			}
		}
		if got := instance(t, c, id).GetStatus(); got != step.want {
			t.Errorf("after %s: status %s, want %s", step.name, got, step.want)
		}
		if st, err := h.Driver.Status(ctx, id); err != nil || st.State != step.power {
			t.Errorf("after %s: domain %+v %v, want %s", step.name, st, err, step.power)
		}
	}
}

// TestAPIErrors: what the API refuses, and with which code.
func TestAPIErrors(t *testing.T) {
	c := Start(t, Options{})
	ctx := context.Background()
	running := create(t, c, "running-1", nil)
	stopped := create(t, c, "stopped-1", nil)
	op, err := c.Instances.StopInstance(ctx, &pb.StopInstanceRequest{Id: stopped, Force: true, GracefulTimeout: durationpb.New(10e9)})
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(op)
	const missing = "i-00000000000000000000"
	for _, tc := range []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string // of the ErrorInfo detail, if any is wanted
	}{
		{"get a missing instance", func() error {
			_, err := c.Instances.GetInstance(ctx, &pb.GetInstanceRequest{Id: missing})
			return err
		}, codes.NotFound, ""},
		{"start a missing instance", func() error {
			_, err := c.Instances.StartInstance(ctx, &pb.StartInstanceRequest{Id: missing})
			return err
		}, codes.NotFound, ""},
		{"delete a missing instance", func() error {
			_, err := c.Instances.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: missing})
			return err
		}, codes.NotFound, ""},
		{"get a missing operation", func() error {
			_, err := c.Operations.GetOperation(ctx, &pb.GetOperationRequest{Id: "op-00000000000000000000"})
			return err
		}, codes.NotFound, ""},
		{"get a missing host", func() error {
			_, err := c.HostAPI.GetHost(ctx, &pb.GetHostRequest{Id: "h-99"})
			return err
		}, codes.NotFound, ""},
		{"start a running instance", func() error {
			_, err := c.Instances.StartInstance(ctx, &pb.StartInstanceRequest{Id: running})
			return err
		}, codes.FailedPrecondition, "ACTION_NOT_ALLOWED"},
		{"pause a stopped instance", func() error {
			_, err := c.Instances.PauseInstance(ctx, &pb.PauseInstanceRequest{Id: stopped})
			return err
		}, codes.FailedPrecondition, "ACTION_NOT_ALLOWED"},
		{"create with a bad name", func() error {
			_, err := c.Instances.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "Bad_Name", Spec: smallSpec})
			return err
		}, codes.InvalidArgument, ""},
		{"create without a spec", func() error {
			_, err := c.Instances.CreateInstance(ctx, &pb.CreateInstanceRequest{Name: "no-spec"})
			return err
		}, codes.InvalidArgument, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("code %s (%v), want %s", st.Code(), err, tc.code)
			}
			if tc.reason == "" {
				return
			}
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == tc.reason {
					return
				}
			}
			t.Fatalf("details %v, want an ErrorInfo with reason %s", st.Details(), tc.reason)
		})
	}
}

// TestTransientFaultIsRetried: a step the hypervisor fails transiently is
// retried by the orchestrator, on the same agent session, and succeeds.
func TestTransientFaultIsRetried(t *testing.T) {
	c := Start(t, Options{})
	ctx := context.Background()
	id := create(t, c, "flaky-1", nil)
	op, err := c.Instances.StopInstance(ctx, &pb.StopInstanceRequest{Id: id, Force: true, GracefulTimeout: durationpb.New(10e9)})
	if err != nil {
		t.Fatal(err)
	}
	c.Wait(op)
	h := c.Hosts[0]
	before := h.Driver.Calls("Start")
	h.Driver.InjectFault("Start", errors.Join(errors.New("injected"), hypervisor.ErrUnavailable), 1)
	op, err = c.Instances.StartInstance(ctx, &pb.StartInstanceRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	if op = c.Wait(op); op.GetState() != pb.OperationState_OPERATION_STATE_SUCCEEDED {
		t.Fatalf("start: %v", op)
	}
	if n := h.Driver.Calls("Start") - before; n != 2 {
		t.Errorf("Start called %d times, want 2 (one failed, one retried)", n)
	}
}

// TestSpreadOverHosts: an anti-affinity group puts its instances on
// different hosts, each created by its own agent.
func TestSpreadOverHosts(t *testing.T) {
	c := Start(t, Options{Hosts: 2})
	placement := &pb.Placement{AntiAffinityGroup: "pair"}
	a, b := create(t, c, "pair-a", placement), create(t, c, "pair-b", placement)
	ha, hb := instance(t, c, a).GetHostId(), instance(t, c, b).GetHostId()
	if ha == hb {
		t.Fatalf("both on %s", ha)
	}
	for id, host := range map[string]string{a: ha, b: hb} {
		if st, err := c.Host(host).Driver.Status(context.Background(), id); err != nil || st.State != hypervisor.PowerRunning {
			t.Errorf("%s on %s: %+v %v", id, host, st, err)
		}
	}
}

// TestAgentDisconnectIsRecorded: an agent that goes away leaves its host
// disconnected (not down: its stream closed, it did not fall silent).
func TestAgentDisconnectIsRecorded(t *testing.T) {
	c := Start(t, Options{Hosts: 2})
	c.Hosts[0].Stop(t)
	c.WaitHost(c.Hosts[0].ID, state.HostDisconnected)
	h, err := c.HostAPI.GetHost(context.Background(), &pb.GetHostRequest{Id: c.Hosts[1].ID})
	if err != nil || h.GetStatus() != pb.HostStatus_HOST_STATUS_READY {
		t.Fatalf("the other host: %v %v", h, err)
	}
}
