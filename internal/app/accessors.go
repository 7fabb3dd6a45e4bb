package app

import (
	"context"
	"fmt"

	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/secrets"
)

// HTTPAddr is the address the HTTP API listens on.
func (a *App) HTTPAddr() string { return a.httpAddr.String() }

// ClientURL is where frontends and security tooling connect: the embedded
// server, or this replica's edge of the cluster; empty when clients connect
// to the cluster themselves.
func (a *App) ClientURL() string { return a.clientURL }

// NATSURL is the NATS URL the service's own connections use, credentials
// included when --nats-url holds them: redact it before printing.
func (a *App) NATSURL() string { return a.natsURL }

// Service is the command handlers the transports serve.
func (a *App) Service() *handlers.Service { return a.svc }

// Keeper holds the service's keys and passcode secrets.
func (a *App) Keeper() *secrets.Keeper { return a.keeper }

// ConsumerLag is how many events the consumers have yet to handle, summed
// over them, as /metrics reports each one's.
func (a *App) ConsumerLag(ctx context.Context) (uint64, error) {
	p := a.metricsProbes()
	var lag uint64
	for label, durable := range p.Consumers {
		n, err := p.Pending(ctx, durable)
		if err != nil {
			return 0, fmt.Errorf("%s lag: %w", label, err)
		}
		lag += n
	}
	return lag, nil
}
