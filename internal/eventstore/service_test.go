package eventstore_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// testKeeper is a SecretKeeper for tests: HMAC-SHA256 under a fixed key, and
// a reversible "sealing" (byte reversal) that only a test may use.
type testKeeper struct{}

var _ handlers.SecretKeeper = (*testKeeper)(nil)

var testMACKey = []byte("enrollgate-test-mac-key-32-bytes")

// NewPasscode draws passcodes that end in their check character, as the
// real keeper's do, so that every generation of a test is a checked one.
func (*testKeeper) NewPasscode() (handlers.Secret, error) {
	for {
		body := rand.Text()[:domain.PasscodeLen-1]
		if c, ok := domain.CheckCharacter(body); ok {
			return handlers.NewSecret(body + string(c)), nil
		}
	}
}

func (*testKeeper) MACKeyID() string { return "test-mac" }

func (*testKeeper) MAC(keyID string, p handlers.Secret) ([]byte, error) {
	if keyID != "test-mac" {
		return nil, fmt.Errorf("unknown MAC key %q", keyID)
	}
	m := hmac.New(sha256.New, testMACKey)
	m.Write([]byte(p.Plain()))
	return m.Sum(nil), nil
}

// EventMACKeyID and NewEventMAC make testKeeper the event store's Keys:
// every store of a test shares them, as replicas do.
func (*testKeeper) EventMACKeyID() string { return "test-mac" }

func (*testKeeper) NewEventMAC(keyID string) (hash.Hash, bool) {
	if keyID != "test-mac" {
		return nil, false
	}
	return hmac.New(sha256.New, testEventKey), true
}

var testEventKey = []byte("enrollgate-test-event-key-32-byt")

func (*testKeeper) Seal(p handlers.Secret) ([]byte, string, error) {
	b := []byte(p.Plain())
	slices.Reverse(b)
	return b, "test-seal", nil
}

func (*testKeeper) Open(keyID string, sealed []byte) (handlers.Secret, error) {
	if keyID != "test-seal" {
		return handlers.Secret{}, fmt.Errorf("unknown seal key %q", keyID)
	}
	b := slices.Clone(sealed)
	slices.Reverse(b)
	return handlers.NewSecret(string(b)), nil
}

// highThreshold never locks within a test's attempts, so that every attempt
// is compared and recorded.
func highThreshold() handlers.Config {
	cfg := handlers.DefaultConfig()
	cfg.Policy = domain.Policy{MaxFailedAttempts: 1000, FailureWindow: time.Hour, MaxFailedPerSource: 5, SourceWindow: 15 * time.Minute}
	return cfg
}

func newService(tb testing.TB, store handlers.EventStore, cfg handlers.Config) *handlers.Service {
	tb.Helper()
	svc, err := handlers.NewService(cfg, store, &testKeeper{}, handlers.SystemClock{}, handlers.NewULIDs())
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}

var admin = events.Actor{Kind: events.ActorAdmin, ID: "alice@acme.example"}

func generate(tb testing.TB, svc *handlers.Service, site events.Site) handlers.GenerateResult {
	tb.Helper()
	res, err := svc.GeneratePasscode(context.Background(), handlers.GeneratePasscode{Site: site, Actor: admin})
	if err != nil {
		tb.Fatalf("generate %s: %v", site, err)
	}
	return res
}

func verify(tb testing.TB, svc *handlers.Service, site events.Site, p handlers.Secret, attemptID string) handlers.VerifyResult {
	tb.Helper()
	res, err := svc.VerifyPasscode(context.Background(), handlers.VerifyPasscode{Site: site, Passcode: p, AttemptID: attemptID,
		Source: events.Source{IP: "192.0.2.1", DeviceID: "device-" + attemptID}})
	if err != nil {
		tb.Fatalf("verify %s: %v", site, err)
	}
	return res
}

