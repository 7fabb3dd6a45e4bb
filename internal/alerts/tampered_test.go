package alerts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/consume"
)

func tamperedSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile(filepath.Join(docsDir(t), "event-log-tampered.schema.json"))
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

func forged(subject string, seq uint64) consume.Forged {
	return consume.Forged{Subject: subject, Stream: "ENROLLGATE_EVENTS", Seq: seq, StoredAt: time.Now(),
		MsgID: "01JZ8QK1W7D3X5Z9B2C4E6G8J0", Type: "PasscodeGenerated",
		Reason: "message not written by the service: no MAC (required from seq 1)", DeadLetterSubject: "enrollgate.deadletter.alert-publisher"}
}

func TestTamperedExampleMatchesTheSchema(t *testing.T) {
	sch := tamperedSchema(t)
	raw, err := os.ReadFile(filepath.Join(docsDir(t), "event-log-tampered.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	checkAlert(t, sch, raw)
	for name, mutate := range map[string]func(m map[string]any){
		"wrong type":    func(m map[string]any) { m["type"] = alerts.TypePasscodeLockout },
		"no stream seq": func(m map[string]any) { delete(m["data"].(map[string]any), "stream_seq") },
		"payload added": func(m map[string]any) { m["data"].(map[string]any)["payload"] = "…" },
		"long claim":    func(m map[string]any) { m["data"].(map[string]any)["claimed_type"] = strings.Repeat("x", 300) },
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

// TestTamperedAlertIsPublishedOnce: one alert per forged message, whatever
// the redeliveries, matching the schema; an older message reported again
// after a newer one's alert is not re-alerted.
func TestTamperedAlertIsPublishedOnce(t *testing.T) {
	e := newEnv(t)
	sch := tamperedSchema(t)
	ctx := context.Background()
	for range 2 {
		if err := e.pub.Tampered(ctx, forged("enrollgate.events.acme", 7)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := e.sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no alert: %v", err)
	}
	if m.Subject != "enrollgate.alerts.acme.event_log_tampered" {
		t.Fatalf("subject %q", m.Subject)
	}
	ce := checkAlert(t, sch, m.Data)
	if ce["id"] != "ENROLLGATE_EVENTS-7" || ce["subject"] != "acme" || ce["data"].(map[string]any)["stream_seq"] != 7.0 {
		t.Fatalf("alert %s", m.Data)
	}
	if extra, err := e.sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("a second alert reached the core subscriber: %s", extra.Data)
	}
	for _, seq := range []uint64{9, 7, 9} {
		if err := e.pub.Tampered(ctx, forged("enrollgate.events.acme", seq)); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.streamMsgs(t); n != 2 {
		t.Fatalf("%d alerts stored, want 2", n)
	}
	stored, err := e.js.Stream(ctx, alerts.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stored.GetMsg(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if id := raw.Header.Get(nats.MsgIdHdr); id != alerts.MsgID(alerts.KindEventLogTampered, "ENROLLGATE_EVENTS-9") {
		t.Errorf("Nats-Msg-Id %q", id)
	}
}

// TestTamperedAlertOnAnInvalidSubject: a subject that names no site gets
// the _unknown site, and attacker-controlled claims are cut to size.
func TestTamperedAlertOnAnInvalidSubject(t *testing.T) {
	e := newEnv(t)
	f := forged("enrollgate.events.NOT.A.SITE", 3)
	f.Type = strings.Repeat("T", 1000) + "\xff"
	if err := e.pub.Tampered(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	m, err := e.sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "enrollgate.alerts._unknown.event_log_tampered" {
		t.Fatalf("subject %q", m.Subject)
	}
	checkAlert(t, tamperedSchema(t), m.Data)
}
