package handlers

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

func TestNewServiceValidates(t *testing.T) {
	e := newEnv(domain.DefaultPolicy())
	bad := DefaultConfig()
	bad.MaxCachedSites, bad.MaxConflictRetries, bad.Policy.MaxFailedAttempts = 0, 0, 0
	_, err := NewService(bad, e.store, e.keeper, e.clock, NewULIDs())
	if err == nil {
		t.Fatal("NewService accepted an invalid config")
	}
	for _, want := range []string{"cached sites", "conflict retries", "max_failed_attempts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("config error %q does not report %q", err, want)
		}
	}
	if _, err := NewService(DefaultConfig(), nil, e.keeper, e.clock, NewULIDs()); err == nil {
		t.Error("NewService accepted a nil store")
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}

func TestCommandsEndToEnd(t *testing.T) {
	e := newEnv(testPolicy(10, time.Hour, 5))
	s := e.replica(t)
	g := generate(t, s)
	if g.Passcode.Plain() == "" || g.Seq == 0 || g.State.Status != domain.StatusActive || g.State.GeneratedBy != admin.ID || g.State.Seq != g.Seq {
		t.Fatalf("generate = %+v", g)
	}
	r, err := s.RevealPasscode(bgCtx, RevealPasscode{Site: siteID, Actor: admin})
	if err != nil || r.Passcode.Plain() != g.Passcode.Plain() || r.PasscodeID != g.State.PasscodeID || r.Seq <= g.Seq {
		t.Fatalf("reveal = %+v, %v", r, err)
	}
	v := verifyFrom(t, s, g.Passcode, "192.0.2.1")
	if !v.OK || v.Site != siteID || v.PasscodeID != g.State.PasscodeID || v.Seq <= r.Seq {
		t.Fatalf("verify right = %+v", v)
	}
	v = verifyFrom(t, s, NewSecret("wrong-guess"), "192.0.2.1")
	if v.OK || v.Reason != domain.ReasonWrongPasscode || v.Seq == 0 {
		t.Fatalf("verify wrong = %+v", v)
	}
	d, err := s.DisablePasscode(bgCtx, DisablePasscode{Site: siteID, Actor: admin, Reason: events.DisableManual})
	if err != nil || d.State.Status != domain.StatusDisabled || d.State.DisabledReason != events.DisableManual || d.Seq == 0 {
		t.Fatalf("disable = %+v, %v", d, err)
	}
	if _, err := s.DisablePasscode(bgCtx, DisablePasscode{Site: siteID, Actor: admin, Reason: events.DisableManual}); !errors.Is(err, domain.ErrNotActive) {
		t.Fatalf("second disable = %v, want ErrNotActive", err)
	}
	if v := verifyFrom(t, s, g.Passcode, "192.0.2.1"); v.Reason != domain.ReasonDisabled || v.Seq != 0 {
		t.Fatalf("verify after disable = %+v", v)
	}
	c, err := s.ChangeLockoutPolicy(bgCtx, ChangeLockoutPolicy{Site: siteID, Actor: admin, MaxFailedAttempts: 3, FailureWindow: 0})
	if err != nil || c.State.MaxFailedAttempts != 3 || c.State.FailureWindow != 0 || c.Seq == 0 {
		t.Fatalf("change policy = %+v, %v", c, err)
	}
	if _, err := s.ChangeLockoutPolicy(bgCtx, ChangeLockoutPolicy{Site: siteID, Actor: admin, MaxFailedAttempts: 0}); !errors.Is(err, domain.ErrInvalidPolicy) {
		t.Fatalf("invalid policy = %v, want ErrInvalidPolicy", err)
	}

	types := []events.Type{}
	for _, ev := range e.store.events(t, siteID) {
		types = append(types, ev.Type())
		if ev.Site != siteID || !ev.OccurredAt.Equal(t0) {
			t.Errorf("event %+v: wrong site or time", ev)
		}
	}
	want := []events.Type{events.TypePasscodeGenerated, events.TypePasscodeRevealed, events.TypeEnrollmentAttemptSucceeded,
		events.TypeEnrollmentAttemptFailed, events.TypePasscodeDisabled, events.TypeLockoutPolicyChanged}
	if !reflect.DeepEqual(types, want) {
		t.Errorf("stored %v, want %v", types, want)
	}
	if e.store.rawContains(g.Passcode.Plain()) {
		t.Error("a stored event holds the plain-text passcode")
	}
}

