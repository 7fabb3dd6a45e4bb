package handlers

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// fakeStore is an in-memory EventStore with the semantics of the JetStream
// one: one global sequence shared by all sites (so a site's sequences have
// gaps), the expectation checked on the site's last sequence, events stored
// in their wire encoding.
type fakeStore struct {
	mu   sync.Mutex
	msgs []storedMsg

	// onAppend, when set, runs once at the start of the next Append, outside
	// the store's lock: it plays another replica that gets there first.
	onAppend func()
	// failNext is returned by the next Append; with failStored the event is
	// stored first (an uncertain outcome that did happen).
	failNext   error
	failStored bool
	// alwaysConflict makes every Append conflict.
	alwaysConflict bool
	// afterLastSeq, when set, runs in every LastSeq after the sequence was
	// read and before it is returned, outside the store's lock: a read that
	// takes its time.
	afterLastSeq func()

	appends, conflicts, lastSeqs int
	loadsFromZero                map[events.Site]int
}

type storedMsg struct {
	seq  uint64
	site events.Site
	data []byte
}

func newFakeStore() *fakeStore { return &fakeStore{loadsFromZero: make(map[events.Site]int)} }

func (s *fakeStore) Load(ctx context.Context, site events.Site, afterSeq uint64) ([]events.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if afterSeq == 0 {
		s.loadsFromZero[site]++
	}
	var out []events.Record
	for _, m := range s.msgs {
		if m.site != site || m.seq <= afterSeq {
			continue
		}
		e, err := events.Decode(m.data)
		if err != nil {
			return nil, fmt.Errorf("fake store: decode seq %d: %w", m.seq, err)
		}
		out = append(out, events.Record{Seq: m.seq, Event: e})
	}
	return out, nil
}

func (s *fakeStore) Append(ctx context.Context, e events.Event, expectedSeq uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	hook := s.onAppend
	s.onAppend = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	b, err := events.Encode(e)
	if err != nil {
		return 0, fmt.Errorf("fake store: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appends++
	if err := s.failNext; err != nil {
		s.failNext = nil
		if s.failStored {
			s.storeLocked(e.Site, b)
		}
		return 0, err
	}
	if last := s.lastLocked(e.Site); s.alwaysConflict || last != expectedSeq {
		s.conflicts++
		return 0, fmt.Errorf("fake store: expected %d, last %d: %w", expectedSeq, last, ErrConflict)
	}
	return s.storeLocked(e.Site, b), nil
}

func (s *fakeStore) storeLocked(site events.Site, b []byte) uint64 {
	// Another site's message first, so that sequences of one site have gaps
	// as on the shared stream.
	seq := uint64(len(s.msgs)) + 1
	s.msgs = append(s.msgs, storedMsg{seq: seq, site: "zz-other-site", data: nil})
	seq++
	s.msgs = append(s.msgs, storedMsg{seq: seq, site: site, data: b})
	return seq
}

func (s *fakeStore) LastSeq(ctx context.Context, site events.Site) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.lastSeqs++
	last, hook := s.lastLocked(site), s.afterLastSeq
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return last, nil
}

func (s *fakeStore) lastLocked(site events.Site) uint64 {
	for i := len(s.msgs) - 1; i >= 0; i-- {
		if s.msgs[i].site == site {
			return s.msgs[i].seq
		}
	}
	return 0
}

// events returns the site's stored events, decoded.
func (s *fakeStore) events(t *testing.T, site events.Site) []events.Event {
	t.Helper()
	recs, err := s.Load(context.Background(), site, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.loadsFromZero[site]-- // not a load by the code under test
	s.mu.Unlock()
	out := make([]events.Event, len(recs))
	for i, r := range recs {
		out[i] = r.Event
	}
	return out
}

// rawContains reports whether any stored message contains text.
func (s *fakeStore) rawContains(text string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		if strings.Contains(string(m.data), text) {
			return true
		}
	}
	return false
}

func (s *fakeStore) counters() (appends, conflicts, lastSeqs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appends, s.conflicts, s.lastSeqs
}

func (s *fakeStore) zeroLoads(site events.Site) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadsFromZero[site]
}

