package consume_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// inOrder checks that got is want with immediate repeats allowed (a
// redelivery is the same event again), and nothing out of order or missing.
func inOrder(got, want []uint64) error {
	var dedup []uint64
	for i, s := range got {
		if i > 0 && s == got[i-1] {
			continue
		}
		dedup = append(dedup, s)
	}
	if fmt.Sprint(dedup) != fmt.Sprint(want) {
		return fmt.Errorf("handled out of order or with gaps:\n got %v\nwant %v", got, want)
	}
	return nil
}

// TestFailureKeepsOrderWhilePrefetching: the handler fails on one event
// until the test lets it pass; meanwhile the later events are on hand in the
// process (prefetched: the server counts them ack-pending) but none of them
// is handled, and once the failing event passes, all follow in order.
func TestFailureKeepsOrderWhilePrefetching(t *testing.T) {
	e := newEnv(t)
	var want []uint64
	for i := range 300 {
		want = append(want, e.publish(t, "acme", i))
	}
	failing := want[150]
	var mu sync.Mutex
	var applied []uint64
	var fails int
	var pass atomic.Bool
	h := func(_ context.Context, rec events.Record) error {
		mu.Lock()
		defer mu.Unlock()
		if rec.Seq == failing && !pass.Load() {
			fails++
			return errors.New("store unavailable")
		}
		applied = append(applied, rec.Seq)
		return nil
	}
	r := e.router(t, zerolog.Nop(), map[string]consume.Handler{"prefetch": h})
	natstest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		// 1 call + InProcessRetries per hand-over: 6 failures are 3
		// hand-overs, two of them after a Nack.
		if fails < 3*(e.cfg.InProcessRetries+1) {
			return fmt.Errorf("%d failures", fails)
		}
		return nil
	})
	c, err := e.js.Consumer(context.Background(), consume.DefaultStream, "prefetch")
	if err != nil {
		t.Fatal(err)
	}
	if n := c.CachedInfo().NumAckPending; n < 2 {
		t.Errorf("%d messages ack-pending while one fails: the later ones were not prefetched", n)
	}
	mu.Lock()
	if err := inOrder(applied, want[:150]); err != nil {
		mu.Unlock()
		t.Fatalf("while seq %d fails: %v", failing, err)
	}
	mu.Unlock()
	pass.Store(true)
	got := waitLen(t, func() []uint64 { mu.Lock(); defer mu.Unlock(); return append([]uint64(nil), applied...) }, len(want))
	if err := inOrder(got, want); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, r, "prefetch")
}

// TestCloseHandsHeldEventsToTheNextProcessFirst: a process whose handler
// keeps failing on one event holds it and the later ones; after it closes,
// the next process handles that event first and then the rest in order,
// also those stored meanwhile.
func TestCloseHandsHeldEventsToTheNextProcessFirst(t *testing.T) {
	e := newEnv(t)
	var want []uint64
	for i := range 40 {
		want = append(want, e.publish(t, "acme", i))
	}
	stuck := want[10]
	var mu sync.Mutex
	var first []uint64
	tries := 0
	h1 := func(_ context.Context, rec events.Record) error {
		mu.Lock()
		defer mu.Unlock()
		if rec.Seq == stuck {
			tries++
			return errors.New("broken")
		}
		first = append(first, rec.Seq)
		return nil
	}
	r1, err := consume.NewRouter(e.cfg, e.connect, e.auth, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := r1.AddHandler("handover", h1); err != nil {
		t.Fatal(err)
	}
	done1 := make(chan error, 1)
	go func() { done1 <- r1.Run(context.Background()) }()
	natstest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if tries < 3 {
			return fmt.Errorf("%d tries", tries)
		}
		return nil
	})
	for i := range 10 {
		want = append(want, e.publish(t, "acme", 100+i))
	}
	stop(t, r1, done1)
	mu.Lock()
	if err := inOrder(first, want[:10]); err != nil {
		t.Fatalf("first process: %v", err)
	}
	mu.Unlock()

	rec := &recorder{}
	start := time.Now()
	r2 := e.router(t, zerolog.Nop(), map[string]consume.Handler{"handover": rec.handle})
	got := waitLen(t, rec.got, len(want)-10)
	if err := inOrder(got, want[10:]); err != nil {
		t.Fatalf("second process: %v", err)
	}
	if d := time.Since(start); d > e.cfg.AckWait {
		t.Errorf("handover took %s: the held events were not given back at close", d)
	}
	waitCaughtUp(t, r2, "handover")
}

