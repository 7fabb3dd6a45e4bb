package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/internal/app"
	"github.com/enrollgate/enrollgate/internal/startup"
)

// parseConfig reads args (without the subcommand) and the environment.
func parseConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (app.Config, error) {
	var c app.Config
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
		return app.Config{}, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, apply := range secrets {
		apply(set)
	}
	if fs.NArg() > 0 {
		return app.Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.Policy.MaxFailedPerSource == 0 {
		c.Policy.MaxFailedPerSource = domain.DefaultSourceLimit(c.Policy.MaxFailedAttempts)
	}
	if err := errors.Join(envErrs...); err != nil {
		return app.Config{}, err
	}
	c.Version = buildVersion()
	return c, c.Validate()
}
