package fsm

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Log format 1 (see logformat.go), read from older logs and snapshots'
// trailing logs, and written while some voter of the cluster reads no
// other.
//
// Command is a log entry of its first form, a JSON envelope whose body is
// decoded a second time; later releases of format 1 wrote the binary
// envelope below.
type Command struct {
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Body json.RawMessage `json:"body"`
}

// A log entry is a binary envelope around the command's body (JSON, or for
// some commands a compact binary form, see encodeBody):
//
//	magic (1 byte) | version (1 byte) | uvarint len(type) | type |
//	varint Unix seconds | uvarint nanoseconds | body
//
// so applying an entry decodes its body once, rather than scanning it
// first inside a JSON envelope. Every replica decodes the same bytes into
// the same type, time (UTC) and body.
const (
	envelopeMagic   = 0xF1 // never '{', which starts an entry of the first format
	envelopeVersion = 1
)

// encodeLegacy builds the format-1 log entry for a command body (see
// Downgrade).
func encodeLegacy(typ string, now time.Time, body any) ([]byte, error) {
	if c := createBody(body); c != nil {
		// Creates, most of what is proposed, go straight into the entry.
		if b, ok := compactCreate(envelopeHeader(make([]byte, 0, 320), typ, now), c); ok {
			return b, nil
		}
	}
	b, err := encodeBody(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return envelope(typ, now, len(b), func(buf []byte) []byte { return append(buf, b...) }), nil
}

// envelope lays out an entry whose body, of bodyLen bytes, appendBody writes.
func envelope(typ string, now time.Time, bodyLen int, appendBody func([]byte) []byte) []byte {
	buf := make([]byte, 0, 2+binary.MaxVarintLen64*3+len(typ)+bodyLen)
	return appendBody(envelopeHeader(buf, typ, now))
}

// envelopeHeader appends an entry's envelope, all but its body, to buf.
func envelopeHeader(buf []byte, typ string, now time.Time) []byte {
	now = now.UTC()
	buf = append(buf, envelopeMagic, envelopeVersion)
	buf = binary.AppendUvarint(buf, uint64(len(typ)))
	buf = append(buf, typ...)
	buf = binary.AppendVarint(buf, now.Unix())
	return binary.AppendUvarint(buf, uint64(now.Nanosecond()))
}

// decode splits a log entry, of either format, into its type, time and body.
func decode(data []byte) (typ string, now time.Time, body []byte, err error) {
	if len(data) > 0 && data[0] == '{' {
		var cmd Command
		if err := json.Unmarshal(data, &cmd); err != nil {
			return "", time.Time{}, nil, fmt.Errorf("json envelope: %w", err)
		}
		return cmd.Type, cmd.Time, cmd.Body, nil
	}
	if len(data) < 2 || data[0] != envelopeMagic || data[1] != envelopeVersion {
		return "", time.Time{}, nil, errors.New("not a command envelope of a known version")
	}
	rest := data[2:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return "", time.Time{}, nil, errors.New("truncated command type")
	}
	typ, rest = string(rest[k:k+int(n)]), rest[k+int(n):]
	sec, k := binary.Varint(rest)
	if k <= 0 {
		return "", time.Time{}, nil, errors.New("truncated command time")
	}
	rest = rest[k:]
	nsec, k := binary.Uvarint(rest)
	if k <= 0 || nsec >= 1e9 {
		return "", time.Time{}, nil, errors.New("bad command time")
	}
	return typ, time.Unix(sec, int64(nsec)).UTC(), rest[k:], nil
}

// Batch is the body of a TypeBatch entry of the first (JSON) format. A
// batch entry now carries its commands in binary: each as a uvarint length
// followed by the encoded command.
type Batch struct {
	Commands []json.RawMessage `json:"commands"`
}

// encodeLegacyBatch builds one format-1 log entry from encoded commands.
func encodeLegacyBatch(now time.Time, cmds [][]byte) []byte {
	n := 0
	for _, c := range cmds {
		n += binary.MaxVarintLen64 + len(c)
	}
	return envelope(TypeBatch, now, n, func(buf []byte) []byte {
		for _, c := range cmds {
			buf = binary.AppendUvarint(buf, uint64(len(c)))
			buf = append(buf, c...)
		}
		return buf
	})
}

// splitBatch returns the commands of a batch body, of either format.
func splitBatch(body []byte, binaryEnvelope bool) ([][]byte, error) {
	if !binaryEnvelope {
		var b Batch
		if err := json.Unmarshal(body, &b); err != nil {
			return nil, err
		}
		out := make([][]byte, len(b.Commands))
		for i, c := range b.Commands {
			out[i] = c
		}
		return out, nil
	}
	var out [][]byte
	for len(body) > 0 {
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)-k) {
			return nil, errors.New("truncated batch")
		}
		out = append(out, body[k:k+int(n)])
		body = body[k+int(n):]
	}
	return out, nil
}