func TestCommandErrors(t *testing.T) {
	e := newEnv(domain.DefaultPolicy())
	s := e.replica(t)
	if _, err := s.RevealPasscode(bgCtx, RevealPasscode{Site: siteID, Actor: admin}); !errors.Is(err, domain.ErrNotGenerated) {
		t.Errorf("reveal of nothing = %v, want ErrNotGenerated", err)
	}
	// A Site is parsed at its edge (events.ParseSite); only the zero value can reach a command.
	if _, err := s.GeneratePasscode(bgCtx, GeneratePasscode{Actor: admin}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("generate on no site = %v, want ErrInvalid", err)
	}
	v, err := s.VerifyPasscode(bgCtx, VerifyPasscode{Site: siteID, Passcode: NewSecret("x"), Source: events.Source{IP: "1.2.3.4"}})
	if err != nil || v.Reason != domain.ReasonNotGenerated || v.Seq != 0 {
		t.Errorf("verify of nothing = %+v, %v", v, err)
	}
	ctx, cancel := context.WithCancel(bgCtx)
	cancel()
	if _, err := s.GeneratePasscode(ctx, GeneratePasscode{Site: siteID, Actor: admin}); !errors.Is(err, context.Canceled) {
		t.Errorf("generate with a cancelled context = %v", err)
	}
	if a, _, _ := e.store.counters(); a != 0 {
		t.Errorf("%d appends, want none", a)
	}
}

func TestVerifyUsesTheGenerationsHashKey(t *testing.T) {
	e := newEnv(domain.DefaultPolicy())
	s := e.replica(t)
	g := generate(t, s)
	e.keeper.rotate("mac-2") // new generations use another key; the current one keeps its own
	if v := verifyFrom(t, s, g.Passcode, "192.0.2.1"); !v.OK {
		t.Fatalf("verify after a key rotation = %+v, want OK", v)
	}
}

// TestConflictReloadsAndRedecides: another replica appends between this
// replica's decision and its append; the append conflicts, the command
// reloads, decides on fresh state and stores the right event.
func TestConflictReloadsAndRedecides(t *testing.T) {
	e := newEnv(testPolicy(10, time.Hour, 1000))
	a, b := e.replica(t), e.replica(t)
	g := generate(t, a)
	verifyFrom(t, b, NewSecret("wrong-1"), "10.0.0.1") // b has the site cached now

	e.store.onAppend = func() { verifyFrom(t, b, NewSecret("wrong-2"), "10.0.0.2") }
	v := verifyFrom(t, a, NewSecret("wrong-3"), "10.0.0.3")
	if v.Reason != domain.ReasonWrongPasscode || v.Seq == 0 {
		t.Fatalf("verify = %+v", v)
	}
	if got := failures(t, e.store); !reflect.DeepEqual(got, []int{1, 2, 3}) {
		t.Fatalf("stored failure counts %v, want [1 2 3]: the retry must count on fresh state", got)
	}
	if _, conflicts, _ := e.store.counters(); conflicts < 1 {
		t.Fatalf("no conflict happened: the test did not exercise the retry")
	}
	_ = g
}

// TestConflictWithALockingReplica: the other replica's append is the failure
// that locks; this replica decided "right passcode" on stale state, and must
// answer disabled after the reload, storing nothing (INV1).
func TestConflictWithALockingReplica(t *testing.T) {
	e := newEnv(testPolicy(2, time.Hour, 1000))
	a, b := e.replica(t), e.replica(t)
	g := generate(t, a)
	verifyFrom(t, b, NewSecret("wrong-1"), "10.0.0.1")

	e.store.onAppend = func() { verifyFrom(t, b, NewSecret("wrong-2"), "10.0.0.2") }
	v := verifyFrom(t, a, g.Passcode, "10.0.0.3")
	if v.OK || v.Reason != domain.ReasonDisabled || v.Seq != 0 {
		t.Fatalf("right passcode decided on stale state = %+v, want disabled after the reload", v)
	}
	if n := countType(t, e.store, events.TypeEnrollmentAttemptSucceeded); n != 0 {
		t.Fatalf("%d successes stored after the lock", n)
	}
}

func TestErrBusyAfterMaxConflictRetries(t *testing.T) {
	e := newEnv(domain.DefaultPolicy())
	e.cfg.MaxConflictRetries = 3
	s := e.replica(t)
	e.store.alwaysConflict = true
	_, err := s.GeneratePasscode(bgCtx, GeneratePasscode{Site: siteID, Actor: admin})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	if appends, conflicts, _ := e.store.counters(); appends != 4 || conflicts != 4 {
		t.Fatalf("appends %d, conflicts %d; want 4 (the first try and 3 retries)", appends, conflicts)
	}
	e.store.alwaysConflict = false
	generate(t, s) // the site is usable again
}

