package watchfeed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Watchers asking for the same revision at once share one encoding.
func TestOneEncodingPerRevision(t *testing.T) {
	c := New(16)
	var encodings atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rev := int64(1); rev <= 10; rev++ {
				b, err := c.Get(rev, func() ([]byte, error) {
					encodings.Add(1)
					return []byte(fmt.Sprint(rev)), nil
				})
				if err != nil || string(b) != fmt.Sprint(rev) {
					t.Errorf("revision %d: %q, %v", rev, b, err)
				}
			}
		}()
	}
	wg.Wait()
	if n := encodings.Load(); n != 10 {
		t.Fatalf("%d encodings of 10 revisions", n)
	}
}

// The cache holds at most its size; the oldest added goes first; a
// failed encoding is not kept.
func TestBounded(t *testing.T) {
	c := New(3)
	enc := func(s string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(s), nil } }
	for rev := int64(1); rev <= 5; rev++ {
		c.Get(rev, enc(fmt.Sprint(rev)))
	}
	if c.Len() != 3 {
		t.Fatalf("%d revisions held, want 3", c.Len())
	}
	if b, _ := c.Get(1, enc("again")); string(b) != "again" {
		t.Fatalf("revision 1 still held: %q", b)
	}
	if b, _ := c.Get(5, enc("again")); string(b) != "5" {
		t.Fatalf("revision 5 encoded again: %q", b)
	}
	boom := errors.New("boom")
	if _, err := c.Get(9, func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("error %v", err)
	}
	if b, err := c.Get(9, enc("9")); err != nil || string(b) != "9" {
		t.Fatalf("after a failure: %q, %v", b, err)
	}
}

// The gate admits n at once; a place held past its time is given up.
func TestGate(t *testing.T) {
	g := NewGate(2, time.Hour)
	ctx := context.Background()
	l1, _ := g.Enter(ctx)
	l2, _ := g.Enter(ctx)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := g.Enter(short); err == nil {
		t.Fatal("a third entered a gate of 2")
	}
	l1()
	l1() // twice: leaves once
	l3, err := g.Enter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l2()
	l3()

	held := NewGate(1, 10*time.Millisecond)
	if _, err := held.Enter(ctx); err != nil {
		t.Fatal(err)
	}
	// Never left: the place is free again once its time has passed.
	wait, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	if _, err := held.Enter(wait); err != nil {
		t.Fatalf("a place held past its time was not given up: %v", err)
	}
}
