package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/enrollgate/enrollgate/events"
)

func TestDecodeStored(t *testing.T) {
	e := events.Event{ID: testID, Site: testSite, OccurredAt: at, Actor: events.Actor{Kind: events.ActorSystem},
		Data: events.PasscodeRevealed{PasscodeID: testID}}
	data, err := events.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	unknown := strings.Replace(string(data), `"PasscodeRevealed"`, `"PasscodeFromTheFuture"`, 1)
	subj := events.Subject(testSite)
	// A site the contract refuses, on the subject it would name.
	badSite := strings.Replace(string(data), `"site":"`+string(testSite)+`"`, `"site":"Acme"`, 1)
	signed := func(typ string) map[string][]string {
		return map[string][]string{events.HeaderMAC: {"k:mac"}, events.HeaderEventType: {typ}}
	}
	unsigned := map[string][]string{events.HeaderEventType: {string(events.TypePasscodeRevealed)}}
	cases := []struct {
		name    string
		subject string
		seq     uint64
		header  map[string][]string
		data    string
		want    error // nil: decodes
	}{
		{"signed event", subj, 7, signed(string(events.TypePasscodeRevealed)), string(data), nil},
		{"legacy event", subj, 7, unsigned, string(data), nil},
		{"legacy event without type header", subj, 7, nil, string(data), nil},
		{"signed, other site's subject", events.Subject("globex"), 7, signed(string(events.TypePasscodeRevealed)), string(data), events.ErrMalformed},
		{"unsigned, other site's subject", events.Subject("globex"), 7, unsigned, string(data), events.ErrForged},
		{"signed, type header lies", subj, 7, signed(string(events.TypePasscodeDisabled)), string(data), events.ErrMalformed},
		{"unsigned, type header lies", subj, 7, map[string][]string{events.HeaderEventType: {"PasscodeDisabled"}}, string(data), events.ErrForged},
		{"signed, not JSON", subj, 7, signed(string(events.TypePasscodeRevealed)), "{", events.ErrMalformed},
		{"unsigned, not JSON", subj, 7, unsigned, `{"forged":true}`, events.ErrForged},
		{"signed, unknown type", subj, 7, signed("PasscodeFromTheFuture"), unknown, events.ErrUnknownType},
		{"unsigned, unknown type", subj, 7, nil, unknown, events.ErrForged},
		{"empty MAC header is unsigned", subj, 7, map[string][]string{events.HeaderMAC: {""}}, "{", events.ErrForged},
		{"signed, invalid site", events.Subject("Acme"), 7, signed(string(events.TypePasscodeRevealed)), badSite, events.ErrMalformed},
		{"unsigned, invalid site", events.Subject("Acme"), 7, unsigned, badSite, events.ErrForged},
		{"no sequence", subj, 0, signed(string(events.TypePasscodeRevealed)), string(data), events.ErrMalformed},
	}
	sentinels := []error{events.ErrForged, events.ErrMalformed, events.ErrUnknownType}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec, err := events.DecodeStored(c.subject, c.seq, c.header, []byte(c.data))
			if c.want == nil {
				if err != nil {
					t.Fatalf("DecodeStored: %v", err)
				}
				if rec.Seq != c.seq || rec.Event.ID != testID || rec.Event.Site != testSite || rec.Event.Type() != events.TypePasscodeRevealed {
					t.Fatalf("record = %+v", rec)
				}
				return
			}
			// Exactly one class, so that no caller takes a forgery for an
			// event of a newer version or the other way round.
			for _, s := range sentinels {
				if errors.Is(err, s) != (s == c.want) {
					t.Errorf("DecodeStored error %v: errors.Is(%v) = %v", err, s, !(s == c.want))
				}
			}
		})
	}
}
