package domain_test

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

func TestAttemptIdempotency(t *testing.T) {
	pol := policy(5, time.Hour, 4, 15*time.Minute)
	s1 := src("192.0.2.1", "dev-1")

	t.Run("same ID and candidate: same wrong verdict, counted once", func(t *testing.T) {
		p := given(pol, generated(t0, "g1"))
		a := domain.Attempt{ID: "att-1", Source: s1, CandidateMAC: wrong}
		v1, payload := verify(t, p, at(time.Minute), a)
		f, ok := payload.(events.EnrollmentAttemptFailed)
		if !ok || f.AttemptID != "att-1" || len(f.AttemptDigest) == 0 {
			t.Fatalf("first attempt recorded %#v, want a failure with its attempt ID and digest", payload)
		}
		for range 3 {
			v2, payload := p.Verify(at(2*time.Minute), a)
			if v2 != v1 || payload != nil {
				t.Fatalf("retry = %+v, %#v; want %+v and nothing recorded", v2, payload, v1)
			}
		}
		if s := p.State(at(2 * time.Minute)); s.FailedAttempts != 1 {
			t.Fatalf("failed attempts = %d, want 1", s.FailedAttempts)
		}
	})
	t.Run("same ID and candidate: same right verdict, recorded once", func(t *testing.T) {
		p := given(pol, generated(t0, "g1"))
		a := domain.Attempt{ID: "att-ok", Source: s1, CandidateMAC: right("g1")}
		v1, payload := verify(t, p, at(time.Minute), a)
		if ok, isOK := payload.(events.EnrollmentAttemptSucceeded); !v1.OK || !isOK || ok.AttemptID != "att-ok" || len(ok.AttemptDigest) == 0 {
			t.Fatalf("first attempt = %+v %#v", v1, payload)
		}
		v2, payload := p.Verify(at(2*time.Minute), a)
		if v2 != v1 || payload != nil {
			t.Fatalf("retry = %+v, %#v; want %+v and nothing recorded", v2, payload, v1)
		}
	})
	t.Run("same ID with another candidate is a new attempt and counts", func(t *testing.T) {
		p := given(pol, generated(t0, "g1"))
		for i := range 3 {
			mac := []byte("guess-" + strconv.Itoa(i))
			v, payload := verify(t, p, at(time.Minute), domain.Attempt{ID: "reused", Source: src("10.0.0."+strconv.Itoa(i), ""), CandidateMAC: mac})
			f, ok := payload.(events.EnrollmentAttemptFailed)
			if v.Reason != domain.ReasonWrongPasscode || !ok || f.FailedAttempts != i+1 {
				t.Fatalf("guess %d under a reused ID: %+v %#v, want failure %d recorded", i, v, payload, i+1)
			}
		}
		// And the right passcode under the reused ID is compared, not replayed.
		v, payload := p.Verify(at(time.Minute), domain.Attempt{ID: "reused", Source: s1, CandidateMAC: right("g1")})
		if !v.OK || payload == nil {
			t.Fatalf("right passcode under a reused ID: %+v %#v", v, payload)
		}
	})
	t.Run("reusing an ID cannot get past the lock", func(t *testing.T) {
		p := given(policy(2, time.Hour, 1000, 15*time.Minute), generated(t0, "g1"))
		verify(t, p, at(time.Minute), domain.Attempt{ID: "x", Source: ip("10.0.0.1"), CandidateMAC: []byte("g-a")})
		verify(t, p, at(time.Minute), domain.Attempt{ID: "x", Source: ip("10.0.0.2"), CandidateMAC: []byte("g-b")})
		v, payload := p.Verify(at(time.Minute), domain.Attempt{ID: "x", Source: ip("10.0.0.3"), CandidateMAC: right("g1")})
		if v.Reason != domain.ReasonDisabled || payload != nil {
			t.Fatalf("right passcode under the reused ID after the lock: %+v %#v, want disabled", v, payload)
		}
	})
	t.Run("a recorded success is not an oracle once locked", func(t *testing.T) {
		// Anyone who learns the ID of a successful attempt must not be able to
		// test guesses against its digest after the lock: a match would say
		// OK while a mismatch is refused without counting.
		p := given(policy(2, time.Hour, 1000, 15*time.Minute), generated(t0, "g1"))
		verify(t, p, at(time.Minute), domain.Attempt{ID: "ok-1", Source: s1, CandidateMAC: right("g1")})
		failN(t, p, at(2*time.Minute), 2)
		v, payload := p.Verify(at(3*time.Minute), domain.Attempt{ID: "ok-1", Source: s1, CandidateMAC: right("g1")})
		if v.OK || v.Reason != domain.ReasonDisabled || payload != nil {
			t.Fatalf("replay of a success after the lock: %+v %#v, want disabled", v, payload)
		}
	})
	t.Run("a recorded success is not an oracle for a throttled source", func(t *testing.T) {
		p := given(policy(10, time.Hour, 2, 15*time.Minute), generated(t0, "g1"))
		verify(t, p, at(time.Minute), domain.Attempt{ID: "ok-1", Source: s1, CandidateMAC: right("g1")})
		verify(t, p, at(time.Minute), domain.Attempt{Source: s1, CandidateMAC: wrong})
		verify(t, p, at(time.Minute), domain.Attempt{Source: s1, CandidateMAC: wrong})
		v, payload := p.Verify(at(2*time.Minute), domain.Attempt{ID: "ok-1", Source: s1, CandidateMAC: right("g1")})
		if v.OK || v.Reason != domain.ReasonThrottled || payload != nil {
			t.Fatalf("replay of a success from a throttled source: %+v %#v, want throttled", v, payload)
		}
	})
	t.Run("a recorded failure repeats its verdict after the lock", func(t *testing.T) {
		p := given(policy(1, time.Hour, 1, 15*time.Minute), generated(t0, "g1"))
		a := domain.Attempt{ID: "att-last", Source: s1, CandidateMAC: wrong}
		verify(t, p, at(time.Minute), a)
		v, payload := p.Verify(at(2*time.Minute), a)
		if v.Reason != domain.ReasonWrongPasscode || payload != nil {
			t.Fatalf("retry of the locking failure: %+v %#v, want its wrong_passcode again", v, payload)
		}
	})
	t.Run("an attempt ID of an older generation is a new attempt", func(t *testing.T) {
		p := given(pol, generated(t0, "g1"))
		verify(t, p, at(time.Minute), domain.Attempt{ID: "a", Source: s1, CandidateMAC: right("g1")})
		store(t, p, at(2*time.Minute), alice, events.PasscodeGenerated{PasscodeID: "g2", Hash: right("g2"), HashKeyID: "k", Sealed: []byte("s"), SealKeyID: "k"})
		v, payload := p.Verify(at(3*time.Minute), domain.Attempt{ID: "a", Source: s1, CandidateMAC: right("g1")})
		if v.Reason != domain.ReasonWrongPasscode || v.PasscodeID != "g2" || payload == nil {
			t.Fatalf("old attempt against the new generation: %+v %#v, want a counted failure", v, payload)
		}
	})
	t.Run("a late retry of a busy site is still known", func(t *testing.T) {
		p := given(policy(1000, time.Hour, 999, 15*time.Minute), generated(t0, "g1"))
		const n = 200 // far more than the last 64, all within a minute
		for i := range n {
			verify(t, p, at(time.Minute), domain.Attempt{ID: "id-" + strconv.Itoa(i), Source: s1, CandidateMAC: right("g1")})
		}
		if _, payload := p.Verify(at(2*time.Minute), domain.Attempt{ID: "id-0", Source: s1, CandidateMAC: right("g1")}); payload != nil {
			t.Errorf("the retry of the oldest of %d attempts a minute later was recorded again", n)
		}
	})
	t.Run("the attempt log is bounded in time", func(t *testing.T) {
		p := given(policy(1000, time.Hour, 999, 15*time.Minute), generated(t0, "g1"))
		const n = 200 // one every 10 s: over half an hour
		for i := range n {
			verify(t, p, at(time.Minute+time.Duration(i)*10*time.Second), domain.Attempt{ID: "id-" + strconv.Itoa(i), Source: s1, CandidateMAC: right("g1")})
		}
		end := at(time.Minute + n*10*time.Second)
		if _, payload := p.Verify(end, domain.Attempt{ID: "id-" + strconv.Itoa(n-1), Source: s1, CandidateMAC: right("g1")}); payload != nil {
			t.Errorf("the newest attempt ID was forgotten")
		}
		if _, payload := p.Verify(end, domain.Attempt{ID: "id-0", Source: s1, CandidateMAC: right("g1")}); payload == nil {
			t.Errorf("an attempt half an hour old, %d attempts back, is still remembered: the log is not bounded", n)
		}
	})
}

