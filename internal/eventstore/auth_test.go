package eventstore_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/eventstore/storetest"
	"github.com/enrollgate/enrollgate/internal/natstest"
	"github.com/enrollgate/enrollgate/internal/secrets"
)

// The production keys are the keeper's.
var _ eventstore.Keys = (*secrets.Keeper)(nil)

// otherKeys are keys the service does not have: an attacker's.
type otherKeys struct {
	id  string
	key []byte
}

func (k otherKeys) EventMACKeyID() string { return k.id }
func (k otherKeys) NewEventMAC(id string) (hash.Hash, bool) {
	if id != k.id {
		return nil, false
	}
	return hmac.New(sha256.New, k.key), true
}

func randomKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// lastOf returns the sequence of the last message on site's subject.
func lastOf(t *testing.T, js jetstream.JetStream, site events.Site) uint64 {
	t.Helper()
	ctx := context.Background()
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, events.Subject(site))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return m.Sequence
}

// eventMsg builds the message Append would store for e after the site's
// current last message, signed by signer unless it is nil.
func eventMsg(t *testing.T, js jetstream.JetStream, e events.Event, signer *eventstore.Authenticator) *nats.Msg {
	t.Helper()
	data, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: events.Subject(e.Site), Data: data, Header: nats.Header{}}
	msg.Header.Set(events.HeaderEventType, string(e.Type()))
	msg.Header.Set(jetstream.MsgIDHeader, e.ID)
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(lastOf(t, js, e.Site), 10))
	if signer != nil {
		if err := signer.SignMsg(msg); err != nil {
			t.Fatal(err)
		}
	}
	return msg
}

func store(t *testing.T, js jetstream.JetStream, msg *nats.Msg) uint64 {
	t.Helper()
	ack, err := js.PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatalf("publish on %s: %v", msg.Subject, err)
	}
	return ack.Sequence
}

// attackerGeneration is the most harmful forgery: a generation whose
// passcode the attacker knows, hashed correctly under the service's key.
func attackerGeneration(site events.Site) (events.Event, handlers.Secret) {
	k := &testKeeper{}
	p := handlers.NewSecret(domain.Guess(7)) // passes the check: a guess, not a typo
	h, _ := k.MAC(k.MACKeyID(), p)
	sealed, sealKey, _ := k.Seal(p)
	return events.Event{ID: ulid.Make().String(), Site: site, OccurredAt: time.Now(), Actor: admin,
		Data: events.PasscodeGenerated{PasscodeID: "forged-" + ulid.Make().String(), Hash: h, HashKeyID: k.MACKeyID(), Sealed: sealed, SealKeyID: sealKey}}, p
}

// forgery is one way to put a message the service did not write on a site's
// subject, where the server accepts it.
type forgery struct {
	name string
	msg  func(t *testing.T, js jetstream.JetStream, auth *eventstore.Authenticator, e events.Event) *nats.Msg
}

