package consume_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// publishRaw stores ev with typeHeader as its Enrollgate-Event-Type header
// ("" for none) and returns its sequence.
func (e *env) publishRaw(t *testing.T, ev events.Event, typeHeader string) uint64 {
	t.Helper()
	b, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: events.Subject(ev.Site), Data: b, Header: nats.Header{}}
	if typeHeader != "" {
		msg.Header.Set(events.HeaderEventType, typeHeader)
	}
	ack, err := e.js.PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func disabledEvent(site string) events.Event {
	return events.Event{ID: newID(), Site: site, OccurredAt: time.Now(), Actor: events.Actor{Kind: events.ActorAdmin, ID: "a"},
		Data: events.PasscodeDisabled{PasscodeID: "p1", Reason: events.DisableManual}}
}

// routerWith starts a router with one handler and its options.
func (e *env) routerWith(t *testing.T, durable string, h consume.Handler, opts ...consume.Option) (*consume.Router, func()) {
	t.Helper()
	return e.start(t, zerolog.Nop(), func(r *consume.Router) error { return r.AddHandler(durable, h, opts...) })
}

func TestOnlyTypesHandsOverThoseTypesAndAcknowledgesTheRest(t *testing.T) {
	e := newEnv(t)
	var want []uint64
	for i := range 20 {
		want = append(want, e.publish(t, "acme", i)) // EnrollmentAttemptFailed, with its header
		e.publishRaw(t, disabledEvent("acme"), string(events.TypePasscodeDisabled))
	}
	// No header, or a type this build does not know: handed over all the same
	// (the handler wrapper decodes it; it is not skipped on a guess).
	noHeader := e.publishRaw(t, disabledEvent("acme"), "")
	unknown := e.publishRaw(t, disabledEvent("acme"), "PasscodeFrobnicated")
	last := e.publish(t, "acme", 20)
	want = append(want, noHeader, unknown, last)

	rec := &recorder{}
	r, _ := e.routerWith(t, "failures-only", rec.handle, consume.OnlyTypes(events.TypeEnrollmentAttemptFailed))
	got := waitLen(t, rec.got, len(want))
	if !slices.Equal(got, want) {
		t.Fatalf("handled %v\nwant %v", got, want)
	}
	// Every skipped event is acknowledged: the durable is caught up.
	waitCaughtUp(t, r, "failures-only")
}

// committer is a handler WithCommit: it stages events and, once its gate
// is open, commits them; it checks that Stage and Commit never overlap.
type committer struct {
	t         *testing.T
	mu        sync.Mutex
	staged    []uint64
	committed []uint64
	batches   []int
	attempts  atomic.Int64
	busy      atomic.Bool
	open      atomic.Bool // commits fail until then
}

func (c *committer) stage(_ context.Context, rec events.Record) error {
	if !c.busy.CompareAndSwap(false, true) {
		c.t.Error("Stage ran while Commit or another Stage ran")
	}
	defer c.busy.Store(false)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.staged = append(c.staged, rec.Seq)
	return nil
}

func (c *committer) commit(_ context.Context) error {
	if !c.busy.CompareAndSwap(false, true) {
		c.t.Error("Commit ran while Stage or another Commit ran")
	}
	defer c.busy.Store(false)
	c.attempts.Add(1)
	if !c.open.Load() {
		return errors.New("disk full")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.staged {
		// A redelivery staged again is absorbed, as the read store does.
		if len(c.committed) == 0 || s > c.committed[len(c.committed)-1] {
			c.committed = append(c.committed, s)
		}
	}
	c.batches = append(c.batches, len(c.staged))
	c.staged = nil
	return nil
}

func (c *committer) get() (committed []uint64, batches []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.committed), slices.Clone(c.batches)
}

func TestWithCommitAcknowledgesOnlyCommittedEventsAndBatchesABacklog(t *testing.T) {
	e := newEnv(t)
	e.cfg.CommitMax = 64
	var want []uint64
	for i := range 300 {
		want = append(want, e.publish(t, fmt.Sprintf("site-%d", i%7), i))
	}
	c := &committer{t: t}
	r, _ := e.routerWith(t, "batched", c.stage, consume.WithCommit(c.commit))

	// While commits fail, nothing is acknowledged and nothing more is handed
	// over than one batch.
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := c.attempts.Load(); n < 3 {
			return fmt.Errorf("%d commit attempts", n)
		}
		return nil
	})
	pending, err := r.Pending(context.Background(), "batched")
	if err != nil {
		t.Fatal(err)
	}
	if pending != uint64(len(want)) {
		t.Fatalf("%d events pending while every commit failed, want all %d (an ack left before its commit)", pending, len(want))
	}
	c.mu.Lock()
	staged := len(c.staged)
	c.mu.Unlock()
	if staged > e.cfg.CommitMax {
		t.Fatalf("%d events staged while commits failed, want at most CommitMax %d", staged, e.cfg.CommitMax)
	}

	c.open.Store(true)
	waitCaughtUp(t, r, "batched")
	committed, batches := c.get()
	if !slices.Equal(committed, want) {
		t.Fatalf("committed %v\nwant %v", committed, want)
	}
	if len(batches) >= len(want)/2 || slices.Max(batches) > e.cfg.CommitMax {
		t.Fatalf("batches %v: a backlog of %d should need few commits of at most %d", batches, len(want), e.cfg.CommitMax)
	}

	// Live events, one at a time, are committed one by one: nobody waits
	// for a batch to fill.
	for i := range 5 {
		seq := e.publish(t, "acme", i)
		natstest.Eventually(t, 10*time.Second, func() error {
			if got, _ := c.get(); got[len(got)-1] != seq {
				return fmt.Errorf("event %d not committed yet", seq)
			}
			return nil
		})
	}
	waitCaughtUp(t, r, "batched")
}

