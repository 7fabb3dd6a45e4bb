package projections

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/events"
)

func TestAppendStringDecodesLikeEncodingJSON(t *testing.T) {
	cases := []string{"", "plain", `quote " and \ backslash`, "tab\tnew\nline\r", "\x00\x01\x1f\x7f", "<>&",
		"héllo ✓ 😀", "bad \xff utf8 \xc3", "\u2028\u2029"}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		var got, want string
		if err := json.Unmarshal(appendString(nil, s), &got); err != nil {
			t.Fatalf("%q: invalid JSON %s: %v", s, appendString(nil, s), err)
		}
		wb, _ := json.Marshal(s)
		if err := json.Unmarshal(wb, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%q decodes to %q, encoding/json gives %q", s, got, want)
		}
	}
}

// TestAuditAppendJSONMatchesEncodingJSON: the hand-written encoding decodes
// to the same entry as encoding/json's, for every event type.
func TestAuditAppendJSONMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	hist := randomHistory(rng, 500)
	at := t0.Add(time.Minute)
	odd := events.Actor{Kind: events.ActorAdmin, ID: "we\"ird\n<admin>@x"}
	hist = append(hist,
		rec(9001, at, saga, events.PasscodeDisabled{PasscodeID: "p", Reason: events.DisableLockout, FailedAttempts: 3,
			MaxFailedAttempts: 3, FailureWindow: events.Duration(time.Hour), FirstFailedAt: &at, LastFailedAt: &at,
			RecentSources: []events.Source{{IP: "1.2.3.4", UserAgent: "UA \"q\""}, {DeviceID: "d"}}}),
		rec(9002, at, odd, events.LockoutPolicyChanged{MaxFailedAttempts: 4}),
		rec(9003, at, events.Actor{}, gen("p9")),
	)
	for _, r := range hist {
		a := NewAuditEntry(r)
		var got, want AuditEntry
		if err := json.Unmarshal(a.AppendJSON(nil), &got); err != nil {
			t.Fatalf("seq %d: %v\n%s", r.Seq, err, a.AppendJSON(nil))
		}
		wb, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(wb, &want); err != nil {
			t.Fatal(err)
		}
		// Details: compare as values (encoding/json compacts and escapes them).
		var gd, wd any
		_ = json.Unmarshal(got.Details, &gd)
		_ = json.Unmarshal(want.Details, &wd)
		if !reflect.DeepEqual(gd, wd) {
			t.Fatalf("seq %d details differ:\n%s\n%s", r.Seq, got.Details, want.Details)
		}
		got.Details, want.Details = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seq %d differs:\n%+v\n%+v", r.Seq, got, want)
		}
	}
}

func TestAttemptFromAuditEqualsattemptEntryOf(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	n := 0
	for _, r := range randomHistory(rng, 800) {
		r.Event.OccurredAt = r.Event.OccurredAt.Add(123456789 * time.Nanosecond)
		want, ok := attemptEntryOf(r)
		// Through storage: encode and decode the audit entry first.
		var a AuditEntry
		if err := json.Unmarshal(NewAuditEntry(r).AppendJSON(nil), &a); err != nil {
			t.Fatal(err)
		}
		got, err := AttemptFromAudit(a)
		if !ok {
			if err == nil {
				t.Fatalf("seq %d (%s) gave an attempt", r.Seq, r.Event.Type())
			}
			continue
		}
		n++
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("seq %d: %v\n got %+v\nwant %+v", r.Seq, err, got, want)
		}
	}
	if n < 100 {
		t.Fatalf("only %d attempts exercised", n)
	}
}
