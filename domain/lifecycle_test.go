package domain_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// lifePolicy is a policy with outdated answers on: 3 generations, 30 days.
func lifePolicy(maxFailed, perSource int) domain.Policy {
	pol := policy(maxFailed, time.Hour, perSource, 15*time.Minute)
	pol.OutdatedGenerations, pol.OutdatedFor = 3, 30*24*time.Hour
	return pol
}

// checkedGen is a generation with a check character and the given lifecycle.
func checkedGen(t time.Time, id string, mod func(*events.PasscodeGenerated)) ev {
	e := generated(t, id)
	d := e.data.(events.PasscodeGenerated)
	d.CheckCharacter = true
	if mod != nil {
		mod(&d)
	}
	e.data = d
	return e
}

func timeRef(t time.Time) *time.Time { return &t }

func TestOutdated(t *testing.T) {
	cases := []struct {
		name    string
		pol     domain.Policy
		hist    []ev
		when    time.Time
		mac     []byte
		want    domain.Reason
		outdate string // the generation an outdated answer names
	}{
		{"the previous generation", lifePolicy(10, 5), []ev{generated(t0, "g1"), generated(at(time.Hour), "g2")},
			at(2 * time.Hour), right("g1"), domain.ReasonOutdated, "g1"},
		{"the third before", lifePolicy(10, 5), []ev{generated(t0, "g1"), generated(at(1*time.Hour), "g2"),
			generated(at(2*time.Hour), "g3"), generated(at(3*time.Hour), "g4")}, at(4 * time.Hour), right("g1"), domain.ReasonOutdated, "g1"},
		{"the fourth before is a guess", lifePolicy(10, 5), []ev{generated(t0, "g0"), generated(at(time.Minute), "g1"),
			generated(at(1*time.Hour), "g2"), generated(at(2*time.Hour), "g3"), generated(at(3*time.Hour), "g4")},
			at(4 * time.Hour), right("g0"), domain.ReasonWrongPasscode, ""},
		{"30 days after its replacement it is a guess", lifePolicy(10, 5), []ev{generated(t0, "g1"), generated(at(time.Hour), "g2")},
			at(time.Hour + 30*24*time.Hour), right("g1"), domain.ReasonWrongPasscode, ""},
		{"just before 30 days", lifePolicy(10, 5), []ev{generated(t0, "g1"), generated(at(time.Hour), "g2")},
			at(time.Hour + 30*24*time.Hour - time.Second), right("g1"), domain.ReasonOutdated, "g1"},
		{"turned off", policy(10, time.Hour, 5, 15*time.Minute), []ev{generated(t0, "g1"), generated(at(time.Hour), "g2")},
			at(2 * time.Hour), right("g1"), domain.ReasonWrongPasscode, ""},
		{"a locked generation is outdated too", lifePolicy(1, 1), []ev{generated(t0, "g1"),
			failed(at(time.Minute), "g1", 1, 1, time.Hour, ip("10.0.0.1")), generated(at(time.Hour), "g2")},
			at(2 * time.Hour), right("g1"), domain.ReasonOutdated, "g1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := given(c.pol, c.hist...)
			v, payload := verify(t, p, c.when, domain.Attempt{ID: "a1", Source: ip("192.0.2.9"), CandidateMAC: c.mac})
			if v.Reason != c.want {
				t.Fatalf("verdict %+v, want %s", v, c.want)
			}
			if s := p.State(c.when); c.want == domain.ReasonOutdated && s.FailedAttempts != 0 {
				t.Errorf("failed attempts = %d after an outdated entry, want 0", s.FailedAttempts)
			}
			if c.want != domain.ReasonOutdated {
				return
			}
			x, ok := payload.(events.EnrollmentAttemptExcused)
			if !ok || x.Outcome != events.OutcomeOutdated || x.OutdatedPasscodeID != c.outdate || x.FailedAttempts != 0 || x.AttemptID != "a1" {
				t.Fatalf("payload %#v, want an excused outdated attempt naming %s", payload, c.outdate)
			}
			// A retry repeats the verdict and stores nothing.
			if v2, p2 := p.Verify(c.when, domain.Attempt{ID: "a1", Source: ip("192.0.2.9"), CandidateMAC: c.mac}); v2.Reason != domain.ReasonOutdated || p2 != nil {
				t.Errorf("retry = %+v %#v", v2, p2)
			}
		})
	}

	t.Run("counts toward the source, not the lockout", func(t *testing.T) {
		p := given(lifePolicy(10, 5), generated(t0, "g1"), generated(at(time.Hour), "g2"))
		for i := range 5 {
			v, _ := verify(t, p, at(time.Hour+time.Duration(i)*time.Second), domain.Attempt{Source: ip("192.0.2.9"), CandidateMAC: right("g1")})
			if v.Reason != domain.ReasonOutdated {
				t.Fatalf("entry %d: %+v, want outdated", i+1, v)
			}
		}
		v, payload := p.Verify(at(time.Hour+time.Minute), domain.Attempt{Source: ip("192.0.2.9"), CandidateMAC: right("g2")})
		if v.Reason != domain.ReasonThrottled || payload != nil {
			t.Fatalf("sixth entry from the source: %+v %#v, want throttled", v, payload)
		}
		if s := p.State(at(time.Hour + time.Minute)); s.FailedAttempts != 0 || s.Locked {
			t.Errorf("state %+v, want no failure counted", s)
		}
		if v, _ := p.Verify(at(time.Hour+time.Minute), domain.Attempt{Source: ip("192.0.2.10"), CandidateMAC: right("g2")}); !v.OK {
			t.Errorf("another source with the right passcode: %+v", v)
		}
	})
	t.Run("an outdated generation under another key needs its MAC", func(t *testing.T) {
		g1 := generated(t0, "g1")
		d := g1.data.(events.PasscodeGenerated)
		d.HashKeyID = "mac-0"
		g1.data = d
		p := given(lifePolicy(10, 5), g1, generated(at(time.Hour), "g2"))
		if ids := p.CandidateKeyIDs(at(2 * time.Hour)); len(ids) != 1 || ids[0] != "mac-0" {
			t.Fatalf("CandidateKeyIDs = %v, want [mac-0]", ids)
		}
		if v, _ := p.Verify(at(2*time.Hour), domain.Attempt{Source: ip("192.0.2.9"), CandidateMAC: right("g1")}); v.Reason != domain.ReasonWrongPasscode {
			t.Errorf("same bytes under the current key: %+v, want wrong_passcode", v)
		}
		v, _ := p.Verify(at(2*time.Hour), domain.Attempt{Source: ip("192.0.2.9"), CandidateMAC: wrong,
			OtherMACs: []domain.KeyedMAC{{KeyID: "mac-0", MAC: right("g1")}}})
		if v.Reason != domain.ReasonOutdated {
			t.Errorf("with the MAC under mac-0: %+v, want outdated", v)
		}
	})
}

