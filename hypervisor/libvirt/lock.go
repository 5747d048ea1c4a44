package libvirt

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

var errLockTimeout = errors.New("waiting for another operation on the same instance")

// keyedLock serialises operations that touch one instance's files (Create,
// Delete), so a retried Create cannot race its own rollback. Entries are
// dropped when unused, so memory does not grow with the number of ids seen.
type keyedLock struct {
	mu sync.Mutex
	m  map[string]*lockEntry
}

type lockEntry struct {
	sem  chan struct{}
	refs int
}

// lock waits for key until ctx ends and returns the function that releases it.
func (k *keyedLock) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*lockEntry)
	}
	e := k.m[key]
	if e == nil {
		e = &lockEntry{sem: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()

	release := func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
	}
	select {
	case e.sem <- struct{}{}:
		var once sync.Once
		return func() {
			once.Do(func() {
				<-e.sem
				release()
			})
		}, nil
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("%w: %w", errLockTimeout, ctx.Err())
	}
}
