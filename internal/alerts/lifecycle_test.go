package alerts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/alerts"
)

func schemaOf(t *testing.T, name string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile(filepath.Join(docsDir(t), name+".schema.json"))
	if err != nil {
		t.Fatalf("compile schema %s: %v", name, err)
	}
	return sch
}

func lifecycleRecord(site events.Site, data events.Payload) events.Record {
	return events.Record{Seq: 7, Event: events.Event{ID: ulid.Make().String(), Site: site, OccurredAt: time.Now(),
		Actor: events.Actor{Kind: events.ActorSystem, ID: "lockout"}, Data: data}}
}

func TestLifecycleAlerts(t *testing.T) {
	expires := time.Now().Add(-time.Second)
	first, last := time.Now().Add(-time.Minute), time.Now().Add(-time.Millisecond)
	cases := []struct {
		schema, kind, typ string
		data              events.Payload
		broken            func(m map[string]any)
	}{
		{"passcode-expired", alerts.KindPasscodeExpired, alerts.TypePasscodeExpired,
			events.PasscodeExpired{PasscodeID: ulid.Make().String(), Reason: events.LapseExpired, ExpiresAt: &expires, Enrollments: 3},
			func(m map[string]any) { m["data"].(map[string]any)["reason"] = "used_up" }},
		{"passcode-used-up", alerts.KindPasscodeUsedUp, alerts.TypePasscodeUsedUp,
			events.PasscodeExpired{PasscodeID: ulid.Make().String(), Reason: events.LapseUsedUp, Enrollments: 500, MaxEnrollments: 500},
			func(m map[string]any) { m["data"].(map[string]any)["max_enrollments"] = nil }},
		{"passcode-lockout-simulated", alerts.KindPasscodeLockoutSimulated, alerts.TypePasscodeLockoutSimulated,
			events.PasscodeLockoutSimulated{PasscodeID: ulid.Make().String(), FailedAttempts: 10, MaxFailedAttempts: 10,
				FailureWindow: events.Duration(time.Hour), FirstFailedAt: &first, LastFailedAt: &last,
				RecentSources: []events.Source{{IP: "203.0.113.7"}}},
			func(m map[string]any) { delete(m["data"].(map[string]any), "recent_sources") }},
	}
	for _, c := range cases {
		t.Run(c.kind, func(t *testing.T) {
			sch := schemaOf(t, c.schema)
			raw, err := os.ReadFile(filepath.Join(docsDir(t), c.schema+".example.json"))
			if err != nil {
				t.Fatal(err)
			}
			checkAlert(t, sch, raw)
			// The schema can reject: the example, broken, and with the wrong type.
			for _, mutate := range []func(m map[string]any){c.broken, func(m map[string]any) { m["type"] = alerts.TypePasscodeLockout }} {
				var m map[string]any
				if err := json.Unmarshal(raw, &m); err != nil {
					t.Fatal(err)
				}
				mutate(m)
				b, _ := json.Marshal(m)
				inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
				if sch.Validate(inst) == nil {
					t.Errorf("schema accepted a broken alert: %s", b)
				}
			}

			e := newEnv(t)
			rec := lifecycleRecord("acme", c.data)
			for range 3 { // redelivered
				if err := e.pub.Handle(context.Background(), rec); err != nil {
					t.Fatal(err)
				}
			}
			m, err := e.sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("no alert: %v", err)
			}
			if m.Subject != "enrollgate.alerts.acme."+c.kind {
				t.Errorf("subject %q", m.Subject)
			}
			ce := checkAlert(t, sch, m.Data)
			if ce["type"] != c.typ || ce["id"] != rec.Event.ID || ce["data"].(map[string]any)["event_id"] != rec.Event.ID {
				t.Errorf("alert %s", m.Data)
			}
			if extra, err := e.sub.NextMsg(200 * time.Millisecond); err == nil {
				t.Fatalf("a second alert: %s", extra.Data)
			}
			if n := e.streamMsgs(t); n != 1 {
				t.Fatalf("%d alerts stored, want 1", n)
			}
			stored, _ := e.js.Stream(context.Background(), alerts.StreamName)
			msg, err := stored.GetMsg(context.Background(), 1)
			if err != nil {
				t.Fatal(err)
			}
			if id := msg.Header.Get(nats.MsgIdHdr); id != alerts.MsgID(c.kind, rec.Event.ID) {
				t.Errorf("Nats-Msg-Id %q", id)
			}
		})
	}
}