// TestStaleNoStoreDecisionRedecides: a decision that stores nothing is
// checked against the stream's last sequence: another replica regenerated,
// and the new passcode must be accepted rather than answered from the stale
// cache.
func TestStaleNoStoreDecisionRedecides(t *testing.T) {
	t.Run("cached as not generated", func(t *testing.T) {
		e := newEnv(domain.DefaultPolicy())
		a, b := e.replica(t), e.replica(t)
		if v := verifyFrom(t, b, NewSecret("anything"), "10.0.0.1"); v.Reason != domain.ReasonNotGenerated {
			t.Fatalf("verify = %+v", v)
		}
		g := generate(t, a)
		if v := verifyFrom(t, b, g.Passcode, "10.0.0.1"); !v.OK || v.Seq == 0 {
			t.Fatalf("verify with the new passcode on the stale replica = %+v, want OK", v)
		}
	})
	t.Run("cached as locked", func(t *testing.T) {
		e := newEnv(testPolicy(1, time.Hour, 1))
		a, b := e.replica(t), e.replica(t)
		generate(t, a)
		verifyFrom(t, b, NewSecret("wrong"), "10.0.0.1") // locks; b caches it
		if v := verifyFrom(t, b, NewSecret("wrong"), "10.0.0.2"); v.Reason != domain.ReasonDisabled {
			t.Fatalf("verify after the lock = %+v", v)
		}
		g2 := generate(t, a)
		if v := verifyFrom(t, b, g2.Passcode, "10.0.0.3"); !v.OK || v.PasscodeID != g2.State.PasscodeID {
			t.Fatalf("verify with the regenerated passcode on the stale replica = %+v, want OK", v)
		}
	})
	t.Run("an up-to-date refusal costs one LastSeq and no load", func(t *testing.T) {
		e := newEnv(domain.DefaultPolicy())
		s := e.replica(t)
		verifyFrom(t, s, NewSecret("x"), "10.0.0.1")
		_, _, before := e.store.counters()
		verifyFrom(t, s, NewSecret("x"), "10.0.0.1")
		if _, _, after := e.store.counters(); after != before+1 {
			t.Fatalf("LastSeq calls %d, want 1", after-before)
		}
		if n := e.store.zeroLoads(siteID); n != 1 {
			t.Fatalf("loads from 0 = %d, want 1 (the cache is used)", n)
		}
	})
}

// TestRefusalsShareAConfirmation: commands waiting for a site share the
// read of its last sequence that began after they arrived, and never one that
// began before.
func TestRefusalsShareAConfirmation(t *testing.T) {
	// locked returns a replica whose cached site is locked, and the store.
	locked := func(t *testing.T) (*env, *Service) {
		e := newEnv(testPolicy(1, time.Hour, 1))
		s := e.replica(t)
		generate(t, s)
		if v := verifyFrom(t, s, NewSecret("wrong"), "10.0.0.1"); v.OK {
			t.Fatal("wrong passcode accepted")
		}
		return e, s
	}
	// waitUsers waits until n commands hold or wait for the site.
	waitUsers := func(t *testing.T, s *Service, n int32) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			s.cache.mu.Lock()
			users := s.cache.entries[siteID].users
			s.cache.mu.Unlock()
			if users == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d commands on the site, want %d", users, n)
			}
		}
	}

	t.Run("a flood of refusals costs a read per turn", func(t *testing.T) {
		e, s := locked(t)
		gate := make(chan struct{})
		var once sync.Once
		e.store.mu.Lock()
		e.store.afterLastSeq = func() { once.Do(func() { <-gate }) } // the first read waits
		e.store.mu.Unlock()
		_, _, before := e.store.counters()
		const n = 16
		verdicts := make(chan VerifyResult, n)
		errs := make(chan error, n)
		for i := range n {
			go func() {
				v, err := s.VerifyPasscode(bgCtx, VerifyPasscode{Site: siteID, Passcode: NewSecret("wrong"), Source: events.Source{IP: "10.0.1." + strconv.Itoa(i)}})
				verdicts <- v
				errs <- err
			}()
		}
		waitUsers(t, s, n) // all arrived while the first read was in flight
		close(gate)
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			if v := <-verdicts; v.Reason != domain.ReasonDisabled {
				t.Fatalf("verdict %+v, want disabled", v)
			}
		}
		// The first command's read, then one read that every other began
		// after: two in all.
		if _, _, after := e.store.counters(); after-before != 2 {
			t.Fatalf("%d reads of the last sequence for %d refusals, want 2", after-before, n)
		}
	})

	t.Run("a read begun before a command arrived is not its confirmation", func(t *testing.T) {
		e, s := locked(t)
		other := e.replica(t)
		gate, reading := make(chan struct{}), make(chan struct{})
		var once sync.Once
		e.store.mu.Lock()
		e.store.afterLastSeq = func() { once.Do(func() { close(reading); <-gate }) }
		e.store.mu.Unlock()
		first := make(chan error, 1)
		go func() {
			_, err := s.VerifyPasscode(bgCtx, VerifyPasscode{Site: siteID, Passcode: NewSecret("wrong"), Source: events.Source{IP: "10.0.2.1"}})
			first <- err
		}()
		select { // the first command's read has the old last sequence
		case <-reading:
		case <-time.After(5 * time.Second):
			t.Fatal("the first refusal read no last sequence")
		}
		g := generate(t, other)
		second := make(chan VerifyResult, 1)
		go func() {
			v, _ := s.VerifyPasscode(bgCtx, VerifyPasscode{Site: siteID, Passcode: g.Passcode, Source: events.Source{IP: "10.0.2.2"}})
			second <- v
		}()
		waitUsers(t, s, 2)
		close(gate)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if v := <-second; !v.OK || v.PasscodeID != g.State.PasscodeID {
			t.Fatalf("the passcode another replica generated before the command arrived: %+v, want OK", v)
		}
	})
}

