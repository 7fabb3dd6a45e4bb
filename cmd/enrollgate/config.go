package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/internal/startup"
)

// config is everything the service reads from flags and environment. Each
// flag has an environment variable; the flag wins.
type config struct {
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
}

// parseConfig reads args (without the subcommand) and the environment.
func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var envErrs []error
	str := func(p *string, flagName, env, def, usage string) {
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, flagName, def, usage+" ($"+env+")")
	}
	num := func(p *int, flagName, env string, def int, usage string) {
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("$%s: %q is not a whole number", env, v))
			}
			def = n
		}
		fs.IntVar(p, flagName, def, usage+" ($"+env+")")
	}
	dur := func(p *time.Duration, flagName, env string, def time.Duration, usage string) {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("$%s: %q is not a duration such as 1h or 15m", env, v))
			}
			def = d
		}
		fs.DurationVar(p, flagName, def, usage+" ($"+env+")")
	}
	boolean := func(p *bool, flagName, env string, usage string) {
		def := false
		if v := getenv(env); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("$%s: %q is not true or false", env, v))
			}
			def = b
		}
		fs.BoolVar(p, flagName, def, usage+" ($"+env+")")
	}
	// A secret's environment value is applied after parsing, not made the
	// flag's default: -h prints the defaults.
	var secrets []func(set map[string]bool)
	secret := func(p *string, flagName, env, usage string) {
		fs.StringVar(p, flagName, "", usage+" ($"+env+")")
		secrets = append(secrets, func(set map[string]bool) {
			if !set[flagName] {
				*p = getenv(env)
			}
		})
	}
	defaults := domain.DefaultPolicy()
	str(&c.HTTPAddr, "http", "ENROLLGATE_HTTP_ADDR", "127.0.0.1:8080", "HTTP listen address")
	str(&c.NATSURL, "nats-url", "ENROLLGATE_NATS_URL", "", "external NATS servers (comma-separated); empty starts an embedded JetStream server")
	str(&c.NATSLeafURL, "nats-leaf-url", "ENROLLGATE_NATS_LEAF_URL", "", "with --nats-url: the cluster's leaf node URLs (comma-separated); the clients' NATS server on --nats-listen joins the cluster there")
	str(&c.NATSCreds, "nats-creds", "ENROLLGATE_NATS_CREDS", "", "credentials file for --nats-url (NATS decentralised auth)")
	str(&c.NATSUser, "nats-user", "ENROLLGATE_NATS_USER", "", "user the service logs in to --nats-url with (with --nats-password)")
	secret(&c.NATSPassword, "nats-password", "ENROLLGATE_NATS_PASSWORD", "password of --nats-user")
	str(&c.NATSCA, "nats-ca", "ENROLLGATE_NATS_CA", "", "PEM file of the CAs the service trusts for --nats-url; empty: the system's")
	str(&c.TLSCert, "tls-cert", "ENROLLGATE_TLS_CERT", "", "PEM certificate (chain) that serves HTTP and the embedded NATS server over TLS (with --tls-key)")
	str(&c.TLSKey, "tls-key", "ENROLLGATE_TLS_KEY", "", "PEM private key of --tls-cert")
	secret(&c.NATSServicePassword, "nats-service-password", "ENROLLGATE_NATS_SERVICE_PASSWORD", "embedded server: password of the user \"enrollgate\" that may write and read every stream (for operators' tools); empty: random per run")
	str(&c.NATSListen, "nats-listen", "ENROLLGATE_NATS_LISTEN", "127.0.0.1:4222", "client address of the embedded NATS server")
	str(&c.DataDir, "data-dir", "ENROLLGATE_DATA_DIR", "./data", "embedded JetStream store, keys, tokens and read model")
	num(&c.Replicas, "replicas", "ENROLLGATE_REPLICAS", 1, "replicas of the JetStream streams (1 alone, 3 in a cluster)")
	boolean(&c.SyncAlways, "nats-sync-always", "ENROLLGATE_NATS_SYNC_ALWAYS", "embedded server: fsync every JetStream write before acknowledging it")
	num(&c.Policy.MaxFailedAttempts, "max-failed-attempts", "ENROLLGATE_MAX_FAILED_ATTEMPTS", defaults.MaxFailedAttempts, "lockout threshold")
	dur(&c.Policy.FailureWindow, "failure-window", "ENROLLGATE_FAILURE_WINDOW", defaults.FailureWindow, "failures older than this stop counting; 0 counts all since generation")
	num(&c.Policy.MaxFailedPerSource, "max-failed-attempts-per-source", "ENROLLGATE_MAX_FAILED_ATTEMPTS_PER_SOURCE", 0, "failures one source (IP or device ID) may make before it is throttled; 0: half the threshold, at least 1")
	dur(&c.Policy.SourceWindow, "source-window", "ENROLLGATE_SOURCE_WINDOW", defaults.SourceWindow, "window of the per-source count")
	num(&c.Policy.OutdatedGenerations, "outdated-generations", "ENROLLGATE_OUTDATED_GENERATIONS", defaults.OutdatedGenerations, "replaced generations a candidate is compared with to answer outdated (not counted toward the lockout); 0 turns it off")
	dur(&c.Policy.OutdatedFor, "outdated-for", "ENROLLGATE_OUTDATED_FOR", defaults.OutdatedFor, "how long after its replacement a generation answers outdated; 0 turns it off")
	secret(&c.AdminToken, "admin-token", "ENROLLGATE_ADMIN_TOKEN", "bootstrap admin token for all sites")
	str(&c.AdminEmail, "admin-email", "ENROLLGATE_ADMIN_EMAIL", "admin@localhost", "identity recorded for the bootstrap admin token")
	secret(&c.EnrollmentToken, "enrollment-token", "ENROLLGATE_ENROLLMENT_TOKEN", "bootstrap token for HTTP verify")
	secret(&c.MACKey, "mac-key", "ENROLLGATE_MAC_KEY", "base64 32-byte HMAC key; empty: generated into the data dir")
	secret(&c.SealKey, "seal-key", "ENROLLGATE_SEAL_KEY", "base64 32-byte AES-256-GCM key; empty: generated into the data dir")
	boolean(&c.MetricsPublic, "metrics-public", "ENROLLGATE_METRICS_PUBLIC", "serve /metrics without a token (else it needs an admin or auditor token)")
	str(&c.KeysFile, "keys-file", "ENROLLGATE_KEYS_FILE", "", "keys file shared by the replicas (enrollgate keys init); empty: <data-dir>/keys.json, generated")
	dur(&c.StartTimeout, "start-timeout", "ENROLLGATE_START_TIMEOUT", startup.DefaultTimeout, "how long the start retries creating streams, consumers and buckets on a cluster that does not answer yet")
	str(&c.LogLevel, "log-level", "ENROLLGATE_LOG_LEVEL", "info", "trace, debug, info, warn or error")
	str(&c.LogFormat, "log-format", "ENROLLGATE_LOG_FORMAT", "", "console or json; empty: console on a terminal, else json")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, apply := range secrets {
		apply(set)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.Policy.MaxFailedPerSource == 0 {
		c.Policy.MaxFailedPerSource = domain.DefaultSourceLimit(c.Policy.MaxFailedAttempts)
	}
	if err := errors.Join(envErrs...); err != nil {
		return config{}, err
	}
	return c, c.Validate()
}

// Validate reports every problem of the configuration at once.
func (c config) Validate() error {
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
func (c config) validateNATSClient() []error {
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
func (c config) natsClientOptions() nats.Option {
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
