package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/httpapi"
	"github.com/enrollgate/enrollgate/internal/natsserver"
	"github.com/enrollgate/enrollgate/internal/projector"
	"github.com/enrollgate/enrollgate/internal/readstore"
	"github.com/enrollgate/enrollgate/internal/secrets"
	"github.com/enrollgate/enrollgate/internal/verifyapi"
)

// enrollmentToken is the bench's bootstrap enrollment token for HTTP verify.
const enrollmentToken = "bench-enrollment-token-0123456789"

// benchPolicy keeps the load scenarios from ending in throttling or lockout:
// the highest threshold the domain allows, and a per-source limit that the
// load never reaches because every attempt comes from a new source. The load
// generator also keeps each site's wrong attempts below the threshold.
func benchPolicy() domain.Policy {
	return domain.Policy{MaxFailedAttempts: domain.MaxMaxFailedAttempts, FailureWindow: time.Hour,
		MaxFailedPerSource: 500, SourceWindow: 15 * time.Minute}
}

// startServer starts an embedded JetStream server on a random port of
// 127.0.0.1 with file storage in dir.
func startServer(dir, name string, syncAlways bool, log zerolog.Logger) (*server.Server, error) {
	s, err := natsserver.Start(natsserver.Config{Listen: "127.0.0.1:0", StoreDir: dir, SyncAlways: syncAlways,
		ServerName: name}, log)
	if err != nil {
		return nil, fmt.Errorf("start %s server: %w", name, err)
	}
	return s, nil
}

func stopServer(s *server.Server) {
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// countingStore wraps the event store the Service gets, to count what one
// verify costs in store calls and how often appends conflict.
type countingStore struct {
	handlers.EventStore
	appends, conflicts, loads, lastSeqs atomic.Int64
	appendNanos                         atomic.Int64 // time spent in successful appends
}

func (c *countingStore) Append(ctx context.Context, e events.Event, expectedSeq uint64) (uint64, error) {
	t := time.Now()
	seq, err := c.EventStore.Append(ctx, e, expectedSeq)
	c.appendNanos.Add(int64(time.Since(t)))
	switch {
	case err == nil:
		c.appends.Add(1)
	case errors.Is(err, handlers.ErrConflict):
		c.conflicts.Add(1)
	}
	return seq, err
}

func (c *countingStore) Load(ctx context.Context, site string, afterSeq uint64) ([]events.Record, error) {
	c.loads.Add(1)
	return c.EventStore.Load(ctx, site, afterSeq)
}

func (c *countingStore) LastSeq(ctx context.Context, site string) (uint64, error) {
	c.lastSeqs.Add(1)
	return c.EventStore.LastSeq(ctx, site)
}

// counts is a snapshot of a countingStore.
type counts struct{ appends, conflicts, loads, lastSeqs, appendNanos int64 }

func (c *countingStore) snapshot() counts {
	return counts{c.appends.Load(), c.conflicts.Load(), c.loads.Load(), c.lastSeqs.Load(), c.appendNanos.Load()}
}

func (a counts) minus(b counts) counts {
	return counts{a.appends - b.appends, a.conflicts - b.conflicts, a.loads - b.loads, a.lastSeqs - b.lastSeqs,
		a.appendNanos - b.appendNanos}
}

// extra returns the figures of a measurement: the mean time of one append
// (the part of a verify's latency that is the JetStream round trip), and the
// store calls per verify.
func (a counts) extra(ops int) map[string]float64 {
	m := map[string]float64{}
	if a.appends+a.conflicts > 0 {
		m["append_ms"] = float64(a.appendNanos) / float64(a.appends+a.conflicts) / 1e6
	}
	if ops > 0 && a.loads+a.lastSeqs > 0 {
		m["reads_per_op"] = float64(a.loads+a.lastSeqs) / float64(ops)
	}
	return m
}

// stack is the service wired as cmd/enrollgate wires it (app.go): one
// connection for the event store and the verify endpoint, the HTTP API, and
// a consume.Router running the projections, the lockout saga and the alert
// publisher, each consumer on its own connection. Frontends and the alert
// subscriber are separate connections, as they would be separate processes.
type stack struct {
	name    string
	ns      *server.Server
	url     string
	nc      *nats.Conn
	js      jetstream.JetStream
	store   *countingStore
	base    *eventstore.Store
	keeper  *secrets.Keeper
	auth    *eventstore.Authenticator // signs the events of base
	svc     *handlers.Service
	micro   micro.Service
	http    *http.Server
	httpURL string
	router  *consume.Router
	proj    *projector.Projector
	routed  <-chan struct{}
	rs      *readstore.Store
	alertNC *nats.Conn
	alerts  *nats.Subscription
	conns   []*nats.Conn
	log     zerolog.Logger
}

// newStack starts a server in dir and the service on it.
func newStack(ctx context.Context, name, dir string, syncAlways, consumers bool, log zerolog.Logger) (_ *stack, err error) {
	st := &stack{name: name, log: log}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	if st.ns, err = startServer(filepath.Join(dir, "jetstream"), name, syncAlways, log); err != nil {
		return nil, err
	}
	st.url = st.ns.ClientURL()
	if st.nc, err = st.connect("enrollgate"); err != nil {
		return nil, err
	}
	if st.js, err = jetstream.New(st.nc); err != nil {
		return nil, err
	}
	esCfg := eventstore.DefaultConfig()
	stream, err := eventstore.EnsureStream(ctx, st.js, esCfg)
	if err != nil {
		return nil, err
	}
	if st.keeper, err = secrets.Open(secrets.Config{Dir: filepath.Join(dir, "keys")}); err != nil {
		return nil, err
	}
	if st.auth, err = eventstore.NewAuthenticator(st.keeper, stream); err != nil {
		return nil, err
	}
	if st.base, err = eventstore.New(st.js, stream, esCfg, st.auth); err != nil {
		return nil, err
	}
	st.store = &countingStore{EventStore: st.base}
	if err := alerts.EnsureStream(ctx, st.js, 1); err != nil {
		return nil, err
	}
	if st.svc, err = st.newService(); err != nil {
		return nil, err
	}
	if consumers {
		if err := st.startConsumers(ctx, dir); err != nil {
			return nil, err
		}
	} else if st.rs, err = readstore.Open(readstore.Config{Path: filepath.Join(dir, readstore.FileName),
		Defaults: benchPolicy(), NoSync: true}); err != nil { // HTTP reads need one, even empty
		return nil, err
	}
	if st.micro, err = verifyapi.Start(st.nc, st.svc, verifyapi.Config{}, log); err != nil {
		return nil, err
	}
	if err := st.startHTTP(dir); err != nil {
		return nil, err
	}
	if st.alertNC, err = st.connect("security-tooling"); err != nil {
		return nil, err
	}
	if st.alerts, err = st.alertNC.SubscribeSync(alerts.SubjectAll); err != nil {
		return nil, err
	}
	return st, st.alertNC.Flush()
}

// newService returns a Service on the stack's counting store, with an empty
// aggregate cache.
func (st *stack) newService() (*handlers.Service, error) {
	cfg := handlers.DefaultConfig()
	cfg.Policy = benchPolicy()
	return handlers.NewService(cfg, st.store, st.keeper, handlers.SystemClock{}, handlers.NewULIDs())
}

func (st *stack) connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect(st.url, nats.Name(name))
	if err != nil {
		return nil, fmt.Errorf("connect %s to %s: %w", name, st.url, err)
	}
	st.conns = append(st.conns, nc)
	return nc, nil
}

