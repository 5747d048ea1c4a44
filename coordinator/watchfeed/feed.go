// Package watchfeed shares and paces the work of watchers: it encodes
// each revision's watch message once for every watcher that sees the same
// message (Cache), and lets only a few replay history at once (Gate). Many watchers replaying a long
// history from its start (issue 17) otherwise each converted and encoded
// every record again, which took a follower from 150 MB to 800 MB and
// unrelated calls from 0.3 ms to 400 ms.
package watchfeed

import "sync"

// Cache holds the encoded messages of the last revisions asked for, at
// most a fixed number of them: watchers replaying together ask for the
// same revisions at about the same time, so a window of recent ones is
// enough, and its memory is bounded whatever the history's length.
type Cache struct {
	mu      sync.Mutex
	max     int
	entries map[int64]*entry
	order   []int64 // revisions in the order they were added, a ring
	next    int     // where the next revision goes in order
}

type entry struct {
	once sync.Once
	b    []byte
	err  error
}

// New returns a cache of at most n revisions' messages (at least 1).
func New(n int) *Cache {
	n = max(n, 1)
	return &Cache{max: n, entries: make(map[int64]*entry, n), order: make([]int64, 0, n)}
}

// Get returns revision rev's message, calling encode to make it if the
// cache does not hold it; watchers asking for the same revision at once
// wait for one encoding. The bytes are shared: never change them.
func (c *Cache) Get(rev int64, encode func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	e, ok := c.entries[rev]
	if !ok {
		e = &entry{}
		c.addLocked(rev, e)
	}
	c.mu.Unlock()
	e.once.Do(func() { e.b, e.err = encode() })
	if e.err != nil {
		c.mu.Lock()
		if c.entries[rev] == e {
			delete(c.entries, rev) // the next watcher tries again
		}
		c.mu.Unlock()
	}
	return e.b, e.err
}

// Len is how many revisions the cache holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *Cache) addLocked(rev int64, e *entry) {
	if len(c.order) < c.max {
		c.order = append(c.order, rev)
	} else {
		delete(c.entries, c.order[c.next])
		c.order[c.next] = rev
		c.next = (c.next + 1) % c.max
	}
	c.entries[rev] = e
}
