package handlers

import (
	"context"
	"sync"

	"github.com/enrollgate/enrollgate/domain"
)

// aggregateCache keeps each site's aggregate with its last sequence, and
// serialises the commands of a site: acquire returns the site's entry held
// exclusively until release.
type aggregateCache struct {
	mu      sync.Mutex
	entries map[string]*cacheEntry
	limit   int
}

type cacheEntry struct {
	site  string
	lock  chan struct{} // a one-slot semaphore, so that waiting honours ctx
	users int           // guarded by aggregateCache.mu
	agg   *domain.Passcode
}

func newAggregateCache(limit int) *aggregateCache {
	return &aggregateCache{entries: make(map[string]*cacheEntry), limit: limit}
}

func (c *aggregateCache) acquire(ctx context.Context, site string) (*cacheEntry, error) {
	c.mu.Lock()
	e, ok := c.entries[site]
	if !ok {
		c.evictLocked()
		e = &cacheEntry{site: site, lock: make(chan struct{}, 1)}
		c.entries[site] = e
	}
	e.users++
	c.mu.Unlock()
	select {
	case e.lock <- struct{}{}:
		return e, nil
	case <-ctx.Done():
		c.mu.Lock()
		e.users--
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (c *aggregateCache) release(e *cacheEntry) {
	<-e.lock
	c.mu.Lock()
	e.users--
	c.mu.Unlock()
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

// len returns the number of cached sites.
func (c *aggregateCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
