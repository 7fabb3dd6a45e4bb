package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

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
	"github.com/enrollgate/enrollgate/projections"
)

// app is the running service: every component, so that Close can stop them
// in order.
type app struct {
	log      zerolog.Logger
	ns       *server.Server // nil with --nats-url
	nc       *nats.Conn
	js       jetstream.JetStream
	router   *consume.Router
	routerWG <-chan struct{} // closed when the router has stopped
	proj     *projector.Projector
	micro    micro.Service
	http     *http.Server
	httpErr  chan error
	httpAddr net.Addr
	natsURL  string
	natsAuth nats.Option // how the service's connections log in
	// projections is the durable consumer of this instance's read model.
	projections string
	auth        *eventstore.Authenticator
}

// start wires and starts the service. On error, whatever was started is
// stopped again.
func start(ctx context.Context, cfg config, log zerolog.Logger, stdout io.Writer) (_ *app, err error) {
	a := &app{log: log}
	defer func() {
		if err != nil {
			_ = a.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	instance, err := instanceID(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.projections = projector.Durable(instance)
	if err := a.connectNATS(cfg); err != nil {
		return nil, err
	}

	esCfg := eventstore.DefaultConfig()
	esCfg.Replicas = cfg.Replicas
	stream, err := eventstore.EnsureStream(ctx, a.js, esCfg)
	if err != nil {
		return nil, err
	}
	keeper, err := secrets.Open(secrets.Config{Dir: cfg.DataDir, MACKey: cfg.MACKey, SealKey: cfg.SealKey})
	if err != nil {
		return nil, err
	}
	// Signs every append, and tells the service's events from forgeries
	// for the write side, the consumers and the replays alike.
	a.auth, err = eventstore.NewAuthenticator(keeper, stream)
	if err != nil {
		return nil, err
	}
	store, err := eventstore.New(a.js, stream, esCfg, a.auth)
	if err != nil {
		return nil, err
	}
	if err := alerts.EnsureStream(ctx, a.js, cfg.Replicas); err != nil {
		return nil, err
	}
	hcfg := handlers.DefaultConfig()
	hcfg.Policy = cfg.Policy
	svc, err := handlers.NewService(hcfg, store, keeper, handlers.SystemClock{}, handlers.NewULIDs())
	if err != nil {
		return nil, err
	}
	tokens, err := auth.Open(auth.Config{File: filepath.Join(cfg.DataDir, "tokens.json"),
		AdminToken: cfg.AdminToken, AdminEmail: cfg.AdminEmail, EnrollmentToken: cfg.EnrollmentToken})
	if err != nil {
		return nil, err
	}
	if token, created, err := tokens.EnsureAdmin(cfg.AdminEmail); err != nil {
		return nil, err
	} else if created {
		// Printed once, to stdout and never to the log: only its hash is kept.
		fmt.Fprintf(stdout, "\nNo API token was configured, so an admin token for all sites was created.\n"+
			"It is shown only this once; keep it safe:\n\n    %s\n\n", token)
	}

	// The read model: durable, caught up with the stream before serving.
	readCfg := readstore.Config{Path: filepath.Join(cfg.DataDir, readstore.FileName), Defaults: cfg.Policy, NoSync: true}
	rs, report, err := projector.OpenStore(ctx, a.js, readCfg, projector.Config{Auth: a.auth})
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	logReplay(log, "read model opened", report)
	a.proj = projector.New(rs)

	if err := a.startConsumers(ctx, cfg, svc); err != nil {
		return nil, err
	}
	if a.micro, err = verifyapi.Start(a.nc, svc, verifyapi.Config{Version: semver()}, log); err != nil {
		return nil, err
	}
	if err := a.startHTTP(cfg, svc, tokens); err != nil {
		return nil, err
	}
	log.Info().Str("http_addr", a.httpAddr.String()).Str("nats_url", a.natsURL).
		Int("max_failed_attempts", cfg.Policy.MaxFailedAttempts).Str("failure_window", cfg.Policy.FailureWindow.String()).
		Int("max_failed_attempts_per_source", cfg.Policy.SourceLimit()).Str("source_window", cfg.Policy.SourceWindow.String()).
		Msg("enrollgate ready")
	return a, nil
}

// connectNATS starts the embedded server unless --nats-url is set, and
// connects the service's main connection.
func (a *app) connectNATS(cfg config) error {
	a.natsURL = cfg.NATSURL
	a.natsAuth = func(*nats.Options) error { return nil }
	if cfg.NATSCreds != "" {
		a.natsAuth = nats.UserCredentials(cfg.NATSCreds)
	}
	if a.natsURL == "" {
		ns, auth, err := startEmbedded(cfg, cfg.NATSListen, a.log)
		if err != nil {
			return err
		}
		a.ns, a.natsURL, a.natsAuth = ns, ns.ClientURL(), auth
	}
	nc, err := a.connect("enrollgate")
	if err != nil {
		return err
	}
	a.nc = nc
	a.js, err = jetstream.New(nc)
	return err
}

// startEmbedded starts the embedded JetStream server on the data dir with
// access control: the service logs in with the configured password, or one
// made for this run;
// clients without credentials may only verify, discover the service and read
// alerts, so that nobody else can write the event log.
func startEmbedded(cfg config, listen string, log zerolog.Logger) (*server.Server, nats.Option, error) {
	password := cfg.NATSServicePassword
	if password == "" {
		pw := make([]byte, 24)
		if _, err := rand.Read(pw); err != nil {
			return nil, nil, fmt.Errorf("service password: %w", err)
		}
		password = base64.RawURLEncoding.EncodeToString(pw)
	}
	ns, err := natsserver.Start(natsserver.Config{Listen: listen, StoreDir: filepath.Join(cfg.DataDir, "jetstream"),
		SyncAlways: cfg.SyncAlways, ServicePassword: password}, log)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded NATS: %w", err)
	}
	return ns, nats.UserInfo(natsserver.ServiceUser, password), nil
}

// connect opens a connection that reconnects forever and logs its changes.
func (a *app) connect(name string) (*nats.Conn, error) {
	log := a.log.With().Str("conn", name).Logger()
	nc, err := nats.Connect(a.natsURL, nats.Name(name), a.natsAuth, nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if !c.IsClosed() { // a Close is no news; a lost connection is
				log.Warn().Err(err).Msg("NATS disconnected")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info().Str("url", c.ConnectedUrlRedacted()).Msg("NATS reconnected") }),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			ev := log.Error().Err(err)
			if s != nil {
				ev = ev.Str("subject", s.Subject)
			}
			ev.Msg("NATS async error")
		}))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", a.natsURL, err)
	}
	return nc, nil
}

