package domain_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

func TestGenerate(t *testing.T) {
	newGen := domain.NewGeneration{PasscodeID: "g2", Hash: right("g2"), HashKeyID: "mac-1", Sealed: []byte("s"), SealKeyID: "seal-1"}
	cases := []struct {
		name    string
		given   []ev
		input   domain.NewGeneration
		wantErr error
	}{
		{name: "on empty", input: newGen},
		{name: "on an active passcode", given: []ev{generated(t0, "g1")}, input: newGen},
		{name: "on a disabled passcode", given: []ev{generated(t0, "g1"), disabled(at(time.Minute), "g1", events.DisableManual)}, input: newGen},
		{name: "without ID", input: domain.NewGeneration{Hash: []byte("h"), HashKeyID: "k", Sealed: []byte("s"), SealKeyID: "k"}, wantErr: domain.ErrInvalid},
		{name: "without hash", input: domain.NewGeneration{PasscodeID: "g", HashKeyID: "k", Sealed: []byte("s"), SealKeyID: "k"}, wantErr: domain.ErrInvalid},
		{name: "without hash key", input: domain.NewGeneration{PasscodeID: "g", Hash: []byte("h"), Sealed: []byte("s"), SealKeyID: "k"}, wantErr: domain.ErrInvalid},
		{name: "without sealed copy", input: domain.NewGeneration{PasscodeID: "g", Hash: []byte("h"), HashKeyID: "k", SealKeyID: "k"}, wantErr: domain.ErrInvalid},
		{name: "without seal key", input: domain.NewGeneration{PasscodeID: "g", Hash: []byte("h"), HashKeyID: "k", Sealed: []byte("s")}, wantErr: domain.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := given(domain.DefaultPolicy(), c.given...)
			got, err := p.Generate(t0, c.input)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) || got != nil {
					t.Fatalf("Generate = %v, %v; want nil, %v", got, err, c.wantErr)
				}
				return
			}
			want := events.PasscodeGenerated{PasscodeID: "g2", Hash: right("g2"), HashKeyID: "mac-1", Sealed: []byte("s"), SealKeyID: "seal-1"}
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("Generate = %#v, %v; want %#v", got, err, want)
			}
		})
	}
}

func TestRegenerateReplacesAtOnceWithFreshCount(t *testing.T) {
	p := given(domain.DefaultPolicy(), generated(t0, "g1"))
	failN(t, p, at(time.Minute), 3)
	if s := p.State(at(2 * time.Minute)); s.FailedAttempts != 3 {
		t.Fatalf("failed attempts before regeneration = %d, want 3", s.FailedAttempts)
	}
	payload, err := p.Generate(t0, domain.NewGeneration{PasscodeID: "g2", Hash: right("g2"), HashKeyID: "mac-2", Sealed: []byte("s2"), SealKeyID: "seal-2"})
	if err != nil {
		t.Fatal(err)
	}
	store(t, p, at(3*time.Minute), alice, payload)

	s := p.State(at(3 * time.Minute))
	if s.Status != domain.StatusActive || s.PasscodeID != "g2" || s.FailedAttempts != 0 || s.Locked {
		t.Fatalf("state after regeneration = %+v, want g2 active with no failures", s)
	}
	cur, ok := p.Current()
	if !ok || cur.PasscodeID != "g2" || cur.HashKeyID != "mac-2" || string(cur.Sealed) != "s2" || cur.SealKeyID != "seal-2" ||
		!cur.GeneratedAt.Equal(at(3*time.Minute)) || cur.GeneratedBy != alice {
		t.Fatalf("Current = %+v, %v", cur, ok)
	}
	// The old passcode stops working at once; the new one works.
	v, payload := p.Verify(at(4*time.Minute), domain.Attempt{Source: ip("1.1.1.1"), CandidateMAC: right("g1")})
	if v.OK || v.Reason != domain.ReasonWrongPasscode || v.PasscodeID != "g2" {
		t.Errorf("old passcode after regeneration: %+v, want wrong_passcode for g2", v)
	}
	if f, ok := payload.(events.EnrollmentAttemptFailed); !ok || f.FailedAttempts != 1 || f.PasscodeID != "g2" {
		t.Errorf("old passcode after regeneration recorded %#v, want the first failure of g2", payload)
	}
	v, _ = p.Verify(at(4*time.Minute), domain.Attempt{Source: ip("1.1.1.1"), CandidateMAC: right("g2")})
	if !v.OK || v.PasscodeID != "g2" {
		t.Errorf("new passcode: %+v, want OK", v)
	}
}

