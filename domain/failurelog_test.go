package domain_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/wirebin"
)

var logPolicy = domain.Policy{MaxFailedAttempts: 5, FailureWindow: 10 * time.Minute, MaxFailedPerSource: 2,
	SourceWindow: 15 * time.Minute}

// logSite is a failure log with the current generation's ID beside it, as
// its callers keep it.
type logSite struct {
	domain.FailureLog
	current string
}

func (l *logSite) apply(s logStep, pol domain.Policy) bool {
	locked := l.Apply(events.Event{OccurredAt: s.at, Data: s.p}, l.current, pol)
	if g, ok := s.p.(events.PasscodeGenerated); ok {
		l.current = g.PasscodeID
	}
	return locked
}

// logOf folds the payloads, each at its time, into a fresh log.
func logOf(t *testing.T, pol domain.Policy, steps ...logStep) *logSite {
	t.Helper()
	var l logSite
	for _, s := range steps {
		l.apply(s, pol)
	}
	return &l
}

type logStep struct {
	at time.Time
	p  events.Payload
}

func failedStep(at time.Time, id string, n int, s events.Source) logStep {
	return logStep{at, events.EnrollmentAttemptFailed{PasscodeID: id, Source: s, FailedAttempts: n,
		MaxFailedAttempts: logPolicy.MaxFailedAttempts, FailureWindow: events.Duration(logPolicy.FailureWindow)}}
}

func excusedStep(at time.Time, id string, s events.Source) logStep {
	return logStep{at, events.EnrollmentAttemptExcused{PasscodeID: id, Source: s, Outcome: events.OutcomeMistyped}}
}

func generatedAt(at time.Time, id string) logStep {
	return logStep{at, events.PasscodeGenerated{PasscodeID: id}}
}

func throttledKeys(l *logSite, now time.Time, pol domain.Policy) map[string]time.Time {
	out := map[string]time.Time{}
	for _, ts := range l.ThrottledSources(now, pol) {
		out[ts.Key] = ts.Until
	}
	return out
}

func TestFailureLogWindowEdges(t *testing.T) {
	a, b := src("192.0.2.1", ""), src("192.0.2.2", "")
	l := logOf(t, logPolicy, generatedAt(t0, "g1"), failedStep(at(0), "g1", 1, a), failedStep(at(5*time.Minute), "g1", 2, b))
	for _, tc := range []struct {
		now  time.Time
		want int
	}{
		{at(10*time.Minute - time.Nanosecond), 2},
		{at(10 * time.Minute), 1}, // a failure counts while it is younger than the window
		{at(15*time.Minute - time.Nanosecond), 1},
		{at(15 * time.Minute), 0},
	} {
		if got := l.FailedAttempts(tc.now, logPolicy); got != tc.want {
			t.Errorf("at %s: %d failures, want %d", tc.now.Sub(t0), got, tc.want)
		}
	}
	if got := l.LastFailedAt(); !got.Equal(at(5 * time.Minute)) {
		t.Errorf("LastFailedAt = %s", got)
	}
	// A failure after the window drops the aged-out ones: the last kept is the new one.
	l.apply(logStep{at(time.Hour), failedStep(at(0), "g1", 1, a).p}, logPolicy)
	if n, last := l.FailedAttempts(at(time.Hour), logPolicy), l.LastFailedAt(); n != 1 || !last.Equal(at(time.Hour)) {
		t.Errorf("after the window: %d failures, last %s", n, last)
	}
	// With a window of 0 nothing ages out.
	forever := logPolicy
	forever.FailureWindow = 0
	l = logOf(t, forever, generatedAt(t0, "g1"), failedStep(at(0), "g1", 1, a), failedStep(at(time.Hour), "g1", 2, b))
	if got := l.FailedAttempts(at(1000*time.Hour), forever); got != 2 {
		t.Errorf("window 0: %d failures, want 2", got)
	}
}