func TestMistyped(t *testing.T) {
	cases := []struct {
		name     string
		gen      ev
		mistyped bool
		mac      []byte
		want     domain.Reason
		counted  int
	}{
		{"check fails", checkedGen(t0, "g1", nil), true, wrong, domain.ReasonMistyped, 0},
		{"check passes: a guess", checkedGen(t0, "g1", nil), false, wrong, domain.ReasonWrongPasscode, 1},
		{"a generation without a check character verifies as before", generated(t0, "g1"), true, wrong, domain.ReasonWrongPasscode, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := given(lifePolicy(10, 5), c.gen)
			v, payload := verify(t, p, at(time.Minute), domain.Attempt{Source: ip("192.0.2.9"), CandidateMAC: c.mac, Mistyped: c.mistyped})
			if v.Reason != c.want {
				t.Fatalf("verdict %+v, want %s", v, c.want)
			}
			if x, ok := payload.(events.EnrollmentAttemptExcused); c.want == domain.ReasonMistyped && (!ok || x.Outcome != events.OutcomeMistyped) {
				t.Errorf("payload %#v, want an excused mistyped attempt", payload)
			}
			s := p.State(at(time.Minute))
			if s.FailedAttempts != c.counted {
				t.Errorf("failed attempts = %d, want %d", s.FailedAttempts, c.counted)
			}
			if s.LastFailedSource == nil || s.LastFailedSource.IP != "192.0.2.9" {
				t.Errorf("last failed source = %v", s.LastFailedSource)
			}
		})
	}
	t.Run("mistyped entries throttle their source", func(t *testing.T) {
		p := given(lifePolicy(10, 3), checkedGen(t0, "g1", nil))
		for range 3 {
			verify(t, p, at(time.Minute), domain.Attempt{Source: dev("d1"), CandidateMAC: wrong, Mistyped: true})
		}
		if v, _ := p.Verify(at(time.Minute), domain.Attempt{Source: dev("d1"), CandidateMAC: right("g1")}); v.Reason != domain.ReasonThrottled {
			t.Errorf("after 3 mistyped entries: %+v, want throttled", v)
		}
	})
	t.Run("threshold-many guesses still lock", func(t *testing.T) {
		p := given(lifePolicy(4, 1), checkedGen(t0, "g1", nil), generated(at(time.Second), "g2"))
		failN(t, p, at(time.Minute), 4)
		if s := p.State(at(time.Minute)); !s.Locked {
			t.Fatalf("state %+v, want locked", s)
		}
		if v, payload := p.Verify(at(2*time.Minute), domain.Attempt{Source: ip("192.0.2.77"), CandidateMAC: right("g1")}); v.Reason != domain.ReasonDisabled || payload != nil {
			t.Errorf("outdated entry after the lock: %+v %#v, want disabled, nothing compared", v, payload)
		}
	})
}

