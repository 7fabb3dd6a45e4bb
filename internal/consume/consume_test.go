package consume_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// env is one test's server, event stream and publishing connection.
type env struct {
	s    *server.Server
	js   jetstream.JetStream
	cfg  consume.Config
	auth *eventstore.Authenticator
}

// testKeys are the event-MAC keys of the tests: one key, "k1".
type testKeys struct{}

func (testKeys) EventMACKeyID() string { return "k1" }
func (testKeys) NewEventMAC(id string) (hash.Hash, bool) {
	if id != "k1" {
		return nil, false
	}
	return hmac.New(sha256.New, []byte("consume-test-event-mac-key-32byt")), true
}

func newEnv(t testing.TB) *env {
	t.Helper()
	s := natstest.StartServer(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The event stream's configuration as DESIGN.md gives it.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: consume.DefaultStream, Subjects: []string{events.SubjectAll}, Storage: jetstream.FileStorage,
		DenyDelete: true, DenyPurge: true, Duplicates: 2 * time.Minute, AllowDirect: true,
	}); err != nil {
		t.Fatal(err)
	}
	// A stream this version never ensured: unsigned events are legacy ones.
	auth, err := eventstore.OpenAuthenticator(ctx, js, testKeys{})
	if err != nil {
		t.Fatal(err)
	}
	return &env{s: s, js: js, cfg: testConfig(), auth: auth}
}

func testConfig() consume.Config {
	cfg := consume.DefaultConfig()
	cfg.AckWait = 5 * time.Second
	cfg.HandlerTimeout = 3 * time.Second
	cfg.RetryInitialInterval = 2 * time.Millisecond
	cfg.RetryMaxInterval = 20 * time.Millisecond
	cfg.InProcessRetries = 1
	cfg.CloseTimeout = 5 * time.Second
	return cfg
}

func (e *env) connect() (*nats.Conn, error) { return nats.Connect(e.s.ClientURL()) }

// router starts a router with the handlers and stops it at cleanup.
func (e *env) router(t *testing.T, log zerolog.Logger, handlers map[string]consume.Handler) *consume.Router {
	t.Helper()
	r, _ := e.start(t, log, func(r *consume.Router) error {
		for d, h := range handlers {
			if err := r.AddHandler(d, h); err != nil {
				return err
			}
		}
		return nil
	})
	return r
}

// start starts a router with what add registers, and stops it at cleanup;
// the returned func stops it earlier.
func (e *env) start(t *testing.T, log zerolog.Logger, add func(*consume.Router) error) (*consume.Router, func()) {
	t.Helper()
	r, err := consume.NewRouter(e.cfg, e.connect, e.auth, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := add(r); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
	case err := <-done:
		t.Fatalf("router stopped at start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("router not running after 10s")
	}
	var once sync.Once
	stopIt := func() { once.Do(func() { stop(t, r, done) }) }
	t.Cleanup(stopIt)
	return r, stopIt
}

func stop(t *testing.T, r *consume.Router, done chan error) {
	t.Helper()
	if err := r.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return after Close")
	}
}

// newID returns a fresh event ID. (A fixed entropy reader ran out once a
// run held a few thousand of them.)
func newID() string { return ulid.Make().String() }

// publish stores one event of site and returns its sequence.
func (e *env) publish(t *testing.T, site events.Site, n int) uint64 {
	t.Helper()
	ev := events.Event{ID: newID(), Site: site, OccurredAt: time.Now(), Actor: events.Actor{Kind: events.ActorDevice, ID: "d"},
		Data: events.EnrollmentAttemptFailed{PasscodeID: "p1", FailedAttempts: n, MaxFailedAttempts: 1000, Source: events.Source{IP: "10.0.0.1"}}}
	b, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: events.Subject(site), Data: b, Header: nats.Header{}}
	msg.Header.Set(events.HeaderEventType, string(ev.Type()))
	msg.Header.Set(nats.MsgIdHdr, ev.ID)
	ack, err := e.js.PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// recorder is a Handler that records what it was given.
type recorder struct {
	mu   sync.Mutex
	seqs []uint64
	recs []events.Record
}

func (r *recorder) handle(_ context.Context, rec events.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seqs = append(r.seqs, rec.Seq)
	r.recs = append(r.recs, rec)
	return nil
}

func (r *recorder) got() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs...)
}

// sorted returns a sorted copy of seqs.
func sorted(seqs []uint64) []uint64 {
	s := slices.Clone(seqs)
	slices.Sort(s)
	return s
}

func waitLen(t *testing.T, get func() []uint64, n int) []uint64 {
	t.Helper()
	var got []uint64
	natstest.Eventually(t, 20*time.Second, func() error {
		got = get()
		if len(got) < n {
			return fmt.Errorf("handled %d of %d", len(got), n)
		}
		return nil
	})
	return got
}

