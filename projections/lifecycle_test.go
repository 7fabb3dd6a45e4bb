package projections

import (
	"reflect"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

func TestStateDocLifecycle(t *testing.T) {
	pol := domain.DefaultPolicy()
	until, expires := t0.Add(2*time.Hour), t0.Add(3*time.Hour)
	g2 := gen("p2")
	g2.CheckCharacter, g2.MaxEnrollments, g2.ExpiresAt = true, 2, &expires
	g2.RetiringPasscodeID, g2.RetiringUntil = "p1", &until
	src := events.Source{IP: "192.0.2.7", DeviceID: "d7"}
	base := []events.Record{
		rec(1, t0, alice, gen("p1")),
		rec(2, t0.Add(time.Minute), alice, g2),
		rec(3, t0.Add(2*time.Minute), dev, events.EnrollmentAttemptSucceeded{PasscodeID: "p2", Enrollments: 1, MaxEnrollments: 2}),
		rec(4, t0.Add(3*time.Minute), dev, events.EnrollmentAttemptExcused{PasscodeID: "p2", Source: src, Outcome: events.OutcomeOutdated, OutdatedPasscodeID: "p1"}),
		rec(5, t0.Add(4*time.Minute), alice, events.LockoutPolicyChanged{MaxFailedAttempts: 3, FailureWindow: events.Duration(time.Hour),
			PasscodeID: "p2", Mode: events.ModeMonitor}),
	}
	check := func(t *testing.T, recs []events.Record, now time.Time, want func(d StateDoc) bool) StateDoc {
		t.Helper()
		s := NewSiteState("acme", pol)
		s.Apply(recs...)
		d := s.Doc(now)
		p := domain.New("acme", pol)
		p.Replay(recs...)
		if ref := docFromDomain(p, pol, recs, now); !reflect.DeepEqual(d, ref) {
			t.Fatalf("differs from domain:\n got %+v\nwant %+v", d, ref)
		}
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		s2, err := DecodeSiteState(b, pol)
		if err != nil {
			t.Fatal(err)
		}
		if d2 := s2.Doc(now); !reflect.DeepEqual(d2, d) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", d2, d)
		}
		if !want(d) {
			t.Fatalf("doc %+v", d)
		}
		return d
	}
	d := check(t, base, t0.Add(5*time.Minute), func(d StateDoc) bool {
		return d.Status == domain.StatusActive && d.Mode == events.ModeMonitor && d.CheckCharacter && d.MaxEnrollments == 2 &&
			d.Enrollments == 1 && d.LastEnrolledAt.Equal(t0.Add(2*time.Minute)) && d.ExpiresAt.Equal(expires) &&
			d.Retiring != nil && d.Retiring.PasscodeID == "p1" && d.Retiring.Until.Equal(until) &&
			d.LastFailedSource != nil && *d.LastFailedSource == src && d.FailedAttempts == 0
	})
	_ = d
	t.Run("the grace ends", func(t *testing.T) {
		check(t, base, until, func(d StateDoc) bool { return d.Retiring == nil })
	})
	t.Run("expired", func(t *testing.T) {
		check(t, base, expires, func(d StateDoc) bool { return d.Status == domain.StatusExpired })
	})
	t.Run("used up", func(t *testing.T) {
		recs := append(base[:len(base):len(base)], rec(6, t0.Add(6*time.Minute), dev,
			events.EnrollmentAttemptSucceeded{PasscodeID: "p2", Enrollments: 2, MaxEnrollments: 2}))
		check(t, recs, t0.Add(7*time.Minute), func(d StateDoc) bool { return d.Status == domain.StatusUsedUp && d.Enrollments == 2 })
	})
	t.Run("a lockout of any generation ends the grace", func(t *testing.T) {
		recs := append(base[:len(base):len(base)], rec(6, t0.Add(6*time.Minute), saga,
			events.PasscodeDisabled{PasscodeID: "p0", Reason: events.DisableLockout}))
		check(t, recs, t0.Add(7*time.Minute), func(d StateDoc) bool { return d.Retiring == nil && d.Status == domain.StatusActive })
	})
	t.Run("monitor mode does not lock", func(t *testing.T) {
		recs := append(base[:len(base):len(base)], rec(6, t0.Add(6*time.Minute), dev,
			events.EnrollmentAttemptFailed{PasscodeID: "p2", Source: src, FailedAttempts: 3, MaxFailedAttempts: 3,
				FailureWindow: events.Duration(time.Hour), Mode: events.ModeMonitor}))
		check(t, recs, t0.Add(7*time.Minute), func(d StateDoc) bool { return !d.Locked && d.FailedAttempts == 1 && d.Retiring != nil })
	})
}

func TestAttemptOutcomes(t *testing.T) {
	for _, o := range []Outcome{OutcomeOutdated, OutcomeMistyped, OutcomeFailed, OutcomeSucceeded, ""} {
		if got, ok := ParseOutcome(string(o)); !ok || got != o {
			t.Errorf("ParseOutcome(%q) = %q, %v", o, got, ok)
		}
	}
	if _, ok := ParseOutcome("excused"); ok {
		t.Error("ParseOutcome accepted an unknown outcome")
	}
	for _, x := range []events.EnrollmentAttemptExcused{
		{PasscodeID: "p2", AttemptID: "a1", Source: events.Source{IP: "192.0.2.1"}, Outcome: events.OutcomeOutdated, OutdatedPasscodeID: "p1", FailedAttempts: 4},
		{PasscodeID: "p2", AttemptID: "a2", Source: events.Source{DeviceID: "d"}, Outcome: events.OutcomeMistyped, FailedAttempts: 4},
	} {
		r := rec(9, t0, dev, x)
		e, ok := attemptEntryOf(r)
		if !ok || string(e.Outcome) != string(x.Outcome) || e.OutdatedPasscodeID != x.OutdatedPasscodeID || e.FailedAttempts != 0 {
			t.Fatalf("attemptEntryOf = %+v, %v", e, ok)
		}
		fromAudit, err := AttemptFromAudit(NewAuditEntry(r))
		if err != nil || !reflect.DeepEqual(fromAudit, e) {
			t.Fatalf("AttemptFromAudit = %+v, %v; want %+v", fromAudit, err, e)
		}
	}
}