func (st *stack) startConsumers(ctx context.Context, dir string) error {
	rs, _, err := projector.OpenStore(ctx, st.js, readstore.Config{Path: filepath.Join(dir, readstore.FileName),
		Defaults: benchPolicy(), NoSync: true}, projector.Config{Auth: st.auth})
	if err != nil {
		return fmt.Errorf("read model: %w", err)
	}
	st.rs = rs
	proj := projector.New(rs)
	st.proj = proj
	n := 0
	// The router closes the connections it is given; they are not in conns.
	r, err := consume.NewRouter(consume.DefaultConfig(), func() (*nats.Conn, error) {
		n++
		return nats.Connect(st.url, nats.Name(fmt.Sprintf("enrollgate-consumer-%d", n)))
	}, st.auth, st.log)
	if err != nil {
		return err
	}
	st.router = r
	pubNC, err := st.connect("alert-publisher")
	if err != nil {
		return err
	}
	pubJS, err := jetstream.New(pubNC)
	if err != nil {
		return err
	}
	publisher, err := alerts.NewPublisher(pubJS)
	if err != nil {
		return err
	}
	if err := proj.Register(r, st.js, projector.Durable("bench"), projector.Config{Auth: st.auth}); err != nil {
		return err
	}
	if err := r.AddHandler(handlers.LockoutSagaDurable, handlers.NewLockoutSaga(st.svc).Handle, consume.OnlyTypes(handlers.LockoutSagaEvents...)); err != nil {
		return err
	}
	if err := r.AddHandler(alerts.Durable, publisher.Handle, consume.OnlyTypes(alerts.Events...)); err != nil {
		return err
	}
	st.routed, err = r.Start(context.WithoutCancel(ctx), 30*time.Second)
	return err
}

func (st *stack) startHTTP(dir string) error {
	tokens, err := auth.Open(auth.Config{File: filepath.Join(dir, "tokens.json"), EnrollmentToken: enrollmentToken})
	if err != nil {
		return err
	}
	hcfg := httpapi.DefaultConfig()
	api, err := httpapi.New(hcfg, httpapi.Deps{Commands: st.svc, Auth: tokens, Reads: st.rs}, st.log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("HTTP listen: %w", err)
	}
	st.httpURL = "http://" + ln.Addr().String()
	st.http = hcfg.NewServer(ln.Addr().String(), api)
	go func() { _ = st.http.Serve(ln) }()
	return nil
}

// drain waits until the projections, the saga and the alert publisher have
// acknowledged every event, so that their catch-up does not run during the
// next measurement.
func (st *stack) drain(ctx context.Context) error {
	if st.router == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, d := range []string{projector.Durable("bench"), handlers.LockoutSagaDurable, alerts.Durable} {
		for {
			pending := st.router.Pending
			if d == projector.Durable("bench") {
				pending = func(ctx context.Context, _ string) (uint64, error) { return st.proj.Lag(ctx) }
			}
			n, err := pending(ctx, d)
			if err != nil {
				return fmt.Errorf("drain %s: %w", d, err)
			}
			if n == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("drain %s: %d pending: %w", d, n, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// close stops everything that was started, in the order of app.Close.
func (st *stack) close() {
	if st.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = st.http.Shutdown(ctx)
		cancel()
	}
	if st.micro != nil {
		_ = st.micro.Stop()
	}
	if st.router != nil {
		_ = st.router.Close()
		if st.routed != nil {
			<-st.routed
		}
	}
	if st.rs != nil {
		_ = st.rs.Close()
	}
	for _, nc := range st.conns {
		nc.Close()
	}
	stopServer(st.ns)
}