// TestStaleStateErrorRedecides: a decision that fails because of the state
// (nothing generated, nothing active) is checked against the stream like one
// that stores nothing.
func TestStaleStateErrorRedecides(t *testing.T) {
	t.Run("reveal after another replica generated", func(t *testing.T) {
		e := newEnv(domain.DefaultPolicy())
		a, b := e.replica(t), e.replica(t)
		if _, err := b.RevealPasscode(bgCtx, RevealPasscode{Site: siteID, Actor: admin}); !errors.Is(err, domain.ErrNotGenerated) {
			t.Fatalf("reveal = %v", err)
		}
		g := generate(t, a)
		r, err := b.RevealPasscode(bgCtx, RevealPasscode{Site: siteID, Actor: admin})
		if err != nil || r.Passcode.Plain() != g.Passcode.Plain() {
			t.Fatalf("reveal on the stale replica = %+v, %v; want the new passcode", r, err)
		}
	})
	t.Run("manual disable after another replica regenerated", func(t *testing.T) {
		e := newEnv(domain.DefaultPolicy())
		a, b := e.replica(t), e.replica(t)
		generate(t, a)
		if _, err := b.DisablePasscode(bgCtx, DisablePasscode{Site: siteID, Actor: admin, Reason: events.DisableManual}); err != nil {
			t.Fatal(err)
		}
		generate(t, a)
		d, err := b.DisablePasscode(bgCtx, DisablePasscode{Site: siteID, Actor: admin, Reason: events.DisableManual})
		if err != nil || d.State.Status != domain.StatusDisabled || d.Seq == 0 {
			t.Fatalf("disable on the stale replica = %+v, %v; want the new generation disabled", d, err)
		}
	})
}

// TestAppendErrorDropsTheCache: an append whose outcome is unknown forgets
// the cached aggregate, and the next command starts from the stream.
func TestAppendErrorDropsTheCache(t *testing.T) {
	e := newEnv(testPolicy(10, time.Hour, 1000))
	s := e.replica(t)
	generate(t, s)
	if n := e.store.zeroLoads(siteID); n != 1 {
		t.Fatalf("loads from 0 = %d, want 1", n)
	}
	timeout := errors.New("nats: timeout")
	e.store.failNext, e.store.failStored = timeout, true // it was in fact stored
	if _, err := s.VerifyPasscode(bgCtx, VerifyPasscode{Site: siteID, Passcode: NewSecret("wrong"), Source: events.Source{IP: "10.0.0.1"}}); !errors.Is(err, timeout) {
		t.Fatalf("verify = %v, want the store's error", err)
	}
	if _, err := s.VerifyPasscode(bgCtx, VerifyPasscode{Site: siteID, Passcode: NewSecret("wrong"), Source: events.Source{IP: "10.0.0.2"}}); err != nil {
		t.Fatal(err)
	}
	if n := e.store.zeroLoads(siteID); n != 2 {
		t.Fatalf("loads from 0 = %d, want 2: the cache must be dropped after an uncertain append", n)
	}
	if got := failures(t, e.store); !reflect.DeepEqual(got, []int{1, 2}) {
		t.Fatalf("failure counts %v, want [1 2]", got)
	}
	if _, conflicts, _ := e.store.counters(); conflicts != 0 {
		t.Fatalf("%d conflicts: the reload should have made the next append current", conflicts)
	}
}

