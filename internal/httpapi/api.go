package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/auth"
)

// Commands are the commands the write routes run; *handlers.Service
// implements them.
type Commands interface {
	GeneratePasscode(ctx context.Context, cmd handlers.GeneratePasscode) (handlers.GenerateResult, error)
	RevealPasscode(ctx context.Context, cmd handlers.RevealPasscode) (handlers.RevealResult, error)
	DisablePasscode(ctx context.Context, cmd handlers.DisablePasscode) (handlers.DisableResult, error)
	VerifyPasscode(ctx context.Context, cmd handlers.VerifyPasscode) (handlers.VerifyResult, error)
	ChangeLockoutPolicy(ctx context.Context, cmd handlers.ChangeLockoutPolicy) (handlers.ChangeLockoutPolicyResult, error)
}

// Authenticator resolves a bearer token; *auth.Store implements it.
type Authenticator interface {
	Authenticate(token string) (auth.Principal, bool)
}

// ReadyFunc reports why the service is not ready (NATS down, streams missing,
// projections behind), or nil when it is.
type ReadyFunc func(ctx context.Context) error

// Deps are what the API needs.
type Deps struct {
	Commands Commands
	Auth     Authenticator
	// Reads is the read model the query routes answer from (read.go).
	Reads ReadModel
	// Clock dates the state documents of reads (failures are counted in the
	// window that ends now); nil means the system clock.
	Clock handlers.Clock
	// Ready is the readiness check of GET /readyz; nil means always ready.
	Ready ReadyFunc
	// Metrics serves GET /metrics (Prometheus); nil: the route answers 404.
	Metrics http.Handler
}

// API is the HTTP API. It implements http.Handler.
type API struct {
	cfg     Config
	deps    Deps
	log     zerolog.Logger
	mux     *http.ServeMux
	handler http.Handler
}

// New returns the API. Zero fields of cfg take their defaults.
func New(cfg Config, deps Deps, log zerolog.Logger) (*API, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Commands == nil || deps.Auth == nil || deps.Reads == nil {
		return nil, errors.New("httpapi: Commands, Auth and Reads are required")
	}
	if deps.Clock == nil {
		deps.Clock = handlers.SystemClock{}
	}
	a := &API{cfg: cfg, deps: deps, log: log, mux: http.NewServeMux()}
	for _, rt := range a.routes() {
		if err := register(a.mux, rt); err != nil {
			return nil, err
		}
	}
	a.handler = a.withRequest(a.recoverPanics(a.withTimeout(http.HandlerFunc(a.dispatch))))
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// register adds a route to the mux, turning the mux's panic on a bad or
// conflicting pattern into an error.
func register(mux *http.ServeMux, rt route) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("httpapi: route %q: %v", rt.pattern, v)
		}
	}()
	mux.Handle(rt.pattern, rt.handler)
	return nil
}

// dispatch routes the request. ServeMux answers unknown routes and wrong
// methods in plain text; they are answered here as problem documents instead,
// after asking the mux which of the two it is (and the Allow header).
func (a *API) dispatch(w http.ResponseWriter, r *http.Request) {
	h, pattern := a.mux.Handler(r)
	if pattern != "" {
		a.mux.ServeHTTP(w, r)
		return
	}
	probe := &headerProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.header.Get("Allow"))
		a.writeProblem(w, r, errMethodNotAllowed)
		return
	}
	a.writeProblem(w, r, errNotFound)
}

// headerProbe records the status and headers of the mux's own not-found and
// method-not-allowed handlers, and drops their body.
type headerProbe struct {
	header http.Header
	status int
}

func (p *headerProbe) Header() http.Header         { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *headerProbe) WriteHeader(status int)      { p.status = status }