var forgeries = []forgery{
	{"no MAC", func(t *testing.T, js jetstream.JetStream, _ *eventstore.Authenticator, e events.Event) *nats.Msg {
		return eventMsg(t, js, e, nil)
	}},
	{"bad MAC", func(t *testing.T, js jetstream.JetStream, auth *eventstore.Authenticator, e events.Event) *nats.Msg {
		m := eventMsg(t, js, e, auth)
		m.Header.Set(events.HeaderMAC, "test-mac:"+base64.StdEncoding.EncodeToString(randomKey()))
		return m
	}},
	{"malformed MAC", func(t *testing.T, js jetstream.JetStream, _ *eventstore.Authenticator, e events.Event) *nats.Msg {
		m := eventMsg(t, js, e, nil)
		m.Header.Set(events.HeaderMAC, "test-mac")
		return m
	}},
	{"wrong key under the service's key ID", func(t *testing.T, js jetstream.JetStream, _ *eventstore.Authenticator, e events.Event) *nats.Msg {
		return eventMsg(t, js, e, attacker(t, js, "test-mac"))
	}},
	{"unknown key", func(t *testing.T, js jetstream.JetStream, _ *eventstore.Authenticator, e events.Event) *nats.Msg {
		return eventMsg(t, js, e, attacker(t, js, "mac-0badc0de"))
	}},
	{"signed for another site", func(t *testing.T, js jetstream.JetStream, auth *eventstore.Authenticator, e events.Event) *nats.Msg {
		// Signed with the service's key as an event of site "other"
		// (with this site's expectation, so that the server stores it):
		// only the subject differs from what was signed.
		m := eventMsg(t, js, e, nil)
		target := m.Subject
		m.Subject = events.Subject("other")
		if err := auth.SignMsg(m); err != nil {
			t.Fatal(err)
		}
		m.Subject = target
		return m
	}},
	{"unknown type, no MAC", func(t *testing.T, js jetstream.JetStream, _ *eventstore.Authenticator, e events.Event) *nats.Msg {
		m := eventMsg(t, js, e, nil)
		m.Data = []byte(strings.Replace(string(m.Data), `"type":"PasscodeGenerated"`, `"type":"PasscodeFrobnicated"`, 1))
		m.Header.Set(events.HeaderEventType, "PasscodeFrobnicated")
		return m
	}},
	{"undecodable, no MAC", func(t *testing.T, js jetstream.JetStream, _ *eventstore.Authenticator, e events.Event) *nats.Msg {
		m := eventMsg(t, js, e, nil)
		m.Data = []byte(`{"id":"not json`)
		return m
	}},
}