func TestLockoutSaga(t *testing.T) {
	setup := func(t *testing.T, threshold int) (*env, *Service, *LockoutSaga, GenerateResult) {
		e := newEnv(testPolicy(threshold, time.Hour, 1000))
		s := e.replica(t)
		return e, s, NewLockoutSaga(s), generate(t, s)
	}
	lastEvent := func(t *testing.T, e *env) events.Event {
		evs := e.store.events(t, siteID)
		return evs[len(evs)-1]
	}

	t.Run("reacts only to the failure that reaches the threshold", func(t *testing.T) {
		e, s, saga, g := setup(t, 3)
		for i := 1; i <= 3; i++ {
			verifyFrom(t, s, NewSecret("wrong"), "10.0.0."+strconv.Itoa(i))
			ev := lastEvent(t, e)
			appends, _, _ := e.store.counters()
			if err := saga.Handle(bgCtx, events.Record{Event: ev}); err != nil {
				t.Fatal(err)
			}
			after, _, _ := e.store.counters()
			if i < 3 && after != appends {
				t.Fatalf("the saga acted on failure %d of 3", i)
			}
		}
		ev := lastEvent(t, e)
		d, ok := ev.Data.(events.PasscodeDisabled)
		if !ok || d.PasscodeID != g.State.PasscodeID || d.Reason != events.DisableLockout || ev.Actor != LockoutActor ||
			d.FailedAttempts != 3 || d.MaxFailedAttempts != 3 {
			t.Fatalf("last event = %+v, want a lockout of %s by the saga with 3 of 3", ev, g.State.PasscodeID)
		}
	})
	t.Run("a redelivery stores nothing", func(t *testing.T) {
		e, s, saga, _ := setup(t, 1)
		verifyFrom(t, s, NewSecret("wrong"), "10.0.0.1")
		ev := lastEvent(t, e)
		for range 3 {
			if err := saga.Handle(bgCtx, events.Record{Event: ev}); err != nil {
				t.Fatal(err)
			}
		}
		if n := countType(t, e.store, events.TypePasscodeDisabled); n != 1 {
			t.Fatalf("%d disables, want 1", n)
		}
	})
	t.Run("two replicas' sagas on the same event store one disable", func(t *testing.T) {
		e, s, _, _ := setup(t, 1)
		verifyFrom(t, s, NewSecret("wrong"), "10.0.0.1")
		ev := lastEvent(t, e)
		var wg sync.WaitGroup
		for range 4 {
			saga := NewLockoutSaga(e.replica(t))
			wg.Go(func() {
				if err := saga.Handle(bgCtx, events.Record{Event: ev}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := countType(t, e.store, events.TypePasscodeDisabled); n != 1 {
			t.Fatalf("%d disables, want 1 (INV2)", n)
		}
	})
	t.Run("a late lockout never disables a newer generation, and is still recorded", func(t *testing.T) {
		e, s, saga, g1 := setup(t, 1)
		verifyFrom(t, s, NewSecret("wrong"), "10.0.0.1")
		locking := lastEvent(t, e)
		g2 := generate(t, s)
		for range 2 { // a redelivery records nothing more
			if err := saga.Handle(bgCtx, events.Record{Event: locking}); err != nil {
				t.Fatal(err)
			}
		}
		var lockouts []events.PasscodeDisabled
		for _, ev := range e.store.events(t, siteID) {
			if d, ok := ev.Data.(events.PasscodeDisabled); ok {
				lockouts = append(lockouts, d)
			}
		}
		// The lockout of the replaced generation is recorded (so that it is
		// alerted), naming that generation only.
		if len(lockouts) != 1 || lockouts[0].PasscodeID != g1.State.PasscodeID || lockouts[0].Reason != events.DisableLockout ||
			lockouts[0].FailedAttempts != 1 || lockouts[0].MaxFailedAttempts != 1 {
			t.Fatalf("disables %+v, want one lockout record of %s", lockouts, g1.State.PasscodeID)
		}
		if v := verifyFrom(t, s, g2.Passcode, "10.0.0.2"); !v.OK {
			t.Fatalf("new generation after a late lockout (INV3): %+v", v)
		}
	})
	t.Run("a lockout after a manual disable is still recorded, once", func(t *testing.T) {
		e, s, saga, g1 := setup(t, 1)
		verifyFrom(t, s, NewSecret("wrong"), "10.0.0.1")
		locking := lastEvent(t, e)
		if _, err := s.DisablePasscode(bgCtx, DisablePasscode{Site: siteID, Actor: admin, Reason: events.DisableManual}); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := saga.Handle(bgCtx, events.Record{Event: locking}); err != nil {
				t.Fatal(err)
			}
		}
		var reasons []events.DisableReason
		for _, ev := range e.store.events(t, siteID) {
			if d, ok := ev.Data.(events.PasscodeDisabled); ok {
				if d.PasscodeID != g1.State.PasscodeID {
					t.Fatalf("disable of %s, want %s", d.PasscodeID, g1.State.PasscodeID)
				}
				reasons = append(reasons, d.Reason)
			}
		}
		if !slices.Equal(reasons, []events.DisableReason{events.DisableManual, events.DisableLockout}) {
			t.Fatalf("disables %v, want the manual one and one lockout record", reasons)
		}
		// The state keeps the manual disable.
		st, err := s.RevealPasscode(bgCtx, RevealPasscode{Site: siteID, Actor: admin})
		if err != nil || st.State.DisabledReason != events.DisableManual {
			t.Fatalf("state after the lockout record: %+v, %v", st.State, err)
		}
	})
	t.Run("a policy change at or over the threshold locks out", func(t *testing.T) {
		e, s, saga, g := setup(t, 10)
		verifyFrom(t, s, NewSecret("wrong"), "10.0.0.1")
		verifyFrom(t, s, NewSecret("wrong"), "10.0.0.2")
		for _, c := range []struct {
			max     int
			disable bool
		}{{5, false}, {3, false}, {2, true}} {
			if _, err := s.ChangeLockoutPolicy(bgCtx, ChangeLockoutPolicy{Site: siteID, Actor: admin, MaxFailedAttempts: c.max, FailureWindow: time.Hour}); err != nil {
				t.Fatal(err)
			}
			if err := saga.Handle(bgCtx, events.Record{Event: lastEvent(t, e)}); err != nil {
				t.Fatal(err)
			}
			if got := countType(t, e.store, events.TypePasscodeDisabled) == 1; got != c.disable {
				t.Fatalf("threshold %d with 2 failures: disabled %v, want %v", c.max, got, c.disable)
			}
		}
		if d := lastEvent(t, e).Data.(events.PasscodeDisabled); d.PasscodeID != g.State.PasscodeID || d.Reason != events.DisableLockout || d.FailedAttempts != 2 {
			t.Fatalf("disable = %+v", d)
		}
	})
	t.Run("a policy change without an active passcode does nothing", func(t *testing.T) {
		e := newEnv(domain.DefaultPolicy())
		saga := NewLockoutSaga(e.replica(t))
		ev := events.Event{ID: "x", Site: siteID, OccurredAt: t0, Data: events.LockoutPolicyChanged{MaxFailedAttempts: 1, FailedAttempts: 5}}
		if err := saga.Handle(bgCtx, events.Record{Event: ev}); err != nil {
			t.Fatal(err)
		}
		if a, _, l := e.store.counters(); a != 0 || l != 0 {
			t.Fatalf("the saga touched the store: %d appends, %d LastSeq", a, l)
		}
	})
	t.Run("other events are ignored", func(t *testing.T) {
		e := newEnv(domain.DefaultPolicy())
		saga := NewLockoutSaga(e.replica(t))
		for _, p := range []events.Payload{events.PasscodeGenerated{PasscodeID: "g"}, events.PasscodeRevealed{PasscodeID: "g"},
			events.PasscodeDisabled{PasscodeID: "g", Reason: events.DisableLockout}, events.EnrollmentAttemptSucceeded{PasscodeID: "g"},
			events.EnrollmentAttemptFailed{PasscodeID: "g", FailedAttempts: 9, MaxFailedAttempts: 10}} {
			if err := saga.Handle(bgCtx, events.Record{Event: events.Event{ID: "x", Site: siteID, OccurredAt: t0, Data: p}}); err != nil {
				t.Fatal(err)
			}
		}
		if a, _, l := e.store.counters(); a != 0 || l != 0 {
			t.Fatalf("the saga touched the store: %d appends, %d LastSeq", a, l)
		}
	})
	t.Run("a store error is returned so the event is redelivered", func(t *testing.T) {
		e, s, saga, _ := setup(t, 1)
		verifyFrom(t, s, NewSecret("wrong"), "10.0.0.1")
		ev := lastEvent(t, e)
		e.store.failNext = errors.New("nats: no responders")
		if err := saga.Handle(bgCtx, events.Record{Event: ev}); err == nil {
			t.Fatal("the saga swallowed a store error")
		}
		if err := saga.Handle(bgCtx, events.Record{Event: ev}); err != nil {
			t.Fatal(err)
		}
		if n := countType(t, e.store, events.TypePasscodeDisabled); n != 1 {
			t.Fatalf("%d disables after the redelivery, want 1", n)
		}
	})
}

// TestConcurrentCommandsAreSerialised: many goroutines on one site through
// one Service never conflict (commands are serialised in-process), and the
// failure counts have no gaps and no repeats.
func TestConcurrentCommandsAreSerialised(t *testing.T) {
	e := newEnv(testPolicy(1000, 0, 999))
	s := e.replica(t)
	generate(t, s)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				ip := "10." + strconv.Itoa(w) + ".0." + strconv.Itoa(i)
				if _, err := s.VerifyPasscode(bgCtx, VerifyPasscode{Site: siteID, Passcode: NewSecret("wrong"), Source: events.Source{IP: ip}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	assertGapless(t, failures(t, e.store), workers*each)
	if _, conflicts, _ := e.store.counters(); conflicts != 0 {
		t.Errorf("%d conflicts within one process: commands on a site are not serialised", conflicts)
	}
}

// TestConcurrentReplicas: several replicas on one store, racing; optimistic
// concurrency keeps the counts gapless and the lockout tight (INV1).
func TestConcurrentReplicas(t *testing.T) {
	t.Run("counts", func(t *testing.T) {
		e := newEnv(testPolicy(1000, 0, 999))
		replicas := []*Service{e.replica(t), e.replica(t), e.replica(t)}
		generate(t, replicas[0])
		var wg sync.WaitGroup
		for w := range 6 {
			s := replicas[w%len(replicas)]
			wg.Go(func() {
				for i := range 15 {
					ip := "10." + strconv.Itoa(w) + ".1." + strconv.Itoa(i)
					if _, err := s.VerifyPasscode(bgCtx, VerifyPasscode{Site: siteID, Passcode: NewSecret("wrong"), Source: events.Source{IP: ip}}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		assertGapless(t, failures(t, e.store), 90)
	})
	t.Run("lockout is tight", func(t *testing.T) {
		const threshold = 5
		e := newEnv(testPolicy(threshold, time.Hour, 999))
		replicas := []*Service{e.replica(t), e.replica(t), e.replica(t)}
		g := generate(t, replicas[0])
		var wg sync.WaitGroup
		for w := range 9 {
			s := replicas[w%len(replicas)]
			wg.Go(func() {
				for i := range 10 {
					guess := NewSecret("wrong")
					if i%3 == 2 {
						guess = g.Passcode
					}
					ip := "10." + strconv.Itoa(w) + ".2." + strconv.Itoa(i)
					if _, err := s.VerifyPasscode(bgCtx, VerifyPasscode{Site: siteID, Passcode: guess, Source: events.Source{IP: ip}}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		assertGapless(t, failures(t, e.store), threshold)
		// Nothing is stored after the failure that locked.
		evs := e.store.events(t, siteID)
		if f, ok := evs[len(evs)-1].Data.(events.EnrollmentAttemptFailed); !ok || !f.ReachesThreshold() {
			t.Fatalf("last stored event %+v, want the locking failure", evs[len(evs)-1])
		}
	})
}

func assertGapless(t *testing.T, counts []int, want int) {
	t.Helper()
	if len(counts) != want {
		t.Fatalf("%d failures stored, want %d", len(counts), want)
	}
	for i, c := range counts {
		if c != i+1 {
			t.Fatalf("failure %d carries count %d: gap or repeat in %v", i+1, c, counts)
		}
	}
}

func TestVerifyPasscodeValidate(t *testing.T) {
	ok := VerifyPasscode{Site: "acme", Passcode: NewSecret("Abc123def456"), AttemptID: "a-1",
		Source: events.Source{IP: "2001:db8::1", DeviceID: "d", Platform: "ios", UserAgent: "UA"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	atLimit := ok
	atLimit.Passcode = NewSecret(strings.Repeat("p", 128))
	atLimit.AttemptID = strings.Repeat("a", 128)
	atLimit.Source = events.Source{IP: strings.Repeat("1", 64), DeviceID: strings.Repeat("d", 256),
		Platform: strings.Repeat("p", 32), UserAgent: strings.Repeat("u", 512)}
	if err := atLimit.Validate(); err != nil {
		t.Fatalf("request at the limits: %v", err)
	}
	cases := map[string]func(c *VerifyPasscode){
		"empty site":               func(c *VerifyPasscode) { c.Site = "" },
		"empty passcode":           func(c *VerifyPasscode) { c.Passcode = NewSecret("") },
		"passcode too long":        func(c *VerifyPasscode) { c.Passcode = NewSecret(strings.Repeat("p", 129)) },
		"passcode not UTF-8":       func(c *VerifyPasscode) { c.Passcode = NewSecret("Abc\xff") },
		"attempt ID too long":      func(c *VerifyPasscode) { c.AttemptID = strings.Repeat("a", 129) },
		"attempt ID not UTF-8":     func(c *VerifyPasscode) { c.AttemptID = "\xc3" },
		"IP too long":              func(c *VerifyPasscode) { c.Source.IP = strings.Repeat("1", 65) },
		"device ID too long":       func(c *VerifyPasscode) { c.Source.DeviceID = strings.Repeat("d", 257) },
		"device ID not UTF-8":      func(c *VerifyPasscode) { c.Source.DeviceID = "\xfe" },
		"platform too long":        func(c *VerifyPasscode) { c.Source.Platform = strings.Repeat("p", 33) },
		"user agent too long":      func(c *VerifyPasscode) { c.Source.UserAgent = strings.Repeat("u", 513) },
		"user agent not UTF-8":     func(c *VerifyPasscode) { c.Source.UserAgent = "\x80" },
		"several problems at once": func(c *VerifyPasscode) { c.Site = ""; c.Passcode = NewSecret("") },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			c := ok
			mutate(&c)
			err := c.Validate()
			if !errors.Is(err, domain.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			if p := c.Passcode.Plain(); p != "" && strings.Contains(err.Error(), p) {
				t.Fatalf("the validation error holds the passcode: %v", err)
			}
		})
	}
	t.Run("several problems are all reported", func(t *testing.T) {
		c := ok
		c.Site, c.Passcode = "", NewSecret("")
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "site") || !strings.Contains(err.Error(), "passcode is required") {
			t.Fatalf("Validate = %v", err)
		}
	})
	t.Run("a malformed request is not an attempt", func(t *testing.T) {
		e := newEnv(domain.DefaultPolicy())
		s := e.replica(t)
		generate(t, s)
		before, _, lastBefore := e.store.counters()
		c := ok
		c.Passcode = NewSecret(strings.Repeat("p", 500))
		if _, err := s.VerifyPasscode(bgCtx, c); !errors.Is(err, domain.ErrInvalid) {
			t.Fatalf("VerifyPasscode = %v, want ErrInvalid", err)
		}
		if after, _, lastAfter := e.store.counters(); after != before || lastAfter != lastBefore {
			t.Fatal("a malformed request reached the store")
		}
	})
}

func TestAttemptIDThroughTheService(t *testing.T) {
	e := newEnv(testPolicy(10, time.Hour, 1000))
	s := e.replica(t)
	generate(t, s)
	req := VerifyPasscode{Site: siteID, Passcode: NewSecret("wrong"), AttemptID: "att-1", Source: events.Source{IP: "10.0.0.1"}}
	first, err := s.VerifyPasscode(bgCtx, req)
	if err != nil || first.Seq == 0 {
		t.Fatal(first, err)
	}
	retry, err := s.VerifyPasscode(bgCtx, req)
	if err != nil || retry.Verdict != first.Verdict || retry.Seq != 0 {
		t.Fatalf("retry = %+v, %v; want the same verdict and nothing stored", retry, err)
	}
	// A fresh replica (restart) remembers the attempt from the stream.
	fresh, err := e.replica(t).VerifyPasscode(bgCtx, req)
	if err != nil || fresh.Verdict != first.Verdict || fresh.Seq != 0 {
		t.Fatalf("retry on a fresh replica = %+v, %v", fresh, err)
	}
	req.Passcode = NewSecret("another-guess")
	if r, _ := s.VerifyPasscode(bgCtx, req); r.Seq == 0 {
		t.Fatal("a new guess under a reused attempt ID was not recorded")
	}
	if got := failures(t, e.store); !reflect.DeepEqual(got, []int{1, 2}) {
		t.Fatalf("failure counts %v, want [1 2]", got)
	}
}