func TestVerify(t *testing.T) {
	pol := policy(3, time.Hour, 2, 15*time.Minute)
	s1 := src("192.0.2.1", "dev-1")
	cases := []struct {
		name    string
		pol     domain.Policy
		given   []ev
		when    time.Time
		attempt domain.Attempt
		verdict domain.Verdict
		payload events.Payload // nil: nothing recorded
	}{
		{
			name: "not generated", pol: pol, when: t0,
			attempt: domain.Attempt{ID: "a", Source: s1, CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonNotGenerated},
		},
		{
			name: "right passcode", pol: pol, given: []ev{generated(t0, "g1")}, when: at(time.Minute),
			attempt: domain.Attempt{Source: s1, CandidateMAC: right("g1")},
			verdict: domain.Verdict{OK: true, PasscodeID: "g1"},
			payload: events.EnrollmentAttemptSucceeded{PasscodeID: "g1", Source: s1, Enrollments: 1},
		},
		{
			name: "wrong passcode, first failure", pol: pol, given: []ev{generated(t0, "g1")}, when: at(time.Minute),
			attempt: domain.Attempt{Source: s1, CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "g1"},
			payload: events.EnrollmentAttemptFailed{PasscodeID: "g1", Source: s1, FailedAttempts: 1, MaxFailedAttempts: 3,
				FailureWindow: events.Duration(time.Hour)},
		},
		{
			name: "wrong passcode counts the failures in the window", pol: pol,
			given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 1, 3, time.Hour, ip("198.51.100.1"))},
			when:  at(30 * time.Minute), attempt: domain.Attempt{Source: s1, CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "g1"},
			payload: events.EnrollmentAttemptFailed{PasscodeID: "g1", Source: s1, FailedAttempts: 2, MaxFailedAttempts: 3,
				FailureWindow: events.Duration(time.Hour)},
		},
		{
			name: "failures outside the window stop counting", pol: pol,
			given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 1, 3, time.Hour, ip("198.51.100.1")),
				failed(at(2*time.Minute), "g1", 2, 3, time.Hour, ip("198.51.100.2"))},
			when: at(time.Minute + time.Hour + time.Second), attempt: domain.Attempt{Source: s1, CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "g1"},
			payload: events.EnrollmentAttemptFailed{PasscodeID: "g1", Source: s1, FailedAttempts: 2, MaxFailedAttempts: 3,
				FailureWindow: events.Duration(time.Hour)},
		},
		{
			name: "a failure exactly one window old no longer counts", pol: pol,
			given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 1, 3, time.Hour, ip("198.51.100.1"))},
			when:  at(time.Minute + time.Hour), attempt: domain.Attempt{Source: s1, CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "g1"},
			payload: events.EnrollmentAttemptFailed{PasscodeID: "g1", Source: s1, FailedAttempts: 1, MaxFailedAttempts: 3,
				FailureWindow: events.Duration(time.Hour)},
		},
		{
			name: "window 0 counts every failure since generation", pol: policy(3, 0, 2, 15*time.Minute),
			given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 1, 3, 0, ip("198.51.100.1"))},
			when:  at(1000 * time.Hour), attempt: domain.Attempt{Source: s1, CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "g1"},
			payload: events.EnrollmentAttemptFailed{PasscodeID: "g1", Source: s1, FailedAttempts: 2, MaxFailedAttempts: 3},
		},
		{
			name: "failures of an older generation do not count", pol: pol,
			given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 1, 3, time.Hour, ip("198.51.100.1")),
				failed(at(time.Minute), "g1", 2, 3, time.Hour, ip("198.51.100.2")), generated(at(2*time.Minute), "g2")},
			when: at(3 * time.Minute), attempt: domain.Attempt{Source: s1, CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "g2"},
			payload: events.EnrollmentAttemptFailed{PasscodeID: "g2", Source: s1, FailedAttempts: 1, MaxFailedAttempts: 3,
				FailureWindow: events.Duration(time.Hour)},
		},
		{
			name: "locked: a right passcode is refused and nothing recorded", pol: pol,
			given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 1, 3, time.Hour, ip("198.51.100.1")),
				failed(at(time.Minute), "g1", 2, 3, time.Hour, ip("198.51.100.2")),
				failed(at(time.Minute), "g1", 3, 3, time.Hour, ip("198.51.100.3"))},
			when: at(2 * time.Minute), attempt: domain.Attempt{Source: s1, CandidateMAC: right("g1")},
			verdict: domain.Verdict{Reason: domain.ReasonDisabled, PasscodeID: "g1"},
		},
		{
			name: "locked: a wrong passcode is refused and not counted", pol: pol,
			given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 3, 3, time.Hour, ip("198.51.100.3"))},
			when:  at(2 * time.Minute), attempt: domain.Attempt{Source: s1, CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonDisabled, PasscodeID: "g1"},
		},
		{
			name: "the lock holds after the window has passed", pol: pol,
			given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 3, 3, time.Hour, ip("198.51.100.3"))},
			when:  at(100 * time.Hour), attempt: domain.Attempt{Source: s1, CandidateMAC: right("g1")},
			verdict: domain.Verdict{Reason: domain.ReasonDisabled, PasscodeID: "g1"},
		},
		{
			name: "disabled by hand", pol: pol,
			given: []ev{generated(t0, "g1"), disabled(at(time.Minute), "g1", events.DisableManual)},
			when:  at(2 * time.Minute), attempt: domain.Attempt{Source: s1, CandidateMAC: right("g1")},
			verdict: domain.Verdict{Reason: domain.ReasonDisabled, PasscodeID: "g1"},
		},
		{
			name: "disabled by lockout", pol: pol,
			given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 3, 3, time.Hour, ip("198.51.100.3")),
				disabled(at(2*time.Minute), "g1", events.DisableLockout)},
			when: at(3 * time.Minute), attempt: domain.Attempt{Source: s1, CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonDisabled, PasscodeID: "g1"},
		},
		{
			name: "regenerated after a lockout: active with a fresh count", pol: pol,
			given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 3, 3, time.Hour, ip("198.51.100.3")),
				disabled(at(2*time.Minute), "g1", events.DisableLockout), generated(at(3*time.Minute), "g2")},
			when: at(4 * time.Minute), attempt: domain.Attempt{Source: ip("198.51.100.9"), CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "g2"},
			payload: events.EnrollmentAttemptFailed{PasscodeID: "g2", Source: ip("198.51.100.9"), FailedAttempts: 1, MaxFailedAttempts: 3,
				FailureWindow: events.Duration(time.Hour)},
		},
		{
			name: "a disable of an older generation does not touch the current one", pol: pol,
			given: []ev{generated(t0, "g1"), generated(at(time.Minute), "g2"), disabled(at(2*time.Minute), "g1", events.DisableLockout)},
			when:  at(3 * time.Minute), attempt: domain.Attempt{Source: s1, CandidateMAC: right("g2")},
			verdict: domain.Verdict{OK: true, PasscodeID: "g2"},
			payload: events.EnrollmentAttemptSucceeded{PasscodeID: "g2", Source: s1, Enrollments: 1},
		},
		{
			name: "a lowered threshold that is already reached locks", pol: pol,
			given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 1, 3, time.Hour, ip("198.51.100.1")),
				policyChanged(at(2*time.Minute), 1, time.Hour, "g1", 1)},
			when: at(3 * time.Minute), attempt: domain.Attempt{Source: s1, CandidateMAC: right("g1")},
			verdict: domain.Verdict{Reason: domain.ReasonDisabled, PasscodeID: "g1"},
		},
		{
			name: "a site policy overrides the default threshold in the event", pol: pol,
			given: []ev{generated(t0, "g1"), policyChanged(at(time.Minute), 7, 2*time.Hour, "g1", 0)},
			when:  at(3 * time.Minute), attempt: domain.Attempt{Source: s1, CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "g1"},
			payload: events.EnrollmentAttemptFailed{PasscodeID: "g1", Source: s1, FailedAttempts: 1, MaxFailedAttempts: 7,
				FailureWindow: events.Duration(2 * time.Hour)},
		},
		{
			name: "an invalid stored policy is ignored, not trusted", pol: pol,
			given: []ev{generated(t0, "g1"), policyChanged(at(time.Minute), 0, time.Hour, "g1", 0),
				failed(at(time.Minute), "g1", 1, 3, time.Hour, ip("198.51.100.1")),
				failed(at(time.Minute), "g1", 2, 3, time.Hour, ip("198.51.100.2"))},
			when: at(3 * time.Minute), attempt: domain.Attempt{Source: s1, CandidateMAC: wrong},
			verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "g1"},
			payload: events.EnrollmentAttemptFailed{PasscodeID: "g1", Source: s1, FailedAttempts: 3, MaxFailedAttempts: 3,
				FailureWindow: events.Duration(time.Hour)},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := given(c.pol, c.given...)
			seq := p.Seq()
			v, payload := p.Verify(c.when, c.attempt)
			if v != c.verdict {
				t.Errorf("verdict = %+v, want %+v", v, c.verdict)
			}
			if !reflect.DeepEqual(payload, c.payload) {
				t.Errorf("payload:\n got %#v\nwant %#v", payload, c.payload)
			}
			if p.Seq() != seq {
				t.Errorf("Verify changed the sequence: deciding must not apply")
			}
		})
	}
}