func TestDisable(t *testing.T) {
	pol := policy(3, time.Hour, 2, 15*time.Minute)
	cases := []struct {
		name     string
		given    []ev
		id       string
		reason   events.DisableReason
		want     events.Payload
		wantErr  error
		wantNoop bool
	}{
		{name: "manual, active", given: []ev{generated(t0, "g1")}, reason: events.DisableManual,
			want: events.PasscodeDisabled{PasscodeID: "g1", Reason: events.DisableManual}},
		{name: "manual, active, named", given: []ev{generated(t0, "g1")}, id: "g1", reason: events.DisableManual,
			want: events.PasscodeDisabled{PasscodeID: "g1", Reason: events.DisableManual}},
		{name: "manual carries the failure count", given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 1, 3, time.Hour, ip("10.0.0.1"))},
			reason: events.DisableManual, want: events.PasscodeDisabled{PasscodeID: "g1", Reason: events.DisableManual, FailedAttempts: 1}},
		{name: "manual, nothing generated", reason: events.DisableManual, wantErr: domain.ErrNotActive},
		{name: "manual, already disabled", given: []ev{generated(t0, "g1"), disabled(at(time.Minute), "g1", events.DisableManual)},
			reason: events.DisableManual, wantErr: domain.ErrNotActive},
		{name: "manual, locked out", given: []ev{generated(t0, "g1"), failed(at(time.Minute), "g1", 3, 3, time.Hour, ip("10.0.0.1")),
			disabled(at(time.Minute), "g1", events.DisableLockout)}, reason: events.DisableManual, wantErr: domain.ErrNotActive},
		{name: "lockout aimed at an older generation (INV3)", given: []ev{generated(t0, "g1"), generated(at(time.Minute), "g2")},
			id: "g1", reason: events.DisableLockout, wantNoop: true},
		{name: "manual aimed at an older generation", given: []ev{generated(t0, "g1"), generated(at(time.Minute), "g2")},
			id: "g1", reason: events.DisableManual, wantNoop: true},
		{name: "lockout aimed at a generation unknown here", id: "g0", reason: events.DisableLockout, wantNoop: true},
		{name: "lockout of an already disabled generation", given: []ev{generated(t0, "g1"), disabled(at(time.Minute), "g1", events.DisableLockout)},
			id: "g1", reason: events.DisableLockout, wantNoop: true},
		{name: "lockout of a generation disabled by hand", given: []ev{generated(t0, "g1"), disabled(at(time.Minute), "g1", events.DisableManual)},
			id: "g1", reason: events.DisableLockout, wantNoop: true},
		// A generation that reached the threshold and was disabled by hand or
		// replaced before the saga acted: the lockout is still recorded (the
		// disable changes nothing), so that it is alerted; once.
		{name: "lockout of a locked generation disabled by hand", given: []ev{generated(t0, "g1"),
			failed(at(time.Minute), "g1", 3, 3, time.Hour, ip("10.0.0.1")), disabled(at(time.Minute), "g1", events.DisableManual)},
			id: "g1", reason: events.DisableLockout, want: lockoutOf("g1")},
		{name: "lockout of a locked generation replaced since (INV3: g2 untouched)", given: []ev{generated(t0, "g1"),
			failed(at(time.Minute), "g1", 3, 3, time.Hour, ip("10.0.0.1")), generated(at(time.Minute), "g2")},
			id: "g1", reason: events.DisableLockout, want: lockoutOf("g1")},
		{name: "lockout of a replaced generation recorded already", given: []ev{generated(t0, "g1"),
			failed(at(time.Minute), "g1", 3, 3, time.Hour, ip("10.0.0.1")), generated(at(time.Minute), "g2"),
			disabled(at(time.Minute), "g1", events.DisableLockout)},
			id: "g1", reason: events.DisableLockout, wantNoop: true},
		{name: "lockout without a generation", given: []ev{generated(t0, "g1")}, reason: events.DisableLockout, wantErr: domain.ErrInvalid},
		{name: "unknown reason", given: []ev{generated(t0, "g1")}, reason: "bored", wantErr: domain.ErrInvalid},
		{name: "empty reason", given: []ev{generated(t0, "g1")}, wantErr: domain.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := given(pol, c.given...)
			got, err := p.Disable(at(2*time.Minute), c.id, c.reason)
			switch {
			case c.wantErr != nil:
				if !errors.Is(err, c.wantErr) || got != nil {
					t.Fatalf("Disable = %#v, %v; want %v", got, err, c.wantErr)
				}
			case c.wantNoop:
				if err != nil || got != nil {
					t.Fatalf("Disable = %#v, %v; want nil, nil", got, err)
				}
			default:
				if err != nil || !reflect.DeepEqual(got, c.want) {
					t.Fatalf("Disable:\n got %#v, %v\nwant %#v", got, err, c.want)
				}
			}
		})
	}
}

