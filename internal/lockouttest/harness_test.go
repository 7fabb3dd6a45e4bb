package lockouttest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
	"github.com/enrollgate/enrollgate/internal/secrets"
)

// sagaDurable is the lockout saga's consumer, named as in production.
const sagaDurable = handlers.LockoutSagaDurable

var admin = events.Actor{Kind: events.ActorAdmin, ID: "alice@acme.example"}

// harness is one test's JetStream, service replicas and inspection handles.
type harness struct {
	tb     testing.TB
	s      *server.Server
	js     jetstream.JetStream // inspection
	store  *eventstore.Store   // inspection
	svcs   []*handlers.Service // replicas, each with its own connection and store
	alerts *nats.Subscription  // security tooling: a core NATS subscriber
	keeper *secrets.Keeper     // shared by the replicas, as their keys are
	auth   *eventstore.Authenticator
}

func testPolicy() domain.Policy {
	return domain.Policy{MaxFailedAttempts: 10, FailureWindow: time.Hour, MaxFailedPerSource: 5, SourceWindow: 15 * time.Minute}
}

func newHarness(tb testing.TB, replicas int, pol domain.Policy) *harness {
	tb.Helper()
	s := natstest.StartServer(tb)
	h := &harness{tb: tb, s: s}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keeper, err := secrets.Open(secrets.Config{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	h.keeper = keeper
	h.js, h.store = h.newStore(ctx)
	if err := alerts.EnsureStream(ctx, h.js, 1); err != nil {
		tb.Fatal(err)
	}
	cfg := handlers.DefaultConfig()
	cfg.Policy = pol
	for range replicas {
		_, store := h.newStore(ctx)
		svc, err := handlers.NewService(cfg, store, keeper, handlers.SystemClock{}, handlers.NewULIDs())
		if err != nil {
			tb.Fatal(err)
		}
		h.svcs = append(h.svcs, svc)
	}
	if h.alerts, err = natstest.Connect(tb, s).SubscribeSync(alerts.SubjectAll); err != nil {
		tb.Fatal(err)
	}
	return h
}

// newStore returns an event store on its own connection, as a replica has.
func (h *harness) newStore(ctx context.Context) (jetstream.JetStream, *eventstore.Store) {
	h.tb.Helper()
	js, err := jetstream.New(natstest.Connect(h.tb, h.s))
	if err != nil {
		h.tb.Fatal(err)
	}
	cfg := eventstore.DefaultConfig()
	stream, err := eventstore.EnsureStream(ctx, js, cfg)
	if err != nil {
		h.tb.Fatal(err)
	}
	auth, err := eventstore.NewAuthenticator(h.keeper, stream)
	if err != nil {
		h.tb.Fatal(err)
	}
	h.auth = auth
	store, err := eventstore.New(js, stream, cfg, auth)
	if err != nil {
		h.tb.Fatal(err)
	}
	return js, store
}

func (h *harness) connect() (*nats.Conn, error) { return nats.Connect(h.s.ClientURL()) }

// routerConfig makes redeliveries fast: small retry delays, and an AckWait
// short enough that an event left unacknowledged by a stopped consumer comes
// back within the test.
func routerConfig() consume.Config {
	cfg := consume.DefaultConfig()
	cfg.AckWait = 2 * time.Second
	cfg.HandlerTimeout = time.Second
	cfg.RetryInitialInterval = 2 * time.Millisecond
	cfg.RetryMaxInterval = 50 * time.Millisecond
	cfg.InProcessRetries = 1
	cfg.CloseTimeout = 5 * time.Second
	return cfg
}

// sagaHandler runs the lockout saga on the first replica.
func (h *harness) sagaHandler() consume.Handler {
	saga := handlers.NewLockoutSaga(h.svcs[0])
	return saga.Handle
}

// alertHandler is an alert publisher on its own connection.
func (h *harness) alertHandler() consume.Handler {
	js, err := jetstream.New(natstest.Connect(h.tb, h.s))
	if err != nil {
		h.tb.Fatal(err)
	}
	pub, err := alerts.NewPublisher(js)
	if err != nil {
		h.tb.Fatal(err)
	}
	return pub.Handle
}

// running is a started router.
type running struct {
	*consume.Router
	stopOnce sync.Once
	done     chan error
	tb       testing.TB
}

// stop closes the router and waits for Run to return.
func (r *running) stop() {
	r.stopOnce.Do(func() {
		if err := r.Close(); err != nil {
			r.tb.Errorf("close router: %v", err)
		}
		select {
		case err := <-r.done:
			if err != nil {
				r.tb.Errorf("router run: %v", err)
			}
		case <-time.After(10 * time.Second):
			r.tb.Error("router did not stop in 10s")
		}
	})
}

// startRouter runs a router with the given durable handlers until stop or
// the test's cleanup.
func (h *harness) startRouter(hs map[string]consume.Handler) *running {
	h.tb.Helper()
	r, err := consume.NewRouter(routerConfig(), h.connect, h.auth, zerolog.Nop())
	if err != nil {
		h.tb.Fatal(err)
	}
	for d, fn := range hs {
		// The filters app.go registers, so that the tests see what the
		// service's consumers see.
		var opts []consume.Option
		switch d {
		case sagaDurable:
			opts = append(opts, consume.OnlyTypes(handlers.LockoutSagaEvents...))
		case alerts.Durable:
			opts = append(opts, consume.OnlyTypes(alerts.Events...))
		}
		if err := r.AddHandler(d, fn, opts...); err != nil {
			h.tb.Fatal(err)
		}
	}
	run := &running{Router: r, done: make(chan error, 1), tb: h.tb}
	go func() { run.done <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
	case err := <-run.done:
		h.tb.Fatalf("router stopped at start: %v", err)
	case <-time.After(10 * time.Second):
		h.tb.Fatal("router not running after 10s")
	}
	h.tb.Cleanup(run.stop)
	return run
}

// startLockout runs the saga and the alert publisher, as the service does.
func (h *harness) startLockout() *running {
	return h.startRouter(map[string]consume.Handler{sagaDurable: h.sagaHandler(), alerts.Durable: h.alertHandler()})
}

// caughtUp waits until the durables have acknowledged every event.
func (h *harness) caughtUp(r *running, durables ...string) {
	h.tb.Helper()
	natstest.Eventually(h.tb, 20*time.Second, func() error {
		for _, d := range durables {
			n, err := r.Pending(context.Background(), d)
			if err != nil {
				return err
			}
			if n != 0 {
				return fmt.Errorf("%s: %d events pending", d, n)
			}
		}
		return nil
	})
}

func (h *harness) generate(site string) handlers.GenerateResult {
	h.tb.Helper()
	res, err := h.svcs[0].GeneratePasscode(context.Background(), handlers.GeneratePasscode{Site: events.Site(site), Actor: admin})
	if err != nil {
		h.tb.Fatal(err)
	}
	return res
}

// source returns the i-th distinct source.
func source(i int) events.Source {
	return events.Source{IP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), DeviceID: fmt.Sprintf("device-%d", i),
		Platform: "ios", UserAgent: "enrollgate-test"}
}

func (h *harness) verify(svc *handlers.Service, site string, passcode handlers.Secret, src events.Source) handlers.VerifyResult {
	h.tb.Helper()
	res, err := svc.VerifyPasscode(context.Background(), handlers.VerifyPasscode{Site: events.Site(site), Passcode: passcode, Source: src})
	if err != nil {
		h.tb.Fatalf("verify: %v", err)
	}
	return res
}

// wrong is a candidate that is never the passcode (a passcode has 12
// characters).
func wrong(i int) handlers.Secret { return handlers.NewSecret(fmt.Sprintf("wrong-guess-%d", i)) }

// history is the site's stored events, counted by type.
type history struct {
	recs     []events.Record
	failures []events.EnrollmentAttemptFailed
	disables []events.Record
}

func (h *harness) history(site string) history {
	h.tb.Helper()
	recs, err := h.store.Load(context.Background(), events.Site(site), 0)
	if err != nil {
		h.tb.Fatal(err)
	}
	out := history{recs: recs}
	for _, r := range recs {
		switch d := r.Event.Data.(type) {
		case events.EnrollmentAttemptFailed:
			out.failures = append(out.failures, d)
		case events.PasscodeDisabled:
			out.disables = append(out.disables, r)
		}
	}
	return out
}

// storedAlerts returns the stored alerts of site.
func (h *harness) storedAlerts(site string) []*jetstream.RawStreamMsg {
	h.tb.Helper()
	ctx := context.Background()
	stream, err := h.js.Stream(ctx, alerts.StreamName)
	if err != nil {
		h.tb.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		h.tb.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			h.tb.Fatal(err)
		}
		if m.Subject == alerts.Subject(site, alerts.KindPasscodeLockout) {
			out = append(out, m)
		}
	}
	return out
}

// liveAlerts drains the core subscription: alerts received so far (waiting
// up to wait for the first).
func (h *harness) liveAlerts(wait time.Duration) []*nats.Msg {
	var out []*nats.Msg
	for {
		m, err := h.alerts.NextMsg(wait)
		if err != nil {
			return out
		}
		out = append(out, m)
		wait = 100 * time.Millisecond
	}
}