// fakeKeeper hashes with HMAC-SHA256 under named keys and "seals" by XOR, so
// that no stored byte holds the plain text. Passcodes are Passcode0001, …
type fakeKeeper struct {
	mu     sync.Mutex
	n      int
	macKey string
	// checked makes passcodes that end in a check character, as the real
	// keeper's do.
	checked bool
}

func newFakeKeeper() *fakeKeeper { return &fakeKeeper{macKey: "mac-1"} }

func (k *fakeKeeper) NewPasscode() (Secret, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.n++
	if !k.checked {
		return NewSecret(fmt.Sprintf("Passcode%04d", k.n)), nil
	}
	for ; ; k.n++ {
		body := fmt.Sprintf("P%010d", k.n)
		if c, ok := domain.CheckCharacter(body); ok {
			return NewSecret(body + string(c)), nil
		}
	}
}

func (k *fakeKeeper) MACKeyID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.macKey
}

func (k *fakeKeeper) rotate(keyID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.macKey = keyID
}

func (k *fakeKeeper) MAC(keyID string, p Secret) ([]byte, error) {
	if !strings.HasPrefix(keyID, "mac-") {
		return nil, fmt.Errorf("unknown MAC key %q", keyID)
	}
	h := hmac.New(sha256.New, []byte("key-"+keyID))
	h.Write([]byte(p.Plain()))
	return h.Sum(nil), nil
}

func (k *fakeKeeper) Seal(p Secret) ([]byte, string, error) {
	b := []byte(p.Plain())
	for i := range b {
		b[i] ^= 0x5a
	}
	return b, "seal-1", nil
}

func (k *fakeKeeper) Open(keyID string, sealed []byte) (Secret, error) {
	if keyID != "seal-1" {
		return Secret{}, errors.New("unknown seal key")
	}
	b := append([]byte(nil), sealed...)
	for i := range b {
		b[i] ^= 0x5a
	}
	return NewSecret(string(b)), nil
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var t0 = time.Date(2024, 6, 1, 9, 0, 0, 0, time.UTC)

var (
	admin  = events.Actor{Kind: events.ActorAdmin, ID: "alice@acme.example"}
	bgCtx  = context.Background()
	siteID = events.Site("acme")
)

// env is a store shared by replicas, each a Service with its own cache, and
// one clock and keeper.
type env struct {
	store  *fakeStore
	keeper *fakeKeeper
	clock  *fakeClock
	cfg    Config
}

func newEnv(pol domain.Policy) *env {
	cfg := DefaultConfig()
	cfg.Policy = pol
	return &env{store: newFakeStore(), keeper: newFakeKeeper(), clock: &fakeClock{now: t0}, cfg: cfg}
}

func (e *env) replica(t *testing.T) *Service {
	t.Helper()
	s, err := NewService(e.cfg, e.store, e.keeper, e.clock, NewULIDs())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testPolicy(maxFailed int, window time.Duration, perSource int) domain.Policy {
	return domain.Policy{MaxFailedAttempts: maxFailed, FailureWindow: window, MaxFailedPerSource: perSource, SourceWindow: 15 * time.Minute}
}

func generate(t *testing.T, s *Service) GenerateResult {
	t.Helper()
	r, err := s.GeneratePasscode(bgCtx, GeneratePasscode{Site: siteID, Actor: admin})
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	return r
}

func verifyFrom(t *testing.T, s *Service, passcode Secret, ip string) VerifyResult {
	t.Helper()
	r, err := s.VerifyPasscode(bgCtx, VerifyPasscode{Site: siteID, Passcode: passcode, Source: events.Source{IP: ip}})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return r
}

// failures returns the FailedAttempts of the site's stored failures, in order.
func failures(t *testing.T, st *fakeStore) []int {
	t.Helper()
	var out []int
	for _, e := range st.events(t, siteID) {
		if f, ok := e.Data.(events.EnrollmentAttemptFailed); ok {
			out = append(out, f.FailedAttempts)
		}
	}
	return out
}

func countType(t *testing.T, st *fakeStore, typ events.Type) int {
	t.Helper()
	n := 0
	for _, e := range st.events(t, siteID) {
		if e.Type() == typ {
			n++
		}
	}
	return n
}
