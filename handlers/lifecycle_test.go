package handlers

import (
	"strconv"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// lifeEnv is an env whose passcodes end in a check character and whose
// policy answers outdated (3 generations, 30 days).
func lifeEnv(maxFailed, perSource int) *env {
	pol := testPolicy(maxFailed, time.Hour, perSource)
	pol.OutdatedGenerations, pol.OutdatedFor = 3, 30*24*time.Hour
	e := newEnv(pol)
	e.keeper.checked = true
	return e
}

func generateWith(t *testing.T, s *Service, l domain.Lifecycle) GenerateResult {
	t.Helper()
	r, err := s.GeneratePasscode(bgCtx, GeneratePasscode{Site: siteID, Actor: admin, Lifecycle: l})
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	return r
}

// typo returns p with its third character replaced.
func typo(p Secret) Secret {
	b := []byte(p.Plain())
	if b[2] == 'x' {
		b[2] = 'y'
	} else {
		b[2] = 'x'
	}
	return NewSecret(string(b))
}

// runSaga hands every stored event after seq to the saga, as its consumer
// would, and returns the new last sequence.
func runSaga(t *testing.T, e *env, saga *LockoutSaga, seq uint64) uint64 {
	t.Helper()
	recs, err := e.store.Load(bgCtx, siteID, seq)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := saga.Handle(bgCtx, r); err != nil {
			t.Fatal(err)
		}
		seq = r.Seq
	}
	return seq
}

func TestOutdatedAndMistypedThroughTheService(t *testing.T) {
	e := lifeEnv(10, 5)
	s := e.replica(t)
	old := generate(t, s)
	cur := generate(t, s)
	if !cur.State.CheckCharacter {
		t.Fatalf("state %+v: the generation has no check character", cur.State)
	}
	r := verifyFrom(t, s, old.Passcode, "192.0.2.1")
	if r.Reason != domain.ReasonOutdated || r.Seq == 0 {
		t.Fatalf("old passcode: %+v, want outdated and stored", r)
	}
	r = verifyFrom(t, s, typo(cur.Passcode), "192.0.2.2")
	if r.Reason != domain.ReasonMistyped || r.Seq == 0 {
		t.Fatalf("typo: %+v, want mistyped and stored", r)
	}
	if got := failures(t, e.store); len(got) != 0 {
		t.Fatalf("failures %v, want none", got)
	}
	if n := countType(t, e.store, events.TypeEnrollmentAttemptExcused); n != 2 {
		t.Fatalf("%d excused attempts stored, want 2", n)
	}
	// A fresh replica (history from the store) answers the same.
	if r := verifyFrom(t, e.replica(t), old.Passcode, "192.0.2.3"); r.Reason != domain.ReasonOutdated {
		t.Fatalf("fresh replica, old passcode: %+v", r)
	}
	if r := verifyFrom(t, s, cur.Passcode, "192.0.2.4"); !r.OK {
		t.Fatalf("right passcode: %+v", r)
	}
}

func TestOutdatedUnderARotatedKey(t *testing.T) {
	e := lifeEnv(10, 5)
	s := e.replica(t)
	old := generate(t, s)
	e.keeper.rotate("mac-2")
	generate(t, s)
	if r := verifyFrom(t, s, old.Passcode, "192.0.2.1"); r.Reason != domain.ReasonOutdated {
		t.Fatalf("old passcode hashed under the rotated-out key: %+v, want outdated", r)
	}
}

func TestExpiryThroughTheClock(t *testing.T) {
	e := lifeEnv(10, 5)
	s := e.replica(t)
	g := generateWith(t, s, domain.Lifecycle{ExpiresIn: time.Hour})
	if want := t0.Add(time.Hour); !g.State.ExpiresAt.Equal(want) {
		t.Fatalf("expires_at %v, want %v", g.State.ExpiresAt, want)
	}
	e.clock.Advance(time.Hour - time.Second)
	if r := verifyFrom(t, s, g.Passcode, "192.0.2.1"); !r.OK {
		t.Fatalf("before expiry: %+v", r)
	}
	e.clock.Advance(time.Second)
	for i := range 3 {
		r := verifyFrom(t, s, g.Passcode, "192.0.2.1")
		if r.Reason != domain.ReasonExpired {
			t.Fatalf("attempt %d after expiry: %+v, want expired", i, r)
		}
	}
	if n := countType(t, e.store, events.TypePasscodeExpired); n != 1 {
		t.Fatalf("%d PasscodeExpired, want 1", n)
	}
	// Another replica, on the same clock, agrees and stores nothing more.
	if r := verifyFrom(t, e.replica(t), g.Passcode, "192.0.2.1"); r.Reason != domain.ReasonExpired || r.Seq != 0 {
		t.Fatalf("other replica: %+v", r)
	}
}

