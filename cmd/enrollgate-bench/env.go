package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/app"
	"github.com/enrollgate/enrollgate/internal/natsserver"
	"github.com/enrollgate/enrollgate/internal/startup"
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

func (c *countingStore) Load(ctx context.Context, site events.Site, afterSeq uint64) ([]events.Record, error) {
	c.loads.Add(1)
	return c.EventStore.Load(ctx, site, afterSeq)
}

func (c *countingStore) LastSeq(ctx context.Context, site events.Site) (uint64, error) {
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

// servicePassword is the bench's password of the embedded server's service
// user, which every NATS client of the bench logs in as.
const servicePassword = "bench-service-password-0123"

// stack is the service as cmd/enrollgate runs it (internal/app), on an
// embedded server in its own data dir, with the event store its commands
// run on counted. The NATS frontends, the raw and bare clients and the
// alert subscriber log in as the service user, in the service's account
// (BenchmarkVerifyOverNATS in cmd/enrollgate measures a token account's
// frontend beside it); each is a connection of its own, as it would be a
// process of its own.
type stack struct {
	name    string
	app     *app.App
	url     string // the embedded server, with the service user's login
	store   *countingStore
	svc     *handlers.Service
	httpURL string
	alertNC *nats.Conn
	alerts  *nats.Subscription
	conns   []*nats.Conn
}

// newStack starts the service with its data dir in dir.
func newStack(ctx context.Context, name, dir string, syncAlways bool, log zerolog.Logger) (_ *stack, err error) {
	st := &stack{name: name}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	cfg := app.Config{HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", NATSServicePassword: servicePassword,
		DataDir: dir, Replicas: 1, SyncAlways: syncAlways, Policy: benchPolicy(), AdminEmail: benchAdmin.ID,
		EnrollmentToken: enrollmentToken, StartTimeout: startup.DefaultTimeout,
		LogLevel: "info", // what Validate asks for; the service logs to log, at its level
		WrapStore: func(s handlers.EventStore) handlers.EventStore {
			st.store = &countingStore{EventStore: s}
			return st.store
		}}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st.app, err = app.Start(ctx, cfg, log.With().Str("stack", name).Logger()); err != nil {
		return nil, fmt.Errorf("start %s stack: %w", name, err)
	}
	st.svc, st.httpURL = st.app.Service(), "http://"+st.app.HTTPAddr()
	u, err := url.Parse(st.app.NATSURL())
	if err != nil {
		return nil, err
	}
	u.User = url.UserPassword(natsserver.ServiceUser, servicePassword)
	st.url = u.String()
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
// newService returns a Service of its own on the stack's store, caching up
// to cached sites (at least the default).
func (st *stack) newService(cached int) (*handlers.Service, error) {
	cfg := handlers.DefaultConfig()
	cfg.Policy = benchPolicy()
	cfg.MaxCachedSites = max(cfg.MaxCachedSites, cached)
	return handlers.NewService(cfg, st.store, st.app.Keeper(), handlers.SystemClock{}, handlers.NewULIDs())
}

func (st *stack) connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect(st.url, nats.Name(name))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", name, err)
	}
	st.conns = append(st.conns, nc)
	return nc, nil
}

// drain waits until the projections, the saga and the alert publisher have
// handled every event, so that their catch-up does not run during the next
// measurement.
func (st *stack) drain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		n, err := st.app.ConsumerLag(ctx)
		if err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain: %d pending: %w", n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// close closes the clients' connections, then the service.
func (st *stack) close() {
	for _, nc := range st.conns {
		nc.Close()
	}
	if st.app != nil {
		_ = st.app.Close()
	}
}
