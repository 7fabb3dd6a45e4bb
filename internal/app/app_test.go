package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/httpapi"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

var _ httpapi.ReadModel = projectorReads{}

// countingStore counts the appends of the commands' event store.
type countingStore struct {
	handlers.EventStore
	appends *atomic.Int64
}

func (s countingStore) Append(ctx context.Context, e events.Event, expectedSeq uint64) (uint64, error) {
	seq, err := s.EventStore.Append(ctx, e, expectedSeq)
	if err == nil {
		s.appends.Add(1)
	}
	return seq, err
}

// TestStartAndItsAccessors: a started App runs its commands on the store
// WrapStore gave, answers a verify from an enrollment token at ClientURL,
// serves HTTP at HTTPAddr, and its ConsumerLag is 0 only once the read model
// holds what was appended; Close stops the HTTP API.
func TestStartAndItsAccessors(t *testing.T) {
	const admin, enrollment = "app-test-admin-token-0123", "app-test-enrollment-token-0123"
	policy := domain.DefaultPolicy()
	policy.MaxFailedPerSource = domain.DefaultSourceLimit(policy.MaxFailedAttempts)
	var appends atomic.Int64
	cfg := Config{HTTPAddr: "127.0.0.1:0", NATSListen: "127.0.0.1:0", DataDir: t.TempDir(), Replicas: 1, Policy: policy,
		AdminToken: admin, AdminEmail: "admin@acme.example", EnrollmentToken: enrollment, StartTimeout: time.Minute,
		LogLevel: "info", WrapStore: func(s handlers.EventStore) handlers.EventStore { return countingStore{s, &appends} }}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs natstest.LogBuffer
	a, err := Start(context.Background(), cfg, zerolog.New(&logs))
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = a.Close()
		}
	})

	ctx := context.Background()
	gen, err := a.Service().GeneratePasscode(ctx, handlers.GeneratePasscode{Site: "acme",
		Actor: events.Actor{Kind: events.ActorAdmin, ID: "admin@acme.example"}})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(a.ClientURL(), nats.Token(enrollment))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	body := fmt.Sprintf(`{"passcode":%q,"source":{"ip":"192.0.2.1"}}`, gen.Passcode.Plain())
	m, err := nc.Request("enrollgate.verify.acme", []byte(body), 10*time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"ok":true`) {
		t.Fatalf("verify over NATS: %v %s", err, m.Data)
	}
	if n := appends.Load(); n != 2 {
		t.Fatalf("%d appends through the wrapped store, want 2 (generate, verify)", n)
	}

	natstest.Eventually(t, 10*time.Second, func() error {
		lag, err := a.ConsumerLag(ctx)
		if err == nil && lag > 0 {
			err = fmt.Errorf("lag %d", lag)
		}
		return err
	})
	get := func(path string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "http://"+a.HTTPAddr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		return http.DefaultClient.Do(req)
	}
	resp, err := get("/v1/sites/acme/attempts")
	if err != nil {
		t.Fatal(err)
	}
	var page httpapi.AttemptsResponse
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(page.Attempts) != 1 {
		t.Fatalf("attempts once the lag is 0: %d %+v %v", resp.StatusCode, page, err)
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if resp, err := get("/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("HTTP still served after Close")
	}
}