func TestFailureLogPerSourceLimits(t *testing.T) {
	attacker := src("192.0.2.66", "dev-evil")
	t.Run("counted failures throttle for the failure window", func(t *testing.T) {
		l := logOf(t, logPolicy, generatedAt(t0, "g1"), failedStep(at(0), "g1", 1, attacker), failedStep(at(time.Minute), "g1", 2, attacker))
		// Until the first failure leaves the source window (t0+15m): the
		// failure window's rule ends earlier here (t0+10m).
		want := map[string]time.Time{"ip:192.0.2.66": at(15 * time.Minute), "device:dev-evil": at(15 * time.Minute)}
		if got := throttledKeys(l, at(2*time.Minute), logPolicy); !reflect.DeepEqual(got, want) {
			t.Fatalf("throttled %v, want %v", got, want)
		}
		if got := l.ThrottledSources(at(2*time.Minute), logPolicy); len(got) != 2 || got[0].Key != "device:dev-evil" {
			t.Fatalf("throttled %v, want the device and the IP, sorted by key", got)
		}
		if got := throttledKeys(l, at(15*time.Minute), logPolicy); len(got) != 0 {
			t.Fatalf("throttled after both windows: %v", got)
		}
		long := logPolicy
		long.FailureWindow = time.Hour
		l = logOf(t, long, generatedAt(t0, "g1"), failedStep(at(0), "g1", 1, attacker), failedStep(at(time.Minute), "g1", 2, attacker))
		// With a longer failure window its rule is the later one.
		if got := throttledKeys(l, at(20*time.Minute), long); got["ip:192.0.2.66"] != at(time.Hour) {
			t.Fatalf("throttled %v, want the IP until the first failure leaves the failure window", got)
		}
		// Once its source times aged out (dropped by a later attempt of
		// another source), its counted failures alone still throttle it.
		l.apply(excusedStep(at(20*time.Minute), "g1", src("198.51.100.1", "")), long)
		if got := throttledKeys(l, at(21*time.Minute), long); got["ip:192.0.2.66"] != at(time.Hour) {
			t.Fatalf("throttled %v, want the IP until the first failure leaves the failure window", got)
		}
		long.FailureWindow = 0
		l = logOf(t, long, generatedAt(t0, "g1"), failedStep(at(0), "g1", 1, attacker), failedStep(at(time.Minute), "g1", 2, attacker))
		if u, ok := throttledKeys(l, at(1000*time.Hour), long)["ip:192.0.2.66"]; !ok || !u.IsZero() {
			t.Fatalf("window 0: until %v (throttled %v), want until a regeneration (zero)", u, ok)
		}
	})
	t.Run("one below the limit is not throttled", func(t *testing.T) {
		l := logOf(t, logPolicy, generatedAt(t0, "g1"), failedStep(at(0), "g1", 1, attacker))
		if got := throttledKeys(l, at(time.Minute), logPolicy); len(got) != 0 {
			t.Fatalf("throttled %v after one failure, limit 2", got)
		}
	})
	t.Run("the limit stays below the threshold", func(t *testing.T) {
		pol := logPolicy
		pol.MaxFailedAttempts, pol.MaxFailedPerSource = 2, 5
		l := logOf(t, pol, generatedAt(t0, "g1"), failedStep(at(0), "g1", 1, src("192.0.2.9", "")))
		if got := throttledKeys(l, at(time.Minute), pol); len(got) != 1 {
			t.Fatalf("throttled %v, want the source after one failure (threshold 2)", got)
		}
	})
	t.Run("sources are counted apart and forgotten", func(t *testing.T) {
		l := logOf(t, logPolicy, generatedAt(t0, "g1"), failedStep(at(0), "g1", 1, src("192.0.2.1", "d1")),
			failedStep(at(time.Minute), "g1", 2, src("192.0.2.2", "d1")))
		want := map[string]time.Time{"device:d1": at(15 * time.Minute)}
		if got := throttledKeys(l, at(2*time.Minute), logPolicy); !reflect.DeepEqual(got, want) {
			t.Fatalf("throttled %v, want %v", got, want)
		}
	})
}

