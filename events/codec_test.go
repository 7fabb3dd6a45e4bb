package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/events"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const (
	testID   = "01HZY8V2Q8N6J4X6C1T9B3K5MD"
	testSite = "acme-1"
)

// at is a fixed instant with nanoseconds, in a zone other than UTC, so that
// the tests see both the precision and the UTC conversion of Encode.
var at = time.Date(2024, 3, 5, 14, 7, 9, 123456789, time.FixedZone("CET", 3600))

// samplePayloads has one payload of each type with every field set.
func samplePayloads() []events.Payload {
	first := time.Date(2024, 3, 5, 12, 0, 0, 1, time.UTC)
	last := time.Date(2024, 3, 5, 13, 0, 0, 999999999, time.UTC)
	src := events.Source{IP: "203.0.113.7", DeviceID: "dev-42", Platform: "ios", UserAgent: "Enroll/1.0"}
	return []events.Payload{
		events.PasscodeGenerated{PasscodeID: "01HZY8V2Q8N6J4X6C1T9B3K5ME", Hash: []byte{0, 1, 2, 0xfe, 0xff},
			HashKeyID: "mac-1", Sealed: []byte("sealed-bytes"), SealKeyID: "seal-1"},
		events.PasscodeRevealed{PasscodeID: "01HZY8V2Q8N6J4X6C1T9B3K5ME"},
		events.PasscodeDisabled{PasscodeID: "01HZY8V2Q8N6J4X6C1T9B3K5ME", Reason: events.DisableLockout,
			FailedAttempts: 10, MaxFailedAttempts: 10, FailureWindow: events.Duration(90 * time.Minute),
			FirstFailedAt: &first, LastFailedAt: &last,
			RecentSources: []events.Source{src, {IP: "198.51.100.1"}}},
		events.EnrollmentAttemptFailed{PasscodeID: "01HZY8V2Q8N6J4X6C1T9B3K5ME", AttemptID: "att-1",
			AttemptDigest: []byte{9, 8, 7}, Source: src, FailedAttempts: 3, MaxFailedAttempts: 10,
			FailureWindow: events.Duration(time.Hour)},
		events.EnrollmentAttemptSucceeded{PasscodeID: "01HZY8V2Q8N6J4X6C1T9B3K5ME", AttemptID: "att-2",
			AttemptDigest: []byte{1}, Source: src},
		events.LockoutPolicyChanged{MaxFailedAttempts: 5, FailureWindow: events.Duration(1500 * time.Millisecond),
			PasscodeID: "01HZY8V2Q8N6J4X6C1T9B3K5ME", FailedAttempts: 5},
		events.EnrollmentAttemptExcused{PasscodeID: "01HZY8V2Q8N6J4X6C1T9B3K5ME", AttemptID: "att-3",
			AttemptDigest: []byte{2}, Source: src, Outcome: events.OutcomeOutdated,
			OutdatedPasscodeID: "01HZY8TZ00000000000000000A", FailedAttempts: 2},
		events.PasscodeExpired{PasscodeID: "01HZY8V2Q8N6J4X6C1T9B3K5ME", Reason: events.LapseUsedUp,
			ExpiresAt: &last, Enrollments: 500, MaxEnrollments: 500},
		events.PasscodeLockoutSimulated{PasscodeID: "01HZY8V2Q8N6J4X6C1T9B3K5ME", FailedAttempts: 10,
			MaxFailedAttempts: 10, FailureWindow: events.Duration(time.Hour), FirstFailedAt: &first, LastFailedAt: &last,
			RecentSources: []events.Source{src}},
	}
}

func sampleEvent(p events.Payload) events.Event {
	return events.Event{ID: testID, Site: testSite, OccurredAt: at,
		Actor: events.Actor{Kind: events.ActorAdmin, ID: "alice@acme.example"}, Data: p}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, p := range samplePayloads() {
		t.Run(string(p.EventType()), func(t *testing.T) {
			in := sampleEvent(p)
			b, err := events.Encode(in)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			out, err := events.Decode(b)
			if err != nil {
				t.Fatalf("Decode(%s): %v", b, err)
			}
			if out.ID != in.ID || out.Site != in.Site || out.Actor != in.Actor {
				t.Errorf("envelope = %+v, want %+v", out, in)
			}
			if !out.OccurredAt.Equal(in.OccurredAt) || out.OccurredAt.Nanosecond() != 123456789 {
				t.Errorf("occurred_at = %v, want %v with its nanoseconds", out.OccurredAt, in.OccurredAt)
			}
			if out.OccurredAt.Location() != time.UTC {
				t.Errorf("occurred_at decoded in %v, want UTC (Encode writes UTC)", out.OccurredAt.Location())
			}
			if out.Type() != p.EventType() {
				t.Errorf("type = %q, want %q", out.Type(), p.EventType())
			}
			// Field for field: the decoded payload is the value type and deep
			// equal to the input (the pointer times keep their zone).
			if !reflect.DeepEqual(out.Data, p) {
				t.Errorf("payload:\n got %#v\nwant %#v", out.Data, p)
			}
		})
	}
}