func attacker(t *testing.T, js jetstream.JetStream, keyID string) *eventstore.Authenticator {
	t.Helper()
	a, err := eventstore.OpenAuthenticator(context.Background(), js, otherKeys{id: keyID, key: randomKey()})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestForgedMessagesStoreContract runs the store contract about messages
// that are not events, on both load paths.
func TestForgedMessagesStoreContract(t *testing.T) {
	for _, direct := range []int{16, 0} {
		t.Run("direct-"+strconv.Itoa(direct), func(t *testing.T) {
			srv := natstest.StartServer(t)
			cfg := testConfig()
			cfg.DirectReadMax = direct
			cfg.LoadBatch = 2
			for i, f := range forgeries {
				t.Run(f.name, func(t *testing.T) {
					prefix := "f" + strconv.Itoa(i) + "-"
					var js jetstream.JetStream
					var auth *eventstore.Authenticator
					storetest.RunForged(t, prefix, func(t *testing.T) handlers.EventStore {
						var st *eventstore.Store
						st, js = newStore(t, srv, cfg)
						auth = testAuth(t, js)
						return st
					}, func(t *testing.T, site events.Site) uint64 {
						e, _ := attackerGeneration(site)
						return store(t, js, f.msg(t, js, auth, e))
					})
				})
			}
		})
	}
}

// TestForgedMessageLeavesSiteWorking: a forged generation, in every form,
// on an active site changes nothing for a warm or a cold service: the right
// passcode verifies, the attacker's counts as wrong, the failures are
// counted as before, and regenerate works.
func TestForgedMessageLeavesSiteWorking(t *testing.T) {
	srv := natstest.StartServer(t)
	for _, direct := range []int{16, 0} {
		cfg := testConfig()
		cfg.DirectReadMax = direct
		st, js := newStore(t, srv, cfg)
		auth := testAuth(t, js)
		for i, f := range forgeries {
			site := events.Site("forged-" + strconv.Itoa(direct) + "-" + strconv.Itoa(i))
			t.Run(strconv.Itoa(direct)+"/"+f.name, func(t *testing.T) {
				warm := newService(t, st, highThreshold())
				gen := generate(t, warm, site)
				if v := verify(t, warm, site, handlers.NewSecret(domain.Guess(1, gen.Passcode.Plain())), "w1"); v.OK {
					t.Fatal("wrong passcode accepted")
				}
				e, attackerPass := attackerGeneration(site)
				store(t, js, f.msg(t, js, auth, e))
				cold := newService(t, st, highThreshold())
				for j, svc := range []*handlers.Service{warm, cold} {
					v := verify(t, svc, site, attackerPass, "a"+strconv.Itoa(j))
					if v.OK || v.Reason != domain.ReasonWrongPasscode {
						t.Fatalf("service %d: the forged generation's passcode: %+v, want wrong_passcode", j, v)
					}
					if v := verify(t, svc, site, gen.Passcode, "r"+strconv.Itoa(j)); !v.OK || v.PasscodeID != gen.State.PasscodeID {
						t.Fatalf("service %d: the right passcode after a forgery: %+v", j, v)
					}
				}
				res, err := cold.DisablePasscode(context.Background(), handlers.DisablePasscode{Site: site, Actor: admin, Reason: events.DisableManual})
				if err != nil {
					t.Fatalf("disable after a forgery: %v", err)
				}
				// One wrong before the forgery, the attacker's on each service.
				if res.State.FailedAttempts != 3 || res.State.PasscodeID != gen.State.PasscodeID {
					t.Fatalf("state after a forgery: %+v, want 3 failures of %s", res.State, gen.State.PasscodeID)
				}
				regen := generate(t, warm, site)
				if v := verify(t, cold, site, regen.Passcode, "n"); !v.OK {
					t.Fatalf("regenerated passcode after a forgery: %+v", v)
				}
			})
		}
	}
}

// TestAuthenticateCoversEveryField: changing any part of a signed message
// that gives the event its meaning fails its MAC.
func TestAuthenticateCoversEveryField(t *testing.T) {
	srv := natstest.StartServer(t)
	_, js := newStore(t, srv, testConfig())
	auth := testAuth(t, js)
	e, _ := attackerGeneration("acme")
	signed := eventMsg(t, js, e, auth)
	const seq = 7
	check := func(m *nats.Msg) error { return auth.Authenticate(m.Subject, seq, m.Header, m.Data) }
	if err := check(signed); err != nil {
		t.Fatalf("signed message: %v", err)
	}
	clone := func() *nats.Msg {
		m := &nats.Msg{Subject: signed.Subject, Data: []byte(string(signed.Data)), Header: nats.Header{}}
		for k, v := range signed.Header {
			m.Header[k] = append([]string(nil), v...)
		}
		return m
	}
	for name, edit := range map[string]func(m *nats.Msg){
		"subject":        func(m *nats.Msg) { m.Subject = events.Subject("acme2") },
		"event ID":       func(m *nats.Msg) { m.Header.Set(jetstream.MsgIDHeader, ulid.Make().String()) },
		"event type":     func(m *nats.Msg) { m.Header.Set(events.HeaderEventType, string(events.TypePasscodeRevealed)) },
		"expectation":    func(m *nats.Msg) { m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "12345") },
		"no expectation": func(m *nats.Msg) { m.Header.Del(jetstream.ExpectedLastSubjSeqHeader) },
		"payload":        func(m *nats.Msg) { m.Data[len(m.Data)-2] ^= 1 },
		"key ID": func(m *nats.Msg) {
			m.Header.Set(events.HeaderMAC, "mac-1"+m.Header.Get(events.HeaderMAC)[len("test-mac"):])
		},
		"repeated type": func(m *nats.Msg) { m.Header.Add(events.HeaderEventType, "PasscodeDisabled") },
		"no MAC":        func(m *nats.Msg) { m.Header.Del(events.HeaderMAC) },
	} {
		m := clone()
		edit(m)
		if err := check(m); !errors.Is(err, eventstore.ErrNotAuthentic) {
			t.Errorf("%s changed: got %v, want ErrNotAuthentic", name, err)
		}
	}
}