// TestThresholdLocksTightly drives the aggregate as the handler does: the
// failure that reaches the threshold locks, and from then on nothing is
// compared or recorded.
func TestThresholdLocksTightly(t *testing.T) {
	for _, threshold := range []int{1, 2, 10} {
		p := given(policy(threshold, time.Hour, 1000, 15*time.Minute), generated(t0, "g1"))
		for i := 1; i <= threshold; i++ {
			v, payload := verify(t, p, at(time.Duration(i)*time.Second), domain.Attempt{Source: ip("10.0.0." + strings.Repeat("1", i)), CandidateMAC: wrong})
			f, ok := payload.(events.EnrollmentAttemptFailed)
			if !ok || v.Reason != domain.ReasonWrongPasscode || f.FailedAttempts != i || f.MaxFailedAttempts != threshold {
				t.Fatalf("threshold %d, failure %d: %+v %#v", threshold, i, v, payload)
			}
			if got := f.ReachesThreshold(); got != (i == threshold) {
				t.Fatalf("threshold %d, failure %d: ReachesThreshold = %v", threshold, i, got)
			}
		}
		if s := p.State(at(time.Minute)); !s.Locked || s.Status != domain.StatusActive || s.FailedAttempts != threshold {
			t.Fatalf("threshold %d: state %+v, want locked (still active until the saga disables it)", threshold, s)
		}
		for _, mac := range [][]byte{right("g1"), wrong} {
			v, payload := p.Verify(at(time.Minute), domain.Attempt{Source: ip("172.16.0.1"), CandidateMAC: mac})
			if v.Reason != domain.ReasonDisabled || payload != nil {
				t.Fatalf("threshold %d: after the lock: %+v %#v, want disabled and nothing recorded", threshold, v, payload)
			}
		}
	}
}

