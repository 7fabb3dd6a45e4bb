package natsserver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

const testPassword = "s3cret-for-test-0123"

// accessEnv is an embedded server with access control, the service's
// streams and a verify endpoint, and a token store.
type accessEnv struct {
	t      testing.TB
	s      *server.Server
	access *Access
	tokens *auth.Store
	svc    *nats.Conn
	sjs    jetstream.JetStream
	ctx    context.Context
}

func newAccessEnv(t testing.TB) *accessEnv {
	t.Helper()
	tokens, err := auth.Open(auth.Config{File: filepath.Join(t.TempDir(), "tokens.json")})
	if err != nil {
		t.Fatal(err)
	}
	access, err := NewAccess(testPassword, tokens, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Access: access}, zerolog.Nop())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	e := &accessEnv{t: t, s: s, access: access, tokens: tokens, ctx: ctx}
	e.svc = e.connect(nats.UserInfo(ServiceUser, testPassword))
	e.sjs, _ = jetstream.New(e.svc)
	for name, subj := range map[string]string{"ENROLLGATE_EVENTS": "enrollgate.events.>", alertsStream: "enrollgate.alerts.>"} {
		if _, err := e.sjs.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			t.Fatalf("service creates %s: %v", name, err)
		}
	}
	svc, err := micro.AddService(e.svc, micro.Config{Name: "enrollgate", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	err = svc.AddGroup("enrollgate.verify").AddEndpoint("verify", micro.HandlerFunc(func(r micro.Request) {
		_ = r.Respond([]byte(fmt.Sprintf(`{"ok":false,"subject":%q,"request":%q}`, r.Subject(), r.Data())))
	}), micro.WithEndpointSubject("*"))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *accessEnv) connect(opts ...nats.Option) *nats.Conn {
	e.t.Helper()
	nc, err := nats.Connect(e.s.ClientURL(), append(opts, nats.MaxReconnects(0))...)
	if err != nil {
		e.t.Fatalf("connect: %v", err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// addToken makes a token and syncs the server's accounts, as the service's
// token watcher does.
func (e *accessEnv) addToken(role auth.Role, sites ...string) string {
	e.t.Helper()
	tok, err := e.tokens.Add(auth.Principal{ID: string(role) + "@" + strings.Join(sites, "-"), Role: role, Sites: sites})
	if err != nil {
		e.t.Fatal(err)
	}
	e.sync()
	return tok
}

func (e *accessEnv) sync() {
	e.t.Helper()
	if err := e.access.Sync(e.ctx, e.tokens.List()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *accessEnv) publishAlert(site, body string) {
	e.t.Helper()
	if _, err := e.sjs.Publish(e.ctx, "enrollgate.alerts."+site+".passcode_lockout", []byte(body)); err != nil {
		e.t.Fatal(err)
	}
}

// capture subscribes to every subject a client may subscribe to and
// collects what arrives.
type capture struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (c *capture) add(m *nats.Msg) { c.mu.Lock(); c.msgs = append(c.msgs, m); c.mu.Unlock() }

func (c *capture) holding(s string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		if strings.Contains(string(m.Data), s) || strings.Contains(m.Subject, s) {
			out = append(out, m.Subject+" "+string(m.Data))
		}
	}
	return out
}

func listenEverywhere(t *testing.T, nc *nats.Conn) *capture {
	t.Helper()
	c := &capture{}
	for _, subj := range []string{">", "_INBOX.>", "$JS.>", "$SRV.>", "enrollgate.>"} {
		if _, err := nc.Subscribe(subj, c.add); err != nil {
			t.Fatalf("subscribe %s: %v", subj, err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAccessRefusesWithoutValidCredentials(t *testing.T) {
	e := newAccessEnv(t)
	e.addToken(auth.RoleEnrollment, "acme")
	for name, opts := range map[string][]nats.Option{
		"anonymous":              nil,
		"wrong service password": {nats.UserInfo(ServiceUser, "wrong-password-0123")},
		"unknown token":          {nats.Token("eg_not-a-real-token")},
		"internal user":          {nats.UserInfo(internalUserPrefix+"bootstrap-admin", "guess")},
		"token as user":          {nats.UserInfo("someone", "eg_x")},
	} {
		if nc, err := nats.Connect(e.s.ClientURL(), append(opts, nats.MaxReconnects(0))...); err == nil {
			nc.Close()
			t.Errorf("%s: connection admitted", name)
		} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Errorf("%s: %v, want an authorization error", name, err)
		}
	}
}

// TestAccessEnrollmentTokenSeesOnlyItsOwnReplies: a frontend token listening
// on everything it may subscribe to captures no event, no JetStream traffic
// of the service and no other frontend's verdict, while the service writes
// and consumes events and another frontend verifies; it may verify its own
// site only.
func TestAccessEnrollmentTokenSeesOnlyItsOwnReplies(t *testing.T) {
	e := newAccessEnv(t)
	spy := e.connect(nats.Token(e.addToken(auth.RoleEnrollment, "acme")))
	other := e.connect(nats.Token(e.addToken(auth.RoleEnrollment, "globex")))
	seen := listenEverywhere(t, spy)

	// The service's own traffic: an event appended and consumed with acks.
	if _, err := e.sjs.Publish(e.ctx, "enrollgate.events.acme", []byte(`{"type":"PasscodeGenerated","secret-event-payload":1}`)); err != nil {
		t.Fatal(err)
	}
	cons, err := e.sjs.CreateConsumer(e.ctx, "ENROLLGATE_EVENTS", jetstream.ConsumerConfig{Durable: "saga", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Another frontend's verify.
	if m, err := other.Request("enrollgate.verify.globex", []byte("other-frontend-request"), 5*time.Second); err != nil || !strings.Contains(string(m.Data), "other-frontend-request") {
		t.Fatalf("other frontend's verify: %v", err)
	}
	// Its own verify works.
	m, err := spy.Request("enrollgate.verify.acme", []byte("own-request"), 5*time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"subject":"enrollgate.verify.acme"`) {
		t.Fatalf("own verify: %v", err)
	}
	// Discovery works across the account boundary.
	if m, err := spy.Request("$SRV.INFO.enrollgate", nil, 5*time.Second); err != nil || !strings.Contains(string(m.Data), `"name":"enrollgate"`) {
		t.Fatalf("micro discovery: %v", err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let anything misrouted arrive before looking
	for _, leak := range []string{"secret-event-payload", "other-frontend-request", "ENROLLGATE_EVENTS", "enrollgate.verify.globex", "$JS.ACK"} {
		if got := seen.holding(leak); len(got) > 0 {
			t.Errorf("the frontend token captured %q: %v", leak, got)
		}
	}
	if got := seen.holding("own-request"); len(got) == 0 {
		t.Error("the capture saw not even its own request: it proves nothing")
	}

	// Another site: refused by its permissions, never answered.
	if _, err := spy.Request("enrollgate.verify.globex", []byte("x"), 500*time.Millisecond); err == nil {
		t.Fatal("a token scoped to acme verified globex")
	}
	// No JetStream at all for a frontend token.
	sjs, _ := jetstream.New(e.connect(nats.Token(e.addToken(auth.RoleEnrollment, "acme"))))
	short, cancel := context.WithTimeout(e.ctx, time.Second)
	defer cancel()
	if _, err := sjs.Stream(short, "ENROLLGATE_EVENTS"); err == nil {
		t.Fatal("a frontend token read the event stream's info")
	}
}

// TestAccessAlertsScopedAndConsumersOwned: an auditor of acme receives
// acme's alerts live and replays them, past ones included, through
// consumers of its own; it sees no other site's alerts, no event, and
// another auditor of the same site can neither see nor touch its consumer.
func TestAccessAlertsScopedAndConsumersOwned(t *testing.T) {
	e := newAccessEnv(t)
	e.publishAlert("acme", `{"n":"acme-before"}`)
	e.publishAlert("globex", `{"n":"globex-before"}`)
	auditor := e.connect(nats.Token(e.addToken(auth.RoleAuditor, "acme")))
	seen := listenEverywhere(t, auditor)
	e.publishAlert("acme", `{"n":"acme-live"}`)
	e.publishAlert("globex", `{"n":"globex-live"}`)
	if _, err := e.sjs.Publish(e.ctx, "enrollgate.events.acme", []byte(`{"secret-event-payload":1}`)); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if len(seen.holding("acme-live")) == 0 {
			return errors.New("no live acme alert yet")
		}
		return nil
	})

	ajs, _ := jetstream.New(auditor)
	replay := func(js jetstream.JetStream) []string {
		t.Helper()
		var got []string
		natstest.Eventually(t, 10*time.Second, func() error {
			got = nil
			oc, err := js.OrderedConsumer(e.ctx, alertsStream, jetstream.OrderedConsumerConfig{})
			if err != nil {
				return err
			}
			b, err := oc.Fetch(10, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				return err
			}
			for m := range b.Messages() {
				got = append(got, string(m.Data()))
			}
			if len(got) < 2 {
				return fmt.Errorf("replayed %v", got)
			}
			return nil
		})
		return got
	}
	if got := replay(ajs); strings.Join(got, ",") != `{"n":"acme-before"},{"n":"acme-live"}` {
		t.Fatalf("replayed %v, want acme's two alerts", got)
	}

	siem, err := ajs.CreateOrUpdateConsumer(e.ctx, alertsStream, jetstream.ConsumerConfig{Durable: "siem", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("auditor creates its consumer: %v", err)
	}
	b, err := siem.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		if err := m.DoubleAck(e.ctx); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}

	// A second auditor of acme has its own copy: the first one's consumer
	// does not exist for it, and creating one of the same name leaves the
	// first one's position alone.
	rival := e.connect(nats.Token(e.addToken(auth.RoleAuditor, "acme")))
	rjs, _ := jetstream.New(rival)
	if _, err := rjs.Consumer(e.ctx, alertsStream, "siem"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("rival looks up siem: %v, want not found", err)
	}
	replay(rjs)
	info, err := siem.Info(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 1 || info.NumPending != 1 {
		t.Fatalf("siem after the rival's replay: ack floor %d, pending %d; want 1 and 1", info.AckFloor.Stream, info.NumPending)
	}

	// Refused: other streams, stream management, the copy's configuration.
	short := func() context.Context {
		c, cancel := context.WithTimeout(e.ctx, time.Second)
		t.Cleanup(cancel)
		return c
	}
	if _, err := ajs.Stream(short(), "ENROLLGATE_EVENTS"); err == nil {
		t.Error("an auditor read the event stream's info")
	}
	if _, err := ajs.CreateStream(short(), jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}}); err == nil {
		t.Error("an auditor created a stream")
	}
	if _, err := ajs.UpdateStream(short(), jetstream.StreamConfig{Name: alertsStream, Sources: []*jetstream.StreamSource{{Name: alertsStream,
		FilterSubject: "enrollgate.alerts.>", External: &jetstream.ExternalStream{APIPrefix: mirrorAPI, DeliverPrefix: "x"}}}}); err == nil {
		t.Error("an auditor changed its copy's sources")
	}
	if err := ajs.DeleteStream(short(), alertsStream); err == nil {
		t.Error("an auditor deleted its copy")
	}
	if _, err := auditor.Request(mirrorAPI+".CONSUMER.CREATE."+alertsStream+".x.enrollgate.alerts.globex.>", []byte(`{}`), 500*time.Millisecond); err == nil {
		t.Error("an auditor reached the copy's source API")
	}
	for _, leak := range []string{"globex", "secret-event-payload"} {
		if got := seen.holding(leak); len(got) > 0 {
			t.Errorf("the auditor captured %q: %v", leak, got)
		}
	}
	// An auditor may not verify.
	if _, err := auditor.Request("enrollgate.verify.acme", []byte("x"), 500*time.Millisecond); err == nil {
		t.Error("an auditor verified")
	}
}

// TestAccessRevokedTokenIsCutOff: revoking a token closes its connections
// and refuses it from then on; other tokens keep working.
func TestAccessRevokedTokenIsCutOff(t *testing.T) {
	e := newAccessEnv(t)
	tok := e.addToken(auth.RoleAdmin, "acme")
	keep := e.connect(nats.Token(e.addToken(auth.RoleEnrollment, "acme")))
	closed := make(chan struct{})
	nc := e.connect(nats.Token(tok), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if _, err := nc.Request("enrollgate.verify.acme", []byte("x"), 5*time.Second); err != nil {
		t.Fatalf("admin verify before revoke: %v", err)
	}
	info, ok := e.tokens.Identify(tok)
	if !ok {
		t.Fatal("token unknown")
	}
	if err := e.tokens.Revoke(info.ID); err != nil {
		t.Fatal(err)
	}
	e.sync()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked token's connection is still open")
	}
	if nc2, err := nats.Connect(e.s.ClientURL(), nats.Token(tok), nats.MaxReconnects(0)); err == nil {
		nc2.Close()
		t.Fatal("a revoked token connected again")
	}
	if _, err := keep.Request("enrollgate.verify.acme", []byte("x"), 5*time.Second); err != nil {
		t.Fatalf("another token after the revoke: %v", err)
	}
}