func waitCaughtUp(t *testing.T, r *consume.Router, durable string) {
	t.Helper()
	natstest.Eventually(t, 20*time.Second, func() error {
		n, err := r.Pending(context.Background(), durable)
		if err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%s: %d pending", durable, n)
		}
		return nil
	})
}

// TestEveryEventReachesEachDurable: each durable handles every event, none
// skipped, each decoded as stored (in no particular order: the handlers
// are order-independent).
func TestEveryEventReachesEachDurable(t *testing.T) {
	e := newEnv(t)
	sites := []events.Site{"acme", "globex", "initech", "umbrella"}
	var want []uint64
	for i := range 200 {
		want = append(want, e.publish(t, sites[i%len(sites)], i))
	}
	a, b := &recorder{}, &recorder{}
	r := e.router(t, zerolog.Nop(), map[string]consume.Handler{"order-a": a.handle, "order-b": b.handle})
	// Events stored while the router runs come after the backlog.
	for i := range 50 {
		want = append(want, e.publish(t, sites[i%len(sites)], i))
	}
	for _, rec := range []*recorder{a, b} {
		got := waitLen(t, rec.got, len(want))
		if fmt.Sprint(sorted(got)) != fmt.Sprint(want) {
			t.Fatalf("handled with gaps or twice:\n got %v\nwant %v", sorted(got), want)
		}
		rec.mu.Lock()
		for _, r := range rec.recs {
			i := slices.Index(want, r.Seq) % 200 % len(sites)
			if r.Event.Site != sites[i] && r.Seq <= want[199] || r.Event.Type() != events.TypeEnrollmentAttemptFailed {
				t.Fatalf("record %d decoded wrongly: %+v", r.Seq, r)
			}
		}
		rec.mu.Unlock()
	}
	waitCaughtUp(t, r, "order-a")
	waitCaughtUp(t, r, "order-b")
}

func TestHandlerErrorIsRetriedAndAppliedOnce(t *testing.T) {
	e := newEnv(t)
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, e.publish(t, "acme", i))
	}
	failing := seqs[2]
	var mu sync.Mutex
	tries := map[uint64]int{}
	applied := map[uint64]int{}
	var order []uint64
	h := func(_ context.Context, rec events.Record) error {
		mu.Lock()
		defer mu.Unlock()
		tries[rec.Seq]++
		// 1 try + 1 in-process retry per delivery: 5 failures need at
		// least two NakWithDelay redeliveries too.
		if rec.Seq == failing && tries[rec.Seq] <= 5 {
			return errors.New("store unavailable")
		}
		applied[rec.Seq]++
		order = append(order, rec.Seq)
		return nil
	}
	start := time.Now()
	r := e.router(t, zerolog.Nop(), map[string]consume.Handler{"retry": h})
	waitLen(t, func() []uint64 { mu.Lock(); defer mu.Unlock(); return append([]uint64(nil), order...) }, len(seqs))
	// Nak'd with a short delay, not left to AckWait.
	if d := time.Since(start); d > e.cfg.AckWait {
		t.Errorf("the failing event took %s to come back twice", d)
	}
	waitCaughtUp(t, r, "retry")
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(sorted(order)) != fmt.Sprint(seqs) {
		t.Fatalf("handled %v, want %v", sorted(order), seqs)
	}
	for _, s := range seqs {
		if applied[s] != 1 {
			t.Errorf("seq %d applied %d times, want 1", s, applied[s])
		}
	}
	if tries[failing] != 6 {
		t.Errorf("failing event tried %d times, want 6", tries[failing])
	}
}

func TestPanicIsRecoveredAndRetried(t *testing.T) {
	e := newEnv(t)
	s1, s2 := e.publish(t, "acme", 1), e.publish(t, "acme", 2)
	var mu sync.Mutex
	panics := 0
	var done []uint64
	h := func(_ context.Context, rec events.Record) error {
		mu.Lock()
		defer mu.Unlock()
		if rec.Seq == s1 && panics < 3 {
			panics++
			panic("boom")
		}
		done = append(done, rec.Seq)
		return nil
	}
	r := e.router(t, zerolog.Nop(), map[string]consume.Handler{"panicky": h})
	waitLen(t, func() []uint64 { mu.Lock(); defer mu.Unlock(); return append([]uint64(nil), done...) }, 2)
	waitCaughtUp(t, r, "panicky")
	mu.Lock()
	defer mu.Unlock()
	if panics != 3 || fmt.Sprint(sorted(done)) != fmt.Sprint([]uint64{s1, s2}) {
		t.Fatalf("panics %d, handled %v; want 3 panics then %v", panics, done, []uint64{s1, s2})
	}
}

