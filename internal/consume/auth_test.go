package consume_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// newSignedEnv is an env on the events stream as this version creates it:
// every message must carry a valid MAC.
func newSignedEnv(t *testing.T) *env {
	t.Helper()
	s := natstest.StartServer(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stream, err := eventstore.EnsureStream(ctx, js, eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	auth, err := eventstore.NewAuthenticator(testKeys{}, stream)
	if err != nil {
		t.Fatal(err)
	}
	return &env{s: s, js: js, cfg: testConfig(), auth: auth}
}

// send stores ev on subject (its site's when empty) with its type header,
// after edit changed the message; signed first unless unsigned.
func (e *env) send(t *testing.T, ev events.Event, data []byte, subject string, unsigned bool, edit func(*nats.Msg)) uint64 {
	t.Helper()
	if data == nil {
		var err error
		if data, err = events.Encode(ev); err != nil {
			t.Fatal(err)
		}
	}
	if subject == "" {
		subject = events.Subject(ev.Site)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(events.HeaderEventType, string(ev.Type()))
	msg.Header.Set(nats.MsgIdHdr, ev.ID)
	if !unsigned {
		if err := e.auth.SignMsg(msg); err != nil {
			t.Fatal(err)
		}
	}
	if edit != nil {
		edit(msg)
	}
	ack, err := e.js.PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func failedEvent(site events.Site) events.Event {
	return events.Event{ID: newID(), Site: site, OccurredAt: time.Now(), Actor: events.Actor{Kind: events.ActorDevice, ID: "d"},
		Data: events.EnrollmentAttemptFailed{PasscodeID: "p1", FailedAttempts: 1, MaxFailedAttempts: 10, Source: events.Source{IP: "10.0.0.1"}}}
}

// forgedReports records OnForged calls; the first call for each sequence
// fails, so that a report is tried again until it succeeds.
type forgedReports struct {
	mu     sync.Mutex
	tries  map[uint64]int
	report []consume.Forged
}

func (f *forgedReports) onForged(_ context.Context, x consume.Forged) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tries == nil {
		f.tries = map[uint64]int{}
	}
	f.tries[x.Seq]++
	if f.tries[x.Seq] == 1 {
		return errors.New("alert stream unavailable")
	}
	f.report = append(f.report, x)
	return nil
}

func (f *forgedReports) seqs() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint64
	for _, x := range f.report {
		out = append(out, x.Seq)
	}
	return out
}

// deadLetters returns the dead letters of durable, by original sequence.
func (e *env) deadLetters(t *testing.T, durable string) map[uint64]nats.Header {
	t.Helper()
	ctx := context.Background()
	dl, err := e.js.Stream(ctx, consume.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]nats.Header{}
	info, err := dl.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := dl.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != "enrollgate.deadletter."+durable {
			continue
		}
		var orig uint64
		fmt.Sscan(m.Header.Get(consume.HeaderOriginalSeq), &orig)
		out[orig] = m.Header
	}
	return out
}

// TestForgedMessagesNeverReachHandlers: messages without a valid MAC, in
// every form and whatever type they claim, reach no handler (neither one of
// all types nor one of OnlyTypes), are dead-lettered by every durable, and
// are reported to OnForged once each (a failed report is tried again); the
// authentic events around them are handled.
func TestForgedMessagesNeverReachHandlers(t *testing.T) {
	e := newSignedEnv(t)
	const site = "acme"
	randomMAC := func(m *nats.Msg) {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		m.Header.Set(events.HeaderMAC, "k1:"+base64.StdEncoding.EncodeToString(b))
	}
	var authentic []uint64
	authentic = append(authentic, e.send(t, failedEvent(site), nil, "", false, nil))
	forged := []uint64{
		e.send(t, disabledEvent(site), nil, "", true, nil),        // no MAC, claiming a type the alerting handler takes
		e.send(t, disabledEvent(site), nil, "", false, randomMAC), // bad MAC
		// Unknown key, claiming a type the alerting handler does not take:
		// the claim must not make it skip the report.
		e.send(t, failedEvent(site), nil, "", false, func(m *nats.Msg) {
			m.Header.Set(events.HeaderMAC, "k2"+m.Header.Get(events.HeaderMAC)[2:])
		}),
		// Signed for another site's subject, stored on this one.
		func() uint64 {
			ev := disabledEvent(site)
			data, _ := events.Encode(ev)
			msg := &nats.Msg{Subject: events.Subject("other"), Data: data, Header: nats.Header{}}
			msg.Header.Set(events.HeaderEventType, string(ev.Type()))
			msg.Header.Set(nats.MsgIdHdr, ev.ID)
			if err := e.auth.SignMsg(msg); err != nil {
				t.Fatal(err)
			}
			return e.send(t, ev, data, "", true, func(m *nats.Msg) { m.Header = msg.Header })
		}(),
		e.send(t, disabledEvent(site), []byte(`{"id":"not json`), "", true, nil), // unsigned garbage
	}
	authentic = append(authentic, e.send(t, disabledEvent(site), nil, "", false, nil))

	var all, alerting recorder
	var reports forgedReports
	r, _ := e.start(t, zerolog.Nop(), func(r *consume.Router) error {
		if err := r.AddHandler("all", all.handle); err != nil {
			return err
		}
		return r.AddHandler("alerting", alerting.handle, consume.OnlyTypes(events.TypePasscodeDisabled), consume.OnForged(reports.onForged))
	})
	waitCaughtUp(t, r, "all")
	waitCaughtUp(t, r, "alerting")
	if got := sorted(all.got()); !slices.Equal(got, authentic) {
		t.Fatalf("handler of all types got %v, want only the authentic %v", got, authentic)
	}
	if got := sorted(alerting.got()); !slices.Equal(got, authentic[1:]) {
		t.Fatalf("handler of PasscodeDisabled got %v, want only the authentic %v", got, authentic[1:])
	}
	if got := sorted(reports.seqs()); !slices.Equal(got, forged) {
		t.Fatalf("OnForged reported %v, want each forged message once: %v", got, forged)
	}
	for _, f := range reports.report {
		if f.Subject != events.Subject(site) || f.Stream != eventstore.StreamName || f.Reason == "" || f.StoredAt.IsZero() ||
			f.Type == "" || f.MsgID == "" || f.DeadLetterSubject != "enrollgate.deadletter.alerting" {
			t.Errorf("report %+v", f)
		}
	}
	for _, durable := range []string{"all", "alerting"} {
		dls := e.deadLetters(t, durable)
		if len(dls) != len(forged) {
			t.Fatalf("%s: %d dead letters, want %d", durable, len(dls), len(forged))
		}
		for _, seq := range forged {
			h, ok := dls[seq]
			if !ok || !strings.HasPrefix(h.Get(consume.HeaderDeadLetterReason), "not authentic") {
				t.Fatalf("%s: dead letter of seq %d: %v", durable, seq, h)
			}
		}
	}
}

// TestUnknownTypeIsHeld: an authentic event of a type this build does not
// know is neither handed over, nor dead-lettered, nor skipped: it waits,
// unacknowledged, for a process that knows it; the events after it go on.
func TestUnknownTypeIsHeld(t *testing.T) {
	e := newSignedEnv(t)
	first := e.send(t, failedEvent("acme"), nil, "", false, nil)
	newer := failedEvent("acme")
	data, _ := events.Encode(newer)
	data = []byte(strings.Replace(string(data), `"type":"EnrollmentAttemptFailed"`, `"type":"PasscodeFrobnicated"`, 1))
	held := e.send(t, newer, data, "", false, func(m *nats.Msg) {
		m.Header.Set(events.HeaderEventType, "PasscodeFrobnicated")
		if err := e.auth.SignMsg(m); err != nil {
			t.Fatal(err)
		}
	})
	third := e.send(t, failedEvent("acme"), nil, "", false, nil)
	var rec recorder
	var reports forgedReports
	r, _ := e.routerWith(t, "held", rec.handle, consume.OnlyTypes(events.TypeEnrollmentAttemptFailed), consume.OnForged(reports.onForged))
	waitLen(t, rec.got, 2)
	// The redeliveries come at RetryMaxInterval (20 ms here): well within this.
	time.Sleep(300 * time.Millisecond)
	if got := sorted(rec.got()); !slices.Equal(got, []uint64{first, third}) {
		t.Fatalf("handled %v, want %d and %d", got, first, third)
	}
	if n, err := r.Pending(context.Background(), "held"); err != nil || n != 1 {
		t.Fatalf("pending %d (%v), want the held event", n, err)
	}
	if dls := e.deadLetters(t, "held"); len(dls) != 0 {
		t.Fatalf("dead letters %v: an authentic event was moved aside", dls)
	}
	if got := reports.seqs(); len(got) != 0 {
		t.Fatalf("authentic event at seq %d reported as forged: %v", held, got)
	}
}
