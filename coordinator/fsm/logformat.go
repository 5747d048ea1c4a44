package fsm

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-vm/flotilla/coordinator/state"
	raftv1 "github.com/flotilla-vm/flotilla/proto/flotilla/raft/v1"
)

// Log versions: the formats of log entries and snapshots, and the command
// types each admits. A cluster's version is a replicated fact (the
// SetLogVersion command), raised by the leader once every voter reports
// supporting the next one (coordinator/upgrade) and never lowered, so a
// rolling upgrade runs with servers of two versions: entries are written
// in the older format until the last server is upgraded.
const (
	// LogVersion1 is the binary or JSON envelope with JSON bodies (see
	// legacy_envelope.go), the only format of releases before 0.14.
	LogVersion1 uint32 = 1
	// LogVersion2 is protobuf entries and snapshots (proto/flotilla/raft/v1).
	LogVersion2 uint32 = 2
	// LogVersion3 adds networks and instances' NICs, user data and SSH keys.
	LogVersion3 uint32 = 3
	// LogVersion4 adds guests' boot reports and readiness deadlines.
	LogVersion4 uint32 = 4
	LogVersion5 uint32 = 5 // adds guest commands: passwords, decommissioning, guests' OS reports
	// LogVersion6 scopes request ids to their caller and kind of request
	// and binds them to the request's content (Operation.request_key and
	// request_hash), and adds host removal (host.remove).
	LogVersion6 uint32 = 6
	// LogVersion7 adds projects: instances' projects, quotas checked at
	// commit time, balances charged from usage, and freezing (project.*).
	LogVersion7 uint32 = 7
	// LogVersion8 adds rebuild, rescue, unrescue and bundle (an operation's
	// image, an instance's rescue image).
	LogVersion8 uint32 = 8
	// LogVersion9 adds deallocate, soft delete (InstanceAction.retain and
	// reclaim_before), restore and upgrade.
	LogVersion9 uint32 = 9
	// LogVersion10 ends an operation that failed with AGENT_RESTARTED (a
	// step whose outcome nobody can know) with the instance showing what
	// its host observes, not ERROR (see failedResult).
	LogVersion10 uint32 = 10
	// LogVersion11 adds the image catalogue (image.*, snapshot images) and
	// a create's image fetch (Operation.image_source).
	LogVersion11 uint32 = 11
	// LogVersion13 adds hosts' clock skew (host.clock).
	LogVersion13 uint32 = 13
	// SupportedLogVersion is the newest version this server reads and writes.
	SupportedLogVersion = LogVersion13
)

// entryMarker starts every entry of format 2; never '{' nor 0xF1, which
// start entries of format 1.
const entryMarker = 0xF2

// ErrUnsupported refuses a command the cluster's log version does not admit
// yet: some voter would not understand it.
var ErrUnsupported = errors.New("not supported by every server of the cluster yet")

// A command is one command type's entry in the table: its log form and
// apply function, and the log version that admits it.
type command struct {
	// minVersion is the log version from which the type may be proposed.
	minVersion uint32
	// ignorable marks entries a server that does not know the type skips.
	ignorable bool
	// encode gives a body (the command's struct or a pointer to it) in its
	// log form; legacy decodes a body of that form back to the struct.
	encode func(body any) ([]byte, error)
	legacy func(raw []byte) (any, error)
	apply  applyFunc
}

type applyFunc func(tx *state.Tx, body []byte, format uint32) (any, error)

// logForm is a command struct with its log form M.
type logForm[T, M any] interface {
	*T
	toPB() M
	fromPB(M)
}

// def builds a command's table entry from its apply function.
//
// Bodies are reused: every replica decodes every command, and a new body
// each time was a good part of what a follower allocated per write. So an
// apply function copies out what it keeps and never keeps the body's
// address or a field's; the body is cleared before it is used again.
func def[T any, M proto.Message, P logForm[T, M]](minVersion uint32, newM func() M, fn func(*state.Tx, P) (any, error)) command {
	var pool = newBodyPool[T]()
	decode := func(raw []byte, format uint32, body P) error {
		if format == LogVersion1 {
			return decodeBody(raw, (*T)(body))
		}
		m := newM()
		if err := proto.Unmarshal(raw, m); err != nil {
			return err
		}
		body.fromPB(m)
		return nil
	}
	return command{
		minVersion: minVersion,
		encode: func(body any) ([]byte, error) {
			var p P
			switch b := body.(type) {
			case T:
				p = &b
			case *T:
				p = b
			default:
				return nil, fmt.Errorf("%w: body %T, want %T", ErrInvalid, body, (*T)(nil))
			}
			return proto.MarshalOptions{Deterministic: true}.Marshal(p.toPB())
		},
		legacy: func(raw []byte) (any, error) {
			body := new(T)
			return body, decode(raw, LogVersion2, body)
		},
		apply: func(tx *state.Tx, raw []byte, format uint32) (any, error) {
			body := pool.get()
			if err := decode(raw, format, body); err != nil {
				// A body that does not decode is a bug or corruption, and
				// replicas must not diverge over it.
				panic(fmt.Sprintf("fsm: undecodable %T body: %v", body, err))
			}
			v, err := fn(tx, body)
			pool.put(body)
			return v, err
		},
	}
}

