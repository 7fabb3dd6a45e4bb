package handlers

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

func TestCacheEvictsIdleEntriesBeyondItsLimit(t *testing.T) {
	c := newAggregateCache(3)
	for i := range 10 {
		e, _, err := c.acquire(bgCtx, events.Site("s"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		c.release(e)
		if n := c.len(); n > 3 {
			t.Fatalf("after %d sites the cache holds %d, want at most 3", i+1, n)
		}
	}
}

func TestCacheNeverEvictsAnEntryInUse(t *testing.T) {
	c := newAggregateCache(2)
	held, _, err := c.acquire(bgCtx, "held")
	if err != nil {
		t.Fatal(err)
	}
	held.agg = domain.New("held", domain.DefaultPolicy())
	for i := range 20 {
		e, _, err := c.acquire(bgCtx, events.Site("s"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		c.release(e)
	}
	c.mu.Lock()
	still := c.entries["held"]
	c.mu.Unlock()
	if still != held {
		t.Fatal("the entry in use was evicted")
	}
	c.release(held)

	// When every entry is in use the cache grows past its limit rather than
	// evicting one.
	c = newAggregateCache(2)
	var es []*cacheEntry
	for i := range 4 {
		e, _, err := c.acquire(bgCtx, events.Site("busy"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	if n := c.len(); n != 4 {
		t.Fatalf("cache with 4 entries in use holds %d", n)
	}
	for _, e := range es {
		c.release(e)
	}
	// The next new site shrinks it back to the limit.
	e, _, _ := c.acquire(bgCtx, "next")
	c.release(e)
	if n := c.len(); n > 2 {
		t.Fatalf("cache holds %d after the entries went idle, want at most 2", n)
	}
}

func TestCacheWaitingEntryIsNotEvicted(t *testing.T) {
	c := newAggregateCache(1)
	first, _, _ := c.acquire(bgCtx, "a")
	got := make(chan *cacheEntry)
	go func() {
		e, _, err := c.acquire(bgCtx, "a") // waits for first
		if err != nil {
			t.Error(err)
		}
		got <- e
	}()
	// Wait until the second caller is counted as a user.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		users := first.users
		c.mu.Unlock()
		if users == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiter never registered")
		}
		time.Sleep(time.Millisecond)
	}
	c.release(first)
	second := <-got
	if second != first {
		t.Fatal("the waiter got another entry")
	}
	// Another site while "a" is held: "a" stays.
	e, _, _ := c.acquire(bgCtx, "b")
	c.release(e)
	c.mu.Lock()
	_, ok := c.entries["a"]
	c.mu.Unlock()
	if !ok {
		t.Fatal("the held entry was evicted")
	}
	c.release(second)
}

func TestCacheAcquireHonoursContext(t *testing.T) {
	c := newAggregateCache(10)
	held, _, _ := c.acquire(bgCtx, "a")
	ctx, cancel := context.WithTimeout(bgCtx, 20*time.Millisecond)
	defer cancel()
	if _, _, err := c.acquire(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire of a held site = %v, want the context's error", err)
	}
	c.mu.Lock()
	users := held.users
	c.mu.Unlock()
	if users != 1 {
		t.Fatalf("users = %d after a cancelled wait, want 1", users)
	}
	c.release(held)
}

func TestCacheSerialisesASite(t *testing.T) {
	c := newAggregateCache(4)
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 20 {
				e, _, err := c.acquire(bgCtx, "one")
				if err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				for {
					m := maxInside.Load()
					if n <= m || maxInside.CompareAndSwap(m, n) {
						break
					}
				}
				runtime.Gosched() // give another holder the chance to enter
				inside.Add(-1)
				c.release(e)
			}
		})
	}
	wg.Wait()
	if m := maxInside.Load(); m != 1 {
		t.Fatalf("%d holders of one site at once, want 1", m)
	}
}

func TestServiceCacheIsBounded(t *testing.T) {
	e := newEnv(domain.DefaultPolicy())
	e.cfg.MaxCachedSites = 3
	s := e.replica(t)
	for i := range 10 {
		if _, err := s.GeneratePasscode(bgCtx, GeneratePasscode{Site: events.Site(events.Site("site-" + strconv.Itoa(i))), Actor: admin}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.cache.len(); n > 3 {
		t.Fatalf("service caches %d sites, want at most 3", n)
	}
	// An evicted site is loaded again and still correct.
	for i := range 10 {
		site := events.Site(events.Site("site-" + strconv.Itoa(i)))
		r, err := s.RevealPasscode(bgCtx, RevealPasscode{Site: site, Actor: admin})
		if err != nil || r.Passcode.Plain() == "" {
			t.Fatalf("reveal %s = %+v, %v", site, r, err)
		}
	}
}

// waitForUsers polls until the entry counts n users (holder and waiters).
func waitForUsers(t *testing.T, c *aggregateCache, e *cacheEntry, n int32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		users := e.users
		c.mu.Unlock()
		if users == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("users = %d, want %d", users, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCacheCancelledWaiterLeavesTheQueue(t *testing.T) {
	c := newAggregateCache(10)
	held, _, _ := c.acquire(bgCtx, "a")
	ctx, cancel := context.WithCancel(bgCtx)
	cancelled := make(chan error, 1)
	go func() {
		_, _, err := c.acquire(ctx, "a")
		cancelled <- err
	}()
	waitForUsers(t, c, held, 2)
	got := make(chan *cacheEntry, 1)
	go func() {
		e, _, err := c.acquire(bgCtx, "a")
		if err != nil {
			t.Error(err)
		}
		got <- e
	}()
	waitForUsers(t, c, held, 3)
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter got %v, want context.Canceled", err)
	}
	waitForUsers(t, c, held, 2)
	select {
	case <-got:
		t.Fatal("the second waiter got the entry while it was held")
	default:
	}
	c.release(held)
	second := <-got
	if second != held {
		t.Fatal("the waiter got another entry")
	}
	c.release(second)
	c.mu.Lock()
	users, busy, waiting := held.users, held.held, held.waiters != nil
	c.mu.Unlock()
	if users != 0 || busy || waiting {
		t.Fatalf("after the last release: users %d, held %v, waiters %v; want a free entry", users, busy, waiting)
	}
}

func TestCacheHandsOverInTurn(t *testing.T) {
	c := newAggregateCache(10)
	held, _, _ := c.acquire(bgCtx, "a")
	order := make(chan int, 3)
	for i := range 3 {
		go func() {
			e, _, err := c.acquire(bgCtx, "a")
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			c.release(e)
		}()
		waitForUsers(t, c, held, int32(i+2)) // queued before the next one
	}
	c.release(held)
	for want := range 3 {
		if got := <-order; got != want {
			t.Fatalf("waiter %d got the entry in turn %d", got, want)
		}
	}
}

// TestCacheCancellationRacesHandOver: waiters whose context ends while the
// hold is handed to them never leak it, and a site is never held twice.
func TestCacheCancellationRacesHandOver(t *testing.T) {
	c := newAggregateCache(10)
	var inside atomic.Int32
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				ctx, cancel := context.WithTimeout(bgCtx, time.Duration((g+i)%5)*50*time.Microsecond)
				e, _, err := c.acquire(ctx, "one")
				if err == nil {
					if n := inside.Add(1); n != 1 {
						t.Errorf("%d holders of one site", n)
					}
					runtime.Gosched()
					inside.Add(-1)
					c.release(e)
				} else if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("acquire: %v", err)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(bgCtx, 5*time.Second)
	defer cancel()
	e, _, err := c.acquire(ctx, "one")
	if err != nil {
		t.Fatalf("the site stayed held after every command ended: %v", err)
	}
	c.mu.Lock()
	users, waiting := e.users, e.waiters != nil
	c.mu.Unlock()
	if users != 1 || waiting {
		t.Fatalf("users %d, waiters %v with one holder, want 1 and none", users, waiting)
	}
	c.release(e)
}

// len returns the number of cached sites.
func (c *aggregateCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