// lockoutOf is the lockout record of generation id after one stored failure
// from 10.0.0.1 at one minute that reached a threshold of 3 (the failure says
// so), under a one hour window.
func lockoutOf(id string) events.PasscodeDisabled {
	first := at(time.Minute)
	return events.PasscodeDisabled{PasscodeID: id, Reason: events.DisableLockout, FailedAttempts: 1,
		MaxFailedAttempts: 3, FailureWindow: events.Duration(time.Hour), FirstFailedAt: &first, LastFailedAt: &first,
		RecentSources: []events.Source{ip("10.0.0.1")}}
}

func TestLockoutDisableCarriesTheAlert(t *testing.T) {
	p := given(policy(25, 0, 1000, 15*time.Minute), generated(t0, "g1"))
	// 25 failures from 25 distinct sources, then the lock.
	failN(t, p, at(time.Minute), 25)
	first, last := at(time.Minute), at(time.Minute+24*time.Second)
	got, err := p.Disable(at(time.Hour), "g1", events.DisableLockout)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := got.(events.PasscodeDisabled)
	if !ok {
		t.Fatalf("Disable = %#v", got)
	}
	if d.PasscodeID != "g1" || d.Reason != events.DisableLockout || d.FailedAttempts != 25 || d.MaxFailedAttempts != 25 || d.FailureWindow != 0 {
		t.Errorf("lockout = %+v, want g1 lockout with 25 of 25, window 0", d)
	}
	if d.FirstFailedAt == nil || d.LastFailedAt == nil || !d.FirstFailedAt.Equal(first) || !d.LastFailedAt.Equal(last) {
		t.Errorf("first/last failed = %v/%v, want %v/%v", d.FirstFailedAt, d.LastFailedAt, first, last)
	}
	if len(d.RecentSources) != 20 {
		t.Fatalf("recent sources = %d, want the bound of 20", len(d.RecentSources))
	}
	if d.RecentSources[0] != ip("10.0.0.24") || d.RecentSources[19] != ip("10.0.0.5") {
		t.Errorf("recent sources = %v, want newest first", d.RecentSources)
	}

	t.Run("sources are distinct", func(t *testing.T) {
		p := given(policy(4, time.Hour, 1000, 15*time.Minute), generated(t0, "g1"))
		for _, s := range []events.Source{ip("a"), ip("b"), ip("a"), ip("b")} {
			verify(t, p, at(time.Minute), domain.Attempt{Source: s, CandidateMAC: wrong})
		}
		got, _ := p.Disable(at(time.Minute), "g1", events.DisableLockout)
		if d := got.(events.PasscodeDisabled); !reflect.DeepEqual(d.RecentSources, []events.Source{ip("b"), ip("a")}) {
			t.Errorf("recent sources = %v, want [b a]", d.RecentSources)
		}
	})
	t.Run("a late saga still reports the failures of the lock", func(t *testing.T) {
		// The saga may act after the failure window has passed (it was down,
		// or lagging): the alert must still say what exceeded the threshold.
		p := given(policy(3, time.Hour, 1000, 15*time.Minute), generated(t0, "g1"))
		failN(t, p, at(time.Minute), 3)
		got, err := p.Disable(at(5*time.Hour), "g1", events.DisableLockout)
		if err != nil {
			t.Fatal(err)
		}
		d := got.(events.PasscodeDisabled)
		if d.FailedAttempts != 3 || d.MaxFailedAttempts != 3 || d.FailureWindow.D() != time.Hour || d.FirstFailedAt == nil ||
			!d.FirstFailedAt.Equal(at(time.Minute)) || !d.LastFailedAt.Equal(at(time.Minute+2*time.Second)) || len(d.RecentSources) != 3 {
			t.Errorf("late lockout = %+v, want 3 of 3 in 1h with times and sources", d)
		}
	})
	t.Run("a policy change between lock and disable does not change the report", func(t *testing.T) {
		p := given(policy(3, time.Hour, 1000, 15*time.Minute), generated(t0, "g1"))
		failN(t, p, at(time.Minute), 3)
		pc, err := p.ChangePolicy(at(2*time.Minute), 50, 2*time.Minute, "")
		if err != nil {
			t.Fatal(err)
		}
		store(t, p, at(2*time.Minute), alice, pc)
		got, _ := p.Disable(at(10*time.Minute), "g1", events.DisableLockout)
		if d := got.(events.PasscodeDisabled); d.FailedAttempts != 3 || d.MaxFailedAttempts != 3 || d.FailureWindow.D() != time.Hour {
			t.Errorf("lockout after a policy change = %+v, want the 3 of 3 in 1h that locked", d)
		}
	})
}

