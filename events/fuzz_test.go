package events_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// FuzzDecode checks that Decode never panics on any input, and that whatever
// it accepts encodes again and decodes to an equal event: nothing that can be
// read from the log is lost or changed by writing it back.
func FuzzDecode(f *testing.F) {
	for _, p := range samplePayloads() {
		b, err := events.Encode(sampleEvent(p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `"x"`, `{"id":1}`,
		`{"id":"01HZY8V2Q8N6J4X6C1T9B3K5MD","type":"PasscodeRevealed","site":"a","occurred_at":"2024-01-01T00:00:00Z","actor":{},"data":null}`,
		`{"id":"01HZY8V2Q8N6J4X6C1T9B3K5MD","type":"Nope","site":"a","occurred_at":"2024-01-01T00:00:00Z","data":{}}`,
		`{"id":"01HZY8V2Q8N6J4X6C1T9B3K5MD","type":"PasscodeRevealed","site":"A","occurred_at":"2024-01-01T00:00:00Z","data":{}}`,
		`{"id":"zz","type":"PasscodeRevealed","site":"a","occurred_at":"2024-01-01T00:00:00Z","data":{}}`,
		`{"id":"01HZY8V2Q8N6J4X6C1T9B3K5MD","type":"PasscodeDisabled","site":"a","occurred_at":"2024-01-01T00:00:00+05:00","data":{"recent_sources":[],"first_failed_at":"2024-01-01T00:00:00+01:00","failure_window":3600000000000}}`,
		`{"id":"01HZY8V2Q8N6J4X6C1T9B3K5MD","type":"EnrollmentAttemptFailed","site":"a","occurred_at":"2024-01-01T00:00:00Z","data":{"attempt_digest":"","failure_window":"1.5h","source":{}}}`,
		`{"id":"01HZY8V2Q8N6J4X6C1T9B3K5MD","type":"PasscodeGenerated","site":"a","occurred_at":"0000-01-01T00:00:00+01:00","data":{"hash":"AAE="}}`,
		`{"id":"01HZY8V2Q8N6J4X6C1T9B3K5MD","type":"PasscodeGenerated","site":"a","occurred_at":"9999-12-31T23:59:59-01:00","data":{"hash":"AAE="}}`,
		`{"id":"01HZY8V2Q8N6J4X6C1T9B3K5MD","type":"LockoutPolicyChanged","site":"a","occurred_at":"2024-01-01T00:00:00Z","data":{"failure_window":null}}`,
		`{"id":"00000000000000000000000000","type":"EnrollmentAttemptExcused","site":"0","occurred_at":"0000-01-01T00:00:00Z","data":{"attempt_digest":""}}`,
		`{"id":"01HZY8V2Q8N6J4X6C1T9B3K5MD","type":"PasscodeLockoutSimulated","site":"a","occurred_at":"2024-01-01T00:00:00Z","data":{"first_failed_at":"2024-01-01T00:00:00+01:00","recent_sources":[]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e1, err := events.Decode(b)
		if err != nil {
			return
		}
		b2, err := events.Encode(e1)
		if err != nil {
			t.Fatalf("decoded %q but cannot encode it again: %v", b, err)
		}
		e2, err := events.Decode(b2)
		if err != nil {
			t.Fatalf("re-encoded event %s does not decode: %v", b2, err)
		}
		if c1, c2 := canonical(e1), canonical(e2); !reflect.DeepEqual(c1, c2) {
			t.Fatalf("round trip changed the event:\n first %#v\nsecond %#v", c1, c2)
		}
	})
}

// canonical returns e with what JSON cannot tell apart made equal: instants
// in UTC (a time's zone is presentation), and empty slices as nil.
func canonical(e events.Event) events.Event {
	e.OccurredAt = e.OccurredAt.UTC()
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	bytesOrNil := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	switch d := e.Data.(type) {
	case events.PasscodeGenerated:
		d.Hash, d.Sealed = bytesOrNil(d.Hash), bytesOrNil(d.Sealed)
		d.ExpiresAt, d.RetiringUntil = utc(d.ExpiresAt), utc(d.RetiringUntil)
		e.Data = d
	case events.PasscodeDisabled:
		d.FirstFailedAt, d.LastFailedAt = utc(d.FirstFailedAt), utc(d.LastFailedAt)
		if len(d.RecentSources) == 0 {
			d.RecentSources = nil
		}
		e.Data = d
	case events.EnrollmentAttemptFailed:
		d.AttemptDigest = bytesOrNil(d.AttemptDigest)
		e.Data = d
	case events.EnrollmentAttemptSucceeded:
		d.AttemptDigest = bytesOrNil(d.AttemptDigest)
		e.Data = d
	case events.EnrollmentAttemptExcused:
		d.AttemptDigest = bytesOrNil(d.AttemptDigest)
		e.Data = d
	case events.PasscodeExpired:
		d.ExpiresAt = utc(d.ExpiresAt)
		e.Data = d
	case events.PasscodeLockoutSimulated:
		d.FirstFailedAt, d.LastFailedAt = utc(d.FirstFailedAt), utc(d.LastFailedAt)
		if len(d.RecentSources) == 0 {
			d.RecentSources = nil
		}
		e.Data = d
	}
	return e
}
