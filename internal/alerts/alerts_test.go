package alerts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

func docsDir(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "alerts")
}

func lockoutSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile(filepath.Join(docsDir(t), "passcode-lockout.schema.json"))
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

// CheckAlert validates a raw alert against the documented schema and checks
// every required CloudEvents 1.0 attribute independently of the schema.
func checkAlert(t *testing.T, sch *jsonschema.Schema, raw []byte) map[string]any {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("alert is not JSON: %v\n%s", err, raw)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("alert does not match the schema: %v\n%s", err, raw)
	}
	var ce map[string]any
	if err := json.Unmarshal(raw, &ce); err != nil {
		t.Fatal(err)
	}
	// CloudEvents 1.0 required attributes: id, source, specversion, type.
	if ce["specversion"] != "1.0" {
		t.Errorf("specversion %v", ce["specversion"])
	}
	for _, attr := range []string{"id", "source", "type"} {
		s, ok := ce[attr].(string)
		if !ok || s == "" {
			t.Errorf("required attribute %s missing or empty: %v", attr, ce[attr])
		}
	}
	if src, _ := ce["source"].(string); src != "" {
		if _, err := url.Parse(src); err != nil {
			t.Errorf("source %q is not a URI-reference: %v", src, err)
		}
	}
	// Optional attributes we set must have their CloudEvents types.
	if ts, ok := ce["time"].(string); !ok {
		t.Errorf("time missing")
	} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		t.Errorf("time %q is not RFC 3339: %v", ts, err)
	}
	if ce["datacontenttype"] != "application/json" {
		t.Errorf("datacontenttype %v", ce["datacontenttype"])
	}
	if _, ok := ce["data"].(map[string]any); !ok {
		t.Errorf("data is not a JSON object: %v", ce["data"])
	}
	return ce
}