func TestEventsWhoseCommitFailedAtCloseGoToTheNextProcess(t *testing.T) {
	e := newEnv(t)
	var want []uint64
	for i := range 5 {
		want = append(want, e.publish(t, "acme", i))
	}
	first := &committer{t: t} // never opens
	_, stopFirst := e.routerWith(t, "handover", first.stage, consume.WithCommit(first.commit))
	natstest.Eventually(t, 10*time.Second, func() error {
		first.mu.Lock()
		defer first.mu.Unlock()
		// A failing commit is retried with nothing further handed over: how
		// many events it holds depends on how they arrived.
		if len(first.staged) == 0 || first.attempts.Load() < 2 {
			return fmt.Errorf("%d staged, %d commit attempts", len(first.staged), first.attempts.Load())
		}
		return nil
	})
	stopFirst()

	next := &committer{t: t}
	next.open.Store(true)
	r, _ := e.routerWith(t, "handover", next.stage, consume.WithCommit(next.commit))
	waitCaughtUp(t, r, "handover")
	if got, _ := next.get(); !slices.Equal(got, want) {
		t.Fatalf("the next process committed %v, want %v", got, want)
	}
}

func TestStartAfterAppliesToANewDurableOnly(t *testing.T) {
	e := newEnv(t)
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, e.publish(t, "acme", i))
	}
	checkpoint := func() uint64 { return seqs[2] }

	// A new durable starts after the checkpoint.
	fresh := &recorder{}
	r, _ := e.routerWith(t, "fresh", fresh.handle, consume.StartAfter(checkpoint))
	waitCaughtUp(t, r, "fresh")
	if got := waitLen(t, fresh.got, 2); !slices.Equal(got, seqs[3:]) {
		t.Fatalf("a new durable handled %v, want %v", got, seqs[3:])
	}

	// A durable that exists keeps its position, whatever the checkpoint says.
	old := &recorder{}
	r1, stop1 := e.routerWith(t, "old", old.handle)
	waitCaughtUp(t, r1, "old")
	stop1()
	more := e.publish(t, "acme", 5)
	again := &recorder{}
	r2, _ := e.routerWith(t, "old", again.handle, consume.StartAfter(func() uint64 { return 1 }))
	waitCaughtUp(t, r2, "old")
	if got := waitLen(t, again.got, 1); !slices.Equal(got, []uint64{more}) {
		t.Fatalf("an existing durable handled %v, want only %v", got, more)
	}
}

func TestInactiveDurableIsDeletedAndComesBackAtItsCheckpoint(t *testing.T) {
	e := newEnv(t)
	first := e.publish(t, "acme", 1)
	var checkpoint atomic.Uint64
	rec := &recorder{}
	handle := func(ctx context.Context, r events.Record) error {
		checkpoint.Store(r.Seq)
		return rec.handle(ctx, r)
	}
	opts := []consume.Option{consume.StartAfter(checkpoint.Load), consume.InactiveAfter(time.Second)}
	r, stopIt := e.routerWith(t, "ephemeral-ish", handle, opts...)
	waitCaughtUp(t, r, "ephemeral-ish")
	c, err := e.js.Consumer(context.Background(), consume.DefaultStream, "ephemeral-ish")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.InactiveThreshold; got != time.Second {
		t.Fatalf("inactive threshold %s, want 1s", got)
	}
	// Pulling keeps it alive; a process gone for longer than the threshold
	// lets the server delete it.
	time.Sleep(2 * time.Second)
	if _, err := e.js.Consumer(context.Background(), consume.DefaultStream, "ephemeral-ish"); err != nil {
		t.Fatalf("the durable of a running process was deleted: %v", err)
	}
	stopIt()
	natstest.Eventually(t, 15*time.Second, func() error {
		_, err := e.js.Consumer(context.Background(), consume.DefaultStream, "ephemeral-ish")
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	second := e.publish(t, "acme", 2)
	r2, _ := e.routerWith(t, "ephemeral-ish", handle, opts...)
	waitCaughtUp(t, r2, "ephemeral-ish")
	if got := waitLen(t, rec.got, 2); !slices.Equal(got, []uint64{first, second}) {
		t.Fatalf("handled %v, want %v (back at the checkpoint, nothing twice)", got, []uint64{first, second})
	}
}