// startConsumers runs the projections, the lockout saga and the alert
// publisher on their durable consumers.
func (a *app) startConsumers(ctx context.Context, cfg config, svc *handlers.Service) error {
	ccfg := consume.DefaultConfig()
	ccfg.DeadLetterReplicas = cfg.Replicas
	var n atomic.Int32 // connections are made while handlers are added; counting safely costs nothing
	r, err := consume.NewRouter(ccfg, func() (*nats.Conn, error) {
		return a.connect(fmt.Sprintf("enrollgate-consumer-%d", n.Add(1)))
	}, a.auth, a.log)
	if err != nil {
		return err
	}
	a.router = r
	publisher, err := alerts.NewPublisher(a.js)
	if err != nil {
		return err
	}
	if err := a.proj.Register(r, a.projections); err != nil {
		return err
	}
	if err := r.AddHandler(handlers.LockoutSagaDurable, handlers.NewLockoutSaga(svc).Handle, consume.OnlyTypes(handlers.LockoutSagaEvents...)); err != nil {
		return err
	}
	// The one durable shared by the replicas raises the tampering alerts.
	if err := r.AddHandler(alerts.Durable, publisher.Handle, consume.OnlyTypes(alerts.Events...), consume.OnForged(publisher.Tampered)); err != nil {
		return err
	}
	a.routerWG, err = r.Start(context.WithoutCancel(ctx), 30*time.Second)
	return err
}

