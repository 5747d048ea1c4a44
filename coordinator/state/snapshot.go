package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"

	"github.com/flotilla-vm/flotilla/coordinator/usage"
)

// snapshotVersion is bumped whenever the snapshot format changes; Restore
// refuses versions it does not know rather than guess.
const snapshotVersion = 1

// Snapshot is the whole state at one revision, as snapshots carry it: the
// records are the store's own (committed, never changed in place), sorted
// by Write and View.Snapshot.
type Snapshot struct {
	Version   int               `json:"version"`
	Revision  int64             `json:"revision"`
	Seq       int64             `json:"seq"`
	Floor     int64             `json:"floor"`
	Instances []*Instance       `json:"instances"`
	Ops       []*Operation      `json:"operations"`
	Hosts     []*Host           `json:"hosts"`
	Requests  map[string]string `json:"requests"`
	Servers   []Server          `json:"servers"`
	History   []change          `json:"history"` // encoded as []Event
	// Metering and Usage are absent from snapshots of versions that kept
	// no usage: they restore with metering off, until the usage.start entry.
	Metering bool             `json:"metering"`
	Usage    []*usage.History `json:"usage"`
	// LogVersion is the cluster's log version; absent (0) before there
	// was one, as in every snapshot that format-1 servers read.
	LogVersion uint32 `json:"log_version,omitempty"`
	// Networks are absent before log version 3.
	Networks []*Network `json:"networks,omitempty"`
	// Projects are absent before log version 7.
	Projects []*Project `json:"projects,omitempty"`
	// Images are absent before log version 11.
	Images []*Image `json:"images,omitempty"`
}

// HistoryEntry is one committed instance change of the watch history.
type HistoryEntry = change

// A View is the whole state at one revision, taken quickly and encoded
// later without holding the store's lock. Taking it copies only the
// indexes (pointers to records, the request ids, the history's entries):
// committed records are never changed in place, since a Tx stages copies
// and commits them as new records. Encoding a large state is seconds of
// CPU; done under the lock it held every apply back for as long.
type View struct{ snap Snapshot }

// View takes a view of the state as it is now.
func (s *Store) View() *View {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := Snapshot{Version: snapshotVersion, Revision: s.rev, Seq: s.seq, Floor: s.floor, Metering: s.metering, LogVersion: s.logVersion.Load(),
		Instances: make([]*Instance, 0, len(s.instances)), Ops: make([]*Operation, 0, len(s.ops)),
		Hosts: make([]*Host, 0, len(s.hosts)), Servers: make([]Server, 0, len(s.servers)),
		// The history is trimmed by moving entries down in place, and the
		// requests map is written by every create: both are copied.
		Requests: maps.Clone(s.requests), History: slices.Clone(s.history),
		Usage: make([]*usage.History, 0, len(s.usage))}
	for _, i := range s.instances {
		snap.Instances = append(snap.Instances, i)
	}
	for _, o := range s.ops {
		snap.Ops = append(snap.Ops, o)
	}
	for _, h := range s.hosts {
		snap.Hosts = append(snap.Hosts, h)
	}
	for _, v := range s.servers {
		snap.Servers = append(snap.Servers, v)
	}
	for _, h := range s.usage {
		snap.Usage = append(snap.Usage, h)
	}
	for _, n := range s.networks {
		snap.Networks = append(snap.Networks, n)
	}
	for _, p := range s.projects {
		snap.Projects = append(snap.Projects, p)
	}
	for _, im := range s.images {
		snap.Images = append(snap.Images, im)
	}
	return &View{snap: snap}
}

// Revision is the revision the view shows.
func (v *View) Revision() int64 { return v.snap.Revision }

// LogVersion is the cluster's log version in the view.
func (v *View) LogVersion() uint32 { return v.snap.LogVersion }

// Snapshot returns the view's records, sorted (ids; operations by
// sequence). They are the store's: the caller must not change them.
func (v *View) Snapshot() *Snapshot {
	v.sort()
	return &v.snap
}