// TestTwoProcessesShareADurable: two routers on one durable never run the
// handler at the same time and handle the events in order, also when the
// one that receives them closes and the other takes over.
func TestTwoProcessesShareADurable(t *testing.T) {
	e := newEnv(t)
	var want []uint64
	for i := range 100 {
		want = append(want, e.publish(t, "acme", i))
	}
	var mu sync.Mutex
	var got []uint64
	var inside atomic.Int32
	var overlap atomic.Bool
	byRouter := [2]atomic.Int64{}
	handler := func(i int) consume.Handler {
		return func(_ context.Context, rec events.Record) error {
			if inside.Add(1) != 1 {
				overlap.Store(true)
			}
			defer inside.Add(-1)
			byRouter[i].Add(1)
			mu.Lock()
			got = append(got, rec.Seq)
			mu.Unlock()
			return nil
		}
	}
	routers := make([]*consume.Router, 2)
	dones := make([]chan error, 2)
	for i := range routers {
		r, err := consume.NewRouter(e.cfg, e.connect, e.auth, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if err := r.AddHandler("shared", handler(i)); err != nil {
			t.Fatal(err)
		}
		routers[i], dones[i] = r, make(chan error, 1)
		go func() { dones[i] <- r.Run(context.Background()) }()
		<-r.Running()
	}
	closed := [2]bool{}
	defer func() {
		for i, r := range routers {
			if !closed[i] {
				stop(t, r, dones[i])
			}
		}
	}()
	for i := range 100 {
		want = append(want, e.publish(t, "acme", 100+i))
	}
	get := func() []uint64 { mu.Lock(); defer mu.Unlock(); return append([]uint64(nil), got...) }
	waitLen(t, get, len(want))
	// Close the one that received the events; the other must take over.
	active := 0
	if byRouter[1].Load() > byRouter[0].Load() {
		active = 1
	}
	stop(t, routers[active], dones[active])
	closed[active] = true
	for i := range 50 {
		want = append(want, e.publish(t, "acme", 200+i))
	}
	if err := inOrder(waitLen(t, get, len(want)), want); err != nil {
		t.Fatal(err)
	}
	if overlap.Load() {
		t.Fatal("the handler ran in two processes at once")
	}
	if byRouter[1-active].Load() < 50 {
		t.Fatalf("the remaining process handled %d events, want the last 50", byRouter[1-active].Load())
	}
}

// TestConsumerOfThePreviousVersionIsUpdated: a durable created with the
// former configuration (MaxAckPending 1, no priority group) is updated in
// place and resumes after its last ack.
func TestConsumerOfThePreviousVersionIsUpdated(t *testing.T) {
	e := newEnv(t)
	s1 := e.publish(t, "acme", 1)
	old := e.cfg.ConsumerConfig("legacy")
	old.MaxAckPending, old.PriorityPolicy, old.PriorityGroups, old.PinnedTTL = 1, jetstream.PriorityPolicyNone, nil, 0
	old.AckWait = 30 * time.Second
	c, err := e.js.CreateConsumer(context.Background(), consume.DefaultStream, old)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(1)
	if err != nil {
		t.Fatal(err)
	}
	for m := range msgs.Messages() {
		if err := m.DoubleAck(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	s2 := e.publish(t, "acme", 2)
	rec := &recorder{}
	e.router(t, zerolog.Nop(), map[string]consume.Handler{"legacy": rec.handle})
	if got := waitLen(t, rec.got, 1); fmt.Sprint(got) != fmt.Sprint([]uint64{s2}) {
		t.Fatalf("handled %v, want only %d (after %d, acked before)", got, s2, s1)
	}
	c, err = e.js.Consumer(context.Background(), consume.DefaultStream, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	if ci := c.CachedInfo().Config; ci.MaxAckPending != e.cfg.MaxAckPending || ci.PriorityPolicy != jetstream.PriorityPolicyPinned ||
		ci.AckWait != e.cfg.AckWait || ci.PinnedTTL != e.cfg.AckWait {
		t.Fatalf("consumer not updated: %+v", ci)
	}
}

// TestCutOffProcessStopsAndTheNextTakesOverInOrder: a process whose
// connections are lost while it holds events (as in a crash or a partition)
// stops calling its handler once its lease runs out; another process gets
// the durable after PinnedTTL and handles the held events first, in order,
// never at the same time as the first one.
func TestCutOffProcessStopsAndTheNextTakesOverInOrder(t *testing.T) {
	e := newEnv(t)
	e.cfg.AckWait = 2 * time.Second
	e.cfg.HandlerTimeout = time.Second
	var want []uint64
	for i := range 20 {
		want = append(want, e.publish(t, "acme", i))
	}
	stuck := want[5]
	var mu sync.Mutex
	var conns []*nats.Conn
	connect := func() (*nats.Conn, error) {
		nc, err := e.connect()
		if err == nil {
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
		}
		return nc, err
	}
	var inside atomic.Int32
	var overlap atomic.Bool
	var tries atomic.Int32
	var cutAt atomic.Int64
	var lateCalls atomic.Int32
	h1 := func(_ context.Context, rec events.Record) error {
		if inside.Add(1) != 1 {
			overlap.Store(true)
		}
		defer inside.Add(-1)
		if c := cutAt.Load(); c != 0 && time.Since(time.Unix(0, c)) > e.cfg.AckWait {
			lateCalls.Add(1)
		}
		if rec.Seq == stuck {
			tries.Add(1)
			return errors.New("broken")
		}
		return nil
	}
	r1, err := consume.NewRouter(e.cfg, connect, e.auth, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := r1.AddHandler("cutoff", h1); err != nil {
		t.Fatal(err)
	}
	done1 := make(chan error, 1)
	go func() { done1 <- r1.Run(context.Background()) }()
	natstest.Eventually(t, 10*time.Second, func() error {
		if tries.Load() < 2 {
			return fmt.Errorf("%d tries", tries.Load())
		}
		return nil
	})
	cutAt.Store(time.Now().UnixNano())
	mu.Lock()
	for _, nc := range conns {
		nc.Close() // no Nak, no unpin: as if the process were gone
	}
	mu.Unlock()
	defer func() { _ = r1.Close(); <-done1 }()

	var got []uint64
	h2 := func(_ context.Context, rec events.Record) error {
		if inside.Add(1) != 1 {
			overlap.Store(true)
		}
		defer inside.Add(-1)
		mu.Lock()
		got = append(got, rec.Seq)
		mu.Unlock()
		return nil
	}
	e.router(t, zerolog.Nop(), map[string]consume.Handler{"cutoff": h2})
	res := waitLen(t, func() []uint64 { mu.Lock(); defer mu.Unlock(); return append([]uint64(nil), got...) }, len(want)-5)
	if err := inOrder(res, want[5:]); err != nil {
		t.Fatal(err)
	}
	if overlap.Load() {
		t.Fatal("the handler ran in two processes at once")
	}
	if n := lateCalls.Load(); n != 0 {
		t.Fatalf("the cut-off process called its handler %d times after its lease ran out", n)
	}
}