// commands is the table of every command type this server knows.
var commands = map[string]command{
	TypeCreateInstance: def(LogVersion1, newPB[raftv1.CreateInstance], applyCreateInstance),
	TypeInstanceAction: def(LogVersion1, newPB[raftv1.InstanceAction], applyInstanceAction),
	TypeDispatch:       def(LogVersion1, newPB[raftv1.Dispatch], applyDispatch),
	TypeFinish:         def(LogVersion1, newPB[raftv1.Finish], applyFinish),
	TypeCancel:         def(LogVersion1, newPB[raftv1.Cancel], applyCancel),
	TypeRegisterHost:   def(LogVersion1, newPB[raftv1.RegisterHost], applyRegisterHost),
	TypeDisconnectHost: def(LogVersion1, newPB[raftv1.DisconnectHost], applyDisconnectHost),
	TypeObserve:        def(LogVersion1, newPB[raftv1.Observe], applyObserve),
	TypeRegisterServer: def(LogVersion1, newPB[raftv1.RegisterServer], applyRegisterServer),
	TypeRemoveServer:   def(LogVersion1, newPB[raftv1.RemoveServer], applyRemoveServer),
	TypeCordonHost:     def(LogVersion1, newPB[raftv1.CordonHost], applyCordonHost),
	TypeDrainHost:      def(LogVersion1, newPB[raftv1.DrainHost], applyDrainHost),
	TypeRecover:        def(LogVersion1, newPB[raftv1.Recover], applyRecover),
	TypePlace:          def(LogVersion1, newPB[raftv1.Place], applyPlace),
	TypePreempt:        def(LogVersion1, newPB[raftv1.Preempt], applyPreempt),
	TypePrune:          def(LogVersion1, newPB[raftv1.Prune], applyPrune),
	TypeStartUsage:     def(LogVersion1, newPB[raftv1.StartUsage], applyStartUsage),
	TypeCopyProgress:   def(LogVersion1, newPB[raftv1.CopyProgress], applyCopyProgress),
	// Proposed only by the upgrade gate, once every server reads version
	// 2 (so at version 1, in format 1: the servers that cannot read it
	// are gone).
	TypeSetLogVersion: def(LogVersion1, newPB[raftv1.SetLogVersion], applySetLogVersion),
	TypeCreateNetwork: def(LogVersion3, newPB[raftv1.CreateNetwork], applyCreateNetwork),
	TypeDeleteNetwork: def(LogVersion3, newPB[raftv1.DeleteNetwork], applyDeleteNetwork),
	TypeGuestReport:   def(LogVersion4, newPB[raftv1.GuestReport], applyGuestReport),
	TypeStrand:        def(LogVersion4, newPB[raftv1.Strand], applyStrand),
}

func newPB[M any]() *M { return new(M) }

