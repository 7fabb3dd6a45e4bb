package lockouttest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/alerts"
)

// TestINV1TightWithExcusedAttempts is INV1 with the lifecycle: 3 service
// instances on one JetStream, 50 goroutines sending a mix of guesses (that
// pass the check character, so they count), typos of the current passcode
// (mistyped), the previous generation (outdated) and the retiring one's
// passcode during its grace. Excused entries never count, guesses still lock
// at exactly the threshold, and once locked nothing is compared: not the
// right passcode, not the retiring one.
func TestINV1TightWithExcusedAttempts(t *testing.T) {
	pol := testPolicy()
	pol.OutdatedGenerations, pol.OutdatedFor = 3, 30*24*time.Hour
	h := newHarness(t, 3, pol)
	r := h.startLockout()
	const site, attempts, workers = "acme", 400, 50
	older := h.generate(site)
	previous := h.generate(site)
	gen, err := h.svcs[1].GeneratePasscode(context.Background(), handlers.GeneratePasscode{Site: site, Actor: admin,
		Lifecycle: domain.Lifecycle{Grace: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if !gen.State.CheckCharacter || gen.State.Retiring == nil {
		t.Fatalf("state %+v: want a check character and a retiring generation", gen.State)
	}
	cur := gen.Passcode.Plain()
	typo := func(i int) handlers.Secret {
		b := []byte(cur)
		pos := i % len(b)
		b[pos] = map[bool]byte{true: 'q', false: 'Q'}[b[pos] != 'q']
		return handlers.NewSecret(string(b))
	}
	candidate := func(i int) (handlers.Secret, string) {
		switch i % 4 {
		case 0:
			return handlers.NewSecret(domain.Guess(i, cur, previous.Passcode.Plain(), older.Passcode.Plain())), "guess"
		case 1:
			return typo(i), "typo"
		case 2:
			return older.Passcode, "outdated"
		}
		return previous.Passcode, "retiring"
	}

	var mu sync.Mutex
	verdicts := map[string]map[domain.Reason]int{}
	var errs []error
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc := h.svcs[w%len(h.svcs)]
			for i := w; i < attempts; i += workers {
				pass, kind := candidate(i)
				res, err := svc.VerifyPasscode(context.Background(), handlers.VerifyPasscode{
					Site: site, Passcode: pass, Source: source(i), AttemptID: fmt.Sprintf("attempt-%d", i)})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					if verdicts[kind] == nil {
						verdicts[kind] = map[domain.Reason]int{}
					}
					reason := res.Reason
					if res.OK {
						reason = "ok"
					}
					verdicts[kind][reason]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d verifies failed, first: %v", len(errs), errs[0])
	}
	allowed := map[string][]domain.Reason{
		"guess":    {domain.ReasonWrongPasscode, domain.ReasonDisabled},
		"typo":     {domain.ReasonMistyped, domain.ReasonDisabled},
		"outdated": {domain.ReasonOutdated, domain.ReasonDisabled},
		"retiring": {"ok", domain.ReasonDisabled},
	}
	for kind, vs := range verdicts {
		for reason, n := range vs {
			ok := false
			for _, a := range allowed[kind] {
				ok = ok || a == reason
			}
			if !ok {
				t.Fatalf("%d %s entries answered %s; verdicts %v", n, kind, reason, verdicts)
			}
		}
	}
	if n := verdicts["guess"][domain.ReasonWrongPasscode]; n != 10 {
		t.Fatalf("%d guesses compared, want exactly the threshold (10); verdicts %v", n, verdicts)
	}
	for i, svc := range h.svcs {
		for _, p := range []handlers.Secret{gen.Passcode, previous.Passcode} {
			if res := h.verify(svc, site, p, source(1000+i)); res.OK || res.Reason != domain.ReasonDisabled {
				t.Fatalf("replica %d: a valid passcode after the lockout got %+v, want disabled", i, res.Verdict)
			}
		}
	}
	h.waitDisabled(site)
	h.waitAlerts(site, 1)
	h.caughtUp(r, sagaDurable, alerts.Durable)
	hist := h.history(site)
	if len(hist.failures) != 10 {
		t.Fatalf("%d EnrollmentAttemptFailed stored, want exactly 10", len(hist.failures))
	}
	counts := map[int]int{}
	for _, f := range hist.failures {
		counts[f.FailedAttempts]++
	}
	for n := 1; n <= 10; n++ {
		if counts[n] != 1 {
			t.Fatalf("failure counts %v: want each of 1..10 exactly once", counts)
		}
	}
	excused := 0
	for _, rec := range hist.recs {
		if x, ok := rec.Event.Data.(events.EnrollmentAttemptExcused); ok {
			excused++
			if x.FailedAttempts >= 10 {
				t.Fatalf("an excused entry was decided after the lock: %+v", x)
			}
		}
	}
	if want := verdicts["typo"][domain.ReasonMistyped] + verdicts["outdated"][domain.ReasonOutdated]; excused != want {
		t.Fatalf("%d excused entries stored, %d answered", excused, want)
	}
	h.assertOneLockout(site, gen.State.PasscodeID)
	t.Logf("verdicts %v", verdicts)
}