// TestTwoServicesHammerOneSite: two Services with their own caches and
// connections share one stream and hammer one site. Every verdict must be
// backed by exactly one stored event, and the failure counts must have no
// gap (no lost update between the replicas).
func TestTwoServicesHammerOneSite(t *testing.T) {
	srv := natstest.StartServer(t)
	stA, _ := newStore(t, srv, testConfig())
	stB, _ := newStore(t, srv, testConfig())
	cA, cB := &conflictCounter{EventStore: stA}, &conflictCounter{EventStore: stB}
	svcs := []*handlers.Service{newService(t, cA, highThreshold()), newService(t, cB, highThreshold())}
	const site = "hammer"
	gen := generate(t, svcs[0], site)

	type verdict struct {
		attemptID string
		ok        bool
		seq       uint64
	}
	const workers, perWorker = 8, 16
	var mu sync.Mutex
	var verdicts []verdict
	var wg sync.WaitGroup
	for si, svc := range svcs {
		for w := range workers {
			wg.Go(func() {
				for i := range perWorker {
					id := fmt.Sprintf("att-%d-%d-%d", si, w, i)
					right := (w+i)%2 == 0
					p := handlers.NewSecret("wrong-passcode")
					if right {
						p = gen.Passcode
					}
					res, err := svc.VerifyPasscode(context.Background(), handlers.VerifyPasscode{Site: site, Passcode: p, AttemptID: id,
						Source: events.Source{IP: fmt.Sprintf("10.%d.%d.%d", si, w, i), DeviceID: "dev-" + id}})
					if err != nil {
						t.Errorf("verify %s: %v", id, err)
						return
					}
					if res.OK != right || (!right && res.Reason != domain.ReasonWrongPasscode) || res.Seq == 0 {
						t.Errorf("verify %s (right=%v): %+v", id, right, res)
						return
					}
					mu.Lock()
					verdicts = append(verdicts, verdict{id, res.OK, res.Seq})
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	recs, err := stA.Load(context.Background(), site, 0)
	if err != nil {
		t.Fatal(err)
	}
	bySeq := make(map[uint64]events.Event)
	ids := make(map[string]bool)
	var failed, succeeded int
	for _, r := range recs {
		if ids[r.Event.ID] {
			t.Fatalf("event ID %s stored twice", r.Event.ID)
		}
		ids[r.Event.ID] = true
		bySeq[r.Seq] = r.Event
		switch d := r.Event.Data.(type) {
		case events.EnrollmentAttemptFailed:
			failed++
			if d.FailedAttempts != failed {
				t.Fatalf("failure #%d (seq %d) carries count %d: a lost update", failed, r.Seq, d.FailedAttempts)
			}
		case events.EnrollmentAttemptSucceeded:
			succeeded++
		}
	}
	var wrong, right int
	for _, v := range verdicts {
		e, ok := bySeq[v.seq]
		if !ok {
			t.Fatalf("verdict of %s points at seq %d, which holds no event of the site", v.attemptID, v.seq)
		}
		switch d := e.Data.(type) {
		case events.EnrollmentAttemptFailed:
			if v.ok || d.AttemptID != v.attemptID {
				t.Fatalf("verdict of %s (ok=%v) at seq %d holds a failure of %s", v.attemptID, v.ok, v.seq, d.AttemptID)
			}
			wrong++
		case events.EnrollmentAttemptSucceeded:
			if !v.ok || d.AttemptID != v.attemptID {
				t.Fatalf("verdict of %s (ok=%v) at seq %d holds a success of %s", v.attemptID, v.ok, v.seq, d.AttemptID)
			}
			right++
		default:
			t.Fatalf("verdict of %s at seq %d holds a %s", v.attemptID, v.seq, e.Type())
		}
	}
	if len(verdicts) != 2*workers*perWorker || failed != wrong || succeeded != right {
		t.Fatalf("%d verdicts (%d wrong, %d right); stored %d failures, %d successes", len(verdicts), wrong, right, failed, succeeded)
	}
	t.Logf("%d verdicts, %d events stored, %d append conflicts between the services", len(verdicts), len(recs),
		cA.conflicts.Load()+cB.conflicts.Load())
}

// conflictCounter counts the appends refused with ErrConflict.
type conflictCounter struct {
	handlers.EventStore
	conflicts atomic.Int64
}

func (c *conflictCounter) Append(ctx context.Context, e events.Event, expected uint64) (uint64, error) {
	seq, err := c.EventStore.Append(ctx, e, expected)
	if errors.Is(err, handlers.ErrConflict) {
		c.conflicts.Add(1)
	}
	return seq, err
}

// TestVerdictOnlyAfterStored: the sequence of a verdict is readable from the
// stream by a store that never saw the append (INV4).
func TestVerdictOnlyAfterStored(t *testing.T) {
	srv := natstest.StartServer(t)
	st, _ := newStore(t, srv, testConfig())
	reader, _ := newStore(t, srv, testConfig())
	svc := newService(t, st, handlers.DefaultConfig())
	gen := generate(t, svc, "stored")
	for i, p := range []handlers.Secret{gen.Passcode, handlers.NewSecret("nope-nope-nope")} {
		res := verify(t, svc, "stored", p, fmt.Sprintf("a%d", i))
		if res.Seq == 0 {
			t.Fatalf("verdict %+v has no sequence", res)
		}
		recs, err := reader.Load(context.Background(), "stored", res.Seq-1)
		if err != nil || len(recs) == 0 || recs[0].Seq != res.Seq {
			t.Fatalf("verdict at seq %d: stream has %v / %v", res.Seq, recs, err)
		}
	}
}

// TestDisableAimedAtOldGenerationStoresNothing is INV3 on the real store.
func TestDisableAimedAtOldGenerationStoresNothing(t *testing.T) {
	srv := natstest.StartServer(t)
	st, _ := newStore(t, srv, testConfig())
	svc := newService(t, st, handlers.DefaultConfig())
	const site = "inv3"
	g1 := generate(t, svc, site)
	g2 := generate(t, svc, site)
	res, err := svc.DisablePasscode(context.Background(), handlers.DisablePasscode{Site: site,
		Actor: events.Actor{Kind: events.ActorSystem, ID: "lockout"}, PasscodeID: g1.State.PasscodeID, Reason: events.DisableLockout})
	if err != nil {
		t.Fatal(err)
	}
	last, err := st.LastSeq(context.Background(), site)
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq != 0 || last != g2.Seq || res.State.Status != domain.StatusActive || res.State.PasscodeID != g2.State.PasscodeID {
		t.Fatalf("disable aimed at %s: seq %d, last %d (g2 at %d), state %+v", g1.State.PasscodeID, res.Seq, last, g2.Seq, res.State)
	}
	// A fresh service, from the stream alone, agrees: g2 still works.
	if v := verify(t, newService(t, st, handlers.DefaultConfig()), site, g2.Passcode, "x"); !v.OK {
		t.Fatalf("verify g2 after the stale disable: %+v", v)
	}
}

// TestStaleCacheIsRefreshed: service A caches the site, service B changes
// it; A must not answer from its stale cache.
func TestStaleCacheIsRefreshed(t *testing.T) {
	srv := natstest.StartServer(t)
	stA, _ := newStore(t, srv, testConfig())
	stB, _ := newStore(t, srv, testConfig())
	a, b := newService(t, stA, handlers.DefaultConfig()), newService(t, stB, handlers.DefaultConfig())
	const site = "stale"
	old := generate(t, a, site)
	if v := verify(t, a, site, old.Passcode, "warm"); !v.OK { // A's cache now holds the first generation
		t.Fatalf("verify before regeneration: %+v", v)
	}
	cur := generate(t, b, site)
	if v := verify(t, a, site, cur.Passcode, "new"); !v.OK || v.PasscodeID != cur.State.PasscodeID {
		t.Fatalf("A verifies the new passcode: %+v", v)
	}
	// The previous generation answers outdated (not counted), not wrong.
	if v := verify(t, a, site, old.Passcode, "old"); v.OK || v.Reason != domain.ReasonOutdated {
		t.Fatalf("A verifies the old passcode: %+v", v)
	}

	// A decision that stores nothing: A caches "disabled", B regenerates.
	if _, err := a.DisablePasscode(context.Background(), handlers.DisablePasscode{Site: site, Actor: admin, Reason: events.DisableManual}); err != nil {
		t.Fatal(err)
	}
	if v := verify(t, a, site, cur.Passcode, "disabled"); v.Reason != domain.ReasonDisabled {
		t.Fatalf("verify a disabled passcode: %+v", v)
	}
	again := generate(t, b, site)
	if v := verify(t, a, site, again.Passcode, "regenerated"); !v.OK {
		t.Fatalf("A verifies after B regenerated a disabled passcode: %+v", v)
	}
}

// countingStore counts what Load returns.
type countingStore struct {
	handlers.EventStore
	loads, records atomic.Int64
}

func (c *countingStore) Load(ctx context.Context, site events.Site, after uint64) ([]events.Record, error) {
	recs, err := c.EventStore.Load(ctx, site, after)
	c.loads.Add(1)
	c.records.Add(int64(len(recs)))
	return recs, err
}

// longHistory stores a site's passcode generation followed by n-1
// successful attempts, raw and fast, and returns the passcode.
func longHistory(tb testing.TB, js jetstream.JetStream, site events.Site, n int) handlers.Secret {
	tb.Helper()
	k := &testKeeper{}
	p, _ := k.NewPasscode()
	mac, _ := k.MAC(k.MACKeyID(), p)
	sealed, sealKey, _ := k.Seal(p)
	ids := handlers.NewULIDs()
	at := time.Now().Add(-time.Minute)
	evs := []events.Event{{ID: ids.NewID(), Site: site, OccurredAt: at, Actor: admin,
		Data: events.PasscodeGenerated{PasscodeID: "gen-long", Hash: mac, HashKeyID: k.MACKeyID(), Sealed: sealed, SealKeyID: sealKey}}}
	for i := 1; i < n; i++ {
		evs = append(evs, events.Event{ID: ids.NewID(), Site: site, OccurredAt: at, Actor: events.Actor{Kind: events.ActorDevice, ID: "d"},
			Data: events.EnrollmentAttemptSucceeded{PasscodeID: "gen-long", AttemptID: fmt.Sprintf("hist-%d", i), Source: events.Source{IP: "192.0.2.9"}}})
	}
	publishRaw(tb, js, evs)
	return p
}

// TestLongHistoryVerifyDoesNotReload: once a service has a site cached, a
// verify on it reads nothing of the history (INV7's mechanism).
func TestLongHistoryVerifyDoesNotReload(t *testing.T) {
	srv := natstest.StartServer(t)
	st, js := newStore(t, srv, testConfig())
	const site, n = "long-cached", 5000
	p := longHistory(t, js, site, n)
	counting := &countingStore{EventStore: st}
	svc := newService(t, counting, handlers.DefaultConfig())
	if v := verify(t, svc, site, p, "warm"); !v.OK {
		t.Fatalf("warm-up verify: %+v", v)
	}
	if got := counting.records.Load(); got != n {
		t.Fatalf("the first verify loaded %d records, want the whole history (%d)", got, n)
	}
	counting.loads.Store(0)
	counting.records.Store(0)
	for i := range 50 {
		if v := verify(t, svc, site, p, fmt.Sprintf("v%d", i)); !v.OK {
			t.Fatalf("verify %d: %+v", i, v)
		}
	}
	if loads, recs := counting.loads.Load(), counting.records.Load(); recs != 0 {
		t.Fatalf("50 verifies on a cached site loaded %d records in %d loads, want none", recs, loads)
	}
}

// benchService returns a warm service on a site with history events.
func benchService(b *testing.B, history int) (*handlers.Service, events.Site, handlers.Secret) {
	b.Helper()
	srv := natstest.StartServer(b)
	st, js := newStore(b, srv, eventstore.DefaultConfig())
	site := events.Site(fmt.Sprintf("bench-%d", history))
	var p handlers.Secret
	svc := newService(b, st, handlers.DefaultConfig())
	if history <= 1 {
		p = generate(b, svc, site).Passcode
	} else {
		start := time.Now()
		p = longHistory(b, js, site, history)
		b.Logf("stored %d events in %s", history, time.Since(start))
	}
	start := time.Now()
	if v := verify(b, svc, site, p, "warm"); !v.OK {
		b.Fatalf("warm-up verify: %+v", v)
	}
	b.Logf("cold verify (loads %d events): %s", history, time.Since(start))
	return svc, site, p
}

func benchVerify(b *testing.B, history int) {
	svc, site, p := benchService(b, history)
	src := events.Source{IP: "198.51.100.7", DeviceID: "bench"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		res, err := svc.VerifyPasscode(context.Background(), handlers.VerifyPasscode{Site: site, Passcode: p,
			AttemptID: fmt.Sprintf("b%d", i), Source: src})
		if err != nil || !res.OK {
			b.Fatalf("verify: %+v %v", res, err)
		}
	}
}

func BenchmarkVerifyFreshSite(b *testing.B)   { benchVerify(b, 1) }
func BenchmarkVerifyLongHistory(b *testing.B) { benchVerify(b, 20_000) }
