package eventstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/eventstore/storetest"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

func TestContract(t *testing.T) {
	srv := natstest.StartServer(t)
	t.Run("DirectReads", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) handlers.EventStore {
			st, _ := newStore(t, srv, testConfig())
			return st
		})
	})
	// The same contract with every Load read by an ordered consumer. The
	// sites are the same names, so this runs on its own server.
	srv2 := natstest.StartServer(t)
	t.Run("ConsumerReads", func(t *testing.T) {
		cfg := testConfig()
		cfg.DirectReadMax = 0
		cfg.LoadBatch = 3 // several pulls even for short histories
		storetest.Run(t, func(t *testing.T) handlers.EventStore {
			st, _ := newStore(t, srv2, cfg)
			return st
		})
	})
}

func TestConfigValidate(t *testing.T) {
	if err := eventstore.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := eventstore.DefaultConfig()
	bad.Replicas = 0
	bad.Duplicates = time.Second // shorter than the publish attempts
	bad.LoadBatch = 0
	err := bad.Validate()
	for _, want := range []string{"replicas", "duplicates window", "load batch"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestEnsureStreamIdempotentAndUpdates(t *testing.T) {
	srv := natstest.StartServer(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A stream left by someone with limits that would drop events.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: events.StreamName, Subjects: []string{events.SubjectAll},
		Storage: jetstream.FileStorage, MaxMsgs: 100, MaxAge: time.Hour, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	cfg := eventstore.DefaultConfig()
	for i := range 2 {
		s, err := eventstore.EnsureStream(ctx, js, cfg)
		if err != nil {
			t.Fatalf("EnsureStream #%d: %v", i+1, err)
		}
		c := s.CachedInfo().Config
		if c.MaxMsgs != -1 || c.MaxAge != 0 || c.MaxBytes != -1 || c.MaxMsgsPerSubject != -1 || !c.DenyDelete || !c.DenyPurge ||
			!c.AllowDirect || c.Duplicates != 2*time.Minute || c.Storage != jetstream.FileStorage || c.Replicas != 1 ||
			c.Discard != jetstream.DiscardNew || len(c.Subjects) != 1 || c.Subjects[0] != events.SubjectAll {
			t.Fatalf("EnsureStream #%d: config %+v", i+1, c)
		}
	}
	// On a fresh server, twice from scratch.
	js2, err := jetstream.New(natstest.Connect(t, natstest.StartServer(t)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := eventstore.EnsureStream(ctx, js2, cfg); err != nil {
			t.Fatalf("EnsureStream #%d on a new server: %v", i+1, err)
		}
	}
	// History cannot be deleted.
	s, err := js2.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err == nil {
		t.Fatal("purge of the event stream succeeded")
	}
}

// TestLoadManyEvents loads a long history through the consumer path, in
// several pulls, in order and complete.
func TestLoadManyEvents(t *testing.T) {
	srv := natstest.StartServer(t)
	cfg := testConfig()
	cfg.LoadBatch = 256
	st, js := newStore(t, srv, cfg)
	b := storetest.NewEvents("many")
	other := storetest.NewEvents("many-other")
	const n = 3000
	var evs []events.Event
	for i := range n {
		evs = append(evs, b.Next())
		if i%3 == 0 {
			evs = append(evs, other.Next()) // interleaved, must not show up
		}
	}
	publishRaw(t, js, evs)
	start := time.Now()
	recs := storetest.Load(t, st, b.Site, 0)
	t.Logf("loaded %d events in %s", len(recs), time.Since(start))
	if len(recs) != n {
		t.Fatalf("loaded %d events, want %d", len(recs), n)
	}
	j := 0
	for i, r := range recs {
		for evs[j].Site != b.Site {
			j++
		}
		if r.Event.ID != evs[j].ID || (i > 0 && r.Seq <= recs[i-1].Seq) {
			t.Fatalf("record %d: seq %d id %s, want id %s in increasing order", i, r.Seq, r.Event.ID, evs[j].ID)
		}
		j++
	}
	mid := recs[n/2].Seq
	if got := storetest.Load(t, st, b.Site, mid); len(got) != n-n/2-1 || got[0].Seq <= mid {
		t.Fatalf("load after %d: %d records", mid, len(got))
	}
}

// lossyPublish loses the answer of the first send: the server really
// receives and answers it, the store sees a timeout. It records what the
// server answered to every send.
type lossyPublish struct {
	mu      sync.Mutex
	calls   int
	answers []answer
}

type answer struct {
	ack *jetstream.PubAck
	err error
}

func (l *lossyPublish) wrap(next eventstore.PublishFunc) eventstore.PublishFunc {
	return func(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
		ack, err := next(ctx, msg, opts...)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.calls++
		l.answers = append(l.answers, answer{ack, err})
		if l.calls == 1 {
			return nil, context.DeadlineExceeded
		}
		return ack, err
	}
}

// TestRetryAfterLostAnswerSingleReplica: the first send is stored but its
// answer is lost; the re-send (same ID, now stale expectation) is answered
// 10071 by a single replica; Append finds the stored event and succeeds
// with its sequence.
func TestRetryAfterLostAnswerSingleReplica(t *testing.T) {
	srv := natstest.StartServer(t)
	st, _ := newStore(t, srv, testConfig())
	other, _ := newStore(t, srv, testConfig())
	testRetryAfterLostAnswer(t, "lost-answer", st, other, func(t *testing.T, second answer) {
		var apiErr *jetstream.APIError
		if !errors.As(second.err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
			t.Fatalf("the server answered the re-send with %+v / %v, want error 10071", second.ack, second.err)
		}
	})
}

// testRetryAfterLostAnswer runs the lost-answer scenarios on st and site;
// other is another writer on the same stream.
func testRetryAfterLostAnswer(t *testing.T, site events.Site, st, other *eventstore.Store, checkSecond func(*testing.T, answer)) {
	t.Helper()
	ctx := context.Background()
	b := storetest.NewEvents(string(site))
	prev := storetest.Append(t, st, b, 0, 1)
	lossy := &lossyPublish{}
	st.WrapPublish(lossy.wrap)

	e := b.Next()
	seq, err := st.Append(ctx, e, prev[0].Seq)
	if err != nil {
		t.Fatalf("append with a lost answer: %v", err)
	}
	if len(lossy.answers) != 2 {
		t.Fatalf("%d sends, want 2", len(lossy.answers))
	}
	first := lossy.answers[0]
	if first.err != nil || first.ack.Sequence != seq || first.ack.Duplicate {
		t.Fatalf("first send answered %+v / %v; Append returned seq %d", first.ack, first.err, seq)
	}
	checkSecond(t, lossy.answers[1])
	storetest.Equal(t, storetest.Load(t, st, b.Site, 0), append(prev, events.Record{Seq: seq, Event: e}))

	// The same once more, but another event lands on the site between the
	// lost answer and the re-send: the store must still find its event.
	lossy2 := &lossyPublish{}
	st.WrapPublish(func(next eventstore.PublishFunc) eventstore.PublishFunc {
		return lossy2.wrap(func(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
			ack, err := next(ctx, msg, opts...)
			if lossy2.calls == 0 && err == nil {
				// Another writer, expecting our event: it got there first.
				if _, err := other.Append(ctx, b.Next(), ack.Sequence); err != nil {
					t.Errorf("interleaved append: %v", err)
				}
			}
			return ack, err
		})
	})
	e2 := b.Next()
	seq2, err := st.Append(ctx, e2, seq)
	if err != nil {
		t.Fatalf("append with a lost answer and a later event: %v", err)
	}
	if got := lossy2.answers[0]; got.err != nil || got.ack.Sequence != seq2 {
		t.Fatalf("first send answered %+v / %v; Append returned seq %d", got.ack, got.err, seq2)
	}
	recs := storetest.Load(t, st, b.Site, seq)
	if len(recs) != 2 || recs[0].Event.ID != e2.ID || recs[0].Seq != seq2 {
		t.Fatalf("after the lost answer: %d records, first %+v; want e2 at %d then the interleaved event", len(recs), recs[0], seq2)
	}
}

// TestRetryNotStored: the first send never reaches the server; the re-send
// stores the event once.
func TestRetryNotStored(t *testing.T) {
	srv := natstest.StartServer(t)
	st, _ := newStore(t, srv, testConfig())
	calls := 0
	st.WrapPublish(func(next eventstore.PublishFunc) eventstore.PublishFunc {
		return func(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
			calls++
			if calls == 1 {
				return nil, nats.ErrTimeout
			}
			return next(ctx, msg, opts...)
		}
	})
	b := storetest.NewEvents("not-stored")
	e := b.Next()
	seq, err := st.Append(context.Background(), e, 0)
	if err != nil || calls != 2 {
		t.Fatalf("append after a lost send: seq %d, %v, %d sends", seq, err, calls)
	}
	storetest.Equal(t, storetest.Load(t, st, b.Site, 0), []events.Record{{Seq: seq, Event: e}})
}

// TestNeverAnswered: every send times out; Append gives up with an error
// that is not a conflict, after the configured number of sends.
func TestNeverAnswered(t *testing.T) {
	srv := natstest.StartServer(t)
	cfg := testConfig()
	cfg.PublishRetries = 2
	st, _ := newStore(t, srv, cfg)
	calls := 0
	st.WrapPublish(func(eventstore.PublishFunc) eventstore.PublishFunc {
		return func(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
			calls++
			return nil, context.DeadlineExceeded
		}
	})
	_, err := st.Append(context.Background(), storetest.NewEvents("silent").Next(), 0)
	if !errors.Is(err, eventstore.ErrOutcomeUnknown) || !errors.Is(err, handlers.ErrUnavailable) || errors.Is(err, handlers.ErrConflict) || calls != 3 {
		t.Fatalf("got %v after %d sends, want ErrOutcomeUnknown after 3", err, calls)
	}
}

// TestAppendHeaders: the stored message carries the event ID as
// Nats-Msg-Id (what dedup and the lost-answer resolution rely on), the event
// type header and a valid MAC, and the expectation is enforced.
func TestAppendHeaders(t *testing.T) {
	srv := natstest.StartServer(t)
	st, js := newStore(t, srv, testConfig())
	b := storetest.NewEvents("headers")
	prev := storetest.Append(t, st, b, 0, 1)
	e := b.Next()
	if _, err := st.Append(context.Background(), e, 0); !errors.Is(err, handlers.ErrConflict) {
		t.Fatalf("append expecting 0 after seq %d: got %v, want ErrConflict", prev[0].Seq, err)
	}
	seq, err := st.Append(context.Background(), e, prev[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetMsg(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(jetstream.MsgIDHeader); got != e.ID {
		t.Fatalf("Nats-Msg-Id %q, want the event ID %q", got, e.ID)
	}
	if got := m.Header.Get(events.HeaderEventType); got != string(e.Type()) {
		t.Fatalf("%s %q, want %q", events.HeaderEventType, got, e.Type())
	}
	if m.Subject != events.Subject(b.Site) {
		t.Fatalf("subject %q", m.Subject)
	}
	if !strings.HasPrefix(m.Header.Get(events.HeaderMAC), "test-mac:") {
		t.Fatalf("%s %q, want a MAC under the current key", events.HeaderMAC, m.Header.Get(events.HeaderMAC))
	}
	if err := testAuth(t, js).Authenticate(m.Subject, m.Sequence, m.Header, m.Data); err != nil {
		t.Fatalf("stored event not authentic: %v", err)
	}
}
