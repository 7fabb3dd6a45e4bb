package app

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/handlers"
)

// Config is everything the service reads from flags and environment. Each
// flag has an environment variable; the flag wins.
type Config struct {
	HTTPAddr   string
	NATSURL    string
	NATSListen string
	NATSCreds  string
	// NATSLeafURL is the cluster's leaf node URLs: with NATSURL, the
	// replica's clients' server joins the cluster there.
	NATSLeafURL string
	// NATSUser and NATSPassword log the service in to --nats-url, so that
	// the password need not sit in the URL.
	NATSUser     string
	NATSPassword string
	// NATSCA is the CA file the service trusts for --nats-url.
	NATSCA string
	// TLSCert and TLSKey serve HTTP and the embedded server's client port
	// over TLS.
	TLSCert string
	TLSKey  string
	// NATSServicePassword is the embedded server's password for the service
	// user; empty: a random one per run.
	NATSServicePassword string
	DataDir             string
	Replicas            int
	SyncAlways          bool
	Policy              domain.Policy
	AdminToken          string
	AdminEmail          string
	EnrollmentToken     string
	MACKey              string
	SealKey             string
	// MetricsPublic serves /metrics without a token.
	MetricsPublic bool
	// KeysFile is a keys file the replicas share, instead of the data dir's.
	KeysFile string
	// StartTimeout bounds the retries of what the start creates on
	// JetStream (streams, consumers, the key registry).
	StartTimeout time.Duration
	LogLevel     string
	LogFormat    string
	// Version is the build's version, which micro and /metrics report.
	Version string
	// WrapStore, when set, wraps the event store the commands run on (not
	// a flag: the bench counts the store calls of a verify with it).
	WrapStore func(handlers.EventStore) handlers.EventStore
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("--http %q: %w", c.HTTPAddr, err))
	}
	if c.NATSLeafURL != "" && c.NATSURL == "" {
		errs = append(errs, errors.New("--nats-leaf-url needs --nats-url: it joins a cluster"))
	}
	if c.NATSURL == "" || c.NATSLeafURL != "" {
		if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			errs = append(errs, fmt.Errorf("--nats-listen %q: %w", c.NATSListen, err))
		}
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		errs = append(errs, fmt.Errorf("--replicas must be 1, 3 or 5, got %d", c.Replicas))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Policy.MaxFailedAttempts > 1 && c.Policy.MaxFailedPerSource >= c.Policy.MaxFailedAttempts {
		errs = append(errs, fmt.Errorf("--max-failed-attempts-per-source (%d) must be below --max-failed-attempts (%d), so that one source alone can never lock a site",
			c.Policy.MaxFailedPerSource, c.Policy.MaxFailedAttempts))
	}
	errs = append(errs, c.validateNATSClient()...)
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: give both or neither"))
	}
	if c.NATSServicePassword != "" && len(c.NATSServicePassword) < 16 {
		errs = append(errs, errors.New("--nats-service-password must be at least 16 characters"))
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		errs = append(errs, errors.New("--admin-token must be at least 16 characters"))
	}
	if c.EnrollmentToken != "" && len(c.EnrollmentToken) < 16 {
		errs = append(errs, errors.New("--enrollment-token must be at least 16 characters"))
	}
	if c.StartTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--start-timeout must be positive, got %s", c.StartTimeout))
	}
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level must be trace, debug, info, warn or error, got %q", c.LogLevel))
	}
	switch c.LogFormat {
	case "", "console", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format must be console or json, got %q", c.LogFormat))
	}
	return errors.Join(errs...)
}

// validateNATSClient checks how the service logs in to --nats-url.
func (c Config) validateNATSClient() []error {
	var errs []error
	if c.NATSURL == "" {
		for _, f := range []struct{ name, v string }{{"--nats-user", c.NATSUser}, {"--nats-password", c.NATSPassword}, {"--nats-ca", c.NATSCA}} {
			if f.v != "" {
				errs = append(errs, fmt.Errorf("%s applies to --nats-url (an external cluster); the embedded server needs none", f.name))
			}
		}
		return errs
	}
	switch {
	case c.NATSPassword != "" && c.NATSUser == "":
		errs = append(errs, errors.New("--nats-password needs --nats-user"))
	case c.NATSUser != "" && c.NATSPassword == "":
		errs = append(errs, errors.New("--nats-user needs --nats-password"))
	}
	if c.NATSUser != "" && c.NATSCreds != "" {
		errs = append(errs, errors.New("--nats-creds and --nats-user are two ways to log in: give one"))
	}
	if c.NATSUser != "" && strings.Contains(c.NATSURL, "@") {
		errs = append(errs, fmt.Errorf("--nats-url %s holds credentials and --nats-user is set: give them one way", redactURL(c.NATSURL)))
	}
	return errs
}

// natsClientOptions are how the service logs in to --nats-url and which CAs
// it trusts there.
func (c Config) natsClientOptions() nats.Option {
	return func(o *nats.Options) error {
		if c.NATSCreds != "" {
			if err := nats.UserCredentials(c.NATSCreds)(o); err != nil {
				return err
			}
		}
		if c.NATSUser != "" {
			if err := nats.UserInfo(c.NATSUser, c.NATSPassword)(o); err != nil {
				return err
			}
		}
		if c.NATSCA != "" {
			return nats.RootCAs(c.NATSCA)(o)
		}
		return nil
	}
}
