package api

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flotilla-vm/flotilla/coordinator/convert"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	pb "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

type usageService struct {
	*core
	pb.UnimplementedUsageServiceServer
}

// GetInstanceUsage answers from this server's replica of the recorded
// history; the class the instance is in counts up to the end of the range,
// at most this server's now.
func (s *usageService) GetInstanceUsage(ctx context.Context, r *pb.GetInstanceUsageRequest) (*pb.InstanceUsage, error) {
	var v violations
	validateID(&v, "instance_id", r.InstanceId)
	voc := meteredVocabulary(&v, r.Vocabulary)
	from, to := timeRange(&v, r.StartTime, r.EndTime)
	if len(v) > 0 {
		return nil, invalid(v)
	}
	if err := s.waitRevision(ctx, r.MinRevision); err != nil {
		return nil, toStatus(err)
	}
	if err := s.checkInstance(ctx, r.InstanceId); err != nil {
		return nil, toStatus(err)
	}
	h, rev, err := s.store.Usage(r.InstanceId)
	if err != nil {
		return nil, toStatus(err)
	}
	m := h.MeterOf(voc)
	rep, err := m.Report(from, to, s.now())
	if err != nil {
		return nil, toStatus(err)
	}
	return convert.UsageToPB(r.InstanceId, voc, rep, rev), nil
}

// meteredVocabulary validates a vocabulary whose billing classes are metered.
func meteredVocabulary(v *violations, p pb.Vocabulary) vocabulary.Vocabulary {
	vs := vocabulariesFromPB(v, []pb.Vocabulary{p})
	switch {
	case p == pb.Vocabulary_VOCABULARY_UNSPECIFIED:
		v.add("vocabulary", "is required: VOCABULARY_RIGHTSCALE or VOCABULARY_AZURE")
	case len(vs) == 1 && len(vs[0].Classes()) == 0:
		v.add("vocabulary", "%v names no billing classes: VOCABULARY_RIGHTSCALE or VOCABULARY_AZURE do", p)
	case len(vs) == 1:
		return vs[0]
	}
	return ""
}

// timeRange validates an optional start and end (zero when unset).
func timeRange(v *violations, start, end *timestamppb.Timestamp) (from, to time.Time) {
	if start != nil {
		if err := start.CheckValid(); err != nil {
			v.add("start_time", "%v", err)
		}
		from = start.AsTime()
	}
	if end != nil {
		if err := end.CheckValid(); err != nil {
			v.add("end_time", "%v", err)
		}
		to = end.AsTime()
	}
	if start != nil && end != nil && !to.After(from) {
		v.add("end_time", "must be after start_time")
	}
	return from, to
}
