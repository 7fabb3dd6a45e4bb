package servicetest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/secrets"
)

// New returns a Service with the default configuration on js, and its event
// store (for a test to read what was stored), creating the event stream.
func New(tb testing.TB, js jetstream.JetStream) (*handlers.Service, *eventstore.Store) {
	tb.Helper()
	return NewWith(tb, js, eventstore.DefaultConfig())
}

// NewWith is New with the event store's configuration cfg.
func NewWith(tb testing.TB, js jetstream.JetStream, cfg eventstore.Config) (*handlers.Service, *eventstore.Store) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := eventstore.EnsureStream(ctx, js, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	keeper, err := secrets.Open(secrets.Config{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	auth, err := eventstore.NewAuthenticator(keeper, stream)
	if err != nil {
		tb.Fatal(err)
	}
	store, err := eventstore.New(js, stream, cfg, auth)
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := handlers.NewService(handlers.DefaultConfig(), store, keeper, handlers.SystemClock{}, handlers.NewULIDs())
	if err != nil {
		tb.Fatal(err)
	}
	return svc, store
}