type syncBuffer = natstest.LogBuffer

func TestPoisonGoesToDeadLetterAndTheNextEventIsHandled(t *testing.T) {
	e := newEnv(t)
	good1 := e.publish(t, "acme", 1)
	ack, err := e.js.Publish(context.Background(), events.Subject("acme"), []byte(`{"id": not json`))
	if err != nil {
		t.Fatal(err)
	}
	poison := ack.Sequence
	good2 := e.publish(t, "acme", 2)
	rec := &recorder{}
	var logs syncBuffer
	r := e.router(t, zerolog.New(&logs).Level(zerolog.InfoLevel), map[string]consume.Handler{"projections": rec.handle})
	got := sorted(waitLen(t, rec.got, 2))
	if fmt.Sprint(got) != fmt.Sprint([]uint64{good1, good2}) {
		t.Fatalf("handled %v, want %v (the poison message never reaches the handler)", got, []uint64{good1, good2})
	}
	waitCaughtUp(t, r, "projections")

	dl, err := e.js.Stream(context.Background(), consume.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dl.GetLastMsgForSubject(context.Background(), "enrollgate.deadletter.projections")
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if string(m.Data) != `{"id": not json` {
		t.Errorf("dead letter payload %q, want the original", m.Data)
	}
	for h, want := range map[string]string{
		consume.HeaderOriginalSubject:   "enrollgate.events.acme",
		consume.HeaderOriginalSeq:       fmt.Sprint(poison),
		consume.HeaderOriginalStream:    consume.DefaultStream,
		consume.HeaderDeadLetterDurable: "projections",
	} {
		if got := m.Header.Get(h); got != want {
			t.Errorf("dead letter header %s = %q, want %q", h, got, want)
		}
	}
	if reason := m.Header.Get(consume.HeaderDeadLetterReason); !strings.Contains(reason, "malformed event") {
		t.Errorf("dead letter reason %q does not say why", reason)
	}
	info, err := dl.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("%d dead letters, want 1", info.State.Msgs)
	}
	if n := strings.Count(logs.String(), `"level":"error"`); n != 1 {
		t.Errorf("%d error lines, want the dead letter logged once:\n%s", n, logs.String())
	}
}

func TestEventOnAnotherSitesSubjectIsPoison(t *testing.T) {
	e := newEnv(t)
	ev := events.Event{ID: newID(), Site: "globex", OccurredAt: time.Now(), Actor: events.Actor{Kind: events.ActorAdmin, ID: "a"},
		Data: events.PasscodeRevealed{PasscodeID: "p"}}
	b, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(context.Background(), events.Subject("acme"), b); err != nil {
		t.Fatal(err)
	}
	good := e.publish(t, "acme", 1)
	rec := &recorder{}
	e.router(t, zerolog.Nop(), map[string]consume.Handler{"mismatch": rec.handle})
	if got := waitLen(t, rec.got, 1); fmt.Sprint(got) != fmt.Sprint([]uint64{good}) {
		t.Fatalf("handled %v, want only %d", got, good)
	}
}

