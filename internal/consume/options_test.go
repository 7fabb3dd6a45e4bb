package consume_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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

func disabledEvent(site events.Site) events.Event {
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
	// No header, or a type this build does not know: not skipped on a guess.
	// Without a header it is handed over (the handler wrapper decodes it);
	// a header naming another type than the payload's is not an event the
	// service wrote: dead-lettered.
	noHeader := e.publishRaw(t, disabledEvent("acme"), "")
	unknown := e.publishRaw(t, disabledEvent("acme"), "PasscodeFrobnicated")
	last := e.publish(t, "acme", 20)
	want = append(want, noHeader, last)

	rec := &recorder{}
	r, _ := e.routerWith(t, "failures-only", rec.handle, consume.OnlyTypes(events.TypeEnrollmentAttemptFailed))
	got := sorted(waitLen(t, rec.got, len(want)))
	if !slices.Equal(got, want) {
		t.Fatalf("handled %v\nwant %v", got, want)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		if _, ok := e.deadLetters(t, "failures-only")[unknown]; !ok {
			return fmt.Errorf("seq %d, whose type header names another type, not dead-lettered", unknown)
		}
		return nil
	})
	// Every skipped event is acknowledged: the durable is caught up.
	waitCaughtUp(t, r, "failures-only")
}