func TestCheckCharacter(t *testing.T) {
	body := "Ab3dEf6hIj9"
	c, ok := domain.CheckCharacter(body)
	if !ok {
		// Draw another body: this one's check value has no character.
		t.Skip("sample body has no check character")
	}
	code := body + string(c)
	if !domain.ValidCheck(code) || domain.Mistyped(code) {
		t.Fatalf("%s does not pass its own check", code)
	}
	for _, bad := range []string{body + "!", code[:11], code + "x", "Ab3dEf6hIj9" + string(c+1)} {
		if domain.ValidCheck(bad) {
			t.Errorf("ValidCheck(%q) = true", bad)
		}
	}
	if domain.Mistyped("short") || domain.Mistyped(code+"x") || !domain.Mistyped("Ab3dEf6hIj9"+string(c+1)) {
		t.Error("Mistyped must hold exactly for candidates of the passcode's length that fail the check")
	}
	if !domain.Mistyped("Ab3dEf6hIj9é"[:0] + "Ab3dEf6hIjé9") { // 12 characters, one outside the alphabet
		t.Error("a 12-character candidate with a character outside the alphabet is a typo")
	}
}

func TestExpiry(t *testing.T) {
	expiring := checkedGen(t0, "g1", func(d *events.PasscodeGenerated) { d.ExpiresAt = timeRef(at(time.Hour)) })
	t.Run("valid before, expired from expires_at, recorded once", func(t *testing.T) {
		p := given(lifePolicy(10, 5), expiring)
		if v, _ := verify(t, p, at(time.Hour-time.Nanosecond), domain.Attempt{Source: ip("192.0.2.1"), CandidateMAC: right("g1")}); !v.OK {
			t.Fatalf("before expiry: %+v", v)
		}
		v, payload := verify(t, p, at(time.Hour), domain.Attempt{Source: ip("192.0.2.1"), CandidateMAC: right("g1")})
		x, ok := payload.(events.PasscodeExpired)
		if v.Reason != domain.ReasonExpired || !ok || x.Reason != events.LapseExpired || x.PasscodeID != "g1" || !x.ExpiresAt.Equal(at(time.Hour)) {
			t.Fatalf("at expiry: %+v %#v, want expired and its record", v, payload)
		}
		for _, mac := range [][]byte{right("g1"), wrong} {
			if v, payload := p.Verify(at(2*time.Hour), domain.Attempt{Source: ip("192.0.2.1"), CandidateMAC: mac}); v.Reason != domain.ReasonExpired || payload != nil {
				t.Errorf("after the record: %+v %#v, want expired and nothing stored", v, payload)
			}
		}
		if s := p.State(at(2 * time.Hour)); s.Status != domain.StatusExpired || !s.ExpiresAt.Equal(at(time.Hour)) || s.FailedAttempts != 0 {
			t.Errorf("state %+v, want expired", s)
		}
		if got, _ := p.Expire(at(2*time.Hour), "g1"); got != nil {
			t.Errorf("Expire after the record = %#v, want nothing", got)
		}
	})
	t.Run("a regeneration renews", func(t *testing.T) {
		p := given(lifePolicy(10, 5), expiring, generated(at(2*time.Hour), "g2"))
		if v, _ := p.Verify(at(3*time.Hour), domain.Attempt{Source: ip("192.0.2.1"), CandidateMAC: right("g2")}); !v.OK {
			t.Errorf("new generation: %+v", v)
		}
	})
}

