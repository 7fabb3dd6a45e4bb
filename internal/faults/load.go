package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// tracker records a scenario's verdicts.
type tracker struct {
	mu sync.Mutex
	// acked are the verdicts the service stores an event for before it
	// answers: each must be in the stream, once.
	acked []ackedVerdict
	// refused counts the verdicts without an event, by reason.
	refused map[string]int
	// unanswered counts attempts given up without a verdict.
	unanswered int
	// errors counts answers that are neither a verdict nor a transient
	// failure (a 4xx from verify), by message.
	errors map[string]int
}

type ackedVerdict struct {
	a   attempt
	ok  bool
	at  time.Time
	via string
}

func newTracker() *tracker { return &tracker{refused: map[string]int{}, errors: map[string]int{}} }

func (t *tracker) record(a attempt, v verifyReply, via string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v.hasEvent() {
		t.acked = append(t.acked, ackedVerdict{a: a, ok: v.OK, at: at, via: via})
		return
	}
	t.refused[v.Reason]++
}

func (t *tracker) snapshot() []ackedVerdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.acked)
}

// ackedSince counts the verdicts with an event since a time.
func (t *tracker) ackedSince(since time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, v := range t.acked {
		if !v.at.Before(since) {
			n++
		}
	}
	return n
}

// send tries a through target first and, when it gets no verdict, through
// the next replica the same way, as a frontend behind a load balancer
// would, with the same attempt ID, until a verdict or giveUp has passed.
func (s *Suite) send(ctx context.Context, a attempt, first int, tr *tracker, giveUp time.Duration) (verifyReply, bool) {
	deadline := time.Now().Add(giveUp)
	t := first
	for {
		v, err := s.verify(ctx, t, a)
		if err == nil {
			tr.record(a, v, s.targetName(t), time.Now())
			return v, true
		}
		if !errors.Is(err, errNoVerdict) {
			tr.mu.Lock()
			tr.errors[truncate(err.Error(), 120)]++
			tr.mu.Unlock()
			return verifyReply{}, false
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			tr.mu.Lock()
			tr.unanswered++
			tr.mu.Unlock()
			return verifyReply{}, false
		}
		t = (t + 2) % s.targets()
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// loadSite is a site the background load verifies on, with its passcode.
type loadSite struct {
	site, passcode string
}

// load is the background load of a scenario: every target gets a worker,
// paced so that all of them together send about Rate attempts a second;
// one in ten is a wrong passcode from an address used once.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  time.Time
	end    time.Time
	sent   atomic.Int64
}

// maxLoadTime bounds a scenario's background load, whatever happens.
const maxLoadTime = 5 * time.Minute

func (s *Suite) startLoad(ctx context.Context, run string, sites []loadSite, tr *tracker) *load {
	ctx, cancel := context.WithTimeout(ctx, maxLoadTime)
	l := &load{cancel: cancel, start: time.Now()}
	workers := s.targets()
	interval := time.Duration(float64(time.Second) * float64(workers) / float64(s.cfg.Rate))
	maxPerWorker := int64(s.cfg.Rate) * int64(maxLoadTime/time.Second) / int64(workers)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			next := time.Now().Add(time.Duration(w) * interval / time.Duration(workers))
			for k := int64(0); k < maxPerWorker; k++ {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				if next = next.Add(interval); next.Before(time.Now()) {
					next = time.Now() // behind: do not catch up in a burst
				}
				ls := sites[int(k)%len(sites)]
				a := attempt{Site: ls.site, ID: fmt.Sprintf("%s-w%d-%d", run, w, k), Passcode: ls.passcode, IP: fmt.Sprintf("192.0.2.%d", w+1)}
				if k%10 == 9 {
					a.Passcode, a.IP, a.Wrong = wrongGuess, s.nextIP(), true
				}
				l.sent.Add(1)
				s.send(ctx, a, w, tr, 30*time.Second)
			}
		}()
	}
	return l
}

func (l *load) stop() {
	l.end = time.Now()
	l.cancel()
	l.wg.Wait()
}

// unavailability is the longest time within [from, to] without a verdict
// that has an event.
func unavailability(acked []ackedVerdict, from, to time.Time) (gap time.Duration, at time.Time) {
	times := make([]time.Time, 0, len(acked))
	for _, v := range acked {
		if !v.at.Before(from) && !v.at.After(to) {
			times = append(times, v.at)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	prev := from
	for _, t := range append(times, to) {
		if d := t.Sub(prev); d > gap {
			gap, at = d, prev
		}
		prev = t
	}
	return gap, at
}