func TestCapThroughTheSaga(t *testing.T) {
	e := lifeEnv(10, 5)
	s := e.replica(t)
	saga := NewLockoutSaga(s)
	g := generateWith(t, s, domain.Lifecycle{MaxEnrollments: 2})
	seq := runSaga(t, e, saga, 0)
	for i := range 2 {
		if r := verifyFrom(t, s, g.Passcode, "192.0.2."+strconv.Itoa(i)); !r.OK {
			t.Fatalf("enrollment %d: %+v", i+1, r)
		}
		seq = runSaga(t, e, saga, seq)
	}
	if n := countType(t, e.store, events.TypePasscodeExpired); n != 1 {
		t.Fatalf("%d PasscodeExpired after the cap, want 1", n)
	}
	// Redeliveries of everything store nothing more.
	runSaga(t, e, saga, 0)
	if r := verifyFrom(t, s, g.Passcode, "192.0.2.9"); r.Reason != domain.ReasonUsedUp || r.Seq != 0 {
		t.Fatalf("third enrollment: %+v, want used_up, nothing stored", r)
	}
	evs := e.store.events(t, siteID)
	var lapse events.PasscodeExpired
	for _, ev := range evs {
		if d, ok := ev.Data.(events.PasscodeExpired); ok {
			lapse = d
		}
	}
	if lapse.Reason != events.LapseUsedUp || lapse.Enrollments != 2 || lapse.PasscodeID != g.State.PasscodeID {
		t.Fatalf("lapse %+v", lapse)
	}
	if n := countType(t, e.store, events.TypePasscodeExpired); n != 1 {
		t.Fatalf("%d PasscodeExpired after redeliveries, want 1", n)
	}
}

func TestGraceThroughTheClock(t *testing.T) {
	e := lifeEnv(10, 5)
	s := e.replica(t)
	old := generate(t, s)
	cur := generateWith(t, s, domain.Lifecycle{Grace: time.Hour})
	if cur.State.Retiring == nil || cur.State.Retiring.PasscodeID != old.State.PasscodeID {
		t.Fatalf("retiring = %+v", cur.State.Retiring)
	}
	if r := verifyFrom(t, s, old.Passcode, "192.0.2.1"); !r.OK || r.PasscodeID != old.State.PasscodeID {
		t.Fatalf("old passcode in the grace: %+v", r)
	}
	e.clock.Advance(time.Hour)
	if r := verifyFrom(t, s, old.Passcode, "192.0.2.1"); r.Reason != domain.ReasonOutdated {
		t.Fatalf("old passcode after the grace: %+v, want outdated", r)
	}
	if r := verifyFrom(t, s, cur.Passcode, "192.0.2.1"); !r.OK || r.PasscodeID != cur.State.PasscodeID {
		t.Fatalf("new passcode: %+v", r)
	}
}

func TestMonitorModeThroughTheSaga(t *testing.T) {
	e := lifeEnv(10, 1)
	s := e.replica(t)
	saga := NewLockoutSaga(s)
	g := generate(t, s)
	if _, err := s.ChangeLockoutPolicy(bgCtx, ChangeLockoutPolicy{Site: siteID, Actor: admin, MaxFailedAttempts: 3,
		FailureWindow: time.Hour, Mode: events.ModeMonitor}); err != nil {
		t.Fatal(err)
	}
	seq := runSaga(t, e, saga, 0)
	for i := range 5 {
		if r := verifyFrom(t, s, NewSecret("wrong-guess-"+strconv.Itoa(i)), "10.0.0."+strconv.Itoa(i)); r.Reason != domain.ReasonWrongPasscode {
			t.Fatalf("guess %d: %+v", i, r)
		}
		seq = runSaga(t, e, saga, seq)
	}
	if n := countType(t, e.store, events.TypePasscodeLockoutSimulated); n != 1 {
		t.Fatalf("%d simulated lockouts, want 1", n)
	}
	if n := countType(t, e.store, events.TypePasscodeDisabled); n != 0 {
		t.Fatalf("monitor mode disabled the passcode")
	}
	if r := verifyFrom(t, s, g.Passcode, "192.0.2.50"); !r.OK {
		t.Fatalf("right passcode in monitor mode: %+v", r)
	}
	runSaga(t, e, saga, 0) // redelivery of everything
	if n := countType(t, e.store, events.TypePasscodeLockoutSimulated); n != 1 {
		t.Fatalf("%d simulated lockouts after a redelivery, want 1", n)
	}
	res, err := s.ChangeLockoutPolicy(bgCtx, ChangeLockoutPolicy{Site: siteID, Actor: admin, MaxFailedAttempts: 3,
		FailureWindow: time.Hour, Mode: events.ModeEnforce})
	if err != nil || !res.State.Locked {
		t.Fatalf("switch to enforce: %+v, %v; want locked at once", res.State, err)
	}
	runSaga(t, e, saga, seq)
	if n := countType(t, e.store, events.TypePasscodeDisabled); n != 1 {
		t.Fatalf("%d disables after switching to enforce, want 1", n)
	}
}