func TestUsedUp(t *testing.T) {
	capped := checkedGen(t0, "g1", func(d *events.PasscodeGenerated) { d.MaxEnrollments = 2 })
	p := given(lifePolicy(10, 5), capped)
	for i := 1; i <= 2; i++ {
		v, payload := verify(t, p, at(time.Duration(i)*time.Minute), domain.Attempt{Source: ip("192.0.2." + strconv.Itoa(i)), CandidateMAC: right("g1")})
		s, ok := payload.(events.EnrollmentAttemptSucceeded)
		if !v.OK || !ok || s.Enrollments != i || s.MaxEnrollments != 2 {
			t.Fatalf("enrollment %d: %+v %#v", i, v, payload)
		}
	}
	if st := p.State(at(3 * time.Minute)); st.Status != domain.StatusUsedUp || st.Enrollments != 2 || !st.LastEnrolledAt.Equal(at(2*time.Minute)) {
		t.Errorf("state %+v, want used_up after 2 enrollments", st)
	}
	got, err := p.Expire(at(3*time.Minute), "g1")
	x, ok := got.(events.PasscodeExpired)
	if err != nil || !ok || x.Reason != events.LapseUsedUp || x.Enrollments != 2 || x.MaxEnrollments != 2 {
		t.Fatalf("Expire = %#v, %v; want used_up", got, err)
	}
	if got, _ := p.Expire(at(3*time.Minute), "other"); got != nil {
		t.Errorf("Expire of another generation = %#v", got)
	}
	store(t, p, at(3*time.Minute), system, got)
	if v, payload := p.Verify(at(4*time.Minute), domain.Attempt{Source: ip("192.0.2.9"), CandidateMAC: right("g1")}); v.Reason != domain.ReasonUsedUp || payload != nil {
		t.Errorf("third enrollment: %+v %#v, want used_up, nothing stored", v, payload)
	}
	if got, _ := p.Expire(at(5*time.Minute), "g1"); got != nil {
		t.Errorf("second Expire = %#v, want nothing", got)
	}
	t.Run("not before the cap", func(t *testing.T) {
		p := given(lifePolicy(10, 5), capped)
		if got, _ := p.Expire(at(time.Minute), "g1"); got != nil {
			t.Errorf("Expire of a valid generation = %#v", got)
		}
	})
}

