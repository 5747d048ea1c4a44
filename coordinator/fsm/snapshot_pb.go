package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/flotilla-vm/flotilla/coordinator/state"
	"github.com/flotilla-vm/flotilla/coordinator/usage"
	"github.com/flotilla-vm/flotilla/coordinator/vocabulary"
	raftv1 "github.com/flotilla-vm/flotilla/proto/flotilla/raft/v1"
)

// Snapshots of log version 2 (proto/flotilla/raft/v1/snapshot.proto): a
// marker, then length-delimited records, streamed both ways. Snapshots of
// a state at version 1 are written in format 1 (state.View.Write), which
// every server of a rolling upgrade reads.

const snapshotMarker = "FLOTSNAP"

// snapshotVersion2 is the header's version of the format written here.
const snapshotVersion2 = 2

// maxSnapshotRecord bounds one record's length, against a corrupt length
// making the reader allocate without limit.
const maxSnapshotRecord = 64 << 20

// writeSnapshot writes a view in format 2.
func writeSnapshot(w io.Writer, v *state.View) error {
	snap := v.Snapshot()
	sw := &snapshotWriter{w: w}
	sw.raw([]byte(snapshotMarker))
	sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Header{Header: &raftv1.SnapshotHeader{
		Version: snapshotVersion2, Revision: snap.Revision, Seq: snap.Seq, Floor: snap.Floor,
		Metering: snap.Metering, LogVersion: snap.LogVersion}}})
	n := uint64(0)
	for _, i := range snap.Instances {
		sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Instance{Instance: instanceToPB(i)}})
		n++
	}
	for _, o := range snap.Ops {
		sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Operation{Operation: operationToPB(o)}})
		n++
	}
	for _, h := range snap.Hosts {
		sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Host{Host: hostToPB(h)}})
		n++
	}
	for _, k := range slices.Sorted(maps.Keys(snap.Requests)) {
		sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Request{Request: &raftv1.RequestRecord{RequestId: k, OperationId: snap.Requests[k]}}})
		n++
	}
	for k := range snap.Servers {
		sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Server{Server: serverToPB(&snap.Servers[k])}})
		n++
	}
	for _, c := range snap.History {
		sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_History{History: &raftv1.HistoryEvent{Revision: c.Revision, Instance: instanceToPB(c.Instance)}}})
		n++
	}
	for _, u := range snap.Usage {
		sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Usage{Usage: usageToPB(u)}})
		n++
	}
	for _, nw := range snap.Networks {
		sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Network{Network: networkToPB(nw)}})
		n++
	}
	for _, p := range snap.Projects {
		sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Project{Project: projectToPB(p)}})
		n++
	}
	for _, im := range snap.Images {
		sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Image{Image: imageToPB(im)}})
		n++
	}
	sw.put(&raftv1.SnapshotRecord{Record: &raftv1.SnapshotRecord_Trailer{Trailer: &raftv1.SnapshotTrailer{Records: n}}})
	return sw.err
}

type snapshotWriter struct {
	w   io.Writer
	buf []byte
	err error
}

func (sw *snapshotWriter) raw(b []byte) {
	if sw.err == nil {
		_, sw.err = sw.w.Write(b)
	}
}

func (sw *snapshotWriter) put(m proto.Message) {
	if sw.err != nil {
		return
	}
	// Length first: the message goes after a reserved varint's room.
	body, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(sw.buf[:0], m)
	if err != nil {
		sw.err = err
		return
	}
	sw.buf = body[:0]
	var l [binary.MaxVarintLen64]byte
	sw.raw(l[:binary.PutUvarint(l[:], uint64(len(body)))])
	sw.raw(body)
}

