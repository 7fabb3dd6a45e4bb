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
)

func TestCacheEvictsIdleEntriesBeyondItsLimit(t *testing.T) {
	c := newAggregateCache(3)
	for i := range 10 {
		e, err := c.acquire(bgCtx, "s"+strconv.Itoa(i))
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
	held, err := c.acquire(bgCtx, "held")
	if err != nil {
		t.Fatal(err)
	}
	held.agg = domain.New("held", domain.DefaultPolicy())
	for i := range 20 {
		e, err := c.acquire(bgCtx, "s"+strconv.Itoa(i))
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
		e, err := c.acquire(bgCtx, "busy"+strconv.Itoa(i))
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
	e, _ := c.acquire(bgCtx, "next")
	c.release(e)
	if n := c.len(); n > 2 {
		t.Fatalf("cache holds %d after the entries went idle, want at most 2", n)
	}
}

func TestCacheWaitingEntryIsNotEvicted(t *testing.T) {
	c := newAggregateCache(1)
	first, _ := c.acquire(bgCtx, "a")
	got := make(chan *cacheEntry)
	go func() {
		e, err := c.acquire(bgCtx, "a") // waits for first
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
	e, _ := c.acquire(bgCtx, "b")
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
	held, _ := c.acquire(bgCtx, "a")
	ctx, cancel := context.WithTimeout(bgCtx, 20*time.Millisecond)
	defer cancel()
	if _, err := c.acquire(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
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
				e, err := c.acquire(bgCtx, "one")
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
		if _, err := s.GeneratePasscode(bgCtx, GeneratePasscode{Site: "site-" + strconv.Itoa(i), Actor: admin}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.cache.len(); n > 3 {
		t.Fatalf("service caches %d sites, want at most 3", n)
	}
	// An evicted site is loaded again and still correct.
	for i := range 10 {
		site := "site-" + strconv.Itoa(i)
		r, err := s.RevealPasscode(bgCtx, RevealPasscode{Site: site, Actor: admin})
		if err != nil || r.Passcode.Plain() == "" {
			t.Fatalf("reveal %s = %+v, %v", site, r, err)
		}
	}
}