func TestGrace(t *testing.T) {
	regen := func(t *testing.T, p *domain.Passcode, when time.Time, id string, grace time.Duration) events.PasscodeGenerated {
		t.Helper()
		payload, err := p.Generate(when, domain.NewGeneration{PasscodeID: id, Hash: right(id), HashKeyID: "mac-1",
			Sealed: []byte("s"), SealKeyID: "seal-1", CheckCharacter: true, Lifecycle: domain.Lifecycle{Grace: grace}})
		if err != nil {
			t.Fatal(err)
		}
		store(t, p, when, alice, payload)
		return payload.(events.PasscodeGenerated)
	}
	t.Run("the previous passcode stays valid for the grace, then is outdated", func(t *testing.T) {
		p := given(lifePolicy(10, 5), checkedGen(t0, "g1", nil))
		e := regen(t, p, at(time.Hour), "g2", 24*time.Hour)
		if e.RetiringPasscodeID != "g1" || !e.RetiringUntil.Equal(at(25*time.Hour)) {
			t.Fatalf("event %#v, want g1 retiring until +24h", e)
		}
		s := p.State(at(2 * time.Hour))
		if s.Retiring == nil || s.Retiring.PasscodeID != "g1" || !s.Retiring.Until.Equal(at(25*time.Hour)) {
			t.Fatalf("state retiring = %+v", s.Retiring)
		}
		v, payload := verify(t, p, at(2*time.Hour), domain.Attempt{Source: ip("192.0.2.1"), CandidateMAC: right("g1")})
		if ok, isOK := payload.(events.EnrollmentAttemptSucceeded); !v.OK || v.PasscodeID != "g1" || !isOK || ok.PasscodeID != "g1" {
			t.Fatalf("retiring passcode: %+v %#v", v, payload)
		}
		if v, _ := p.Verify(at(2*time.Hour), domain.Attempt{Source: ip("192.0.2.1"), CandidateMAC: right("g2")}); !v.OK || v.PasscodeID != "g2" {
			t.Errorf("new passcode: %+v", v)
		}
		if v, _ := p.Verify(at(25*time.Hour), domain.Attempt{Source: ip("192.0.2.1"), CandidateMAC: right("g1")}); v.Reason != domain.ReasonOutdated {
			t.Errorf("after the grace: %+v, want outdated", v)
		}
		if s := p.State(at(25 * time.Hour)); s.Retiring != nil {
			t.Errorf("retiring after the grace = %+v", s.Retiring)
		}
	})
	t.Run("never after a lockout", func(t *testing.T) {
		p := given(lifePolicy(1, 1), checkedGen(t0, "g1", nil), failed(at(time.Minute), "g1", 1, 1, time.Hour, ip("10.0.0.1")))
		if e := regen(t, p, at(time.Hour), "g2", 24*time.Hour); e.RetiringPasscodeID != "" {
			t.Fatalf("grace for a locked generation: %#v", e)
		}
	})
	t.Run("never after a disable", func(t *testing.T) {
		p := given(lifePolicy(10, 5), checkedGen(t0, "g1", nil), disabled(at(time.Minute), "g1", events.DisableManual))
		if e := regen(t, p, at(time.Hour), "g2", 24*time.Hour); e.RetiringPasscodeID != "" {
			t.Fatalf("grace for a disabled generation: %#v", e)
		}
	})
	t.Run("a lockout of the new generation ends the grace", func(t *testing.T) {
		p := given(lifePolicy(2, 1), checkedGen(t0, "g1", nil))
		regen(t, p, at(time.Hour), "g2", 24*time.Hour)
		failN(t, p, at(2*time.Hour), 2)
		s := p.State(at(2 * time.Hour))
		if !s.Locked || s.Retiring != nil {
			t.Fatalf("state %+v, want locked without retiring", s)
		}
		// Even once the saga has disabled it and a new one with grace is made.
		store(t, p, at(2*time.Hour), system, events.PasscodeDisabled{PasscodeID: "g2", Reason: events.DisableLockout})
		if v, payload := p.Verify(at(3*time.Hour), domain.Attempt{Source: ip("192.0.2.1"), CandidateMAC: right("g1")}); v.OK || payload != nil {
			t.Errorf("retiring passcode after the lockout: %+v %#v", v, payload)
		}
	})
	t.Run("a manual disable ends the grace", func(t *testing.T) {
		p := given(lifePolicy(10, 5), checkedGen(t0, "g1", nil))
		regen(t, p, at(time.Hour), "g2", 24*time.Hour)
		store(t, p, at(2*time.Hour), alice, events.PasscodeDisabled{PasscodeID: "g2", Reason: events.DisableManual})
		regen(t, p, at(3*time.Hour), "g3", 0)
		if v, _ := p.Verify(at(3*time.Hour), domain.Attempt{Source: ip("192.0.2.1"), CandidateMAC: right("g1")}); v.OK {
			t.Errorf("retiring passcode after a disable and a regeneration: %+v", v)
		}
	})
	t.Run("wrong guesses during the grace count against the new generation", func(t *testing.T) {
		p := given(lifePolicy(10, 5), checkedGen(t0, "g1", nil))
		regen(t, p, at(time.Hour), "g2", 24*time.Hour)
		failN(t, p, at(2*time.Hour), 3)
		if s := p.State(at(2 * time.Hour)); s.FailedAttempts != 3 || s.PasscodeID != "g2" {
			t.Errorf("state %+v", s)
		}
	})
}