// Encode builds the log entry of a command, in format 2. Proposals go
// through Downgrade (raftstore does it), which rewrites the entry in
// format 1 while the cluster is not yet at version 2.
func Encode(typ string, now time.Time, body any) ([]byte, error) {
	c, ok := commands[typ]
	if !ok {
		return nil, fmt.Errorf("%w: unknown command type %q", ErrInvalid, typ)
	}
	b, err := c.encode(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return appendEntry(make([]byte, 0, 32+len(typ)+len(b)), typ, c.ignorable, now, b), nil
}

// appendEntry appends a format-2 entry to dst.
func appendEntry(dst []byte, typ string, ignorable bool, now time.Time, body []byte) []byte {
	dst = append(dst, entryMarker)
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendString(dst, typ)
	dst = protowire.AppendTag(dst, 2, protowire.VarintType)
	dst = protowire.AppendVarint(dst, 1)
	if ignorable {
		dst = protowire.AppendTag(dst, 3, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	}
	dst = protowire.AppendTag(dst, 4, protowire.Fixed64Type)
	dst = protowire.AppendFixed64(dst, uint64(unixNano(now)))
	dst = protowire.AppendTag(dst, 5, protowire.BytesType)
	return protowire.AppendBytes(dst, body)
}

// entry is a decoded log entry of either format.
type entry struct {
	typ       string
	version   uint32 // of the body's schema (format 2)
	ignorable bool
	now       time.Time
	body      []byte
	format    uint32
	json      bool // format 1 in its JSON envelope
}

// decodeEntry splits a log entry, of either format, into its parts. The
// Entry message is read field by field (as proto.Unmarshal would, unknown
// fields skipped) so that no Entry is allocated per command.
func decodeEntry(data []byte) (entry, error) {
	if len(data) == 0 || data[0] != entryMarker {
		typ, now, body, err := decode(data)
		return entry{typ: typ, now: now, body: body, format: LogVersion1, json: len(data) > 0 && data[0] == '{'}, err
	}
	e := entry{format: LogVersion2}
	b := data[1:]
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return e, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && wt == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return e, protowire.ParseError(n)
			}
			e.typ, b = string(v), b[n:]
		case num == 2 && wt == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return e, protowire.ParseError(n)
			}
			e.version, b = uint32(v), b[n:]
		case num == 3 && wt == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return e, protowire.ParseError(n)
			}
			e.ignorable, b = v != 0, b[n:]
		case num == 4 && wt == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return e, protowire.ParseError(n)
			}
			e.now, b = fromUnixNano(int64(v)), b[n:]
		case num == 5 && wt == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return e, protowire.ParseError(n)
			}
			e.body, b = v, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, wt, b)
			if n < 0 {
				return e, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	if e.typ == "" {
		return e, errors.New("entry without a type")
	}
	return e, nil
}

// TypeOf returns the command type of an encoded log entry.
func TypeOf(data []byte) (string, error) {
	e, err := decodeEntry(data)
	return e.typ, err
}

// EncodeBatch builds one log entry from encoded commands: in format 2 when
// they all are, else in format 1 (whose batches may hold entries of either).
func EncodeBatch(now time.Time, cmds [][]byte) ([]byte, error) {
	for _, c := range cmds {
		if len(c) == 0 || c[0] != entryMarker {
			return encodeLegacyBatch(now, cmds), nil
		}
	}
	b, err := proto.Marshal(&raftv1.Batch{Entries: cmds})
	if err != nil {
		return nil, err
	}
	return appendEntry(make([]byte, 0, 32+len(b)), TypeBatch, false, now, b), nil
}

// splitEntries returns the commands of a batch entry's body.
func splitEntries(e entry) ([][]byte, error) {
	if e.format == LogVersion1 {
		return splitBatch(e.body, !e.json)
	}
	// A Batch read field by field, its entries left in place: unmarshalled,
	// every entry of every batch was copied once more on every replica.
	var cmds [][]byte
	for b := e.body; len(b) > 0; {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && wt == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			cmds, b = append(cmds, v), b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, wt, b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return cmds, nil
}

// Downgrade returns an entry (a command or a batch) as the cluster's log
// version admits it: refused (ErrUnsupported) if a command's type needs a
// newer version, rewritten in format 1 at version 1, else as it is.
func Downgrade(data []byte, version uint32) ([]byte, error) {
	e, err := decodeEntry(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if e.typ == TypeBatch {
		cmds, err := splitEntries(e)
		if err != nil {
			return nil, fmt.Errorf("%w: batch: %v", ErrInvalid, err)
		}
		changed := false
		for k, c := range cmds {
			d, err := Downgrade(c, version)
			if err != nil {
				return nil, err
			}
			changed = changed || &d[0] != &c[0]
			cmds[k] = d
		}
		if !changed {
			return data, nil
		}
		return EncodeBatch(e.now, cmds)
	}
	c, ok := commands[e.typ]
	if !ok {
		return nil, fmt.Errorf("%w: unknown command type %q", ErrInvalid, e.typ)
	}
	if version < LogVersion1 {
		version = LogVersion1
	}
	if c.minVersion > version {
		return nil, fmt.Errorf("%s: %w (needs log version %d, the cluster is at %d)", e.typ, ErrUnsupported, c.minVersion, version)
	}
	if e.format <= version {
		return data, nil
	}
	body, err := c.legacy(e.body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s body: %v", ErrInvalid, e.typ, err)
	}
	return encodeLegacy(e.typ, e.now, body)
}
