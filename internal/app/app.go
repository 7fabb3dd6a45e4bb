package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	"github.com/enrollgate/enrollgate/internal/metrics"
	"github.com/enrollgate/enrollgate/internal/natsserver"
	"github.com/enrollgate/enrollgate/internal/projector"
	"github.com/enrollgate/enrollgate/internal/readstore"
	"github.com/enrollgate/enrollgate/internal/secrets"
	"github.com/enrollgate/enrollgate/internal/startup"
	"github.com/enrollgate/enrollgate/internal/verifyapi"
	"github.com/enrollgate/enrollgate/projections"
)

// App is the running service: every component, so that Close can stop them
// in order.
type App struct {
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
	// clientURL is where frontends and security tooling connect: the
	// embedded server, or this replica's edge of the cluster; empty when
	// clients connect to the cluster themselves.
	clientURL string
	natsAuth  nats.Option        // how the service's connections log in
	access    *natsserver.Access // nil with --nats-url
	tokens    *auth.Store
	tokenSync sync.Mutex // one Access.Sync at a time
	// stopTokens ends the token watcher; tokensDone is closed when it has.
	stopTokens chan struct{}
	tokensDone chan struct{}
	lock       *os.File // the data dir's lock, held until Close
	metrics    *metrics.Metrics
	// projections is the durable consumer of this instance's read model.
	projections string
	auth        *eventstore.Authenticator
	keys        keyWatch // the keys file's watcher and the key registry
	svc         *handlers.Service
	keeper      *secrets.Keeper
}

