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
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// TestSlowHandlerOutlastsAckWait: a handler that takes several AckWaits is
// neither cancelled nor redelivered: the heartbeats keep its event this
// process's for its whole HandlerTimeout.
func TestSlowHandlerOutlastsAckWait(t *testing.T) {
	e := newEnv(t)
	e.cfg.AckWait = consume.MinAckWait
	e.cfg.HandlerTimeout = 4 * e.cfg.AckWait
	s1, s2 := e.publish(t, "acme", 1), e.publish(t, "acme", 2)
	var mu sync.Mutex
	var calls []uint64
	h := func(ctx context.Context, rec events.Record) error {
		mu.Lock()
		calls = append(calls, rec.Seq)
		mu.Unlock()
		if rec.Seq != s1 {
			return nil
		}
		select {
		case <-time.After(2*e.cfg.AckWait + e.cfg.AckWait/2):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r := e.router(t, zerolog.Nop(), map[string]consume.Handler{"slow-ok": h})
	got := waitLen(t, func() []uint64 { mu.Lock(); defer mu.Unlock(); return append([]uint64(nil), calls...) }, 2)
	waitCaughtUp(t, r, "slow-ok")
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(sorted(calls)) != fmt.Sprint([]uint64{s1, s2}) {
		t.Fatalf("calls %v (first %v), want each event once: %v", calls, got, []uint64{s1, s2})
	}
}

// TestCrashedProcessIsTakenOverWithinAckWait: a process on a shared
// durable dies (its connections cut, no Nak) while its handler works on an
// event; the other process on the durable handles that event, and one
// stored after the crash, within about AckWait of the crash.
func TestCrashedProcessIsTakenOverWithinAckWait(t *testing.T) {
	e := newEnv(t)
	e.cfg.AckWait = consume.MinAckWait
	e.cfg.HandlerTimeout = time.Second
	const durable = "crash"
	var mu sync.Mutex
	var got []uint64
	survivor := func(_ context.Context, rec events.Record) error {
		mu.Lock()
		got = append(got, rec.Seq)
		mu.Unlock()
		return nil
	}
	handled := func() []uint64 { mu.Lock(); defer mu.Unlock(); return append([]uint64(nil), got...) }
	var conns []*nats.Conn
	var cmu sync.Mutex
	connect := func() (*nats.Conn, error) {
		nc, err := e.connect()
		if err == nil {
			cmu.Lock()
			conns = append(conns, nc)
			cmu.Unlock()
		}
		return nc, err
	}
	inside := make(chan struct{}, 1)
	doomed := func(ctx context.Context, rec events.Record) error {
		select {
		case inside <- struct{}{}:
		default:
		}
		<-ctx.Done() // working until the crash
		return ctx.Err()
	}
	// The doomed process alone gets the event; the survivor joins after.
	r1, err := consume.NewRouter(e.cfg, connect, e.auth, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := r1.AddHandler(durable, doomed); err != nil {
		t.Fatal(err)
	}
	done1 := make(chan error, 1)
	go func() { done1 <- r1.Run(context.Background()) }()
	<-r1.Running()
	held := e.publish(t, "acme", 1)
	select {
	case <-inside:
	case <-time.After(10 * time.Second):
		t.Fatal("the doomed process did not get the event")
	}
	e.router(t, zerolog.Nop(), map[string]consume.Handler{durable: survivor})
	crashed := time.Now()
	cmu.Lock()
	for _, nc := range conns {
		nc.Close()
	}
	cmu.Unlock()
	want := []uint64{held, e.publish(t, "acme", 2)}
	natstest.Eventually(t, 20*time.Second, func() error { return covers(handled(), want) })
	if d := time.Since(crashed); d > e.cfg.AckWait+time.Second {
		t.Errorf("taken over %s after the crash, want within AckWait (%s) and a second", d, e.cfg.AckWait)
	}
	_ = r1.Close()
	<-done1
}

// TestBacklogCountsAndAgesWhatIsNotAcknowledged: while a handler fails on an
// event, the durable's backlog counts it (the events after it are handled),
// and its age grows; once it passes, the backlog is empty.
func TestBacklogCountsAndAgesWhatIsNotAcknowledged(t *testing.T) {
	e := newEnv(t)
	first := e.publish(t, "acme", 1)
	var pass atomic.Bool
	h := func(_ context.Context, rec events.Record) error {
		if rec.Seq == first && !pass.Load() {
			return errors.New("alerts unavailable")
		}
		return nil
	}
	r := e.router(t, zerolog.Nop(), map[string]consume.Handler{"late": h})
	e.publish(t, "acme", 2)
	e.publish(t, "acme", 3)
	natstest.Eventually(t, 10*time.Second, func() error {
		b, err := r.Backlog(context.Background(), "late")
		if err != nil {
			return err
		}
		if b.Pending != 1 || b.Age < time.Second {
			return fmt.Errorf("backlog %+v, want 1 event, over a second old", b)
		}
		return nil
	})
	pass.Store(true)
	natstest.Eventually(t, 10*time.Second, func() error {
		b, err := r.Backlog(context.Background(), "late")
		if err != nil {
			return err
		}
		if b != (consume.Backlog{}) {
			return fmt.Errorf("backlog %+v once caught up", b)
		}
		return nil
	})
}