func TestSourceLimit(t *testing.T) {
	cases := []struct {
		maxFailed, perSource, want int
	}{
		{10, 5, 5},
		{10, 9, 9},
		{10, 10, 9},
		{10, 50, 9},
		{10, 1, 1},
		{2, 5, 1},
		{1, 5, 1},
		{1, 1, 1},
		{3, 0, 1},
		{1000, 500, 500},
	}
	for _, c := range cases {
		p := policy(c.maxFailed, time.Hour, c.perSource, time.Minute)
		got := p.SourceLimit()
		if got != c.want {
			t.Errorf("SourceLimit(threshold %d, per source %d) = %d, want %d", c.maxFailed, c.perSource, got, c.want)
		}
		if c.maxFailed > 1 && got >= c.maxFailed {
			t.Errorf("SourceLimit(threshold %d) = %d is not below the threshold", c.maxFailed, got)
		}
	}
	for _, c := range []struct{ maxFailed, want int }{{10, 5}, {11, 5}, {3, 1}, {2, 1}, {1, 1}, {1000, 500}} {
		got := domain.DefaultSourceLimit(c.maxFailed)
		if got != c.want {
			t.Errorf("DefaultSourceLimit(%d) = %d, want %d", c.maxFailed, got, c.want)
		}
		if c.maxFailed > 1 && got >= c.maxFailed {
			t.Errorf("DefaultSourceLimit(%d) = %d is not below the threshold", c.maxFailed, got)
		}
	}
	if d := domain.DefaultPolicy(); d.MaxFailedPerSource != domain.DefaultSourceLimit(d.MaxFailedAttempts) ||
		d.MaxFailedAttempts != 10 || d.FailureWindow != time.Hour || d.SourceWindow != 15*time.Minute {
		t.Errorf("DefaultPolicy = %+v, want DESIGN.md's 10 in 1h, half per source in 15m", d)
	}
}

