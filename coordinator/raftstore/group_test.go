package raftstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-vm/flotilla/coordinator/fsm"
	"github.com/flotilla-vm/flotilla/coordinator/state"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func create(t *testing.T, id string) []byte {
	t.Helper()
	b, err := fsm.Encode(fsm.TypeCreateInstance, time.Now(), fsm.CreateInstance{
		Instance:  state.Instance{ID: id, Name: id, Spec: state.Spec{VCPUs: 1, MemoryMiB: 64, Image: "img"}},
		Operation: state.Operation{ID: "op-" + id, InstanceID: id},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Concurrent commands are committed in shared entries, each still applied
// on its own with its own result.
func TestGroupCommit(t *testing.T) {
	store := state.New(0)
	s, err := Open(Config{NodeID: "n1", DataDir: t.TempDir(), BindAddr: freeAddr(t), Bootstrap: true, FastTimeouts: true}, fsm.New(store, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !s.IsLeader() {
		if err := s.Barrier(ctx); err != nil && ctx.Err() != nil {
			t.Fatal("no leader")
		}
	}
	if _, err := s.Apply(ctx, create(t, "first")); err != nil {
		t.Fatal(err)
	}
	before := s.raft.LastIndex()

	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n+1)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("i", i)
			v, err := s.Apply(ctx, create(t, id))
			if err != nil || v != "op-"+id {
				errs <- fmt.Errorf("%s: %v %v", id, v, err)
			}
		}()
	}
	// A refused command fails alone.
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := s.Apply(ctx, create(t, "first")); !errors.Is(err, fsm.ErrAlreadyExists) {
			errs <- fmt.Errorf("duplicate: %v", err)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if all, _ := store.Instances(); len(all) != n+1 {
		t.Fatalf("%d instances, want %d", len(all), n+1)
	}
	if entries := s.raft.LastIndex() - before; entries >= n {
		t.Fatalf("%d commands took %d entries: nothing was grouped", n+1, entries)
	}
}