// TestReplayedEventIsRefused: a stored event sent again as it is (with its
// expectation, which its MAC covers) is not stored a second time.
func TestReplayedEventIsRefused(t *testing.T) {
	srv := natstest.StartServer(t)
	st, js := newStore(t, srv, testConfig())
	b := storetest.NewEvents("replayed")
	recs := storetest.Append(t, st, b, 0, 3)
	stream, err := js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetMsg(context.Background(), recs[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(jetstream.ExpectedLastSubjSeqHeader); got != "0" {
		t.Fatalf("stored expectation %q, want \"0\": the server no longer keeps it", got)
	}
	ack, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
	case err == nil && ack.Duplicate:
	default:
		t.Fatalf("replay of a stored event: ack %+v, err %v; want a refusal or a duplicate", ack, err)
	}
	storetest.Equal(t, storetest.Load(t, st, b.Site, 0), recs)
}

// TestLegacyEventsBeforeTheBoundary: on a stream of an earlier version,
// the unsigned events stored before EnsureStream first ran still load and
// verify; an unsigned message after that point is refused; the boundary
// never moves once recorded.
func TestLegacyEventsBeforeTheBoundary(t *testing.T) {
	srv := natstest.StartServer(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := testConfig()
	// The stream as the earlier version created it: no boundary.
	if _, err := js.CreateStream(ctx, eventstore.StreamConfig(cfg)); err != nil {
		t.Fatal(err)
	}
	const site = "legacy"
	k := &testKeeper{}
	p := handlers.NewSecret("Legacy123456")
	h, _ := k.MAC(k.MACKeyID(), p)
	sealed, sealKey, _ := k.Seal(p)
	gen := events.Event{ID: ulid.Make().String(), Site: site, OccurredAt: time.Now(), Actor: admin,
		Data: events.PasscodeGenerated{PasscodeID: "legacy-gen", Hash: h, HashKeyID: k.MACKeyID(), Sealed: sealed, SealKeyID: sealKey}}
	fail := events.Event{ID: ulid.Make().String(), Site: site, OccurredAt: time.Now(), Actor: events.Actor{Kind: events.ActorDevice, ID: "d"},
		Data: events.EnrollmentAttemptFailed{PasscodeID: "legacy-gen", Source: events.Source{IP: "192.0.2.3"}, FailedAttempts: 1, MaxFailedAttempts: 1000, FailureWindow: events.Duration(time.Hour)}}
	legacy := []uint64{store(t, js, eventMsg(t, js, gen, nil))}
	// A message nobody could decode, stored before: it is not an event
	// either, and no longer breaks the site.
	poison := fail
	poison.ID = ulid.Make().String()
	bad := eventMsg(t, js, poison, nil)
	bad.Data = []byte(`{"id":"not json`)
	store(t, js, bad)
	legacy = append(legacy, store(t, js, eventMsg(t, js, fail, nil)))

	stream, err := eventstore.EnsureStream(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	from := legacy[1] + 1
	if got := stream.CachedInfo().Config.Metadata[eventstore.MetaMACRequiredFrom]; got != strconv.FormatUint(from, 10) {
		t.Fatalf("boundary %q, want %d (the last sequence + 1)", got, from)
	}
	auth, err := eventstore.NewAuthenticator(k, stream)
	if err != nil {
		t.Fatal(err)
	}
	if auth.RequiredFrom() != from {
		t.Fatalf("RequiredFrom %d, want %d", auth.RequiredFrom(), from)
	}
	st, err := eventstore.New(js, stream, cfg, auth)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Equal(t, storetest.Load(t, st, site, 0), []events.Record{{Seq: legacy[0], Event: gen}, {Seq: legacy[1], Event: fail}})

	svc := newService(t, st, highThreshold())
	if v := verify(t, svc, site, p, "ok1"); !v.OK || v.PasscodeID != "legacy-gen" {
		t.Fatalf("legacy generation: %+v", v)
	}
	// The same event, unsigned, after the boundary: refused.
	again := fail
	again.ID = ulid.Make().String()
	forged := store(t, js, eventMsg(t, js, again, nil))
	if recs := storetest.Load(t, st, site, 0); len(recs) != 4 || recs[3].Seq != forged || recs[3].Event.Data != nil {
		t.Fatalf("load after an unsigned message past the boundary: %+v, want 3 events and a gap at %d", recs, forged)
	}
	res, err := svc.DisablePasscode(ctx, handlers.DisablePasscode{Site: site, Actor: admin, Reason: events.DisableManual})
	if err != nil {
		t.Fatal(err)
	}
	if res.State.FailedAttempts != 1 {
		t.Fatalf("failures %d, want the one legacy failure (the forged one does not count)", res.State.FailedAttempts)
	}
	// The boundary stays where it was.
	stream, err = eventstore.EnsureStream(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := stream.CachedInfo().Config.Metadata[eventstore.MetaMACRequiredFrom]; got != strconv.FormatUint(from, 10) {
		t.Fatalf("boundary after a second EnsureStream %q, want %d", got, from)
	}
}

// TestNewStreamRequiresMACsFromTheStart: a stream created by this version
// trusts no unsigned message at all.
func TestNewStreamRequiresMACsFromTheStart(t *testing.T) {
	srv := natstest.StartServer(t)
	_, js := newStore(t, srv, testConfig())
	if got := testAuth(t, js).RequiredFrom(); got != 1 {
		t.Fatalf("boundary of a new stream %d, want 1", got)
	}
}

// unknownEvent is an event of a type this build does not know, as a newer
// version would store it.
func unknownEvent(site events.Site) (events.Event, []byte) {
	e := events.Event{ID: ulid.Make().String(), Site: site, OccurredAt: time.Now(), Actor: admin, Data: events.PasscodeRevealed{PasscodeID: "x"}}
	data, _ := events.Encode(e)
	return e, []byte(strings.Replace(string(data), `"type":"PasscodeRevealed"`, `"type":"PasscodeFrobnicated"`, 1))
}

// TestUnknownTypeIsUpgradeRequired: an authentic event of an unknown type
// stops the site's commands with ErrUpgradeRequired, on both load paths and
// for warm and cold services alike.
func TestUnknownTypeIsUpgradeRequired(t *testing.T) {
	srv := natstest.StartServer(t)
	for _, direct := range []int{16, 0} {
		cfg := testConfig()
		cfg.DirectReadMax = direct
		st, js := newStore(t, srv, cfg)
		site := events.Site("newer-" + strconv.Itoa(direct))
		warm := newService(t, st, highThreshold())
		gen := generate(t, warm, site)
		e, data := unknownEvent(site)
		m := eventMsg(t, js, e, nil)
		m.Data = data
		m.Header.Set(events.HeaderEventType, "PasscodeFrobnicated")
		if err := testAuth(t, js).SignMsg(m); err != nil {
			t.Fatal(err)
		}
		seq := store(t, js, m)
		_, err := st.Load(context.Background(), site, 0)
		if !errors.Is(err, handlers.ErrUpgradeRequired) || !strings.Contains(err.Error(), "seq "+strconv.FormatUint(seq, 10)) {
			t.Fatalf("load over a newer event at seq %d: got %v, want ErrUpgradeRequired naming it", seq, err)
		}
		for i, svc := range []*handlers.Service{warm, newService(t, st, highThreshold())} {
			_, err := svc.VerifyPasscode(context.Background(), handlers.VerifyPasscode{Site: site, Passcode: gen.Passcode, AttemptID: "u" + strconv.Itoa(i)})
			if !errors.Is(err, handlers.ErrUpgradeRequired) {
				t.Fatalf("service %d: verify on a site with a newer event: got %v, want ErrUpgradeRequired", i, err)
			}
		}
	}
}

// TestSignedUndecodableEventIsAnError: an authentic event that does not
// decode is never skipped silently.
func TestSignedUndecodableEventIsAnError(t *testing.T) {
	srv := natstest.StartServer(t)
	for _, direct := range []int{16, 0} {
		cfg := testConfig()
		cfg.DirectReadMax = direct
		st, js := newStore(t, srv, cfg)
		site := events.Site("undecodable-" + strconv.Itoa(direct))
		b := storetest.NewEvents(string(site))
		recs := storetest.Append(t, st, b, 0, 2)
		m := eventMsg(t, js, b.Next(), nil)
		m.Data = []byte(`{"id":"not json`)
		if err := testAuth(t, js).SignMsg(m); err != nil {
			t.Fatal(err)
		}
		seq := store(t, js, m)
		storetest.Append(t, st, b, seq, 1)
		for _, after := range []uint64{0, recs[1].Seq} {
			_, err := st.Load(context.Background(), site, after)
			if !errors.Is(err, events.ErrMalformed) || !strings.Contains(err.Error(), "seq "+strconv.FormatUint(seq, 10)) {
				t.Fatalf("load over a bad event at seq %d (direct max %d, after %d): got %v", seq, direct, after, err)
			}
		}
		if got := storetest.Load(t, st, site, seq); len(got) != 1 {
			t.Fatalf("load after the bad event: %d records", len(got))
		}
	}
}
