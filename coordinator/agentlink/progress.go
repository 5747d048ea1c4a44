package agentlink

import (
	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	agentv1 "github.com/flotilla-vm/flotilla/proto/flotilla/agent/v1"
)

// copyProgress turns an agent's report of a running copy into its command
// (committed like the agent's other reports; a stale one is refused there,
// which does not end the session). Done is kept within the total here: a
// report the log refuses as invalid would end the agent's session.
func copyProgress(hostID string, p *agentv1.CopyProgress) fsm.CopyProgress {
	return fsm.CopyProgress{
		OperationID: p.GetOperationId(), StepID: p.GetStepId(), HostID: hostID,
		BytesDone: min(p.GetBytesDone(), p.GetBytesTotal()), BytesTotal: p.GetBytesTotal(),
		BytesPerSecond: p.GetBytesPerSecond(), BytesSent: p.GetBytesSent(),
	}
}
