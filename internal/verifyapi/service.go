package verifyapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/apierror"
	"github.com/enrollgate/enrollgate/internal/verifywire"
)

// Names of the service on the wire. WARNING: frontends and `nats micro`
// address these; renaming breaks them.
const (
	ServiceName  = "enrollgate"
	EndpointName = "verify"
	Subject      = verifywire.SubjectPrefix + "*"
)

// Defaults of Config.
const (
	DefaultVersion       = "0.0.0"
	DefaultTimeout       = 5 * time.Second
	DefaultMaxConcurrent = 256
	DefaultMaxPerSite    = 32
)

// maxDescription bounds the Nats-Service-Error header.
const maxDescription = 512

// Verifier runs a verify command; *handlers.Service is one.
type Verifier interface {
	VerifyPasscode(ctx context.Context, cmd handlers.VerifyPasscode) (handlers.VerifyResult, error)
}

// Config of the endpoint. Zero fields take the defaults.
type Config struct {
	// Version is the service's SemVer version, shown by `nats micro ls`.
	Version string
	// Timeout bounds the handling of one request.
	Timeout time.Duration
	// MaxConcurrent bounds the requests handled at once; when all are busy,
	// further requests wait in the subscription's buffer (backpressure).
	MaxConcurrent int
	// MaxPerSite bounds the requests of one site handled at once; beyond it a
	// request is answered 503 at once, so that one flooded site cannot take
	// every slot from the others.
	MaxPerSite int
	// QueueGroup is the queue group replicas share; empty: micro's "q".
	QueueGroup string
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.MaxPerSite == 0 {
		c.MaxPerSite = DefaultMaxPerSite
	}
	return c
}

// Validate reports every problem of c (after defaults).
func (c Config) Validate() error {
	var errs []error
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("verify timeout must be positive, got %s", c.Timeout))
	}
	if c.MaxConcurrent < 1 {
		errs = append(errs, fmt.Errorf("verify max concurrent must be at least 1, got %d", c.MaxConcurrent))
	}
	if c.MaxPerSite < 1 || c.MaxPerSite > c.MaxConcurrent {
		errs = append(errs, fmt.Errorf("verify max per site must be 1 to max concurrent (%d), got %d", c.MaxConcurrent, c.MaxPerSite))
	}
	return errors.Join(errs...)
}

// Stats are the endpoint's own counters, shown as the endpoint's data in
// `nats micro stats`. micro counts only what the subscription goroutine
// answers; verdicts and failures are answered from worker goroutines.
type Stats struct {
	Verdicts  int64 `json:"verdicts"`
	Malformed int64 `json:"malformed"`
	Busy      int64 `json:"busy"`
	Failed    int64 `json:"failed"`
	InFlight  int64 `json:"in_flight"`
}

// endpoint handles verify requests.
//
// Concurrency: micro calls the handler on the subscription's single
// goroutine, and the handlers serialise commands per site, so handling a
// request there would make every site wait for the slowest one. The handler
// therefore decodes and validates on the subscription goroutine (cheap, and a
// malformed request is refused without a worker), then runs the command on a
// goroutine of its own. A semaphore of MaxConcurrent bounds the goroutines;
// acquiring it blocks the subscription when all are busy, so overload backs
// up into the NATS buffer instead of into unbounded goroutines. MaxPerSite
// keeps one hot site from holding every slot. A goroutine per request rather
// than a fixed pool: no queue to size, and idle costs nothing.
//
// Worker goroutines answer by publishing to the reply subject themselves:
// micro's Request records the outcome in a field it reads after the handler
// returns, so calling it from another goroutine would race.
type endpoint struct {
	nc  *nats.Conn
	v   Verifier
	cfg Config
	log zerolog.Logger
	sem chan struct{}

	mu       sync.Mutex
	perSite  map[events.Site]int
	inFlight int
	stopping bool
	idle     chan struct{} // closed when stopping and nothing is in flight

	verdicts, malformed, busy, failed atomic.Int64
}

// service is the micro.Service whose Stop also waits for in-flight requests.
type service struct {
	micro.Service
	ep *endpoint
}

// Start adds the verify service on nc. Stop the returned service to stop
// taking requests: Stop waits (at most the request timeout) until every
// request in flight has been answered.
func Start(nc *nats.Conn, v Verifier, cfg Config, log zerolog.Logger) (micro.Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil || v == nil {
		return nil, errors.New("verifyapi: a connection and a verifier are required")
	}
	log = log.With().Str("component", "verifyapi").Logger()
	ep := &endpoint{nc: nc, v: v, cfg: cfg, log: log, sem: make(chan struct{}, cfg.MaxConcurrent),
		perSite: map[events.Site]int{}, idle: make(chan struct{})}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        ServiceName,
		Version:     cfg.Version,
		Description: "enrollgate company passcode verification",
		QueueGroup:  cfg.QueueGroup,
		StatsHandler: func(*micro.Endpoint) any {
			return ep.stats()
		},
		ErrorHandler: func(_ micro.Service, e *micro.NATSError) {
			// A slow consumer here means requests were dropped unanswered.
			log.Error().Str("subject", e.Subject).Str("error", e.Description).Msg("verify subscription error")
		},
	})
	if err != nil {
		return nil, fmt.Errorf("verifyapi: add service: %w", err)
	}
	if err := svc.AddEndpoint(EndpointName, micro.HandlerFunc(ep.handle),
		micro.WithEndpointSubject(Subject),
		micro.WithEndpointMetadata(map[string]string{"format": "application/json", "subject": verifywire.SubjectPrefix + "<site>"}),
	); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("verifyapi: add endpoint: %w", err)
	}
	// Return once the server has the endpoint's subscription, so that a
	// request sent right after Start (from any connection) is answered, not
	// refused with "no responders".
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("verifyapi: register endpoint: %w", err)
	}
	return &service{Service: svc, ep: ep}, nil
}

