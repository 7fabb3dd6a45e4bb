package app

import (
	"crypto/tls"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// inProcess makes a connection to the embedded server inside the process,
// where it needs no TLS: the service then need not trust its own certificate
// (which may name a host other than the listen address).
func inProcess(ns *server.Server, login nats.Option) nats.Option {
	return func(o *nats.Options) error {
		// A tls:// URL would make the client start TLS over the pipe.
		o.Servers = []string{"nats://in-process"}
		if err := nats.InProcessServer(ns)(o); err != nil {
			return err
		}
		return login(o)
	}
}

// serverTLS is the TLS configuration of --tls-cert/--tls-key; nil without
// them.
func serverTLS(cfg Config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
