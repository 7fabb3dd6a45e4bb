package natsserver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestAccessControl: with a service password, the service may do anything; a
// client without credentials may verify and read alerts, and may not write
// the event log, answer verify requests, or touch other streams.
func TestAccessControl(t *testing.T) {
	s, err := Start(Config{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), ServicePassword: "s3cret-for-test"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if _, err := nats.Connect(s.ClientURL(), nats.UserInfo(ServiceUser, "wrong")); err == nil {
		t.Fatal("service user with a wrong password was admitted")
	}
	svc, err := nats.Connect(s.ClientURL(), nats.UserInfo(ServiceUser, "s3cret-for-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	sjs, _ := jetstream.New(svc)
	for name, subj := range map[string]string{"ENROLLGATE_EVENTS": "enrollgate.events.>", "ENROLLGATE_ALERTS": "enrollgate.alerts.>"} {
		if _, err := sjs.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			t.Fatalf("service creates %s: %v", name, err)
		}
	}
	if _, err := svc.Subscribe("enrollgate.verify.*", func(m *nats.Msg) { _ = m.Respond([]byte(`{"ok":false}`)) }); err != nil {
		t.Fatal(err)
	}
	if _, err := sjs.Publish(ctx, "enrollgate.alerts.acme.passcode_lockout", []byte(`{"alert":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := sjs.Publish(ctx, "enrollgate.events.acme", []byte(`{"event":1}`)); err != nil {
		t.Fatal(err)
	}
	svc.Flush()

	violations := make(chan error, 16)
	pub, err := nats.Connect(s.ClientURL(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatalf("a client without credentials is refused: %v", err)
	}
	defer pub.Close()

	// Allowed: verify requests, alerts live and replayed.
	if m, err := pub.Request("enrollgate.verify.acme", []byte(`{}`), 5*time.Second); err != nil || string(m.Data) != `{"ok":false}` {
		t.Fatalf("public verify request: %v", err)
	}
	live, err := pub.SubscribeSync("enrollgate.alerts.>")
	if err != nil {
		t.Fatal(err)
	}
	pub.Flush()
	if _, err := sjs.Publish(ctx, "enrollgate.alerts.acme.passcode_lockout", []byte(`{"alert":2}`)); err != nil {
		t.Fatal(err)
	}
	if m, err := live.NextMsg(5 * time.Second); err != nil || string(m.Data) != `{"alert":2}` {
		t.Fatalf("live alert: %v", err)
	}
	pjs, _ := jetstream.New(pub)
	cons, err := pjs.OrderedConsumer(ctx, "ENROLLGATE_ALERTS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("public replay consumer on alerts: %v", err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range batch.Messages() {
		n++
	}
	if n != 2 {
		t.Fatalf("replayed %d alerts, want 2 (err %v)", n, batch.Error())
	}

	// Refused: writing the event log, reading it, answering verify requests,
	// creating streams. A refused request is never answered, so each gets a
	// short deadline of its own.
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, time.Second)
		t.Cleanup(cancel)
		return c
	}
	if _, err := pjs.Publish(short(), "enrollgate.events.acme", []byte(`{"forged":true}`), jetstream.WithExpectLastSequencePerSubject(0)); err == nil {
		t.Fatal("a client without credentials wrote the event log")
	}
	if _, err := pub.Subscribe("enrollgate.verify.*", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	pub.Flush()
	if _, err := pjs.Stream(short(), "ENROLLGATE_EVENTS"); err == nil {
		t.Fatal("a client without credentials read the event stream's info")
	}
	if _, err := pjs.CreateStream(short(), jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}}); err == nil {
		t.Fatal("a client without credentials created a stream")
	}
	seen := 0
	deadline := time.After(5 * time.Second)
	for seen < 2 {
		select {
		case err := <-violations:
			if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Fatalf("unexpected async error: %v", err)
			}
			seen++
		case <-deadline:
			t.Fatalf("saw %d permission violations, want at least 2 (publish to events, subscribe to verify)", seen)
		}
	}
	info, err := sjs.Stream(ctx, "ENROLLGATE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	if st := info.CachedInfo().State; st.Msgs != 1 {
		t.Fatalf("event stream holds %d messages, want only the service's 1", st.Msgs)
	}
}
