package projector

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
	"github.com/enrollgate/enrollgate/internal/readstore"
	"github.com/enrollgate/enrollgate/projections"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

type env struct {
	url  string
	nc   *nats.Conn
	js   jetstream.JetStream
	auth *eventstore.Authenticator
}

// testKeys are the event-MAC keys of the tests: one key, "k1".
type testKeys struct{}

func (testKeys) EventMACKeyID() string { return "k1" }
func (testKeys) NewEventMAC(id string) (hash.Hash, bool) {
	if id != "k1" {
		return nil, false
	}
	return hmac.New(sha256.New, []byte("projector-test-event-mac-key-32b")), true
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	s := natstest.StartServer(tb)
	nc := natstest.Connect(tb, s)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := eventstore.EnsureStream(ctx, js, eventstore.DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	auth, err := eventstore.NewAuthenticator(testKeys{}, stream)
	if err != nil {
		tb.Fatal(err)
	}
	return &env{url: s.ClientURL(), nc: nc, js: js, auth: auth}
}

// cfg is c with the env's authenticator.
func (e *env) cfg(c Config) Config {
	c.Auth = e.auth
	return c
}

func storeConfig(path string) readstore.Config {
	return readstore.Config{Path: path, Defaults: domain.DefaultPolicy(), NoSync: true}
}

// workload makes a mixed, plausible history: per site a generation first,
// then mostly attempts, with reveals, disables, lockouts, regenerations and
// policy changes.
type workload struct {
	rng   *mrand.Rand
	sites []string
	cur   map[string]string // current passcode ID per site
	fails map[string]int
	at    time.Time
	n     int
}

func newWorkload(seed uint64, sites int) *workload {
	w := &workload{rng: mrand.New(mrand.NewPCG(seed, 7)), cur: map[string]string{}, fails: map[string]int{}, at: t0}
	for i := range sites {
		w.sites = append(w.sites, fmt.Sprintf("site-%04d", i))
	}
	return w
}

func (w *workload) next() events.Event {
	w.n++
	w.at = w.at.Add(time.Duration(w.rng.IntN(2000)) * time.Millisecond)
	site := w.sites[w.rng.IntN(len(w.sites))]
	admin := events.Actor{Kind: events.ActorAdmin, ID: "admin@" + site + ".example"}
	device := events.Actor{Kind: events.ActorDevice, ID: "enrollment-frontend"}
	src := events.Source{IP: fmt.Sprintf("10.0.%d.%d", w.rng.IntN(4), w.rng.IntN(250)), DeviceID: fmt.Sprintf("dev-%d", w.rng.IntN(50)),
		Platform: "ios", UserAgent: "MDM-Enroll/2.1 (iPhone; iOS 19.1)"}
	var actor events.Actor
	var p events.Payload
	pc := w.cur[site]
	switch k := w.rng.IntN(100); {
	case pc == "" || k < 2:
		pc = ulid.Make().String()
		w.cur[site], w.fails[site] = pc, 0
		actor, p = admin, events.PasscodeGenerated{PasscodeID: pc, Hash: randBytes(32), HashKeyID: "mac-2026-01",
			Sealed: randBytes(40), SealKeyID: "seal-2026-01"}
	case k < 4:
		actor, p = admin, events.PasscodeRevealed{PasscodeID: pc}
	case k < 5:
		actor, p = admin, events.PasscodeDisabled{PasscodeID: pc, Reason: events.DisableManual, FailedAttempts: w.fails[site]}
	case k < 6:
		last := w.at
		actor, p = events.Actor{Kind: events.ActorSystem, ID: "lockout-saga"}, events.PasscodeDisabled{PasscodeID: pc,
			Reason: events.DisableLockout, FailedAttempts: 10, MaxFailedAttempts: 10, FailureWindow: events.Duration(time.Hour),
			FirstFailedAt: &last, LastFailedAt: &last, RecentSources: []events.Source{src}}
	case k < 7:
		actor, p = admin, events.LockoutPolicyChanged{MaxFailedAttempts: 3 + w.rng.IntN(10),
			FailureWindow: events.Duration(time.Duration(1+w.rng.IntN(120)) * time.Minute), PasscodeID: pc, FailedAttempts: w.fails[site]}
	case k < 30:
		actor, p = device, events.EnrollmentAttemptSucceeded{PasscodeID: pc, AttemptID: ulid.Make().String(),
			AttemptDigest: randBytes(16), Source: src}
	default:
		w.fails[site]++
		actor, p = device, events.EnrollmentAttemptFailed{PasscodeID: pc, AttemptID: ulid.Make().String(),
			AttemptDigest: randBytes(16), Source: src, FailedAttempts: w.fails[site]%12 + 1, MaxFailedAttempts: 10,
			FailureWindow: events.Duration(time.Hour)}
	}
	return events.Event{ID: ulid.MustNew(ulid.Timestamp(w.at), rand.Reader).String(), Site: events.Site(site), OccurredAt: w.at,
		Actor: actor, Data: p}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// eventMsg is the message of ev as the service stores it, signed.
func (e *env) eventMsg(tb testing.TB, ev events.Event) *nats.Msg {
	b, err := events.Encode(ev)
	if err != nil {
		tb.Fatal(err)
	}
	m := nats.NewMsg(events.Subject(ev.Site))
	m.Data = b
	m.Header.Set(events.HeaderEventType, string(ev.Type()))
	m.Header.Set(jetstream.MsgIDHeader, ev.ID)
	if err := e.auth.SignMsg(m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// publish appends messages in order and returns their sequences.
func (e *env) publish(tb testing.TB, msgs ...*nats.Msg) []uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var seqs []uint64
	for _, m := range msgs {
		ack, err := e.js.PublishMsg(ctx, m)
		if err != nil {
			tb.Fatalf("publish: %v", err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	return seqs
}

// publishBulk appends n workload events with async publishes (order is kept
// by the single connection).
func (e *env) publishBulk(tb testing.TB, w *workload, n int) {
	tb.Helper()
	const window = 2000
	var futures []jetstream.PubAckFuture
	for i := range n {
		f, err := e.js.PublishMsgAsync(e.eventMsg(tb, w.next()))
		if err != nil {
			tb.Fatalf("publish %d: %v", i, err)
		}
		futures = append(futures, f)
		if len(futures) == window || i == n-1 {
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					tb.Fatalf("publish: %v", err)
				case <-time.After(30 * time.Second):
					tb.Fatal("publish ack timeout")
				}
			}
			futures = futures[:0]
		}
	}
}

func poisonMsg(site string, body string) *nats.Msg {
	m := nats.NewMsg(events.Subject(events.Site(site)))
	m.Data = []byte(body)
	m.Header.Set(events.HeaderEventType, "PasscodeGenerated")
	return m
}

// dump is everything a store answers.
type dump struct {
	Last     uint64
	States   []projections.StateDoc
	Audit    map[string][]projections.AuditEntry
	Attempts map[string][]projections.AttemptEntry
	Events   int
}

func snapshot(tb testing.TB, s *readstore.Store, now time.Time) dump {
	tb.Helper()
	d := dump{Last: s.LastApplied(), States: s.States(now, nil),
		Audit: map[string][]projections.AuditEntry{}, Attempts: map[string][]projections.AttemptEntry{}}
	for _, site := range s.Sites() {
		var cursor uint64
		for {
			page, next, err := s.Audit(site, cursor, 100)
			if err != nil {
				tb.Fatal(err)
			}
			d.Audit[site] = append(d.Audit[site], page...)
			d.Events += len(page)
			if next == 0 {
				break
			}
			cursor = next
		}
		a, err := s.Attempts(site, "", 100000)
		if err != nil {
			tb.Fatal(err)
		}
		d.Attempts[site] = a
	}
	return d
}

// deadLetters returns the headers of durable's dead letters by original
// sequence.
func (e *env) deadLetters(tb testing.TB, durable string) map[uint64]nats.Header {
	tb.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, consume.DefaultDeadLetterStream)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[uint64]nats.Header{}
	last := st.CachedInfo().State.LastSeq
	for seq := uint64(1); seq <= last; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil || m.Subject != consume.DefaultConfig().DeadLetterSubject(durable) {
			continue
		}
		orig, _ := strconv.ParseUint(m.Header.Get(consume.HeaderOriginalSeq), 10, 64)
		out[orig] = m.Header
	}
	return out
}

// newerTypeMsg is ev as a newer version would store an event of a type this
// build does not know: its type renamed, signed by the service.
func (e *env) newerTypeMsg(t *testing.T, ev events.Event) *nats.Msg {
	t.Helper()
	m := e.eventMsg(t, ev)
	m.Data = []byte(strings.Replace(string(m.Data), `"type":"`+string(ev.Type())+`"`, `"type":"PasscodeFrobnicated"`, 1))
	m.Header.Set(events.HeaderEventType, "PasscodeFrobnicated")
	if err := e.auth.SignMsg(m); err != nil {
		t.Fatal(err)
	}
	return m
}
