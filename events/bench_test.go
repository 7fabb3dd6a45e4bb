package events_test

import (
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// benchEvents are representative events: the two that make up almost all of
// the log (attempts) and the largest (a lockout disable with its sources).
func benchEvents() map[string]events.Event {
	at := time.Date(2026, 3, 1, 9, 30, 0, 123456789, time.UTC)
	src := events.Source{IP: "203.0.113.7", DeviceID: "C02XK1JHJG5H", Platform: "ios",
		UserAgent: "MDM-Enroll/2.1 (iPhone; iOS 19.1)"}
	device := events.Actor{Kind: events.ActorDevice, ID: src.DeviceID}
	digest := []byte("0123456789abcdef")
	return map[string]events.Event{
		"AttemptFailed": {ID: "01JNQ3Z8W6V4K2B7C5D9E1F3G5", Site: "acme-corp", OccurredAt: at, Actor: device,
			Data: events.EnrollmentAttemptFailed{PasscodeID: "01JNQ3Y0000000000000000000", AttemptID: "01JNQ3Z8W6V4K2B7C5D9E1F3G4",
				AttemptDigest: digest, Source: src, FailedAttempts: 3, MaxFailedAttempts: 10,
				FailureWindow: events.Duration(time.Hour)}},
		"AttemptSucceeded": {ID: "01JNQ3Z8W6V4K2B7C5D9E1F3G6", Site: "acme-corp", OccurredAt: at, Actor: device,
			Data: events.EnrollmentAttemptSucceeded{PasscodeID: "01JNQ3Y0000000000000000000",
				AttemptID: "01JNQ3Z8W6V4K2B7C5D9E1F3G7", AttemptDigest: digest, Source: src}},
		"LockoutDisabled": {ID: "01JNQ3Z8W6V4K2B7C5D9E1F3G8", Site: "acme-corp", OccurredAt: at,
			Actor: events.Actor{Kind: events.ActorSystem, ID: "lockout"},
			Data: events.PasscodeDisabled{PasscodeID: "01JNQ3Y0000000000000000000", Reason: events.DisableLockout,
				FailedAttempts: 10, MaxFailedAttempts: 10, FailureWindow: events.Duration(time.Hour),
				FirstFailedAt: &at, LastFailedAt: &at, RecentSources: []events.Source{src, src, src, src, src}}},
	}
}

// BenchmarkEncode measures events.Encode, which every append runs once.
func BenchmarkEncode(b *testing.B) {
	for name, e := range benchEvents() {
		b.Run(name, func(b *testing.B) {
			data, err := events.Encode(e)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := events.Encode(e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode measures events.Decode, which every consumer (projections,
// saga, alerts) and every catch-up runs once per event.
func BenchmarkDecode(b *testing.B) {
	for name, e := range benchEvents() {
		b.Run(name, func(b *testing.B) {
			data, err := events.Encode(e)
			if err != nil {
				b.Fatal(err)
			}
			got, err := events.Decode(data)
			if err != nil {
				b.Fatal(err)
			}
			if got.ID != e.ID || got.Type() != e.Type() {
				b.Fatalf("round trip: got %s %s, want %s %s", got.Type(), got.ID, e.Type(), e.ID)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := events.Decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