// readSnapshot reads a snapshot of format 2 whose marker r is at.
func readSnapshot(r *bufio.Reader) (*state.Snapshot, error) {
	marker := make([]byte, len(snapshotMarker))
	if _, err := io.ReadFull(r, marker); err != nil || string(marker) != snapshotMarker {
		return nil, errors.New("not a snapshot of format 2")
	}
	snap := &state.Snapshot{Requests: map[string]string{}}
	var buf []byte
	var rec raftv1.SnapshotRecord
	n, header := uint64(0), false
	for {
		l, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, fmt.Errorf("snapshot ends without its trailer: %w", err)
		}
		if l > maxSnapshotRecord {
			return nil, fmt.Errorf("snapshot record of %d bytes", l)
		}
		buf = slices.Grow(buf[:0], int(l))[:l]
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("snapshot record: %w", err)
		}
		rec.Reset()
		if err := proto.Unmarshal(buf, &rec); err != nil {
			return nil, fmt.Errorf("snapshot record: %w", err)
		}
		if _, ok := rec.Record.(*raftv1.SnapshotRecord_Header); !ok && !header {
			return nil, errors.New("snapshot without a header")
		}
		switch x := rec.Record.(type) {
		case *raftv1.SnapshotRecord_Header:
			h := x.Header
			if header || h.Version != snapshotVersion2 {
				return nil, fmt.Errorf("snapshot header of version %d (this server reads %d)", h.Version, snapshotVersion2)
			}
			header = true
			snap.Version, snap.Revision, snap.Seq, snap.Floor = int(h.Version), h.Revision, h.Seq, h.Floor
			snap.Metering, snap.LogVersion = h.Metering, h.LogVersion
			continue
		case *raftv1.SnapshotRecord_Trailer:
			if x.Trailer.Records != n {
				return nil, fmt.Errorf("snapshot holds %d records, its trailer says %d", n, x.Trailer.Records)
			}
			return snap, nil
		case *raftv1.SnapshotRecord_Instance:
			i := instanceFromPB(x.Instance)
			snap.Instances = append(snap.Instances, &i)
		case *raftv1.SnapshotRecord_Operation:
			o := operationFromPB(x.Operation)
			snap.Ops = append(snap.Ops, &o)
		case *raftv1.SnapshotRecord_Host:
			h := hostFromPB(x.Host)
			snap.Hosts = append(snap.Hosts, &h)
		case *raftv1.SnapshotRecord_Request:
			snap.Requests[x.Request.RequestId] = x.Request.OperationId
		case *raftv1.SnapshotRecord_Server:
			snap.Servers = append(snap.Servers, serverFromPB(x.Server))
		case *raftv1.SnapshotRecord_History:
			i := instanceFromPB(x.History.Instance)
			snap.History = append(snap.History, state.HistoryEntry{Revision: x.History.Revision, Instance: &i})
		case *raftv1.SnapshotRecord_Usage:
			snap.Usage = append(snap.Usage, usageFromPB(x.Usage))
		case *raftv1.SnapshotRecord_Network:
			nw := networkFromPB(x.Network)
			snap.Networks = append(snap.Networks, &nw)
		case *raftv1.SnapshotRecord_Project:
			p := projectFromPB(x.Project)
			snap.Projects = append(snap.Projects, &p)
		case *raftv1.SnapshotRecord_Image:
			im := imageFromPB(x.Image)
			snap.Images = append(snap.Images, &im)
		default:
			// A record of a newer server: refused rather than dropped, as
			// the state it describes would be lost.
			return nil, errors.New("snapshot record of an unknown kind")
		}
		n++
	}
}

func usageToPB(h *usage.History) *raftv1.UsageHistory {
	m := &raftv1.UsageHistory{InstanceId: h.InstanceID, Meters: make([]*raftv1.Meter, len(h.Meters))}
	for k, mt := range h.Meters {
		pm := &raftv1.Meter{Vocabulary: string(mt.Vocabulary)}
		for _, c := range mt.Changes {
			pm.Changes = append(pm.Changes, &raftv1.UsageChange{AtUnixNano: unixNano(c.At), Class: string(c.Class), Off: c.Off})
		}
		if f := mt.Folded; f != nil {
			pm.Folded = &raftv1.Folded{FromUnixNano: unixNano(f.From)}
			for _, t := range f.Totals {
				pm.Folded.Totals = append(pm.Folded.Totals, &raftv1.UsageTotal{Class: string(t.Class), Nanos: int64(t.Time)})
			}
		}
		m.Meters[k] = pm
	}
	return m
}

func usageFromPB(m *raftv1.UsageHistory) *usage.History {
	h := &usage.History{InstanceID: m.InstanceId, Meters: make([]usage.Meter, len(m.Meters))}
	for k, pm := range m.Meters {
		mt := usage.Meter{Vocabulary: vocabulary.Vocabulary(pm.Vocabulary)}
		if len(pm.Changes) > 0 {
			mt.Changes = make([]usage.Change, len(pm.Changes))
			for j, c := range pm.Changes {
				mt.Changes[j] = usage.Change{At: fromUnixNano(c.AtUnixNano), Class: vocabulary.Billing(c.Class), Off: c.Off}
			}
		}
		if f := pm.Folded; f != nil {
			mt.Folded = &usage.Folded{From: fromUnixNano(f.FromUnixNano)}
			for _, t := range f.Totals {
				mt.Folded.Totals = append(mt.Folded.Totals, usage.Total{Class: vocabulary.Billing(t.Class), Time: time.Duration(t.Nanos)})
			}
		}
		h.Meters[k] = mt
	}
	return h
}