func TestThrottling(t *testing.T) {
	// Threshold 10 in 15 minutes, 3 failures per source in 15 minutes: with
	// equal windows the rate limit and the per-generation cap agree (see
	// TestOneSourceNeverLocksASite for a failure window longer than the
	// source window).
	pol := policy(10, 15*time.Minute, 3, 15*time.Minute)
	attacker := src("203.0.113.66", "dev-evil")
	setup := func(t *testing.T) *domain.Passcode {
		p := given(pol, generated(t0, "g1"))
		for i := range 3 {
			v, payload := verify(t, p, at(time.Duration(i)*time.Minute), domain.Attempt{Source: attacker, CandidateMAC: wrong})
			if v.Reason != domain.ReasonWrongPasscode || payload == nil {
				t.Fatalf("failure %d of the source: %+v", i+1, v)
			}
		}
		return p
	}

	t.Run("the source is throttled with a retry time and nothing is recorded", func(t *testing.T) {
		p := setup(t)
		v, payload := p.Verify(at(5*time.Minute), domain.Attempt{Source: attacker, CandidateMAC: wrong})
		// The first of its 3 failures (at t0) ages out at t0+15m.
		want := domain.Verdict{Reason: domain.ReasonThrottled, PasscodeID: "g1", RetryAfter: 10 * time.Minute}
		if v != want || payload != nil {
			t.Fatalf("Verify = %+v, %#v; want %+v and no payload", v, payload, want)
		}
	})
	t.Run("a right passcode from a throttled source is throttled too", func(t *testing.T) {
		p := setup(t)
		v, payload := p.Verify(at(5*time.Minute), domain.Attempt{Source: attacker, CandidateMAC: right("g1")})
		if v.OK || v.Reason != domain.ReasonThrottled || payload != nil {
			t.Fatalf("Verify = %+v, %#v; want throttled without comparing", v, payload)
		}
	})
	t.Run("the same IP with another device is throttled", func(t *testing.T) {
		p := setup(t)
		v, _ := p.Verify(at(5*time.Minute), domain.Attempt{Source: src("203.0.113.66", "dev-new"), CandidateMAC: wrong})
		if v.Reason != domain.ReasonThrottled {
			t.Fatalf("Verify = %+v, want throttled by IP", v)
		}
	})
	t.Run("the same device from another IP is throttled", func(t *testing.T) {
		p := setup(t)
		v, _ := p.Verify(at(5*time.Minute), domain.Attempt{Source: src("192.0.2.200", "dev-evil"), CandidateMAC: wrong})
		if v.Reason != domain.ReasonThrottled {
			t.Fatalf("Verify = %+v, want throttled by device ID", v)
		}
	})
	t.Run("other sources are unaffected", func(t *testing.T) {
		p := setup(t)
		v, payload := p.Verify(at(5*time.Minute), domain.Attempt{Source: src("192.0.2.1", "dev-good"), CandidateMAC: right("g1")})
		if !v.OK || payload == nil {
			t.Fatalf("Verify = %+v, %#v; want OK and recorded", v, payload)
		}
		v, payload = p.Verify(at(5*time.Minute), domain.Attempt{Source: src("192.0.2.1", "dev-good"), CandidateMAC: wrong})
		if f, ok := payload.(events.EnrollmentAttemptFailed); v.Reason != domain.ReasonWrongPasscode || !ok || f.FailedAttempts != 4 {
			t.Fatalf("Verify = %+v, %#v; want the site's 4th failure", v, payload)
		}
	})
	t.Run("the throttle expires after the source window", func(t *testing.T) {
		p := setup(t)
		// At t0+15m the first failure has aged out: 2 in the window, below 3.
		v, payload := p.Verify(at(15*time.Minute), domain.Attempt{Source: attacker, CandidateMAC: wrong})
		if v.Reason != domain.ReasonWrongPasscode || payload == nil {
			t.Fatalf("Verify = %+v, want the source admitted again", v)
		}
		if _, payload := p.Verify(at(15*time.Minute-time.Nanosecond), domain.Attempt{Source: attacker, CandidateMAC: wrong}); payload != nil {
			t.Fatal("admitted a nanosecond before the first failure aged out")
		}
	})
	t.Run("RetryAfter is at least a second", func(t *testing.T) {
		p := setup(t)
		v, _ := p.Verify(at(15*time.Minute-time.Millisecond), domain.Attempt{Source: attacker, CandidateMAC: wrong})
		if v.Reason != domain.ReasonThrottled || v.RetryAfter != time.Second {
			t.Fatalf("Verify = %+v, want throttled for 1s", v)
		}
	})
	t.Run("ThrottledSources lists the IP and the device", func(t *testing.T) {
		p := setup(t)
		got := p.ThrottledSources(at(5 * time.Minute))
		keys := map[string]time.Time{}
		for _, s := range got {
			keys[s.Key] = s.Until
		}
		want := map[string]time.Time{"ip:203.0.113.66": at(15 * time.Minute), "device:dev-evil": at(15 * time.Minute)}
		if !reflect.DeepEqual(keys, want) {
			t.Fatalf("ThrottledSources = %v, want %v", keys, want)
		}
		if got := p.ThrottledSources(at(16 * time.Minute)); len(got) != 0 {
			t.Fatalf("ThrottledSources after the window = %v, want none", got)
		}
	})
	t.Run("one source alone never reaches the threshold within its window", func(t *testing.T) {
		p := given(policy(4, time.Hour, 100, 15*time.Minute), generated(t0, "g1"))
		recorded := 0
		for i := range 20 {
			_, payload := verify(t, p, at(time.Duration(i)*time.Second), domain.Attempt{Source: attacker, CandidateMAC: wrong})
			if payload != nil {
				recorded++
			}
		}
		if recorded != 3 {
			t.Fatalf("one source recorded %d failures, want the source limit 3 (threshold 4 - 1)", recorded)
		}
		if s := p.State(at(time.Minute)); s.Locked {
			t.Fatal("one source locked the site")
		}
	})
	t.Run("IP and device ID are counted separately", func(t *testing.T) {
		p := given(pol, generated(t0, "g1"))
		// Two failures from IP A with device X, one from IP B with device X:
		// IP A has 2, IP B has 1, device X has 3.
		for _, s := range []events.Source{src("10.1.1.1", "X"), src("10.1.1.1", "X"), src("10.2.2.2", "X")} {
			verify(t, p, at(time.Minute), domain.Attempt{Source: s, CandidateMAC: wrong})
		}
		if v, _ := p.Verify(at(2*time.Minute), domain.Attempt{Source: src("10.1.1.1", "Y"), CandidateMAC: wrong}); v.Reason != domain.ReasonWrongPasscode {
			t.Errorf("IP A with a new device: %+v, want admitted (2 < 3)", v)
		}
		if v, _ := p.Verify(at(2*time.Minute), domain.Attempt{Source: src("10.3.3.3", "X"), CandidateMAC: wrong}); v.Reason != domain.ReasonThrottled {
			t.Errorf("device X from a new IP: %+v, want throttled (3 failures)", v)
		}
		if v, _ := p.Verify(at(2*time.Minute), domain.Attempt{Source: ip("10.2.2.2"), CandidateMAC: wrong}); v.Reason != domain.ReasonWrongPasscode {
			t.Errorf("IP B alone: %+v, want admitted", v)
		}
	})
	t.Run("a device ID that looks like an IP does not share the IP's count", func(t *testing.T) {
		p := given(pol, generated(t0, "g1"))
		for range 3 {
			verify(t, p, at(time.Minute), domain.Attempt{Source: dev("10.9.9.9"), CandidateMAC: wrong})
		}
		if v, _ := p.Verify(at(2*time.Minute), domain.Attempt{Source: ip("10.9.9.9"), CandidateMAC: wrong}); v.Reason != domain.ReasonWrongPasscode {
			t.Errorf("IP equal to a throttled device ID: %+v, want admitted", v)
		}
	})
}