func TestFailureLogExcusedAttempts(t *testing.T) {
	s := src("192.0.2.7", "")
	l := logOf(t, logPolicy, generatedAt(t0, "g1"), excusedStep(at(0), "g1", s), excusedStep(at(time.Minute), "g1", s))
	if n := l.FailedAttempts(at(time.Minute), logPolicy); n != 0 || l.Locked() || !l.LastFailedAt().IsZero() {
		t.Fatalf("excused attempts counted: %d failures, locked %v, last %s", n, l.Locked(), l.LastFailedAt())
	}
	if got := l.LastFailedSource(); got == nil || *got != s {
		t.Fatalf("LastFailedSource = %v, want %v", got, s)
	}
	// They count toward the source's rate: the source window's rule alone.
	want := map[string]time.Time{"ip:192.0.2.7": at(15 * time.Minute)}
	if got := throttledKeys(l, at(2*time.Minute), logPolicy); !reflect.DeepEqual(got, want) {
		t.Fatalf("throttled %v, want %v", got, want)
	}
	// So do failures of another generation, which count toward no lockout.
	l = logOf(t, logPolicy, generatedAt(t0, "g2"), failedStep(at(0), "g1", 1, s), failedStep(at(time.Minute), "g1", 2, s))
	if n := l.FailedAttempts(at(time.Minute), logPolicy); n != 0 || l.LastFailedSource() != nil {
		t.Fatalf("another generation's failures counted: %d", n)
	}
	if got := throttledKeys(l, at(2*time.Minute), logPolicy); !reflect.DeepEqual(got, want) {
		t.Fatalf("throttled %v, want %v", got, want)
	}
}

func TestFailureLogLockAndReset(t *testing.T) {
	var l logSite
	apply := func(s logStep) bool { return l.apply(s, logPolicy) }
	apply(generatedAt(t0, "g1"))
	for i := 1; i < 5; i++ {
		if apply(failedStep(at(time.Duration(i)*time.Second), "g1", i, src("192.0.2.1", ""))) || l.Locked() {
			t.Fatalf("locked by failure %d of 5", i)
		}
	}
	monitor := failedStep(at(5*time.Second), "g1", 5, src("192.0.2.2", ""))
	m := monitor.p.(events.EnrollmentAttemptFailed)
	m.Mode = events.ModeMonitor
	if apply(logStep{monitor.at, m}) || l.Locked() {
		t.Fatal("a failure reaching the threshold in monitor mode locked")
	}
	if !apply(failedStep(at(6*time.Second), "g1", 5, src("192.0.2.3", ""))) || !l.Locked() {
		t.Fatal("the failure reaching the threshold did not lock")
	}
	if apply(failedStep(at(7*time.Second), "g1", 6, src("192.0.2.4", ""))) {
		t.Fatal("a second failure locked again")
	}
	if !l.Locked() || l.FailedAttempts(at(time.Hour), logPolicy) != 0 {
		t.Fatal("the lock did not outlast the window")
	}
	// A new generation starts with a fresh count and no lock; the source's
	// rate goes on.
	apply(generatedAt(at(8*time.Second), "g2"))
	if l.Locked() || l.FailedAttempts(at(9*time.Second), logPolicy) != 0 || !l.LastFailedAt().IsZero() || l.LastFailedSource() != nil {
		t.Fatal("a new generation kept the old one's failures or lock")
	}
	if got := throttledKeys(&l, at(9*time.Second), logPolicy); len(got) != 1 {
		t.Fatalf("throttled %v, want 192.0.2.1 still (four failures in the source window)", got)
	}
	// A policy that the counted failures already reach locks; an invalid one
	// is ignored.
	for i := 1; i <= 2; i++ {
		apply(failedStep(at(10*time.Second), "g2", i, src("192.0.2.5", "")))
	}
	if apply(logStep{at(11 * time.Second), events.LockoutPolicyChanged{MaxFailedAttempts: 0, PasscodeID: "g2", FailedAttempts: 2}}) ||
		l.Policy(logPolicy).MaxFailedAttempts != 5 {
		t.Fatal("an invalid policy was applied")
	}
	if apply(logStep{at(11 * time.Second), events.LockoutPolicyChanged{MaxFailedAttempts: 2, FailureWindow: events.Duration(time.Hour),
		PasscodeID: "g1", FailedAttempts: 2}}) || l.Locked() {
		t.Fatal("a policy naming the replaced generation locked the current one")
	}
	if !apply(logStep{at(12 * time.Second), events.LockoutPolicyChanged{MaxFailedAttempts: 2, FailureWindow: events.Duration(time.Hour),
		PasscodeID: "g2", FailedAttempts: 2}}) || !l.Locked() {
		t.Fatal("a policy the failures reach did not lock")
	}
	if pol := l.Policy(logPolicy); pol.MaxFailedAttempts != 2 || pol.FailureWindow != time.Hour || pol.Mode != events.ModeEnforce ||
		pol.SourceWindow != logPolicy.SourceWindow {
		t.Fatalf("policy in force %+v", pol)
	}
}

