package projections

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// TestStateDocFromDomainEqualsReadModel: the document a write answers with
// equals the read model's document of the same history (throttled sources
// aside, which domain.State does not carry), field for field and in JSON.
func TestStateDocFromDomainEqualsReadModel(t *testing.T) {
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	admin := events.Actor{Kind: events.ActorAdmin, ID: "ops@acme.example"}
	device := events.Actor{Kind: events.ActorDevice, ID: "device"}
	mk := func(seq uint64, d time.Duration, actor events.Actor, p events.Payload) events.Record {
		return events.Record{Seq: seq, Event: events.Event{ID: "01JSTATEDOC" + string(rune('A'+seq)), Site: "acme",
			OccurredAt: at.Add(d), Actor: actor, Data: p}}
	}
	failed := func(n int, ip string) events.EnrollmentAttemptFailed {
		return events.EnrollmentAttemptFailed{PasscodeID: "p1", Source: events.Source{IP: ip}, FailedAttempts: n,
			MaxFailedAttempts: 10, FailureWindow: events.Duration(time.Hour)}
	}
	histories := map[string][]events.Record{
		"none": nil,
		"active with failures": {
			mk(1, 0, admin, events.PasscodeGenerated{PasscodeID: "p1"}),
			mk(2, time.Minute, device, failed(1, "10.0.0.1")),
			mk(3, 2*time.Minute, device, failed(2, "10.0.0.2")),
		},
		"disabled by hand": {
			mk(1, 0, admin, events.PasscodeGenerated{PasscodeID: "p1"}),
			mk(2, time.Minute, device, failed(1, "10.0.0.1")),
			mk(3, 2*time.Minute, admin, events.PasscodeDisabled{PasscodeID: "p1", Reason: events.DisableManual, FailedAttempts: 1}),
		},
		"policy override": {
			mk(1, 0, admin, events.LockoutPolicyChanged{MaxFailedAttempts: 5, FailureWindow: events.Duration(30 * time.Minute)}),
		},
	}
	now := at.Add(5 * time.Minute)
	for name, recs := range histories {
		t.Run(name, func(t *testing.T) {
			p := domain.New("acme", domain.DefaultPolicy())
			p.Replay(recs...)
			got := StateDocFromDomain(p.State(now))
			s := NewSiteState("acme", domain.DefaultPolicy())
			s.Apply(recs...)
			want := s.Doc(now)
			want.ThrottledSources = nil
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("from domain\n got %+v\nwant %+v", got, want)
			}
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(want)
			if string(gb) != string(wb) {
				t.Fatalf("JSON differs:\n got %s\nwant %s", gb, wb)
			}
			if got.GeneratedAt != nil && got.GeneratedAt.Location() != time.UTC {
				t.Fatalf("generated_at not in UTC: %v", got.GeneratedAt)
			}
		})
	}
}