func TestReveal(t *testing.T) {
	if got, err := given(domain.DefaultPolicy()).Reveal(); !errors.Is(err, domain.ErrNotGenerated) || got != nil {
		t.Errorf("Reveal on nothing = %#v, %v; want ErrNotGenerated", got, err)
	}
	for name, hist := range map[string][]ev{
		"active":      {generated(t0, "g1")},
		"disabled":    {generated(t0, "g1"), disabled(at(time.Minute), "g1", events.DisableManual)},
		"regenerated": {generated(t0, "g0"), generated(t0, "g1")},
	} {
		got, err := given(domain.DefaultPolicy(), hist...).Reveal()
		if err != nil || got != (events.PasscodeRevealed{PasscodeID: "g1"}) {
			t.Errorf("Reveal %s = %#v, %v; want PasscodeRevealed g1", name, got, err)
		}
	}
}

func TestChangePolicy(t *testing.T) {
	cases := []struct {
		maxFailed int
		window    time.Duration
		ok        bool
	}{
		{1, 0, true},
		{1000, 720 * time.Hour, true},
		{10, time.Minute, true},
		{10, time.Hour, true},
		{0, time.Hour, false},
		{-1, time.Hour, false},
		{1001, time.Hour, false},
		{10, time.Minute - 1, false},
		{10, time.Second, false},
		{10, 720*time.Hour + 1, false},
		{10, -time.Minute, false},
	}
	for _, c := range cases {
		p := given(domain.DefaultPolicy(), generated(t0, "g1"))
		got, err := p.ChangePolicy(at(time.Minute), c.maxFailed, c.window, "")
		if c.ok {
			want := events.LockoutPolicyChanged{MaxFailedAttempts: c.maxFailed, FailureWindow: events.Duration(c.window), PasscodeID: "g1", Mode: events.ModeEnforce}
			if err != nil || got != want {
				t.Errorf("ChangePolicy(%d, %v) = %#v, %v; want %#v", c.maxFailed, c.window, got, err, want)
			}
		} else if !errors.Is(err, domain.ErrInvalidPolicy) || got != nil {
			t.Errorf("ChangePolicy(%d, %v) = %#v, %v; want ErrInvalidPolicy", c.maxFailed, c.window, got, err)
		}
	}

	t.Run("both problems are reported", func(t *testing.T) {
		_, err := given(domain.DefaultPolicy()).ChangePolicy(t0, 0, time.Second, "")
		if err == nil || !strings.Contains(err.Error(), "max_failed_attempts") || !strings.Contains(err.Error(), "failure_window") {
			t.Errorf("error = %v, want both fields named", err)
		}
	})
	t.Run("no active passcode: no generation in the event", func(t *testing.T) {
		for _, hist := range [][]ev{nil, {generated(t0, "g1"), disabled(at(time.Minute), "g1", events.DisableManual)}} {
			got, err := given(domain.DefaultPolicy(), hist...).ChangePolicy(at(time.Minute), 5, time.Hour, "")
			if err != nil || got != (events.LockoutPolicyChanged{MaxFailedAttempts: 5, FailureWindow: events.Duration(time.Hour), Mode: events.ModeEnforce}) {
				t.Errorf("ChangePolicy = %#v, %v", got, err)
			}
		}
	})
	t.Run("a threshold below the current count locks once applied", func(t *testing.T) {
		p := given(policy(10, time.Hour, 1000, 15*time.Minute), generated(t0, "g1"))
		failN(t, p, at(time.Minute), 4)
		got, err := p.ChangePolicy(at(10*time.Minute), 3, time.Hour, "")
		want := events.LockoutPolicyChanged{MaxFailedAttempts: 3, FailureWindow: events.Duration(time.Hour), PasscodeID: "g1", FailedAttempts: 4, Mode: events.ModeEnforce}
		if err != nil || got != want {
			t.Fatalf("ChangePolicy = %#v, %v; want %#v", got, err, want)
		}
		if v, _ := p.Verify(at(10*time.Minute), domain.Attempt{Source: ip("1.2.3.4"), CandidateMAC: right("g1")}); !v.OK {
			t.Fatalf("deciding the change must not lock yet: %+v", v)
		}
		store(t, p, at(10*time.Minute), alice, got)
		if s := p.State(at(10 * time.Minute)); !s.Locked || s.MaxFailedAttempts != 3 {
			t.Errorf("state = %+v, want locked under threshold 3", s)
		}
		if v, payload := p.Verify(at(10*time.Minute), domain.Attempt{Source: ip("1.2.3.4"), CandidateMAC: right("g1")}); v.Reason != domain.ReasonDisabled || payload != nil {
			t.Errorf("right passcode after the change: %+v %#v, want disabled", v, payload)
		}
	})
	t.Run("the count under the new window", func(t *testing.T) {
		p := given(policy(10, time.Hour, 1000, 15*time.Minute), generated(t0, "g1"))
		failN(t, p, at(time.Minute), 2)
		failN(t, p, at(30*time.Minute), 2)
		got, _ := p.ChangePolicy(at(35*time.Minute), 4, 10*time.Minute, "")
		if d := got.(events.LockoutPolicyChanged); d.FailedAttempts != 2 {
			t.Errorf("count under a 10m window = %d, want 2", d.FailedAttempts)
		}
	})
	t.Run("a higher threshold does not unlock", func(t *testing.T) {
		p := given(policy(2, time.Hour, 1000, 15*time.Minute), generated(t0, "g1"))
		failN(t, p, at(time.Minute), 2)
		got, _ := p.ChangePolicy(at(2*time.Minute), 100, time.Hour, "")
		store(t, p, at(2*time.Minute), alice, got)
		if v, _ := p.Verify(at(3*time.Minute), domain.Attempt{Source: ip("1.2.3.4"), CandidateMAC: right("g1")}); v.Reason != domain.ReasonDisabled {
			t.Errorf("after raising the threshold: %+v, want still disabled until regenerated", v)
		}
	})
}