func TestFailureLogEncoding(t *testing.T) {
	pol := logPolicy
	pol.MaxFailedPerSource = 50
	steps := []logStep{generatedAt(t0, "g1"),
		{at(0), events.LockoutPolicyChanged{MaxFailedAttempts: 100, FailureWindow: events.Duration(time.Hour), Mode: events.ModeEnforce}}}
	for i := range 40 {
		s := events.Source{IP: "192.0.2." + string(rune('0'+i%7)), DeviceID: "d", Platform: "ios", UserAgent: "ua"}
		steps = append(steps, failedStep(at(time.Duration(i)*time.Second), "g1", 100, s))
	}
	steps = append(steps, excusedStep(at(time.Minute), "g1", src("198.51.100.1", "")))
	l := logOf(t, pol, steps...)
	for name, log := range map[string]*domain.FailureLog{"empty": {}, "locked and busy": &l.FailureLog} {
		b := log.AppendBinary([]byte{0xAA})
		r := wirebin.NewReader(append(b[1:], 0xBB))
		got := domain.DecodeFailureLog(r)
		if r.Err() != nil || r.Len() != 1 || r.Byte() != 0xBB {
			t.Fatalf("%s: %d bytes left, err %v", name, r.Len(), r.Err())
		}
		if !reflect.DeepEqual(&got, log) {
			t.Fatalf("%s: decoded\n%+v\nwant\n%+v", name, got, *log)
		}
		for i := range len(b) - 1 {
			if r := wirebin.NewReader(b[1 : 1+i]); !reflect.DeepEqual(domain.DecodeFailureLog(r), domain.FailureLog{}) || r.Err() == nil {
				t.Fatalf("%s: truncated to %d of %d bytes: no error", name, i, len(b)-1)
			}
		}
	}
	// A clone and its original change apart: each folds like a fresh log.
	c := logSite{l.Clone(), l.current}
	more := func(d time.Duration) logStep {
		return failedStep(at(d), "g1", 1, events.Source{IP: "192.0.2.1", DeviceID: "d", Platform: "ios", UserAgent: "ua"})
	}
	c.apply(more(2*time.Minute), pol)
	l.apply(more(3*time.Minute), pol)
	if want := logOf(t, pol, append(steps, more(2*time.Minute))...); !reflect.DeepEqual(&c, want) {
		t.Fatal("the clone folds differently from a fresh log")
	}
	if want := logOf(t, pol, append(steps, more(3*time.Minute))...); !reflect.DeepEqual(l, want) {
		t.Fatal("the original folds differently from a fresh log after its clone changed")
	}
}