func TestRestartResumesAfterTheLastAck(t *testing.T) {
	e := newEnv(t)
	for i := range 10 {
		e.publish(t, "acme", i)
	}
	rec1 := &recorder{}
	r1, err := consume.NewRouter(e.cfg, e.connect, e.auth, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r1.Pending(context.Background(), "durable"); err == nil {
		t.Fatalf("Pending of a consumer not yet added: %d, want an error", n)
	}
	if err := r1.AddHandler("durable", rec1.handle); err != nil {
		t.Fatal(err)
	}
	if n, err := r1.Pending(context.Background(), "durable"); err != nil || n != 10 {
		t.Fatalf("Pending before run = %d, %v; want 10", n, err)
	}
	done := make(chan error, 1)
	go func() { done <- r1.Run(context.Background()) }()
	<-r1.Running()
	waitLen(t, rec1.got, 10)
	waitCaughtUp(t, r1, "durable")
	stop(t, r1, done)
	if err := r1.AddHandler("late", rec1.handle); !errors.Is(err, consume.ErrRunning) {
		t.Errorf("AddHandler after Close: %v, want ErrRunning", err)
	}

	var second []uint64
	for i := range 10 {
		second = append(second, e.publish(t, "acme", 10+i))
	}
	rec2 := &recorder{}
	r2 := e.router(t, zerolog.Nop(), map[string]consume.Handler{"durable": rec2.handle})
	got := sorted(waitLen(t, rec2.got, 10))
	waitCaughtUp(t, r2, "durable")
	if fmt.Sprint(got) != fmt.Sprint(second) {
		t.Fatalf("after restart handled %v, want only %v", got, second)
	}
}

func TestConsumerConfig(t *testing.T) {
	e := newEnv(t)
	r := e.router(t, zerolog.Nop(), map[string]consume.Handler{"cfg": (&recorder{}).handle})
	_ = r
	c, err := e.js.Consumer(context.Background(), consume.DefaultStream, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	ci := c.CachedInfo().Config
	if ci.Durable != "cfg" || ci.FilterSubject != events.SubjectAll || ci.DeliverPolicy != jetstream.DeliverAllPolicy ||
		ci.AckPolicy != jetstream.AckExplicitPolicy || ci.MaxDeliver != -1 || ci.MaxAckPending != e.cfg.MaxAckPending || ci.PriorityPolicy != jetstream.PriorityPolicyNone ||
		len(ci.PriorityGroups) != 0 || ci.AckWait != e.cfg.AckWait {
		t.Fatalf("consumer config %+v", ci)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := consume.DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := consume.DefaultConfig()
	bad.Stream = "a.b"
	bad.AckWait = consume.MinAckWait - time.Millisecond
	bad.DeadLetterPrefix = "x.>"
	bad.RetryMaxInterval = bad.RetryInitialInterval / 2
	err := bad.Validate()
	for _, want := range []string{"stream name", "ack wait", "dead-letter prefix", "retry max interval"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	for _, d := range []string{"", "a.b", "a b", "x>"} {
		if consume.ValidateDurable(d) == nil {
			t.Errorf("durable %q accepted", d)
		}
	}
}

func TestHandlerTimeoutCancelsAndRedelivers(t *testing.T) {
	e := newEnv(t)
	e.cfg.HandlerTimeout = 200 * time.Millisecond
	e.cfg.AckWait = consume.MinAckWait
	s1, s2 := e.publish(t, "acme", 1), e.publish(t, "acme", 2)
	var mu sync.Mutex
	calls := 0
	var done []uint64
	h := func(ctx context.Context, rec events.Record) error {
		mu.Lock()
		first := rec.Seq == s1 && calls == 0
		if rec.Seq == s1 {
			calls++
		}
		mu.Unlock()
		if first {
			<-ctx.Done() // a stuck call: the timeout must end it
			return ctx.Err()
		}
		mu.Lock()
		done = append(done, rec.Seq)
		mu.Unlock()
		return nil
	}
	r := e.router(t, zerolog.Nop(), map[string]consume.Handler{"slow": h})
	waitLen(t, func() []uint64 { mu.Lock(); defer mu.Unlock(); return append([]uint64(nil), done...) }, 2)
	waitCaughtUp(t, r, "slow")
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(sorted(done)) != fmt.Sprint([]uint64{s1, s2}) || calls < 2 {
		t.Fatalf("handled %v after %d calls of the stuck event", done, calls)
	}
}

func TestRunReturnsWhenItsContextIsCancelled(t *testing.T) {
	e := newEnv(t)
	r, err := consume.NewRouter(e.cfg, e.connect, e.auth, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddHandler("ctx", (&recorder{}).handle); err != nil {
		t.Fatal(err)
	}
	if err := r.AddHandler("ctx", (&recorder{}).handle); err == nil {
		t.Fatal("a durable added twice")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-r.Running()
	if err := r.Run(context.Background()); !errors.Is(err, consume.ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close after run: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestCloseWithoutRun(t *testing.T) {
	e := newEnv(t)
	r, err := consume.NewRouter(e.cfg, e.connect, e.auth, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddHandler("idle", (&recorder{}).handle); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close without Run took %s", d)
	}
	if err := r.Run(context.Background()); !errors.Is(err, consume.ErrRunning) {
		t.Fatalf("Run after Close: %v", err)
	}
}

func TestDeletedConsumerIsCreatedAgain(t *testing.T) {
	e := newEnv(t)
	s1 := e.publish(t, "acme", 1)
	rec := &recorder{}
	r := e.router(t, zerolog.Nop(), map[string]consume.Handler{"phoenix": rec.handle})
	waitLen(t, rec.got, 1)
	waitCaughtUp(t, r, "phoenix")
	if err := e.js.DeleteConsumer(context.Background(), consume.DefaultStream, "phoenix"); err != nil {
		t.Fatal(err)
	}
	s2 := e.publish(t, "acme", 2)
	// The new consumer starts from the first event again: handlers are
	// idempotent, and nothing is skipped.
	got := sorted(waitLen(t, rec.got, 3))
	if fmt.Sprint(got) != fmt.Sprint([]uint64{s1, s1, s2}) {
		t.Fatalf("handled %v, want %v", got, []uint64{s1, s1, s2})
	}
}