func TestState(t *testing.T) {
	p := given(policy(5, time.Hour, 1000, 15*time.Minute))
	want := domain.State{Site: site, Status: domain.StatusNone, MaxFailedAttempts: 5, FailureWindow: time.Hour, Mode: events.ModeEnforce}
	if s := p.State(t0); !reflect.DeepEqual(s, want) {
		t.Errorf("empty state = %+v, want %+v", s, want)
	}
	p.Replay(history(generated(t0, "g1"))...)
	failN(t, p, at(time.Minute), 2)
	s := p.State(at(2 * time.Minute))
	want = domain.State{Site: site, Status: domain.StatusActive, PasscodeID: "g1", GeneratedAt: t0, GeneratedBy: alice.ID,
		FailedAttempts: 2, MaxFailedAttempts: 5, FailureWindow: time.Hour, LastFailedAt: at(time.Minute + time.Second), Seq: 3,
		Mode: events.ModeEnforce, LastFailedSource: &events.Source{IP: "10.0.0.1"}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("active state:\n got %+v\nwant %+v", s, want)
	}
	// After the window the count falls to 0; the last failure is kept.
	if s := p.State(at(3 * time.Hour)); s.FailedAttempts != 0 || !s.LastFailedAt.Equal(at(time.Minute+time.Second)) {
		t.Errorf("state after the window = %+v", s)
	}
	d, err := p.Disable(at(4*time.Minute), "", events.DisableManual)
	if err != nil {
		t.Fatal(err)
	}
	store(t, p, at(4*time.Minute), alice, d)
	s = p.State(at(5 * time.Minute))
	if s.Status != domain.StatusDisabled || !s.DisabledAt.Equal(at(4*time.Minute)) || s.DisabledBy != alice.ID ||
		s.DisabledReason != events.DisableManual || s.Seq != 4 || s.PasscodeID != "g1" {
		t.Errorf("disabled state = %+v", s)
	}
	if p.Site() != site || p.Seq() != 4 {
		t.Errorf("Site, Seq = %q, %d", p.Site(), p.Seq())
	}
	if pol := p.Policy(); pol.MaxFailedAttempts != 5 || pol.FailureWindow != time.Hour || pol.MaxFailedPerSource != 1000 {
		t.Errorf("Policy = %+v", pol)
	}
}

