package main

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/internal/natstest"
)

// TestBareShape runs each bare variant briefly: every request is answered
// after exactly one append with the site's expectation (a wrong tracked
// sequence would be refused by JetStream and counted as an error), and the
// followers are gone after the row.
func TestBareShape(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := natstest.StartServer(t)
	rc, err := newRawClients(ctx, s.ClientURL(), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.close)
	b, err := newBareEnv(ctx, s.ClientURL(), rc.conns, 3, "t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.close)
	stream, err := b.js.Stream(ctx, bareStream)
	if err != nil {
		t.Fatal(err)
	}
	lastSeq := func() uint64 {
		t.Helper()
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	for _, v := range bareVariants {
		before := lastSeq()
		smp, err := b.run(ctx, v, 2, 3, 200*time.Millisecond, 1)
		if err != nil || smp.Errors > 0 || smp.Ops == 0 {
			t.Fatalf("bare%s: %d ops, %d errors: %v", v.suffix, smp.Ops, smp.Errors, err)
		}
		if got := lastSeq() - before; got != uint64(smp.Ops) {
			t.Fatalf("bare%s: %d appends for %d answered requests", v.suffix, got, smp.Ops)
		}
		if _, ok := smp.Extra["drain_ms"]; ok != (v.ordered || v.acked > 0) {
			t.Fatalf("bare%s: extra %v: drain_ms only with followers", v.suffix, smp.Extra)
		}
		names := stream.ConsumerNames(ctx)
		for n := range names.Name() {
			t.Fatalf("bare%s: consumer %s left after the row", v.suffix, n)
		}
		if err := names.Err(); err != nil && err != jetstream.ErrEndOfData {
			t.Fatal(err)
		}
	}
	smp, err := rc.requestReply(2, 100*time.Millisecond)
	if err != nil || smp.Errors > 0 || smp.Ops == 0 {
		t.Fatalf("raw request/reply: %d ops, %d errors: %v", smp.Ops, smp.Errors, err)
	}
}

// TestFlood runs S9 on the bench's service stack: the set-up locks and
// throttles (and checks the verdicts that follow), and each flood is
// refused with its reason and appends nothing.
func TestFlood(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := newStack(ctx, "flood", t.TempDir(), false, true, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.close)
	r := &runner{main: st, fronts: map[*stack][]frontend{}, gen: &attemptGen{run: "t"}}
	if err := r.addFrontends(st); err != nil {
		t.Fatal(err)
	}
	if r.flood, err = newFloodSites(ctx, st.svc, r.fronts[st][0], r.gen); err != nil {
		t.Fatal(err)
	}
	if err := st.drain(ctx); err != nil {
		t.Fatal(err)
	}
	for name, flood := range map[string]func(time.Duration) (sample, error){"locked": r.floodLocked, "throttled": r.floodThrottled} {
		smp, err := flood(200 * time.Millisecond)
		if err != nil || smp.Errors > 0 || smp.Ops == 0 {
			t.Fatalf("%s: %d ops, %d errors: %v", name, smp.Ops, smp.Errors, err)
		}
		if a, ok := smp.Extra["appends_per_op"]; !ok || a != 0 {
			t.Fatalf("%s: extra %v, want appends_per_op 0", name, smp.Extra)
		}
	}
}
