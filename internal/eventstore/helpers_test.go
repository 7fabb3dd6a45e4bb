package eventstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// testConfig is the default configuration with short timeouts, so that a
// test of a lost answer does not wait long.
func testConfig() eventstore.Config {
	cfg := eventstore.DefaultConfig()
	cfg.PublishTimeout = 2 * time.Second
	cfg.RetryWait = 5 * time.Millisecond
	cfg.LoadTimeout = 10 * time.Second
	return cfg
}

// newStore connects to s, ensures the stream and returns a store on its own
// connection.
func newStore(tb testing.TB, s *server.Server, cfg eventstore.Config) (*eventstore.Store, jetstream.JetStream) {
	tb.Helper()
	return newStoreOn(tb, natstest.Connect(tb, s), cfg)
}

func newStoreOn(tb testing.TB, nc *nats.Conn, cfg eventstore.Config) (*eventstore.Store, jetstream.JetStream) {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := eventstore.EnsureStream(ctx, js, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	auth, err := eventstore.NewAuthenticator(&testKeeper{}, stream)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := eventstore.New(js, stream, cfg, auth)
	if err != nil {
		tb.Fatal(err)
	}
	return st, js
}

// testAuth returns the authenticator of the events stream on js, with the
// test keys.
func testAuth(tb testing.TB, js jetstream.JetStream) *eventstore.Authenticator {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	auth, err := eventstore.OpenAuthenticator(ctx, js, &testKeeper{})
	if err != nil {
		tb.Fatal(err)
	}
	return auth
}

// publishRaw appends pre-encoded, signed events to a site without
// expectations, as fast as the server takes them; for building long
// histories.
func publishRaw(tb testing.TB, js jetstream.JetStream, evs []events.Event) {
	tb.Helper()
	auth := testAuth(tb, js)
	for _, e := range evs {
		data, err := events.Encode(e)
		if err != nil {
			tb.Fatal(err)
		}
		msg := &nats.Msg{Subject: events.Subject(e.Site), Data: data, Header: nats.Header{}}
		msg.Header.Set(events.HeaderEventType, string(e.Type()))
		msg.Header.Set(jetstream.MsgIDHeader, e.ID)
		if err := auth.SignMsg(msg); err != nil {
			tb.Fatal(err)
		}
		if _, err := js.PublishMsgAsync(msg); err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		tb.Fatal("async publishes not acknowledged in 30s")
	}
}