func (v *View) sort() {
	snap := &v.snap
	// Sorted, so equal states encode to equal bytes (the digest relies on it).
	sort.Slice(snap.Instances, func(a, b int) bool { return snap.Instances[a].ID < snap.Instances[b].ID })
	sort.Slice(snap.Ops, func(a, b int) bool { return snap.Ops[a].Seq < snap.Ops[b].Seq })
	sort.Slice(snap.Hosts, func(a, b int) bool { return snap.Hosts[a].ID < snap.Hosts[b].ID })
	sort.Slice(snap.Servers, func(a, b int) bool { return snap.Servers[a].ID < snap.Servers[b].ID })
	sort.Slice(snap.Usage, func(a, b int) bool { return snap.Usage[a].InstanceID < snap.Usage[b].InstanceID })
	sort.Slice(snap.Networks, func(a, b int) bool { return snap.Networks[a].Name < snap.Networks[b].Name })
	sort.Slice(snap.Projects, func(a, b int) bool { return snap.Projects[a].Name < snap.Projects[b].Name })
	sort.Slice(snap.Images, func(a, b int) bool { return snap.Images[a].Name < snap.Images[b].Name })
}

// Write encodes the view to w, in the snapshot format of log version 1,
// which Restore reads: the JSON encoding of the snapshot struct, written
// record by record, so that no copy of the whole encoding (several times
// the state's size, with the encoder's growing buffer) is held in memory
// at once. It is also the state's canonical encoding (Digest).
func (v *View) Write(w io.Writer) error {
	v.sort()
	snap := &v.snap
	j := &jsonStream{w: w}
	j.raw(`{"version":`)
	j.value(snap.Version)
	j.raw(`,"revision":`)
	j.value(snap.Revision)
	j.raw(`,"seq":`)
	j.value(snap.Seq)
	j.raw(`,"floor":`)
	j.value(snap.Floor)
	j.raw(`,"instances":`)
	writeArray(j, snap.Instances)
	j.raw(`,"operations":`)
	writeArray(j, snap.Ops)
	j.raw(`,"hosts":`)
	writeArray(j, snap.Hosts)
	j.raw(`,"requests":`)
	j.stringMap(snap.Requests)
	j.raw(`,"servers":`)
	writeArray(j, snap.Servers)
	j.raw(`,"history":`)
	writeArray(j, snap.History)
	j.raw(`,"metering":`)
	j.value(snap.Metering)
	j.raw(`,"usage":`)
	writeArray(j, snap.Usage)
	if snap.LogVersion != 0 {
		j.raw(`,"log_version":`)
		j.value(snap.LogVersion)
	}
	if len(snap.Networks) > 0 {
		j.raw(`,"networks":`)
		writeArray(j, snap.Networks)
	}
	if len(snap.Projects) > 0 {
		j.raw(`,"projects":`)
		writeArray(j, snap.Projects)
	}
	if len(snap.Images) > 0 {
		j.raw(`,"images":`)
		writeArray(j, snap.Images)
	}
	j.raw("}\n")
	return j.err
}

// jsonStream writes JSON piece by piece and keeps the first error.
type jsonStream struct {
	w   io.Writer
	err error
}

func (j *jsonStream) raw(s string) {
	if j.err == nil {
		_, j.err = io.WriteString(j.w, s)
	}
}

func (j *jsonStream) value(v any) {
	if j.err != nil {
		return
	}
	var b []byte
	if b, j.err = json.Marshal(v); j.err == nil {
		_, j.err = j.w.Write(b)
	}
}

// writeArray writes xs as a JSON array (null if nil, as encoding/json does).
func writeArray[T any](j *jsonStream, xs []T) {
	if xs == nil {
		j.raw("null")
		return
	}
	j.raw("[")
	for i := range xs {
		if i > 0 {
			j.raw(",")
		}
		j.value(xs[i])
	}
	j.raw("]")
}

// stringMap writes m as a JSON object with sorted keys (null if nil), as
// encoding/json does.
func (j *jsonStream) stringMap(m map[string]string) {
	if m == nil {
		j.raw("null")
		return
	}
	keys := slices.Sorted(maps.Keys(m))
	j.raw("{")
	for i, k := range keys {
		if i > 0 {
			j.raw(",")
		}
		j.value(k)
		j.raw(":")
		j.value(m[k])
	}
	j.raw("}")
}

// WriteSnapshot writes the whole state to w.
func (s *Store) WriteSnapshot(w io.Writer) error { return s.View().Write(w) }

