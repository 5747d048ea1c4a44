package api

import (
	"github.com/flotilla-vm/flotilla/coordinator/state"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// copyToPB is the public form of a running copy's progress (nil: none).
func copyToPB(c *state.CopyProgress) *pb.CopyProgress {
	if c == nil {
		return nil
	}
	return &pb.CopyProgress{
		StepId: c.StepID, BytesDone: c.BytesDone, BytesTotal: c.BytesTotal,
		BytesPerSecond: c.BytesPerSecond, BytesSent: c.BytesSent, ReportTime: ts(c.ReportTime),
	}
}
