package httpapi

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/internal/apierror"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
	"github.com/enrollgate/enrollgate/internal/servicetest"
)

// TestNATSOutageIs503: when the NATS server under the API goes away, verify
// and a write answer 503 unavailable with Retry-After (retryable, as the NATS
// endpoint answers), not 500 or 504: whether the connection waits to
// reconnect (the event store's own bound on a read runs out: a NATS
// timeout) or is lost for good.
func TestNATSOutageIs503(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []nats.Option
	}{
		{"timeout while reconnecting", nil},
		{"connection lost", []nats.Option{nats.NoReconnect()}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := natstest.StartServer(t)
			nc, err := nats.Connect(ns.ClientURL(), c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			cfg := eventstore.DefaultConfig()
			cfg.LoadTimeout = 300 * time.Millisecond // below the request's 10 s
			svc, _ := servicetest.NewWith(t, js, cfg)
			e := newEnv(t, svc)
			verify := func(site string) response {
				return e.do(t, "POST", "/v1/sites/"+site+"/enrollments/verify", e.enroll, str(`{"passcode":"`+domain.Guess(0)+`"}`))
			}
			if r := verify("acme"); r.status != http.StatusOK {
				t.Fatalf("verify before the outage: %d %s", r.status, r.body)
			}

			ns.Shutdown()
			ns.WaitForShutdown()
			if c.opts != nil {
				natstest.Eventually(t, 5*time.Second, func() error {
					if !nc.IsClosed() {
						return errors.New("connection not closed yet")
					}
					return nil
				})
			}
			// Sites not in the handlers' cache: their history is read first.
			for _, r := range []response{verify("globex"), e.do(t, "POST", "/v1/sites/initech/passcode", e.admin, nil)} {
				wantProblem(t, r, http.StatusServiceUnavailable, apierror.CodeUnavailable)
				if r.header.Get("Retry-After") == "" {
					t.Errorf("503 without Retry-After: %v", r.header)
				}
			}
		})
	}
}
