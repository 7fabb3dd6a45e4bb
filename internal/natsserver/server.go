package natsserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// Defaults of Config.
const (
	DefaultListen     = "127.0.0.1:4222"
	DefaultServerName = "enrollgate"
	DefaultReady      = 10 * time.Second
)

// Config of the embedded server.
type Config struct {
	// Listen is the client address, host:port; port 0 picks a free port
	// (read it back with ClientURL). Empty: DefaultListen. An empty host
	// listens on every interface.
	Listen string
	// StoreDir is the JetStream store directory. Required.
	StoreDir string
	// SyncAlways makes JetStream fsync every write: slower, but a killed
	// single node then loses no acknowledged event.
	SyncAlways bool
	// ServerName names the server in logs and cluster metadata. Empty:
	// DefaultServerName.
	ServerName string
	// ReadyTimeout bounds the wait for the server to accept clients. Zero:
	// DefaultReady.
	ReadyTimeout time.Duration
	// Hub, when set, makes this server the clients' edge of a NATS cluster
	// that holds the streams: it joins the cluster as a leaf node in the
	// service's account, and keeps only the token accounts' alert copies
	// itself. Clients connect here, never to the cluster.
	Hub *Hub
	// Access, when set, is the server's access control (NewAccess): the
	// service logs in as ServiceUser, every client with an API token, and
	// nobody without one. Nil leaves the server open, for tests.
	Access *Access
	// TLS, when set, serves the client port over TLS only (at least TLS 1.2)
	// and ClientURL becomes tls://. In-process connections may skip it.
	TLS *tls.Config
}

// Hub is the cluster an edge server joins as a leaf node.
type Hub struct {
	// URLs are the cluster's leaf node URLs (nats-leaf://host:7422).
	URLs []*url.URL
	// User and Password, or Credentials (a creds file), log the leaf in as
	// the service's user.
	User, Password, Credentials string
	// Domain is the cluster's JetStream domain: the alert copies reach the
	// cluster's alert stream through it.
	Domain string
	// TLS, when set, secures the leaf connection.
	TLS *tls.Config
}

// WithDefaults returns c with its empty fields set to the defaults.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.ServerName == "" {
		c.ServerName = DefaultServerName
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = DefaultReady
	}
	return c
}

// Validate reports every problem of c (after defaults).
func (c Config) Validate() error {
	var errs []error
	if _, _, err := c.hostPort(); err != nil {
		errs = append(errs, err)
	}
	if c.StoreDir == "" {
		errs = append(errs, errors.New("nats server: a JetStream store directory is required"))
	}
	if c.Hub != nil {
		if len(c.Hub.URLs) == 0 {
			errs = append(errs, errors.New("nats server: the cluster's leaf node URLs are required"))
		}
		if c.Hub.Domain == "" {
			errs = append(errs, errors.New("nats server: the cluster has no JetStream domain (set jetstream.domain in its configuration)"))
		}
		if c.Access == nil {
			errs = append(errs, errors.New("nats server: an edge of a cluster needs access control"))
		}
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
		errs = append(errs, errors.New("nats server: TLS needs a certificate"))
	}
	if c.ReadyTimeout < 0 {
		errs = append(errs, fmt.Errorf("nats server: ready timeout must not be negative, got %s", c.ReadyTimeout))
	}
	return errors.Join(errs...)
}

// hostPort splits Listen; port 0 becomes the server's "random port" (-1),
// since the server reads 0 as its default port 4222.
func (c Config) hostPort() (string, int, error) {
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return "", 0, fmt.Errorf("nats server: listen address %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("nats server: listen address %q: port must be 0-65535", c.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// Start starts the server and waits until it accepts clients. The caller
// shuts it down: s.Shutdown(); s.WaitForShutdown().
func Start(cfg Config, log zerolog.Logger) (*server.Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, port, _ := cfg.hostPort()
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: cfg.SyncAlways,
		// The process handles its own signals (cmd cancels a context).
		NoSigs: true,
	}
	if cfg.TLS != nil {
		tc := cfg.TLS.Clone()
		tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
		opts.TLS, opts.TLSConfig = true, tc
	}
	if cfg.Access != nil {
		opts.CustomClientAuthentication = cfg.Access
	}
	if h := cfg.Hub; h != nil {
		// A domain of its own keeps the edge's JetStream (the alert copies)
		// apart from the cluster's, which it reaches as $JS.<domain>.API.
		opts.JetStreamDomain = "edge-" + cfg.ServerName
		urls := make([]*url.URL, len(h.URLs))
		for i, u := range h.URLs {
			c := *u
			if h.User != "" {
				c.User = url.UserPassword(h.User, h.Password)
			}
			urls[i] = &c
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: urls, LocalAccount: server.DEFAULT_GLOBAL_ACCOUNT,
			Credentials: h.Credentials, TLS: h.TLS != nil, TLSConfig: h.TLS}}
		cfg.Access.alertsAPI = "$JS." + h.Domain + ".API"
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	bridge := NewLogger(log.With().Str("component", "nats-server").Logger())
	debug, trace := levels(log)
	s.SetLoggerV2(bridge, debug, trace, false)
	s.Start()
	// Poll in short slices so that a fatal start error (a locked or
	// unwritable store) is reported at once instead of after the timeout.
	deadline := time.Now().Add(cfg.ReadyTimeout)
	for !s.ReadyForConnections(50 * time.Millisecond) {
		if msg := bridge.Fatal(); msg != "" || time.Now().After(deadline) {
			s.Shutdown()
			s.WaitForShutdown()
			if msg != "" {
				return nil, fmt.Errorf("nats server: %s", msg)
			}
			return nil, fmt.Errorf("nats server: not ready after %s", cfg.ReadyTimeout)
		}
	}
	if msg := bridge.Fatal(); msg != "" || !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		if msg == "" {
			msg = "JetStream is not enabled"
		}
		return nil, fmt.Errorf("nats server: %s", msg)
	}
	if cfg.Access != nil {
		if err := cfg.Access.attach(s); err != nil {
			s.Shutdown()
			s.WaitForShutdown()
			return nil, err
		}
	}
	return s, nil
}
