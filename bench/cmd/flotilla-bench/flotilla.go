package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// The guest every instance runs.
var benchSpec = &pb.InstanceSpec{Vcpus: 1, MemoryMib: 192, Image: "flotilla-test"}

// createInstance sends CreateInstance and records the instance for clean-up.
func (b *bench) createInstance(ctx context.Context, name string) (*pb.Operation, error) {
	op, err := b.inst.CreateInstance(ctx, &pb.CreateInstanceRequest{
		Name: name, Spec: benchSpec, RequestId: fmt.Sprintf("%s-%d", name, time.Now().UnixNano()),
	})
	if err != nil {
		return nil, fmt.Errorf("CreateInstance %s: %w", name, err)
	}
	b.live[op.GetInstanceId()] = true
	return op, nil
}

// waitOp waits until the operation is done and fails unless it succeeded.
func (b *bench) waitOp(ctx context.Context, id string, timeout time.Duration) (*pb.Operation, error) {
	deadline := time.Now().Add(timeout)
	for {
		op, err := b.ops.WaitOperation(ctx, &pb.WaitOperationRequest{Id: id, Timeout: durationpb.New(10 * time.Second)})
		if err != nil {
			return nil, fmt.Errorf("WaitOperation %s: %w", id, err)
		}
		if op.GetDone() {
			if op.GetState() != pb.OperationState_OPERATION_STATE_SUCCEEDED {
				return op, fmt.Errorf("operation %s (%s) ended %s: %s %s", id, op.GetKind(), op.GetState(),
					op.GetError().GetCode(), op.GetError().GetMessage())
			}
			return op, nil
		}
		if time.Now().After(deadline) {
			return op, fmt.Errorf("operation %s (%s) not done after %s (step %q)", id, op.GetKind(), timeout, op.GetStep())
		}
	}
}

// deleteInstance deletes through Flotilla and waits for the operation.
func (b *bench) deleteInstance(ctx context.Context, id string) error {
	op, err := b.inst.DeleteInstance(ctx, &pb.DeleteInstanceRequest{Id: id, RequestId: fmt.Sprintf("delete-%s-%d", id, time.Now().UnixNano())})
	if err != nil {
		return fmt.Errorf("DeleteInstance %s: %w", id, err)
	}
	if _, err := b.waitOp(ctx, op.GetId(), 2*time.Minute); err != nil {
		return err
	}
	delete(b.live, id)
	return nil
}

// deleteLeftovers removes the instances still alive: through Flotilla if it
// answers, then straight from libvirt whatever remains.
func (b *bench) deleteLeftovers() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Every instance of this coordinator is the bench's, including one
	// whose CreateInstance was interrupted before it answered.
	if b.inst != nil && b.coord != nil && !b.coord.Exited() {
		lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := b.inst.ListInstances(lctx, &pb.ListInstancesRequest{PageSize: 1000})
		lcancel()
		if err == nil {
			for _, in := range list.GetInstances() {
				if in.GetStatus() != pb.Status_STATUS_DELETED {
					b.live[in.GetId()] = true
				}
			}
		}
	}
	for id := range b.live {
		if b.inst != nil && b.agent != nil && !b.agent.Exited() {
			if err := b.deleteInstance(ctx, id); err == nil {
				continue
			} else {
				logf("clean-up: delete %s through Flotilla: %v; removing it from libvirt directly", id, err)
			}
		}
		dom := "flotilla-" + id
		_, _ = virsh(ctx, "destroy", dom)
		_, _ = virsh(ctx, "undefine", "--managed-save", dom)
		if b.agent != nil {
			_ = os.Remove(filepath.Join(b.agent.DiskDir, id+".qcow2"))
		}
		delete(b.live, id)
	}
}

// watchMsg is one message of a watch, stamped when the bench received it.
type watchMsg struct {
	at   time.Time
	rev  int64
	inst *pb.Instance
	err  error // the stream ended
}

// openWatch lists to learn the current revision and watches from it, for
// one instance or (id "") all. The watch ends with ctx.
func (b *bench) openWatch(ctx context.Context, id string) (<-chan watchMsg, error) {
	list, err := b.inst.ListInstances(ctx, &pb.ListInstancesRequest{PageSize: 1})
	if err != nil {
		return nil, fmt.Errorf("ListInstances: %w", err)
	}
	stream, err := b.inst.WatchInstances(ctx, &pb.WatchInstancesRequest{StartRevision: list.GetRevision(), InstanceId: id})
	if err != nil {
		return nil, fmt.Errorf("WatchInstances: %w", err)
	}
	ch := make(chan watchMsg, 4096)
	go func() {
		defer close(ch)
		for {
			resp, err := stream.Recv()
			at := time.Now()
			if err != nil {
				select {
				case ch <- watchMsg{at: at, err: err}:
				default:
				}
				return
			}
			for _, inst := range resp.GetInstances() {
				select {
				case ch <- watchMsg{at: at, rev: resp.GetRevision(), inst: inst}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
}

// waitWatch reads ch until an instance satisfies match and returns the
// message. A message matching fail ends the wait with an error.
func waitWatch(ctx context.Context, ch <-chan watchMsg, timeout time.Duration, what string, match, fail func(*pb.Instance) bool) (watchMsg, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case m, ok := <-ch:
			if !ok || m.err != nil {
				return m, fmt.Errorf("watch ended while waiting for %s: %v", what, m.err)
			}
			if match(m.inst) {
				return m, nil
			}
			if fail != nil && fail(m.inst) {
				return m, fmt.Errorf("while waiting for %s: instance %s is %s (fault %s)", what, m.inst.GetId(),
					m.inst.GetStatus(), strings.TrimSpace(m.inst.GetFault().GetCode()+" "+m.inst.GetFault().GetMessage()))
			}
		case <-t.C:
			return watchMsg{}, fmt.Errorf("timed out after %s waiting for %s on the watch", timeout, what)
		case <-ctx.Done():
			return watchMsg{}, ctx.Err()
		}
	}
}

// drainWatch drops the messages received so far; it fails if the stream
// has ended.
func drainWatch(ch <-chan watchMsg) error {
	for {
		select {
		case m, ok := <-ch:
			if !ok || m.err != nil {
				return errors.Join(errors.New("watch ended"), m.err)
			}
		default:
			return nil
		}
	}
}
