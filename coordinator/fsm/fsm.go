package fsm

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/flotilla-vm/flotilla/coordinator/state"
)

// Result is what Apply returns for every entry.
type Result struct {
	Value any   // e.g. the operation id, the host epoch
	Err   error // a business refusal; nothing was changed
}

// FSM is the raft.FSM over a state.Store.
type FSM struct {
	store *state.Store
	log   *slog.Logger
}

// New returns an FSM applying to store.
func New(store *state.Store, log *slog.Logger) *FSM {
	if log == nil {
		log = slog.Default()
	}
	store.InternSteps(internSteps)
	return &FSM{store: store, log: log}
}

// LogVersion is the cluster's log version as this replica has applied it.
func (f *FSM) LogVersion() uint32 { return max(f.store.LogVersion(), LogVersion1) }

// bodyPool reuses command bodies of one type (see def).
type bodyPool[T any] struct{ p sync.Pool }

func newBodyPool[T any]() *bodyPool[T] {
	return &bodyPool[T]{p: sync.Pool{New: func() any { return new(T) }}}
}

func (b *bodyPool[T]) get() *T { return b.p.Get().(*T) }

func (b *bodyPool[T]) put(body *T) {
	var zero T
	*body = zero
	b.p.Put(body)
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	return f.ApplyBytes(l.Data)
}

// ApplyBytes applies one encoded command (see Encode), of either format.
func (f *FSM) ApplyBytes(data []byte) Result {
	e, err := decodeEntry(data)
	if err != nil {
		panic(fmt.Sprintf("fsm: undecodable command: %v", err))
	}
	if e.typ == TypeBatch {
		// Each command of a batch applies on its own: one refusal does not
		// undo the others. The entry's result lists theirs, in order.
		cmds, err := splitEntries(e)
		if err != nil {
			panic(fmt.Sprintf("fsm: undecodable batch: %v", err))
		}
		results := make([]Result, len(cmds))
		for i, c := range cmds {
			results[i] = f.ApplyBytes(c)
		}
		return Result{Value: results}
	}
	c, ok := commands[e.typ]
	if !ok || e.version > 1 {
		if e.ignorable {
			// A newer server's command that older ones may skip: every
			// replica of this version skips it alike.
			f.log.Warn("skipping a log entry of a type this server does not know", "type", e.typ, "version", e.version)
			return Result{}
		}
		panic(fmt.Sprintf("fsm: unknown command type %q (version %d): this server is older than the log it follows; upgrade it", e.typ, e.version))
	}
	var res Result
	res.Err = f.store.Update(e.now, func(tx *state.Tx) error {
		v, err := c.apply(tx, e.body, e.format)
		res.Value = v
		return err
	})
	return res
}

// Snapshot implements raft.FSM. It runs on the FSM goroutine, between two
// applies, so the view it takes matches the log index Raft records; the
// view is encoded later, by Persist, on Raft's snapshot goroutine, while
// entries go on being applied.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{view: f.store.View()}, nil
}

// Restore implements raft.FSM: a snapshot of either format.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r := bufio.NewReaderSize(rc, 1<<20)
	if head, err := r.Peek(len(snapshotMarker)); err == nil && string(head) == snapshotMarker {
		snap, err := readSnapshot(r)
		if err != nil {
			return fmt.Errorf("decode snapshot: %w", err)
		}
		f.store.Load(snap)
		return nil
	}
	return f.store.Restore(r)
}

type snapshot struct{ view *state.View }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	// Format 1 until the cluster's log is at version 2: a snapshot is sent
	// to followers that lag, which may be servers of the older release.
	var err error
	if s.view.LogVersion() >= LogVersion2 {
		err = writeSnapshot(w, s.view)
	} else {
		err = s.view.Write(w)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