func TestGenerateLifecycle(t *testing.T) {
	base := domain.NewGeneration{PasscodeID: "g1", Hash: right("g1"), HashKeyID: "k", Sealed: []byte("s"), SealKeyID: "k"}
	for _, l := range []domain.Lifecycle{{ExpiresIn: time.Second}, {ExpiresIn: -time.Hour}, {MaxEnrollments: -1},
		{MaxEnrollments: domain.MaxMaxEnrollments + 1}, {Grace: -time.Second}, {Grace: 31 * 24 * time.Hour}} {
		g := base
		g.Lifecycle = l
		if got, err := given(lifePolicy(10, 5)).Generate(t0, g); !errors.Is(err, domain.ErrInvalid) || got != nil {
			t.Errorf("Generate(%+v) = %#v, %v; want ErrInvalid", l, got, err)
		}
	}
	g := base
	g.Lifecycle = domain.Lifecycle{ExpiresIn: 720 * time.Hour, MaxEnrollments: 500}
	got, err := given(lifePolicy(10, 5)).Generate(t0, g)
	e, ok := got.(events.PasscodeGenerated)
	if err != nil || !ok || !e.ExpiresAt.Equal(t0.Add(720*time.Hour)) || e.MaxEnrollments != 500 || e.RetiringPasscodeID != "" {
		t.Errorf("Generate = %#v, %v", got, err)
	}
}