// TestOneSourceNeverLocksASite: a single source that spreads its guesses so
// that each burst stays within the source window still contributes at most
// the source limit to the failures that count against the generation, so it
// can never lock the site alone, however long it keeps trying.
func TestOneSourceNeverLocksASite(t *testing.T) {
	pol := domain.DefaultPolicy() // 10 in 1h; 5 per source in 15m
	attacker := src("203.0.113.66", "dev-evil")
	p := given(pol, generated(t0, "g1"))
	recorded := 0
	for i := range 48 * 6 { // one guess every 10 minutes for two days
		now := at(time.Duration(i) * 10 * time.Minute)
		v, payload := p.Verify(now, domain.Attempt{Source: attacker, CandidateMAC: wrong})
		if payload != nil {
			recorded++
			store(t, p, now, events.Actor{Kind: events.ActorDevice}, payload)
		} else if v.Reason != domain.ReasonThrottled || v.RetryAfter <= 0 {
			t.Fatalf("guess %d: %+v, want recorded or throttled with a retry time", i, v)
		}
		if s := p.State(now); s.Locked || s.FailedAttempts > pol.SourceLimit() {
			t.Fatalf("guess %d: one source brought the site to %d counted failures (locked %v)", i, s.FailedAttempts, s.Locked)
		}
	}
	if recorded < 2*pol.SourceLimit() {
		t.Fatalf("only %d guesses recorded in two days: the throttle should let the source try again as its failures age out", recorded)
	}
	// A second source can still reach the threshold: lockout needs two.
	other := src("198.51.100.7", "dev-2")
	now := at(48 * time.Hour)
	for range pol.SourceLimit() {
		_, payload := p.Verify(now, domain.Attempt{Source: other, CandidateMAC: wrong})
		if payload == nil {
			t.Fatal("a second source was refused before its own limit")
		}
		store(t, p, now, events.Actor{Kind: events.ActorDevice}, payload)
	}
	if s := p.State(now); s.FailedAttempts < pol.SourceLimit()+1 {
		t.Fatalf("counted %d failures from two sources, want more than one source's limit", s.FailedAttempts)
	}
}

