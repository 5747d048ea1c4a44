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

type applyFunc func(tx *state.Tx, body []byte) (any, error)

// FSM is the raft.FSM over a state.Store.
type FSM struct {
	store *state.Store
	log   *slog.Logger
	table map[string]applyFunc
}

// New returns an FSM applying to store.
func New(store *state.Store, log *slog.Logger) *FSM {
	f := &FSM{store: store, log: log}
	f.table = map[string]applyFunc{
		TypeCreateInstance: typed(applyCreateInstance),
		TypeInstanceAction: typed(applyInstanceAction),
		TypeDispatch:       typed(applyDispatch),
		TypeFinish:         typed(applyFinish),
		TypeCancel:         typed(applyCancel),
		TypeRegisterHost:   typed(applyRegisterHost),
		TypeDisconnectHost: typed(applyDisconnectHost),
		TypeObserve:        typed(applyObserve),
		TypeRegisterServer: typed(applyRegisterServer),
		TypeRemoveServer:   typed(applyRemoveServer),
		TypeCordonHost:     typed(applyCordonHost),
		TypeDrainHost:      typed(applyDrainHost),
		TypeRecover:        typed(applyRecover),
		TypePlace:          typed(applyPlace),
		TypePreempt:        typed(applyPreempt),
		TypePrune:          typed(applyPrune),
		TypeStartUsage:     typed(applyStartUsage),
		TypeCopyProgress:   typed(applyCopyProgress),
	}
	return f
}

// typed adapts an apply function over a concrete body type. A body that does
// not decode is a bug or corruption, and replicas must not diverge over it.
//
// Bodies are reused: every replica decodes every command, and a new body
// each time (a create's is 800 bytes) was a quarter of what a follower
// allocated per write. So an apply function copies out what it keeps and
// never keeps the body's address or a field's; the body is cleared before
// it is used again, so it holds on to nothing either.
func typed[T any](fn func(tx *state.Tx, body *T) (any, error)) applyFunc {
	bodies := sync.Pool{New: func() any { return new(T) }}
	return func(tx *state.Tx, raw []byte) (any, error) {
		body := bodies.Get().(*T)
		if err := decodeBody(raw, body); err != nil {
			panic(fmt.Sprintf("fsm: undecodable %T body: %v", body, err))
		}
		v, err := fn(tx, body)
		var zero T
		*body = zero
		bodies.Put(body)
		return v, err
	}
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	return f.ApplyBytes(l.Data)
}

// ApplyBytes applies one encoded command (see Encode).
func (f *FSM) ApplyBytes(data []byte) Result {
	typ, now, body, err := decode(data)
	if err != nil {
		panic(fmt.Sprintf("fsm: undecodable command: %v", err))
	}
	if typ == TypeBatch {
		// Each command of a batch applies on its own: one refusal does not
		// undo the others. The entry's result lists theirs, in order.
		cmds, err := splitBatch(body, data[0] != '{')
		if err != nil {
			panic(fmt.Sprintf("fsm: undecodable batch: %v", err))
		}
		results := make([]Result, len(cmds))
		for i, c := range cmds {
			results[i] = f.ApplyBytes(c)
		}
		return Result{Value: results}
	}
	fn, ok := f.table[typ]
	if !ok {
		panic(fmt.Sprintf("fsm: unknown command type %q", typ))
	}
	var res Result
	res.Err = f.store.Update(now, func(tx *state.Tx) error {
		v, err := fn(tx, body)
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

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.store.Restore(rc)
}

type snapshot struct{ view *state.View }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	err := s.view.Write(w)
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