func TestMonitorMode(t *testing.T) {
	monitor := func(t time.Time, maxFailed int) ev {
		return ev{at: t, data: events.LockoutPolicyChanged{MaxFailedAttempts: maxFailed, FailureWindow: events.Duration(time.Hour),
			Mode: events.ModeMonitor}}
	}
	t.Run("counts, disables nothing, simulates once per generation", func(t *testing.T) {
		p := given(lifePolicy(10, 1), checkedGen(t0, "g1", nil), monitor(at(time.Second), 3))
		if s := p.State(at(time.Second)); s.Mode != events.ModeMonitor {
			t.Fatalf("mode = %q", s.Mode)
		}
		failN(t, p, at(time.Minute), 5)
		s := p.State(at(2 * time.Minute))
		if s.Locked || s.FailedAttempts != 5 || s.Status != domain.StatusActive {
			t.Fatalf("state %+v, want 5 failures counted, not locked", s)
		}
		if v, _ := p.Verify(at(2*time.Minute), domain.Attempt{Source: ip("192.0.2.200"), CandidateMAC: right("g1")}); !v.OK {
			t.Fatalf("right passcode in monitor mode: %+v", v)
		}
		got, err := p.SimulateLockout(at(3*time.Minute), "g1")
		sim, ok := got.(events.PasscodeLockoutSimulated)
		if err != nil || !ok || sim.FailedAttempts != 3 || sim.MaxFailedAttempts != 3 || len(sim.RecentSources) != 3 {
			t.Fatalf("SimulateLockout = %#v, %v; want the 3 failures that reached the threshold", got, err)
		}
		store(t, p, at(3*time.Minute), system, got)
		if got, _ := p.SimulateLockout(at(4*time.Minute), "g1"); got != nil {
			t.Errorf("second SimulateLockout = %#v, want nothing", got)
		}
		// A new generation may be simulated again.
		store(t, p, at(5*time.Minute), alice, generated(at(5*time.Minute), "g2").data)
		if got, _ := p.SimulateLockout(at(5*time.Minute), "g2"); got != nil {
			t.Errorf("SimulateLockout of a fresh generation = %#v", got)
		}
		failN(t, p, at(30*time.Minute), 3) // after the source window
		if got, _ := p.SimulateLockout(at(31*time.Minute), "g2"); got == nil {
			t.Error("g2's simulated lockout was not decided")
		}
	})
	t.Run("the failures carry the mode; the lock-reaching one does not lock", func(t *testing.T) {
		p := given(lifePolicy(10, 1), checkedGen(t0, "g1", nil), monitor(at(time.Second), 1))
		_, payload := verify(t, p, at(time.Minute), domain.Attempt{Source: ip("192.0.2.1"), CandidateMAC: wrong})
		f := payload.(events.EnrollmentAttemptFailed)
		if f.Mode != events.ModeMonitor || f.ReachesThreshold() || !f.ReachesSimulatedThreshold() {
			t.Errorf("failure %#v, want monitor mode reaching the simulated threshold only", f)
		}
	})
	t.Run("switching to enforce with the threshold reached locks at once", func(t *testing.T) {
		p := given(lifePolicy(10, 1), checkedGen(t0, "g1", nil), monitor(at(time.Second), 3))
		failN(t, p, at(time.Minute), 4)
		got, err := p.ChangePolicy(at(2*time.Minute), 3, time.Hour, events.ModeEnforce)
		pc := got.(events.LockoutPolicyChanged)
		if err != nil || !pc.Locks() || pc.FailedAttempts != 4 {
			t.Fatalf("ChangePolicy = %#v, %v; want a change that locks", got, err)
		}
		store(t, p, at(2*time.Minute), alice, got)
		if v, _ := p.Verify(at(2*time.Minute), domain.Attempt{Source: ip("192.0.2.200"), CandidateMAC: right("g1")}); v.Reason != domain.ReasonDisabled {
			t.Errorf("after switching to enforce: %+v, want disabled", v)
		}
	})
	t.Run("switching to monitor with the threshold reached simulates", func(t *testing.T) {
		p := given(lifePolicy(10, 1), checkedGen(t0, "g1", nil))
		failN(t, p, at(time.Minute), 4)
		got, _ := p.ChangePolicy(at(2*time.Minute), 3, time.Hour, events.ModeMonitor)
		pc := got.(events.LockoutPolicyChanged)
		if pc.Locks() || !pc.SimulatesLockout() {
			t.Fatalf("ChangePolicy = %#v, want a simulated lockout", got)
		}
		store(t, p, at(2*time.Minute), alice, got)
		if s := p.State(at(2 * time.Minute)); s.Locked {
			t.Fatal("monitor mode locked")
		}
		if got, _ := p.SimulateLockout(at(3*time.Minute), "g1"); got == nil {
			t.Error("no simulated lockout after switching to monitor")
		}
	})
	t.Run("an unknown mode is invalid", func(t *testing.T) {
		if _, err := given(lifePolicy(10, 1)).ChangePolicy(t0, 3, time.Hour, "shadow"); !errors.Is(err, domain.ErrInvalidPolicy) {
			t.Errorf("err = %v", err)
		}
	})
}