func TestThrottleWithoutWindowLastsUntilRegeneration(t *testing.T) {
	pol := policy(10, 0, 3, 15*time.Minute)
	p := given(pol, generated(t0, "g1"))
	attacker := src("203.0.113.66", "")
	for i := range 3 {
		now := at(time.Duration(i) * time.Minute)
		_, payload := p.Verify(now, domain.Attempt{Source: attacker, CandidateMAC: wrong})
		store(t, p, now, events.Actor{Kind: events.ActorDevice}, payload)
	}
	v, payload := p.Verify(at(10*24*time.Hour), domain.Attempt{Source: attacker, CandidateMAC: right("g1")})
	if v.Reason != domain.ReasonThrottled || payload != nil || v.RetryAfter != pol.SourceWindow {
		t.Fatalf("ten days later: %+v, want throttled (failures never age out with window 0), retry hint = source window", v)
	}
	if ts := p.ThrottledSources(at(10 * 24 * time.Hour)); len(ts) != 1 || ts[0].Key != "ip:203.0.113.66" || !ts[0].Until.IsZero() {
		t.Fatalf("ThrottledSources = %+v, want the IP until regeneration (zero Until)", ts)
	}
	gen, _ := p.Generate(t0, domain.NewGeneration{PasscodeID: "g2", Hash: right("g2"), HashKeyID: "k", Sealed: []byte("s"), SealKeyID: "k"})
	store(t, p, at(10*24*time.Hour), alice, gen)
	if v, _ := p.Verify(at(10*24*time.Hour), domain.Attempt{Source: attacker, CandidateMAC: right("g2")}); !v.OK {
		t.Fatalf("after regeneration: %+v, want OK", v)
	}
}