// Stop stops taking requests and waits until those in flight are answered.
func (s *service) Stop() error {
	err := s.Service.Stop()
	s.ep.mu.Lock()
	if !s.ep.stopping {
		s.ep.stopping = true
		if s.ep.inFlight == 0 {
			close(s.ep.idle)
		}
	}
	s.ep.mu.Unlock()
	select {
	case <-s.ep.idle:
	case <-time.After(s.ep.cfg.Timeout + time.Second):
		return errors.Join(err, errors.New("verifyapi: requests still in flight after the timeout"))
	}
	return err
}

func (ep *endpoint) stats() Stats {
	ep.mu.Lock()
	inFlight := ep.inFlight
	ep.mu.Unlock()
	return Stats{Verdicts: ep.verdicts.Load(), Malformed: ep.malformed.Load(), Busy: ep.busy.Load(),
		Failed: ep.failed.Load(), InFlight: int64(inFlight)}
}

// handle runs on the subscription goroutine.
func (ep *endpoint) handle(req micro.Request) {
	if req.Reply() == "" {
		// Nobody could receive the verdict: not an attempt.
		ep.malformed.Add(1)
		return
	}
	site, err := events.ParseSite(req.Subject()[strings.LastIndexByte(req.Subject(), '.')+1:])
	if err != nil {
		ep.malformed.Add(1)
		ep.respondError(req, fmt.Errorf("%w: %w", domain.ErrInvalid, err))
		return
	}
	cmd, err := verifywire.DecodeRequest(site, req.Data())
	if err != nil {
		ep.malformed.Add(1)
		ep.log.Debug().Str("site", string(site)).Err(err).Msg("malformed verify request")
		ep.respondError(req, err)
		return
	}
	if !ep.admit(site) {
		ep.busy.Add(1)
		ep.respondError(req, errTooBusy)
		return
	}
	ep.sem <- struct{}{} // blocks the subscription when all workers are busy
	reply := req.Reply()
	go func() {
		defer func() {
			<-ep.sem
			ep.done(site)
		}()
		ep.verify(cmd, reply)
	}()
}

// admit counts a request of site in flight, unless the site is at its limit
// or the service is stopping.
func (ep *endpoint) admit(site events.Site) bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.stopping || ep.perSite[site] >= ep.cfg.MaxPerSite {
		return false
	}
	ep.perSite[site]++
	ep.inFlight++
	return true
}

func (ep *endpoint) done(site events.Site) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.perSite[site]--; ep.perSite[site] == 0 {
		delete(ep.perSite, site)
	}
	ep.inFlight--
	if ep.stopping && ep.inFlight == 0 {
		close(ep.idle)
	}
}

// verify runs the command on a worker goroutine and answers reply.
func (ep *endpoint) verify(cmd handlers.VerifyPasscode, reply string) {
	// Not derived from the connection or the service: once a command has
	// started, it finishes (or times out) and its verdict is sent, even if
	// the service is being stopped.
	ctx, cancel := context.WithTimeout(context.Background(), ep.cfg.Timeout)
	defer cancel()
	res, err := ep.v.VerifyPasscode(ctx, cmd)
	if err == nil {
		var data []byte
		if data, err = json.Marshal(verifywire.ReplyFromResult(res)); err == nil { // it cannot fail with Reply's field types
			ep.verdicts.Add(1)
			ep.publish(&nats.Msg{Subject: reply, Data: data, Header: nats.Header{"Content-Type": []string{"application/json"}}})
			return
		}
	}
	p := apierror.Of(ctx, err)
	if p.Class == apierror.BadRequest {
		ep.malformed.Add(1)
	} else {
		ep.failed.Add(1)
		// Logged once, here at the edge; cmd.Passcode formats as
		// [REDACTED] and err never holds it.
		ep.log.Error().Err(err).Str("site", string(cmd.Site)).Str("code", p.Code).Msg("verify failed")
	}
	code, desc := microError(p)
	ep.publish(&nats.Msg{Subject: reply, Header: nats.Header{micro.ErrorHeader: []string{desc}, micro.ErrorCodeHeader: []string{code}}})
}

// errTooBusy refuses a request over the site's or the service's limit.
var errTooBusy = &apierror.Error{Class: apierror.Unavailable, Code: apierror.CodeBusy,
	Detail: "too many verify requests in flight for this site or service stopping; retry"}

// microError is the micro error of p: the class's micro code, and a
// description that starts with the problem's code (the HTTP API's), so
// that a frontend tells an upgrade from a passing outage.
func microError(p apierror.Problem) (code, desc string) {
	return p.Class.MicroCode(), sanitize(p.Code + ": " + p.Detail)
}

func (ep *endpoint) publish(m *nats.Msg) {
	if err := ep.nc.PublishMsg(m); err != nil {
		ep.log.Warn().Err(err).Msg("send verify reply")
	}
}

// respondError answers on the subscription goroutine, through micro, so that
// micro's stats count it. Nothing has run yet: no deadline to tell apart.
func (ep *endpoint) respondError(req micro.Request, err error) {
	code, desc := microError(apierror.Of(context.Background(), err))
	if err := req.Error(code, desc, nil); err != nil {
		ep.log.Warn().Err(err).Msg("send verify error reply")
	}
}

// sanitize makes desc one header line: joined errors span several lines,
// and a header value must not.
func sanitize(desc string) string {
	desc = strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", "; ").Replace(desc)
	if len(desc) > maxDescription {
		cut := maxDescription
		for cut > 0 && !utf8.RuneStart(desc[cut]) {
			cut--
		}
		desc = desc[:cut] + "…"
	}
	return desc
}