func TestEncodeWritesUTCWithNanoseconds(t *testing.T) {
	b, err := events.Encode(sampleEvent(events.PasscodeRevealed{PasscodeID: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"occurred_at":"2024-03-05T13:07:09.123456789Z"`; !bytes.Contains(b, []byte(want)) {
		t.Errorf("encoded %s, want it to contain %s", b, want)
	}
}

func TestEncodeWithoutData(t *testing.T) {
	e := sampleEvent(nil)
	if _, err := events.Encode(e); err == nil {
		t.Fatal("Encode of an event without data succeeded")
	}
}

func TestEventTypeOfNilData(t *testing.T) {
	if got := (events.Event{}).Type(); got != "" {
		t.Errorf("Type of an event without data = %q, want empty", got)
	}
}

// envelopeJSON builds an envelope by hand so that each field can be broken.
func envelopeJSON(t *testing.T, mutate func(m map[string]any)) []byte {
	t.Helper()
	m := map[string]any{
		"id": testID, "type": "PasscodeRevealed", "site": testSite,
		"occurred_at": "2024-03-05T13:07:09.123456789Z",
		"actor":       map[string]any{"kind": "admin", "id": "alice@acme.example"},
		"data":        map[string]any{"passcode_id": "p1"},
	}
	if mutate != nil {
		mutate(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		unknown bool // want ErrUnknownType rather than ErrMalformed
	}{
		{name: "empty input", in: []byte{}},
		{name: "not JSON", in: []byte("not json")},
		{name: "truncated", in: envelopeJSON(t, nil)[:40]},
		{name: "array", in: []byte(`[1,2]`)},
		{name: "trailing garbage", in: append(envelopeJSON(t, nil), []byte(" x")...)},
		{name: "unknown type", in: envelopeJSON(t, func(m map[string]any) { m["type"] = "PasscodeExploded" }), unknown: true},
		{name: "empty type", in: envelopeJSON(t, func(m map[string]any) { m["type"] = "" }), unknown: true},
		{name: "type of another case", in: envelopeJSON(t, func(m map[string]any) { m["type"] = "passcodegenerated" }), unknown: true},
		{name: "type not a string", in: envelopeJSON(t, func(m map[string]any) { m["type"] = 7 })},
		{name: "missing data", in: envelopeJSON(t, func(m map[string]any) { delete(m, "data") })},
		{name: "null data", in: envelopeJSON(t, func(m map[string]any) { m["data"] = nil })},
		{name: "data is a string", in: envelopeJSON(t, func(m map[string]any) { m["data"] = "x" })},
		{name: "data is an array", in: envelopeJSON(t, func(m map[string]any) { m["data"] = []int{1} })},
		{name: "data field of wrong type", in: envelopeJSON(t, func(m map[string]any) { m["data"] = map[string]any{"passcode_id": 5} })},
		{name: "missing id", in: envelopeJSON(t, func(m map[string]any) { delete(m, "id") })},
		{name: "bad ULID", in: envelopeJSON(t, func(m map[string]any) { m["id"] = "not-a-ulid" })},
		{name: "ULID with invalid character", in: envelopeJSON(t, func(m map[string]any) { m["id"] = "01HZY8V2Q8N6J4X6C1T9B3K5MU" })},
		{name: "ULID too long", in: envelopeJSON(t, func(m map[string]any) { m["id"] = testID + "0" })},
		{name: "ULID overflow", in: envelopeJSON(t, func(m map[string]any) { m["id"] = "81HZY8V2Q8N6J4X6C1T9B3K5MD" })},
		{name: "missing site", in: envelopeJSON(t, func(m map[string]any) { delete(m, "site") })},
		{name: "bad site", in: envelopeJSON(t, func(m map[string]any) { m["site"] = "Acme" })},
		{name: "site with a subject wildcard", in: envelopeJSON(t, func(m map[string]any) { m["site"] = "acme.>" })},
		{name: "missing occurred_at", in: envelopeJSON(t, func(m map[string]any) { delete(m, "occurred_at") })},
		{name: "occurred_at not RFC 3339", in: envelopeJSON(t, func(m map[string]any) { m["occurred_at"] = "yesterday" })},
		{name: "zero occurred_at", in: envelopeJSON(t, func(m map[string]any) { m["occurred_at"] = "0001-01-01T00:00:00Z" })},
		{name: "occurred_at before year 0 in UTC", in: envelopeJSON(t, func(m map[string]any) { m["occurred_at"] = "0000-01-01T00:00:00+01:00" })},
		{name: "occurred_at after year 9999 in UTC", in: envelopeJSON(t, func(m map[string]any) { m["occurred_at"] = "9999-12-31T23:59:59-01:00" })},
		{name: "actor not an object", in: envelopeJSON(t, func(m map[string]any) { m["actor"] = "alice" })},
		{name: "duration not a duration", in: envelopeJSON(t, func(m map[string]any) {
			m["type"] = "LockoutPolicyChanged"
			m["data"] = map[string]any{"max_failed_attempts": 3, "failure_window": "an hour"}
		})},
		{name: "duration a float", in: envelopeJSON(t, func(m map[string]any) {
			m["type"] = "LockoutPolicyChanged"
			m["data"] = map[string]any{"max_failed_attempts": 3, "failure_window": 1.5}
		})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := events.Decode(c.in)
			if err == nil {
				t.Fatalf("Decode(%s) = %+v, want an error", c.in, e)
			}
			if got := errors.Is(err, events.ErrUnknownType); got != c.unknown {
				t.Errorf("errors.Is(%v, ErrUnknownType) = %v, want %v", err, got, c.unknown)
			}
			if got := errors.Is(err, events.ErrMalformed); got == c.unknown {
				t.Errorf("errors.Is(%v, ErrMalformed) = %v, want %v", err, got, !c.unknown)
			}
			if !reflect.DeepEqual(e, events.Event{}) {
				t.Errorf("Decode returned %+v with its error, want the zero Event", e)
			}
		})
	}
}

func TestDecodeAcceptsForwardCompatibleInput(t *testing.T) {
	cases := []struct {
		name  string
		in    []byte
		check func(t *testing.T, e events.Event)
	}{
		{name: "unknown envelope and data fields", in: envelopeJSON(t, func(m map[string]any) {
			m["extra"] = true
			m["data"] = map[string]any{"passcode_id": "p1", "added_later": 1}
		}), check: func(t *testing.T, e events.Event) {
			if e.Data != (events.PasscodeRevealed{PasscodeID: "p1"}) {
				t.Errorf("data = %#v", e.Data)
			}
		}},
		{name: "duration as integer nanoseconds", in: envelopeJSON(t, func(m map[string]any) {
			m["type"] = "LockoutPolicyChanged"
			m["data"] = map[string]any{"max_failed_attempts": 3, "failure_window": int64(time.Hour)}
		}), check: func(t *testing.T, e events.Event) {
			if d := e.Data.(events.LockoutPolicyChanged); d.FailureWindow.D() != time.Hour {
				t.Errorf("failure_window = %v, want 1h", d.FailureWindow)
			}
		}},
		{name: "null optional duration", in: envelopeJSON(t, func(m map[string]any) {
			m["type"] = "PasscodeDisabled"
			m["data"] = map[string]any{"passcode_id": "p1", "reason": "manual", "failure_window": nil}
		}), check: func(t *testing.T, e events.Event) {
			if d := e.Data.(events.PasscodeDisabled); d.FailureWindow != 0 || d.Reason != events.DisableManual {
				t.Errorf("data = %#v", d)
			}
		}},
		{name: "occurred_at with an offset", in: envelopeJSON(t, func(m map[string]any) {
			m["occurred_at"] = "2024-03-05T14:07:09.5+01:00"
		}), check: func(t *testing.T, e events.Event) {
			if want := time.Date(2024, 3, 5, 13, 7, 9, 5e8, time.UTC); !e.OccurredAt.Equal(want) {
				t.Errorf("occurred_at = %v, want %v", e.OccurredAt, want)
			}
		}},
		{name: "lower-case ULID", in: envelopeJSON(t, func(m map[string]any) { m["id"] = strings.ToLower(testID) }),
			check: func(t *testing.T, e events.Event) {}},
		{name: "empty data object", in: envelopeJSON(t, func(m map[string]any) { m["data"] = map[string]any{} }),
			check: func(t *testing.T, e events.Event) {
				if e.Data != (events.PasscodeRevealed{}) {
					t.Errorf("data = %#v", e.Data)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := events.Decode(c.in)
			if err != nil {
				t.Fatalf("Decode(%s): %v", c.in, err)
			}
			c.check(t, e)
		})
	}
}

func TestDurationJSON(t *testing.T) {
	for _, d := range []time.Duration{0, time.Nanosecond, 1500 * time.Millisecond, time.Hour, 720 * time.Hour, -time.Minute} {
		b, err := json.Marshal(events.Duration(d))
		if err != nil {
			t.Fatal(err)
		}
		if want := `"` + d.String() + `"`; string(b) != want {
			t.Errorf("Marshal(%v) = %s, want %s", d, b, want)
		}
		var got events.Duration
		if err := json.Unmarshal(b, &got); err != nil || got.D() != d {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", b, got, err, d)
		}
		if got.String() != d.String() {
			t.Errorf("String() = %q, want %q", got.String(), d.String())
		}
	}
	var d events.Duration
	for _, bad := range []string{`"1 hour"`, `true`, `{}`, `1.5`, `"1h"x`} {
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Unmarshal(%s) succeeded with %v", bad, d)
		}
	}
	d = events.Duration(time.Minute)
	if err := json.Unmarshal([]byte(`null`), &d); err != nil || d.D() != time.Minute {
		t.Errorf("Unmarshal(null) = %v, %v; want a no-op", d, err)
	}
}

// TestGolden pins the wire format: a renamed JSON tag or type string, or a
// changed encoding of time or duration, changes these bytes. Run with
// -update only for a deliberate, compatible addition.
func TestGolden(t *testing.T) {
	for _, p := range samplePayloads() {
		name := string(p.EventType())
		t.Run(name, func(t *testing.T) {
			b, err := events.Encode(sampleEvent(p))
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, b, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (run go test -run TestGolden -update ./events/ once to create it): %v", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("wire format of %s changed:\n got %s\nwant %s", name, pretty.Bytes(), want)
			}
			// The golden file still decodes to the same event: old stored
			// events stay readable.
			e, err := events.Decode(want)
			if err != nil {
				t.Fatalf("golden file no longer decodes: %v", err)
			}
			if !reflect.DeepEqual(e.Data, p) {
				t.Errorf("golden file decodes to %#v, want %#v", e.Data, p)
			}
		})
	}
}

// TestTypeNames pins the wire type strings independently of the golden files.
func TestTypeNames(t *testing.T) {
	want := []struct {
		p   events.Payload
		typ events.Type
	}{
		{events.PasscodeGenerated{}, "PasscodeGenerated"},
		{events.PasscodeRevealed{}, "PasscodeRevealed"},
		{events.PasscodeDisabled{}, "PasscodeDisabled"},
		{events.EnrollmentAttemptFailed{}, "EnrollmentAttemptFailed"},
		{events.EnrollmentAttemptSucceeded{}, "EnrollmentAttemptSucceeded"},
		{events.LockoutPolicyChanged{}, "LockoutPolicyChanged"},
		{events.EnrollmentAttemptExcused{}, "EnrollmentAttemptExcused"},
		{events.PasscodeExpired{}, "PasscodeExpired"},
		{events.PasscodeLockoutSimulated{}, "PasscodeLockoutSimulated"},
	}
	for _, w := range want {
		if w.p.EventType() != w.typ {
			t.Errorf("%T.EventType() = %q, want %q", w.p, w.p.EventType(), w.typ)
		}
	}
	if events.DisableManual != "manual" || events.DisableLockout != "lockout" {
		t.Error("disable reasons changed")
	}
	if events.ModeEnforce != "enforce" || events.ModeMonitor != "monitor" || events.OutcomeOutdated != "outdated" ||
		events.OutcomeMistyped != "mistyped" || events.LapseExpired != "expired" || events.LapseUsedUp != "used_up" {
		t.Error("lifecycle constants changed")
	}
	if events.ActorAdmin != "admin" || events.ActorSystem != "system" || events.ActorDevice != "device" {
		t.Error("actor kinds changed")
	}
	if events.HeaderEventType != "Enrollgate-Event-Type" || events.HeaderMAC != "Enrollgate-Mac" || events.SubjectAll != "enrollgate.events.>" {
		t.Error("subject or header constants changed")
	}
}

func TestReachesThreshold(t *testing.T) {
	cases := []struct {
		failed, max int
		want        bool
	}{{0, 0, false}, {5, 0, false}, {1, 1, true}, {9, 10, false}, {10, 10, true}, {11, 10, true}}
	for _, c := range cases {
		e := events.EnrollmentAttemptFailed{FailedAttempts: c.failed, MaxFailedAttempts: c.max}
		if got := e.ReachesThreshold(); got != c.want {
			t.Errorf("ReachesThreshold(%d of %d) = %v, want %v", c.failed, c.max, got, c.want)
		}
		if e.ReachesSimulatedThreshold() {
			t.Errorf("ReachesSimulatedThreshold(%d of %d) in enforce mode", c.failed, c.max)
		}
		e.Mode = events.ModeMonitor
		if e.ReachesThreshold() || e.ReachesSimulatedThreshold() != c.want {
			t.Errorf("monitor mode, %d of %d: locks %v, simulated %v; want no lock, simulated %v",
				c.failed, c.max, e.ReachesThreshold(), e.ReachesSimulatedThreshold(), c.want)
		}
	}
}