func TestSourceKeys(t *testing.T) {
	cases := []struct {
		src  events.Source
		want []string
	}{
		{events.Source{}, []string{domain.AnonymousSource}},
		{events.Source{Platform: "ios", UserAgent: "x"}, []string{domain.AnonymousSource}},
		{events.Source{IP: "203.0.113.7"}, []string{"ip:203.0.113.7"}},
		{events.Source{IP: "::ffff:203.0.113.7"}, []string{"ip:203.0.113.7"}},
		{events.Source{IP: " 203.0.113.7 "}, []string{"ip:203.0.113.7"}},
		{events.Source{IP: "2001:db8:1:2:aaaa::1"}, []string{"ip:2001:db8:1:2::/64"}},
		{events.Source{IP: "2001:DB8:1:2:bbbb::9%eth0"}, []string{"ip:2001:db8:1:2::/64"}},
		{events.Source{IP: "not-an-ip"}, []string{"ip:not-an-ip"}},
		{events.Source{IP: "203.0.113.7", DeviceID: "D1"}, []string{"ip:203.0.113.7", "device:D1"}},
		{events.Source{DeviceID: "D1"}, []string{"device:D1"}},
	}
	for _, c := range cases {
		if got := domain.SourceKeys(c.src); !reflect.DeepEqual(got, c.want) {
			t.Errorf("SourceKeys(%+v) = %v, want %v", c.src, got, c.want)
		}
	}
}

// Attempts that name no source share one key: they are throttled together,
// and so can never lock a site on their own either.
func TestAnonymousAttemptsShareOneLimit(t *testing.T) {
	pol := policy(4, time.Hour, 100, 15*time.Minute) // source limit 3
	p := given(pol, generated(t0, "g1"))
	recorded := 0
	for i := range 10 {
		now := at(time.Duration(i) * time.Second)
		_, payload := p.Verify(now, domain.Attempt{CandidateMAC: wrong})
		if payload != nil {
			recorded++
			store(t, p, now, events.Actor{Kind: events.ActorDevice}, payload)
		}
	}
	if recorded != 3 || p.State(at(time.Minute)).Locked {
		t.Fatalf("anonymous attempts recorded %d failures (locked %v), want 3 and not locked", recorded, p.State(at(time.Minute)).Locked)
	}
}