func TestReplaySkipsRecordsAtOrBelowTheSequence(t *testing.T) {
	recs := history(generated(t0, "g1"), failed(at(time.Minute), "g1", 1, 10, time.Hour, ip("10.0.0.1")),
		failed(at(time.Minute), "g1", 2, 10, time.Hour, ip("10.0.0.2")))
	p := domain.New(site, domain.DefaultPolicy())
	p.Replay(recs[:2]...)
	p.Replay(recs...) // overlaps: the first two must not be applied again
	p.Replay(recs[1])
	if s := p.State(at(2 * time.Minute)); s.FailedAttempts != 2 || s.Seq != 3 {
		t.Errorf("after overlapping replays: %+v, want 2 failures at seq 3", s)
	}
	// A stale generation record below the sequence must not replace the
	// current one.
	p.Replay(events.Record{Seq: 3, Event: generated(at(time.Hour), "stale").event()})
	if cur, _ := p.Current(); cur.PasscodeID != "g1" {
		t.Errorf("a record at the current sequence was applied: current %q", cur.PasscodeID)
	}
	// Sequences may have gaps (other sites share the stream).
	p.Replay(events.Record{Seq: 100, Event: generated(at(time.Hour), "g2").event()})
	if cur, _ := p.Current(); cur.PasscodeID != "g2" || p.Seq() != 100 {
		t.Errorf("after a gap: %q at %d", cur.PasscodeID, p.Seq())
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := domain.DefaultPolicy().Validate(); err != nil {
		t.Errorf("DefaultPolicy().Validate() = %v", err)
	}
	err := domain.Policy{MaxFailedAttempts: 0, FailureWindow: time.Second, MaxFailedPerSource: 0, SourceWindow: 0}.Validate()
	if !errors.Is(err, domain.ErrInvalidPolicy) {
		t.Fatalf("Validate = %v, want ErrInvalidPolicy", err)
	}
	for _, want := range []string{"max_failed_attempts", "failure_window", "per source", "source window"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %q does not mention %q: every problem must be reported", err, want)
		}
	}
	if err := (domain.Policy{MaxFailedAttempts: 3, FailureWindow: 0, MaxFailedPerSource: 1, SourceWindow: time.Second}).Validate(); err != nil {
		t.Errorf("window 0 = %v, want valid", err)
	}
}

// TestUnrecordedLockoutsAreBounded: the generations kept for a lockout the
// saga has not recorded yet are bounded; the newest are kept.
func TestUnrecordedLockoutsAreBounded(t *testing.T) {
	var evs []ev
	for i := range 10 {
		id := fmt.Sprintf("g%d", i)
		evs = append(evs, generated(at(time.Duration(i)*time.Minute), id),
			failed(at(time.Duration(i)*time.Minute), id, 3, 3, time.Hour, ip("10.0.0.1")))
	}
	evs = append(evs, generated(at(time.Hour), "current"))
	p := given(policy(3, time.Hour, 1000, 15*time.Minute), evs...)
	for id, want := range map[string]bool{"g0": false, "g1": false, "g2": true, "g9": true} {
		got, err := p.Disable(at(2*time.Hour), id, events.DisableLockout)
		if err != nil || (got != nil) != want {
			t.Errorf("lockout of %s = %#v, %v; want recorded: %v", id, got, err, want)
		}
	}
}
