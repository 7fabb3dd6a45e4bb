package handlers

import (
	"context"
	"sync"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// aggregateCache keeps each site's aggregate with its last sequence, and
// serialises the commands of a site: acquire returns the site's entry held
// exclusively until release.
type aggregateCache struct {
	mu      sync.Mutex
	entries map[events.Site]*cacheEntry
	limit   int
}

// cacheEntry is one site's aggregate and its exclusive hold. It is kept
// small, since the cache holds one per site: the hold is a flag guarded by
// the cache's mutex, and a channel is made only for a command that has to
// wait, so that waiting still honours its context.
type cacheEntry struct {
	agg *domain.Passcode
	// confirmed is the last sequence the stream had for the site when read
	// number confirmedRead began; guarded by the hold.
	confirmed     uint64
	confirmedRead uint32
	// The fields below are guarded by aggregateCache.mu.
	reads   uint32  // reads of the site's last sequence begun, wrapping
	waiters *waiter // FIFO of the commands waiting for the hold
	users   int32   // the holder and the waiters: an entry in use is never evicted
	held    bool
}

// waiter is a command waiting for an entry's hold. release hands the hold
// over by setting granted and closing ready.
type waiter struct {
	ready   chan struct{}
	granted bool
	next    *waiter
}

func newAggregateCache(limit int) *aggregateCache {
	return &aggregateCache{entries: make(map[events.Site]*cacheEntry), limit: limit}
}

// acquire returns the site's entry, held exclusively until release, and
// the number of reads of its last sequence begun before the call (see
// beginRead); it waits for the holder in turn, or until ctx is done.
func (c *aggregateCache) acquire(ctx context.Context, site events.Site) (*cacheEntry, uint32, error) {
	c.mu.Lock()
	e, ok := c.entries[site]
	if !ok {
		c.evictLocked()
		e = &cacheEntry{}
		c.entries[site] = e
	}
	e.users++
	arrival := e.reads
	if !e.held {
		e.held = true
		c.mu.Unlock()
		return e, arrival, nil
	}
	w := &waiter{ready: make(chan struct{})}
	last := &e.waiters
	for *last != nil {
		last = &(*last).next
	}
	*last = w
	c.mu.Unlock()
	select {
	case <-w.ready:
		return e, arrival, nil
	case <-ctx.Done():
	}
	c.mu.Lock()
	if w.granted {
		// The hold was handed over as ctx ended: pass it on.
		c.mu.Unlock()
		c.release(e)
		return nil, 0, ctx.Err()
	}
	for p := &e.waiters; *p != nil; p = &(*p).next {
		if *p == w {
			*p = w.next
			break
		}
	}
	e.users--
	c.mu.Unlock()
	return nil, 0, ctx.Err()
}

// beginRead numbers a read of e's last sequence that the holder is about to
// begin.
func (c *aggregateCache) beginRead(e *cacheEntry) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.reads++
	return e.reads
}

// confirmedSince returns the last sequence of the latest read of e that
// began after a command that saw arrival reads begun: one that began after
// the command arrived shows every event stored before it. The counters wrap.
func (e *cacheEntry) confirmedSince(arrival uint32) (uint64, bool) {
	return e.confirmed, int32(e.confirmedRead-arrival) > 0
}

// release ends the hold of e: the first waiter gets it, or it is free.
func (c *aggregateCache) release(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.users--
	if w := e.waiters; w != nil {
		e.waiters = w.next
		w.granted = true
		close(w.ready)
		return
	}
	e.held = false
}

// evictLocked makes room for one entry by dropping idle ones. Go's map order
// is random, so this evicts at random: cheap, and good enough for a cache
// whose miss costs one load of a site's history.
func (c *aggregateCache) evictLocked() {
	for site, e := range c.entries {
		if len(c.entries) < c.limit {
			return
		}
		if e.users == 0 {
			delete(c.entries, site)
		}
	}
}