// Digest is a SHA-256 of the state's canonical encoding and its revision:
// two replicas at the same revision must have the same digest.
func (s *Store) Digest() (string, int64) {
	h := sha256.New()
	v := s.View()
	_ = v.Write(h)
	return hex.EncodeToString(h.Sum(nil)), v.Revision()
}

// Restore replaces the whole state with a snapshot Write wrote.
func (s *Store) Restore(r io.Reader) error {
	snap, err := readSnapshot(r)
	if err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if snap.Version != snapshotVersion {
		return fmt.Errorf("snapshot version %d, want %d", snap.Version, snapshotVersion)
	}
	s.Load(snap)
	return nil
}

// Load replaces the whole state with snap's; the store keeps its records
// (and may intern their steps, see InternSteps): the caller hands them over.
func (s *Store) Load(snap *Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset(snap.Revision)
	s.seq, s.floor = snap.Seq, snap.Floor
	s.logVersion.Store(snap.LogVersion)
	for _, i := range snap.Instances {
		s.instances[i.ID] = i
		s.indexInstance(nil, i, s.rev)
	}
	ops := append([]*Operation(nil), snap.Ops...)
	sortOpsBySeq(ops)
	for _, o := range ops {
		if s.intern != nil {
			if shared := s.intern(o.Kind, o.Steps); shared != nil {
				o.Steps = shared
			}
		}
		s.ops[o.ID] = o
		s.indexOperation(nil, o, s.rev)
	}
	for _, h := range snap.Hosts {
		s.hosts[h.ID] = h
		s.indexHost(nil, h, s.rev)
	}
	for k, v := range snap.Requests {
		s.requests[k] = v
	}
	for _, v := range snap.Servers {
		s.servers[v.ID] = v
	}
	s.metering = snap.Metering
	for _, h := range snap.Usage {
		s.usage[h.InstanceID] = h
	}
	for _, n := range snap.Networks {
		s.networks[n.Name] = n
	}
	for _, p := range snap.Projects {
		s.projects[p.Name] = p
	}
	for _, im := range snap.Images {
		s.images[im.Name] = im
	}
	s.history = snap.History
	s.notify()
}

// readSnapshot decodes what View.Write wrote, record by record: decoding
// the document as one value first read all of it into the decoder's
// buffer, the whole snapshot's size on top of the state it builds.
func readSnapshot(r io.Reader) (*Snapshot, error) {
	dec := json.NewDecoder(r)
	var snap Snapshot
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch key, _ := tok.(string); key {
		case "instances":
			err = readArray(dec, &snap.Instances)
		case "operations":
			err = readArray(dec, &snap.Ops)
		case "hosts":
			err = readArray(dec, &snap.Hosts)
		case "servers":
			err = readArray(dec, &snap.Servers)
		case "history":
			err = readArray(dec, &snap.History)
		case "usage":
			err = readArray(dec, &snap.Usage)
		case "networks":
			err = readArray(dec, &snap.Networks)
		case "projects":
			err = readArray(dec, &snap.Projects)
		case "images":
			err = readArray(dec, &snap.Images)
		case "metering":
			err = dec.Decode(&snap.Metering)
		case "log_version":
			err = dec.Decode(&snap.LogVersion)
		case "version":
			err = dec.Decode(&snap.Version)
		case "revision":
			err = dec.Decode(&snap.Revision)
		case "seq":
			err = dec.Decode(&snap.Seq)
		case "floor":
			err = dec.Decode(&snap.Floor)
		case "requests":
			err = dec.Decode(&snap.Requests)
		default: // a field this version does not know, as encoding/json ignores it
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return nil, fmt.Errorf("%v: %w", tok, err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	return &snap, nil
}

// readArray decodes a JSON array (or null) element by element.
func readArray[T any](dec *json.Decoder, out *[]T) error {
	tok, err := dec.Token()
	if err != nil || tok == nil {
		return err
	}
	if tok != json.Delim('[') {
		return fmt.Errorf("want an array, got %v", tok)
	}
	*out = []T{} // [] is an empty slice, null a nil one, as with encoding/json
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			return err
		}
		*out = append(*out, v)
	}
	_, err = dec.Token() // ]
	return err
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("want %v, got %v", d, tok)
	}
	return nil
}