// Start wires and starts the service. On error, whatever was started is
// stopped again.
func Start(ctx context.Context, cfg Config, log zerolog.Logger) (_ *App, err error) {
	a := &App{log: log}
	defer func() {
		if err != nil {
			_ = a.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if a.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	instance, err := instanceID(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.projections = projector.Durable(instance)
	// The stored tokens join once NATS is up (shareTokens); until then the
	// embedded server's access control knows the bootstrap tokens only.
	tokens, err := auth.Open(auth.Config{AdminToken: cfg.AdminToken, AdminEmail: cfg.AdminEmail, EnrollmentToken: cfg.EnrollmentToken})
	if err != nil {
		return nil, err
	}
	if err := a.connectNATS(ctx, cfg, instance, tokens); err != nil {
		return nil, err
	}

	// What the start creates on JetStream is retried until this deadline:
	// a cluster that is just forming answers late or not at all.
	sctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	esCfg := eventstore.DefaultConfig()
	esCfg.Replicas = cfg.Replicas
	var stream jetstream.Stream
	if err := startup.Retry(sctx, log, "ensure stream "+eventstore.StreamName, func(ctx context.Context) (err error) {
		stream, err = eventstore.EnsureStream(ctx, a.js, esCfg)
		return err
	}); err != nil {
		return nil, err
	}
	keeper, err := secrets.Open(secrets.Config{File: cfg.KeysFile, Dir: cfg.DataDir, MACKey: cfg.MACKey, SealKey: cfg.SealKey})
	if err != nil {
		return nil, err
	}
	// Signs every append, and tells the service's events from forgeries
	// for the write side, the consumers and the replays alike.
	a.auth, err = eventstore.NewAuthenticator(keeper, stream)
	if err != nil {
		return nil, err
	}
	// Before anything is appended: every key the log names is here.
	if err := a.checkKeys(ctx, sctx, cfg, keeper, instance); err != nil {
		return nil, err
	}
	store, err := eventstore.New(a.js, stream, esCfg, a.auth)
	if err != nil {
		return nil, err
	}
	if err := startup.Retry(sctx, log, "ensure stream "+alerts.StreamName, func(ctx context.Context) error {
		return alerts.EnsureStream(ctx, a.js, cfg.Replicas)
	}); err != nil {
		return nil, err
	}
	a.metrics = metrics.New(cfg.Version, a.metricsProbes())
	hcfg := handlers.DefaultConfig()
	hcfg.Policy = cfg.Policy
	var es handlers.EventStore = store
	if cfg.WrapStore != nil {
		es = cfg.WrapStore(es)
	}
	svc, err := handlers.NewService(hcfg, a.metrics.Store(es), keeper, handlers.SystemClock{}, handlers.NewULIDs())
	if err != nil {
		return nil, err
	}
	a.svc, a.keeper = svc, keeper
	if err := a.shareTokens(sctx, cfg, tokens); err != nil {
		return nil, err
	}
	if err := a.watchTokens(ctx, tokens); err != nil {
		return nil, err
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
	if a.micro, err = verifyapi.Start(a.nc, a.metrics.Verify(svc, metrics.NATS), verifyapi.Config{Version: cfg.Version}, log); err != nil {
		return nil, err
	}
	if err := a.startHTTP(cfg, svc, tokens); err != nil {
		return nil, err
	}
	log.Info().Str("http_addr", a.httpAddr.String()).Str("nats_url", redactURL(a.natsURL)).Str("nats_client_url", a.clientURL).
		Bool("tls", cfg.TLSCert != "").Int("max_failed_attempts", cfg.Policy.MaxFailedAttempts).Str("failure_window", cfg.Policy.FailureWindow.String()).
		Int("max_failed_attempts_per_source", cfg.Policy.SourceLimit()).Str("source_window", cfg.Policy.SourceWindow.String()).
		Msg("enrollgate ready")
	return a, nil
}

// connectNATS starts the embedded server unless --nats-url is set, and
// connects the service's main connection. With --nats-url and
// --nats-leaf-url it starts the clients' edge server too, joined to the
// cluster as a leaf node.
func (a *App) connectNATS(ctx context.Context, cfg Config, instance string, tokens *auth.Store) error {
	a.natsURL = cfg.NATSURL
	a.natsAuth = cfg.natsClientOptions()
	if a.natsURL == "" {
		ns, access, login, err := startEmbedded(cfg, embeddedServer(cfg), tokens, a.log)
		if err != nil {
			return err
		}
		a.ns, a.access, a.natsURL, a.natsAuth, a.clientURL = ns, access, ns.ClientURL(), login, ns.ClientURL()
	}
	nc, err := a.connect("enrollgate")
	if err != nil {
		return err
	}
	a.nc = nc
	if a.js, err = jetstream.New(nc); err != nil {
		return err
	}
	if a.ns != nil || cfg.NATSLeafURL == "" {
		return nil
	}
	edge, err := a.edgeServer(ctx, cfg, instance)
	if err != nil {
		return err
	}
	ns, access, _, err := startEmbedded(cfg, edge, tokens, a.log)
	if err != nil {
		return fmt.Errorf("clients' NATS edge: %w", err)
	}
	a.ns, a.access, a.clientURL = ns, access, ns.ClientURL()
	return nil
}

// embeddedServer is the embedded server that holds the streams.
func embeddedServer(cfg Config) natsserver.Config {
	return natsserver.Config{Listen: cfg.NATSListen, StoreDir: filepath.Join(cfg.DataDir, "jetstream"), SyncAlways: cfg.SyncAlways}
}

// edgeServer is the clients' server of a replica on a cluster: it keeps
// only the token accounts' alert copies, and reaches the cluster's streams
// through the JetStream domain the cluster reports.
func (a *App) edgeServer(ctx context.Context, cfg Config, instance string) (natsserver.Config, error) {
	info, err := a.js.AccountInfo(ctx)
	if err != nil {
		return natsserver.Config{}, fmt.Errorf("cluster account info: %w", err)
	}
	hub := &natsserver.Hub{Domain: info.Domain, Credentials: cfg.NATSCreds}
	for _, raw := range strings.Split(cfg.NATSLeafURL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Host == "" {
			return natsserver.Config{}, fmt.Errorf("--nats-leaf-url: %q is not a URL such as nats-leaf://host:7422", raw)
		}
		hub.URLs = append(hub.URLs, u)
	}
	// The leaf logs in as the service does.
	hub.User, hub.Password = cfg.NATSUser, cfg.NATSPassword
	if u, err := url.Parse(strings.Split(cfg.NATSURL, ",")[0]); err == nil && u.User != nil && hub.User == "" {
		hub.User = u.User.Username()
		hub.Password, _ = u.User.Password()
	}
	if cfg.NATSCA != "" {
		pem, err := os.ReadFile(cfg.NATSCA)
		if err != nil {
			return natsserver.Config{}, fmt.Errorf("--nats-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return natsserver.Config{}, fmt.Errorf("--nats-ca %s: no PEM certificate", cfg.NATSCA)
		}
		hub.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return natsserver.Config{Listen: cfg.NATSListen, StoreDir: filepath.Join(cfg.DataDir, "edge-jetstream"),
		ServerName: "enrollgate-" + instance, Hub: hub}, nil
}

// startEmbedded starts an embedded server (the one holding the streams, or
// a cluster's edge) with access control: the service logs in with the
// configured password, or one made for this run; every client needs an API
// token of tokens, and sees only what its role and sites allow
// (natsserver.Access).
func startEmbedded(cfg Config, ncfg natsserver.Config, tokens *auth.Store, log zerolog.Logger) (*server.Server, *natsserver.Access, nats.Option, error) {
	password := cfg.NATSServicePassword
	if password == "" {
		pw := make([]byte, 24)
		if _, err := rand.Read(pw); err != nil {
			return nil, nil, nil, fmt.Errorf("service password: %w", err)
		}
		password = base64.RawURLEncoding.EncodeToString(pw)
	}
	tc, err := serverTLS(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	access, err := natsserver.NewAccess(password, tokens, log.With().Str("component", "nats-access").Logger())
	if err != nil {
		return nil, nil, nil, err
	}
	ncfg.Access, ncfg.TLS = access, tc
	ns, err := natsserver.Start(ncfg, log)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("embedded NATS: %w", err)
	}
	login := nats.UserInfo(natsserver.ServiceUser, password)
	if tc != nil {
		login = inProcess(ns, login)
	}
	return ns, access, login, nil
}

// watchTokens gives the embedded server's accounts the current tokens, and
// keeps them in step with the token bucket until Close: each change a
// replica makes reaches this one's store through its watch (HTTP follows at
// once), and is applied to NATS here.
func (a *App) watchTokens(ctx context.Context, tokens *auth.Store) error {
	if a.access == nil {
		return nil
	}
	if err := a.applyTokens(ctx); err != nil {
		return err
	}
	stop, done := make(chan struct{}), make(chan struct{})
	a.stopTokens, a.tokensDone = stop, done
	go func() {
		defer close(done)
		var retry <-chan time.Time // set after a failed Sync: no change may come to try again
		for {
			select {
			case <-stop:
				return
			case <-tokens.Changes():
			case <-retry:
			}
			retry = nil
			syncCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := a.applyTokens(syncCtx); err != nil {
				a.log.Error().Err(err).Msg("apply changed tokens to NATS; trying again in a second")
				retry = time.After(time.Second)
			} else {
				a.log.Info().Int("tokens", len(tokens.List())).Msg("tokens applied to NATS")
			}
			cancel()
		}
	}()
	return nil
}

// connect opens a connection that reconnects forever and logs its changes.
func (a *App) connect(name string) (*nats.Conn, error) {
	log := a.log.With().Str("conn", name).Logger()
	nc, err := nats.Connect(a.natsURL, nats.Name(name), a.natsAuth, nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if !c.IsClosed() { // a Close is no news; a lost connection is
				log.Warn().Err(err).Msg("NATS disconnected")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info().Str("url", redactURL(c.ConnectedUrl())).Msg("NATS reconnected") }),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			ev := log.Error().Err(err)
			if s != nil {
				ev = ev.Str("subject", s.Subject)
			}
			ev.Msg("NATS async error")
		}))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(a.natsURL), redactErr(err))
	}
	return nc, nil
}

// startConsumers runs the projections (an ordered consumer from the read
// model's checkpoint), and the lockout saga and the alert publisher on
// their durable consumers, shared by the replicas.
func (a *App) startConsumers(ctx context.Context, cfg Config, svc *handlers.Service) error {
	ccfg := consume.DefaultConfig()
	ccfg.DeadLetterReplicas = cfg.Replicas
	ccfg.StartTimeout = cfg.StartTimeout
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
	if err := a.proj.Register(r, a.js, a.projections, projector.Config{Auth: a.auth, Log: a.log}); err != nil {
		return err
	}
	if err := r.AddHandler(handlers.LockoutSagaDurable, handlers.NewLockoutSaga(svc).Handle, consume.OnlyTypes(handlers.LockoutSagaEvents...)); err != nil {
		return err
	}
	// The one durable shared by the replicas raises the tampering alerts.
	tampered := func(ctx context.Context, f consume.Forged) error {
		if err := publisher.Tampered(ctx, f); err != nil {
			return err
		}
		a.metrics.AlertPublished(alerts.KindEventLogTampered)
		return nil
	}
	if err := r.AddHandler(alerts.Durable, consume.Handler(a.metrics.AlertPublisher(metrics.Handler(publisher.Handle), alerts.KindOf, alerts.KindPasscodeLockout)),
		consume.OnlyTypes(alerts.Events...), consume.OnForged(tampered)); err != nil {
		return err
	}
	a.routerWG, err = r.Start(context.WithoutCancel(ctx), 30*time.Second)
	return err
}

func (a *App) startHTTP(cfg Config, svc *handlers.Service, tokens *auth.Store) error {
	hcfg := httpapi.DefaultConfig()
	tc, err := serverTLS(cfg)
	if err != nil {
		return err
	}
	hcfg.TLS = tc
	hcfg.MetricsPublic = cfg.MetricsPublic
	commands := httpCommands{Service: svc, verify: a.metrics.Verify(svc, metrics.HTTP)}
	api, err := httpapi.New(hcfg, httpapi.Deps{Commands: commands, Auth: tokens, Tokens: replicaTokens{tokens, a}, Reads: projectorReads{a.proj},
		Clock: handlers.SystemClock{}, Ready: a.ready, Metrics: a.metrics.Handler()}, a.log)
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
	go func() {
		if tc != nil {
			a.httpErr <- a.http.ServeTLS(ln, "", "")
			return
		}
		a.httpErr <- a.http.Serve(ln)
	}()
	return nil
}

// sharedLag is how old the oldest event the lockout saga or the alert
// publisher has not acknowledged may be before /readyz reports it: above the
// failover bound (DESIGN "Replicas"), so that a failover under way does not
// make every replica unready at once.
const sharedLag = 10 * time.Second

// ready is /readyz: NATS connected, the streams present, the projections
// caught up with the stream, and neither the lockout saga nor the alert
// publisher (durables shared by the replicas) fallen behind.
func (a *App) ready(ctx context.Context) error {
	if !a.nc.IsConnected() {
		return errors.New("NATS not connected")
	}
	for _, name := range []string{eventstore.StreamName, alerts.StreamName} {
		if _, err := a.js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	if err := a.keys.ready(); err != nil {
		return err
	}
	lag, err := a.proj.Lag(ctx)
	if err != nil {
		return fmt.Errorf("projection lag: %w", err)
	}
	if lag > 0 {
		return fmt.Errorf("projections %d events behind", lag)
	}
	for _, d := range []string{handlers.LockoutSagaDurable, alerts.Durable} {
		b, err := a.router.Backlog(ctx, d)
		if err != nil {
			return fmt.Errorf("%s lag: %w", d, err)
		}
		if b.Pending > 0 && b.Age > sharedLag {
			return fmt.Errorf("%s %d events behind, the oldest stored %s ago: lockout disables or alerts are late",
				d, b.Pending, b.Age.Round(time.Second))
		}
	}
	return nil
}

// Close stops the service in order: stop accepting and finish in-flight
// requests, stop the verify endpoint, close the consumers, close the read
// model, drain the connection, shut the server down.
func (a *App) Close() error {
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
	if a.stopTokens != nil {
		close(a.stopTokens)
		<-a.tokensDone
	}
	if a.tokens != nil {
		_ = a.tokens.Close() // writes the last uses not yet in the bucket
	}
	a.keys.stop()
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
	if a.lock != nil {
		a.lock.Close() // releases the flock
	}
	if len(errs) == 0 {
		a.log.Info().Msg("stopped")
	}
	return errors.Join(errs...)
}

// httpCommands are the HTTP API's commands, with its verifies counted.
type httpCommands struct {
	*handlers.Service
	verify metrics.Verifier
}

func (c httpCommands) VerifyPasscode(ctx context.Context, cmd handlers.VerifyPasscode) (handlers.VerifyResult, error) {
	return c.verify.VerifyPasscode(ctx, cmd)
}

// metricsProbes read, at each scrape, the consumers' lag and the read
// model's sequence from what start has made by then.
func (a *App) metricsProbes() metrics.Probes {
	return metrics.Probes{
		Pending: func(ctx context.Context, durable string) (uint64, error) {
			if a.router == nil {
				return 0, errors.New("consumers not started")
			}
			if durable == a.projections {
				return a.proj.Lag(ctx)
			}
			return a.router.Pending(ctx, durable)
		},
		Consumers: map[string]string{"lockout_saga": handlers.LockoutSagaDurable, "alert_publisher": alerts.Durable,
			"projections": a.projections},
		ReadModelSeq: func() uint64 {
			if a.proj == nil {
				return 0
			}
			return a.proj.Store().LastApplied()
		},
	}
}

// projectorReads serves the HTTP reads from the projector's store.
type projectorReads struct{ p *projector.Projector }

func (r projectorReads) WaitFor(ctx context.Context, seq uint64) error {
	return r.p.Store().WaitFor(ctx, seq)
}
func (r projectorReads) LastApplied() uint64 { return r.p.Store().LastApplied() }
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