func (a *app) startHTTP(cfg config, svc *handlers.Service, tokens *auth.Store) error {
	hcfg := httpapi.DefaultConfig()
	api, err := httpapi.New(hcfg, httpapi.Deps{Commands: svc, Auth: tokens, Reads: projectorReads{a.proj},
		Clock: handlers.SystemClock{}, Ready: a.ready}, a.log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP listen: %w", err)
	}
	a.httpAddr = ln.Addr()
	a.http = hcfg.NewServer(cfg.HTTPAddr, api)
	a.httpErr = make(chan error, 1)
	go func() { a.httpErr <- a.http.Serve(ln) }()
	return nil
}

// ready is /readyz: NATS connected, the streams present, the projections
// caught up with the stream.
func (a *app) ready(ctx context.Context) error {
	if !a.nc.IsConnected() {
		return errors.New("NATS not connected")
	}
	for _, name := range []string{eventstore.StreamName, alerts.StreamName} {
		if _, err := a.js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	lag, err := a.router.Pending(ctx, a.projections)
	if err != nil {
		return fmt.Errorf("projection lag: %w", err)
	}
	if lag > 0 {
		return fmt.Errorf("projections %d events behind", lag)
	}
	return nil
}

// Close stops the service in order: stop accepting and finish in-flight
// requests, stop the verify endpoint, close the consumers, close the read
// model, drain the connection, shut the server down.
func (a *app) Close() error {
	var errs []error
	if a.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := a.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("HTTP shutdown: %w", err))
		}
		cancel()
		if err := <-a.httpErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if a.micro != nil {
		if err := a.micro.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("verify endpoint: %w", err))
		}
	}
	if a.router != nil {
		if err := a.router.Close(); err != nil {
			errs = append(errs, fmt.Errorf("consumers: %w", err))
		}
		if a.routerWG != nil {
			<-a.routerWG
		}
	}
	if a.proj != nil {
		if err := a.proj.Store().Close(); err != nil {
			errs = append(errs, fmt.Errorf("read model: %w", err))
		}
	}
	if a.nc != nil {
		if err := a.nc.Drain(); err != nil {
			a.nc.Close()
		}
	}
	if a.ns != nil {
		a.ns.Shutdown()
		a.ns.WaitForShutdown()
	}
	if len(errs) == 0 {
		a.log.Info().Msg("stopped")
	}
	return errors.Join(errs...)
}

// projectorReads serves the HTTP reads from the projector's current store, so
// that a store swapped in by a rebuild is read at once and a min_seq wait
// follows the swap.
type projectorReads struct{ p *projector.Projector }

func (r projectorReads) WaitFor(ctx context.Context, seq uint64) error { return r.p.WaitFor(ctx, seq) }
func (r projectorReads) LastApplied() uint64                           { return r.p.Store().LastApplied() }
func (r projectorReads) State(site string, now time.Time) (projections.StateDoc, bool) {
	return r.p.Store().State(site, now)
}
func (r projectorReads) States(now time.Time, keep func(string) bool) []projections.StateDoc {
	return r.p.Store().States(now, keep)
}
func (r projectorReads) Audit(site string, before uint64, limit int) ([]projections.AuditEntry, uint64, error) {
	return r.p.Store().Audit(site, before, limit)
}
func (r projectorReads) Attempts(site string, o projections.Outcome, limit int) ([]projections.AttemptEntry, error) {
	return r.p.Store().Attempts(site, o, limit)
}

func logReplay(log zerolog.Logger, msg string, r projector.Report) {
	ev := log.Info()
	if len(r.Poison) > 0 || r.Rebuilt {
		ev = log.Warn()
	}
	if r.RebuildReason != nil {
		ev = ev.AnErr("rebuild_reason", r.RebuildReason)
	}
	if r.Stopped != nil {
		ev = log.Error().Uint64("stopped_at_seq", r.Stopped.Seq).Str("stopped_reason", r.Stopped.Reason)
		msg += ": stopped at an event of a newer version; upgrade this replica"
	}
	ev.Uint64("from_seq", r.From).Uint64("to_seq", r.To).Uint64("applied", r.Applied).
		Int("poison", len(r.Poison)).Bool("rebuilt", r.Rebuilt).Str("elapsed", r.Elapsed.String()).Msg(msg)
}

// semver is the version micro reports: it must be SemVer.
func semver() string {
	if version == "dev" {
		return verifyapi.DefaultVersion
	}
	return version
}
