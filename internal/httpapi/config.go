package httpapi

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Config tunes the HTTP API and the server that runs it.
type Config struct {
	// MaxBodyBytes bounds a request body; a larger one gets 413.
	MaxBodyBytes int64
	// RequestTimeout bounds the work of one request: its context is
	// cancelled after it, and the request answers 504.
	RequestTimeout time.Duration
	// ReadyTimeout bounds the readiness check of GET /readyz.
	ReadyTimeout time.Duration
	// MinSeqTimeout bounds how long a read given ?min_seq=N waits for the
	// read model to apply N before it answers 503 not_caught_up. It must be
	// below RequestTimeout, so that the wait, not the request, times out.
	MinSeqTimeout time.Duration

	// Server timeouts (see NewServer): they keep slow or idle clients from
	// holding connections.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// MetricsPublic serves GET /metrics without a token; otherwise it needs
	// an admin or auditor token (a Prometheus bearer_token).
	MetricsPublic bool
	// TLS, when set, is the server's TLS configuration (at least TLS 1.2):
	// run the server with ServeTLS(ln, "", ""). Nil: plain HTTP.
	TLS *tls.Config
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:      16 << 10,
		RequestTimeout:    10 * time.Second,
		ReadyTimeout:      2 * time.Second,
		MinSeqTimeout:     2 * time.Second,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
	}
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = d.ReadyTimeout
	}
	if c.MinSeqTimeout == 0 {
		// Below the request timeout even when only that one was lowered.
		c.MinSeqTimeout = min(d.MinSeqTimeout, c.RequestTimeout/2)
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = d.ReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = d.MaxHeaderBytes
	}
	return c
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBodyBytes < 1<<10 || c.MaxBodyBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("httpapi: max body bytes must be 1 KiB to 1 MiB, got %d", c.MaxBodyBytes))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"request timeout", c.RequestTimeout}, {"ready timeout", c.ReadyTimeout}, {"min_seq timeout", c.MinSeqTimeout},
		{"read header timeout", c.ReadHeaderTimeout}, {"read timeout", c.ReadTimeout},
		{"write timeout", c.WriteTimeout}, {"idle timeout", c.IdleTimeout},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("httpapi: %s must be positive, got %s", d.name, d.v))
		}
	}
	if c.WriteTimeout > 0 && c.RequestTimeout >= c.WriteTimeout {
		// Otherwise the connection is cut before the handler can answer 504.
		errs = append(errs, fmt.Errorf("httpapi: request timeout (%s) must be below write timeout (%s)", c.RequestTimeout, c.WriteTimeout))
	}
	if c.MinSeqTimeout > 0 && c.RequestTimeout > 0 && c.MinSeqTimeout >= c.RequestTimeout {
		// Otherwise a lagging read model answers 504 timeout, not 503
		// not_caught_up with its Retry-After.
		errs = append(errs, fmt.Errorf("httpapi: min_seq timeout (%s) must be below request timeout (%s)", c.MinSeqTimeout, c.RequestTimeout))
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
		errs = append(errs, errors.New("httpapi: TLS needs a certificate"))
	}
	if c.MaxHeaderBytes < 4<<10 {
		errs = append(errs, fmt.Errorf("httpapi: max header bytes must be at least 4 KiB, got %d", c.MaxHeaderBytes))
	}
	return errors.Join(errs...)
}

// NewServer returns an http.Server for h on addr with the configured
// timeouts and TLS. The caller runs it (Serve, or ServeTLS(ln, "", "") with
// TLS) and shuts it down.
func (c Config) NewServer(addr string, h http.Handler) *http.Server {
	var tc *tls.Config
	if c.TLS != nil {
		tc = c.TLS.Clone()
		tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	}
	return &http.Server{
		TLSConfig:         tc,
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
	}
}