func TestExampleMatchesTheSchema(t *testing.T) {
	sch := lockoutSchema(t)
	raw, err := os.ReadFile(filepath.Join(docsDir(t), "passcode-lockout.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	checkAlert(t, sch, raw)
	// The schema must be able to reject: a few broken variants.
	for name, mutate := range map[string]func(m map[string]any){
		"no id":             func(m map[string]any) { delete(m, "id") },
		"wrong specversion": func(m map[string]any) { m["specversion"] = "0.3" },
		"wrong type":        func(m map[string]any) { m["type"] = "io.enrollgate.other" },
		"bad time":          func(m map[string]any) { m["time"] = "yesterday" },
		"no data site":      func(m map[string]any) { delete(m["data"].(map[string]any), "site") },
		"passcode leaked":   func(m map[string]any) { m["data"].(map[string]any)["passcode"] = "Abc123def456" },
		"negative failures": func(m map[string]any) { m["data"].(map[string]any)["failed_attempts"] = -1 },
	} {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		mutate(m)
		b, _ := json.Marshal(m)
		inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if sch.Validate(inst) == nil {
			t.Errorf("%s: schema accepted a broken alert", name)
		}
	}
}

type env struct {
	js  jetstream.JetStream
	pub *alerts.Publisher
	sub *nats.Subscription
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := natstest.StartServer(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := alerts.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	if err := alerts.EnsureStream(ctx, js, 1); err != nil {
		t.Fatalf("EnsureStream is not idempotent: %v", err)
	}
	// Security tooling: a plain core NATS subscriber.
	sub, err := natstest.Connect(t, s).SubscribeSync(alerts.SubjectAll)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := alerts.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	return &env{js: js, pub: pub, sub: sub}
}

func lockoutRecord(site events.Site, seq uint64) events.Record {
	now := time.Now()
	first, last := now.Add(-10*time.Minute), now.Add(-time.Millisecond)
	return events.Record{Seq: seq, Event: events.Event{
		ID: ulid.Make().String(), Site: site, OccurredAt: now, Actor: events.Actor{Kind: events.ActorSystem, ID: "lockout"},
		Data: events.PasscodeDisabled{
			PasscodeID: ulid.Make().String(), Reason: events.DisableLockout, FailedAttempts: 10, MaxFailedAttempts: 10,
			FailureWindow: events.Duration(time.Hour), FirstFailedAt: &first, LastFailedAt: &last,
			RecentSources: []events.Source{{IP: "203.0.113.7", DeviceID: "dev-1", Platform: "ios", UserAgent: "UA/1"}, {IP: "198.51.100.2"}},
		},
	}}
}

func (e *env) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), alerts.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestLockoutAlertIsPublishedOnceAndMatchesTheSchema(t *testing.T) {
	e := newEnv(t)
	sch := lockoutSchema(t)
	rec := lockoutRecord("acme", 42)
	ctx := context.Background()
	// A redelivered disable: handled twice.
	for range 2 {
		if err := e.pub.Handle(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	m, err := e.sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no alert on the core subscription: %v", err)
	}
	if m.Subject != "enrollgate.alerts.acme.passcode_lockout" {
		t.Errorf("subject %q", m.Subject)
	}
	if ct := m.Header.Get("Content-Type"); ct != alerts.ContentType {
		t.Errorf("Content-Type %q", ct)
	}
	ce := checkAlert(t, sch, m.Data)
	d := rec.Event.Data.(events.PasscodeDisabled)
	data := ce["data"].(map[string]any)
	for k, want := range map[string]any{
		"id": rec.Event.ID, "type": alerts.TypePasscodeLockout, "subject": "acme", "source": "/enrollgate/sites/acme",
	} {
		if ce[k] != want {
			t.Errorf("%s = %v, want %v", k, ce[k], want)
		}
	}
	for k, want := range map[string]any{
		"site": "acme", "passcode_id": d.PasscodeID, "failed_attempts": 10.0, "max_failed_attempts": 10.0,
		"failure_window": "1h0m0s", "disable_event_id": rec.Event.ID,
		"first_failed_at": d.FirstFailedAt.UTC().Format(time.RFC3339Nano),
		"last_failed_at":  d.LastFailedAt.UTC().Format(time.RFC3339Nano),
		"disabled_at":     rec.Event.OccurredAt.UTC().Format(time.RFC3339Nano),
	} {
		if data[k] != want {
			t.Errorf("data.%s = %v, want %v", k, data[k], want)
		}
	}
	if got := fmt.Sprint(data["recent_sources"]); got != "[map[device_id:dev-1 ip:203.0.113.7 platform:ios user_agent:UA/1] map[ip:198.51.100.2]]" {
		t.Errorf("recent_sources %s", got)
	}
	if extra, err := e.sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("a second alert reached the core subscriber: %s", extra.Data)
	}
	if n := e.streamMsgs(t); n != 1 {
		t.Fatalf("%d alerts stored, want 1", n)
	}
	stored, err := e.js.Stream(ctx, alerts.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stored.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if id := raw.Header.Get(nats.MsgIdHdr); id != alerts.MsgID(alerts.KindPasscodeLockout, rec.Event.ID) {
		t.Errorf("Nats-Msg-Id %q", id)
	}
	checkAlert(t, sch, raw.Data)
}

func TestOlderDisableReplayedAfterANewerAlertIsNotRealerted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	older := lockoutRecord("acme", 1)
	newer := lockoutRecord("acme", 2)
	for _, r := range []events.Record{older, newer, older} {
		if err := e.pub.Handle(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.streamMsgs(t); n != 2 {
		t.Fatalf("%d alerts stored, want 2", n)
	}
	// Another site's alert is independent.
	if err := e.pub.Handle(ctx, lockoutRecord("globex", 3)); err != nil {
		t.Fatal(err)
	}
	if n := e.streamMsgs(t); n != 3 {
		t.Fatalf("%d alerts stored, want 3", n)
	}
}

// TestOlderDisableHandledAfterANewerOneIsAlerted: the consumer handles
// events in no particular order, so a disable handled after a later one's
// alert still gets its alert, once.
func TestOlderDisableHandledAfterANewerOneIsAlerted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	older := lockoutRecord("acme", 1)
	newer := lockoutRecord("acme", 2)
	for _, r := range []events.Record{newer, older, older, newer} {
		if err := e.pub.Handle(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.streamMsgs(t); n != 2 {
		t.Fatalf("%d alerts stored, want 2", n)
	}
}

func TestOtherEventsMakeNoAlert(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	for _, d := range []events.Payload{
		events.PasscodeDisabled{PasscodeID: "p", Reason: events.DisableManual},
		events.EnrollmentAttemptFailed{PasscodeID: "p", FailedAttempts: 10, MaxFailedAttempts: 10},
		events.PasscodeGenerated{PasscodeID: "p"},
		events.LockoutPolicyChanged{MaxFailedAttempts: 3},
	} {
		rec := events.Record{Seq: 1, Event: events.Event{ID: ulid.Make().String(), Site: "acme", OccurredAt: now, Data: d}}
		if err := e.pub.Handle(context.Background(), rec); err != nil {
			t.Fatalf("%T: %v", d, err)
		}
	}
	if m, err := e.sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("unexpected alert %s", m.Data)
	}
	if n := e.streamMsgs(t); n != 0 {
		t.Fatalf("%d alerts stored, want 0", n)
	}
}

func TestLockoutWithoutCountedFailuresStillValidates(t *testing.T) {
	// A saga that acts after the window has passed finds no failure still
	// counted: first/last are null and there are no sources.
	rec := events.Record{Seq: 1, Event: events.Event{ID: ulid.Make().String(), Site: "acme", OccurredAt: time.Now(),
		Data: events.PasscodeDisabled{PasscodeID: "p1", Reason: events.DisableLockout, MaxFailedAttempts: 10, FailureWindow: 0}}}
	a, ok := alerts.NewLockoutAlert(rec.Event)
	if !ok {
		t.Fatal("no alert")
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	ce := checkAlert(t, lockoutSchema(t), b)
	data := ce["data"].(map[string]any)
	if data["first_failed_at"] != nil || fmt.Sprint(data["recent_sources"]) != "[]" || data["failure_window"] != "0s" {
		t.Fatalf("data %v", data)
	}
}

func TestStreamConfig(t *testing.T) {
	c := alerts.StreamConfig(3)
	if c.Name != alerts.StreamName || c.Subjects[0] != "enrollgate.alerts.>" || c.Storage != jetstream.FileStorage ||
		c.Replicas != 3 || c.MaxAge != 90*24*time.Hour || c.Duplicates <= 0 {
		t.Fatalf("%+v", c)
	}
	if err := alerts.EnsureStream(context.Background(), nil, 0); err == nil {
		t.Fatal("replicas 0 accepted")
	}
}
