package consume_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// covers checks that got holds every event of want (repeats allowed: a
// redelivery is the same event again) and nothing else.
func covers(got, want []uint64) error {
	u := slices.Compact(sorted(got))
	if !slices.Equal(u, sorted(want)) {
		return fmt.Errorf("handled with gaps or extra events:\n got %v\nwant %v", u, sorted(want))
	}
	return nil
}

// TestCloseGivesBackWhatIsNotDone: a process is closed while its handler
// is stuck on one event past CloseTimeout; the next process gets that event
// without waiting for AckWait, and between them every event is handled.
func TestCloseGivesBackWhatIsNotDone(t *testing.T) {
	e := newEnv(t)
	e.cfg.CloseTimeout = 200 * time.Millisecond
	var want []uint64
	for i := range 40 {
		want = append(want, e.publish(t, "acme", i))
	}
	stuck := want[10]
	var mu sync.Mutex
	var first []uint64
	inside := make(chan struct{})
	h1 := func(ctx context.Context, rec events.Record) error {
		if rec.Seq == stuck {
			close(inside)
			<-ctx.Done() // stuck until Close gives up on it
			return ctx.Err()
		}
		mu.Lock()
		defer mu.Unlock()
		first = append(first, rec.Seq)
		return nil
	}
	r1, stop1 := e.routerWith(t, "handover", h1)
	<-inside
	waitLen(t, func() []uint64 { mu.Lock(); defer mu.Unlock(); return slices.Clone(first) }, len(want)-1)
	for i := range 10 {
		want = append(want, e.publish(t, "acme", 100+i))
	}
	stop1()
	_ = r1

	rec := &recorder{}
	start := time.Now()
	r2 := e.router(t, zerolog.Nop(), map[string]consume.Handler{"handover": rec.handle})
	natstest.Eventually(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		return covers(append(slices.Clone(first), rec.got()...), want)
	})
	// Given back, it comes at once; left to expire, within AckWait of the
	// last in-progress report.
	if d := time.Since(start); d > e.cfg.AckWait/2 {
		t.Errorf("handover took %s: the stuck event was not given back at close", d)
	}
	if !slices.Contains(rec.got(), stuck) {
		t.Fatalf("the second process did not handle the stuck event %d: %v", stuck, sorted(rec.got()))
	}
	waitCaughtUp(t, r2, "handover")
}

// TestCloseWaitsForTheRunningHandler: Close lets a handler that is running
// finish, and its event is acknowledged, not redelivered.
func TestCloseWaitsForTheRunningHandler(t *testing.T) {
	e := newEnv(t)
	s1 := e.publish(t, "acme", 1)
	inside := make(chan struct{})
	var finished atomic.Bool
	h := func(ctx context.Context, rec events.Record) error {
		close(inside)
		select {
		case <-time.After(500 * time.Millisecond):
			finished.Store(true)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_, stopIt := e.routerWith(t, "patient", h)
	<-inside
	stopIt()
	if !finished.Load() {
		t.Fatal("Close returned before the running handler finished")
	}
	// The ack left before the connection closed; the server takes it in
	// its own time, well before AckWait would redeliver the event.
	natstest.Eventually(t, e.cfg.AckWait/2, func() error {
		c, err := e.js.Consumer(context.Background(), consume.DefaultStream, "patient")
		if err != nil {
			return err
		}
		if info := c.CachedInfo(); info.AckFloor.Stream != s1 || info.NumRedelivered != 0 {
			return fmt.Errorf("ack floor %d (want %d), %d redelivered", info.AckFloor.Stream, s1, info.NumRedelivered)
		}
		return nil
	})
}

// TestTwoProcessesShareADurable: two routers on one durable each get work
// and together handle every event at least once; once one closes, the
// other handles everything.
func TestTwoProcessesShareADurable(t *testing.T) {
	e := newEnv(t)
	var want []uint64
	for i := range 100 {
		want = append(want, e.publish(t, "acme", i))
	}
	var mu sync.Mutex
	var got []uint64
	byRouter := [2]atomic.Int64{}
	handler := func(i int) consume.Handler {
		return func(_ context.Context, rec events.Record) error {
			byRouter[i].Add(1)
			time.Sleep(time.Millisecond) // long enough for both to be busy
			mu.Lock()
			got = append(got, rec.Seq)
			mu.Unlock()
			return nil
		}
	}
	routers := make([]*consume.Router, 2)
	stops := make([]func(), 2)
	for i := range routers {
		routers[i], stops[i] = e.routerWith(t, "shared", handler(i))
	}
	for i := range 200 {
		want = append(want, e.publish(t, "acme", 100+i))
	}
	get := func() []uint64 { mu.Lock(); defer mu.Unlock(); return append([]uint64(nil), got...) }
	waitLen(t, get, len(want))
	waitCaughtUp(t, routers[0], "shared")
	if err := covers(get(), want); err != nil {
		t.Fatal(err)
	}
	if byRouter[0].Load() == 0 || byRouter[1].Load() == 0 {
		t.Fatalf("handled %d and %d: both processes should get work", byRouter[0].Load(), byRouter[1].Load())
	}
	stops[0]()
	before := byRouter[1].Load()
	for i := range 50 {
		want = append(want, e.publish(t, "acme", 300+i))
	}
	waitLen(t, get, len(want))
	waitCaughtUp(t, routers[1], "shared")
	if err := covers(get(), want); err != nil {
		t.Fatal(err)
	}
	if n := byRouter[1].Load() - before; n < 50 {
		t.Fatalf("the remaining process handled %d events, want the last 50", n)
	}
}

// TestConsumerOfThePreviousVersionIsUpdated: a durable created by the
// former version (a pinned priority group, MaxAckPending 1) is updated in
// place and resumes after its last ack.
func TestConsumerOfThePreviousVersionIsUpdated(t *testing.T) {
	e := newEnv(t)
	s1 := e.publish(t, "acme", 1)
	old := e.cfg.ConsumerConfig("legacy")
	old.MaxAckPending, old.AckWait = 1, 30*time.Second
	old.PriorityPolicy, old.PriorityGroups, old.PinnedTTL = jetstream.PriorityPolicyPinned, []string{"enrollgate"}, 30*time.Second
	if _, err := e.js.CreateConsumer(context.Background(), consume.DefaultStream, old); err != nil {
		t.Fatal(err)
	}
	// The former version's way of pulling: with the priority group.
	c, err := e.js.Consumer(context.Background(), consume.DefaultStream, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second), jetstream.FetchPriorityGroup("enrollgate"))
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
	if ci := c.CachedInfo().Config; ci.MaxAckPending != e.cfg.MaxAckPending || ci.PriorityPolicy != jetstream.PriorityPolicyNone ||
		len(ci.PriorityGroups) != 0 || ci.AckWait != e.cfg.AckWait {
		t.Fatalf("consumer not updated: %+v", ci)
	}
}
