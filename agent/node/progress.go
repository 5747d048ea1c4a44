package node

import (
	"context"
	"sync/atomic"

	"github.com/flotilla-vm/flotilla/agent/executor"
	"github.com/flotilla-vm/flotilla/agent/session"
	"github.com/flotilla-vm/flotilla/agent/transfer"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// copyProgress hands a running pull's progress to the coordinator session,
// named by the step it runs under. The session is made after the mover, so
// it is set once it exists; reports before that are dropped.
type copyProgress struct {
	client atomic.Pointer[session.Client]
}

func (c *copyProgress) report(ctx context.Context, p transfer.Progress) {
	client := c.client.Load()
	step, ok := executor.StepFromContext(ctx)
	if client == nil || !ok {
		return
	}
	client.ReportCopyProgress(&agentv1.CopyProgress{
		OperationId: step.OperationID, StepId: step.StepID, InstanceId: p.InstanceID,
		BytesDone: uint64(p.Done), BytesTotal: uint64(p.Total), BytesPerSecond: uint64(max(p.Rate, 0)), BytesSent: uint64(p.Sent),
	})
}
