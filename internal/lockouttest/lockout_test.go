package lockouttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// waitDisabled waits until the site's history holds a PasscodeDisabled.
func (h *harness) waitDisabled(site string) {
	h.tb.Helper()
	natstest.Eventually(h.tb, 20*time.Second, func() error {
		if len(h.history(site).disables) == 0 {
			return errors.New("no PasscodeDisabled yet")
		}
		return nil
	})
}

func (h *harness) waitAlerts(site string, n int) {
	h.tb.Helper()
	natstest.Eventually(h.tb, 20*time.Second, func() error {
		if got := len(h.storedAlerts(site)); got < n {
			return fmt.Errorf("%d alerts stored, want %d", got, n)
		}
		return nil
	})
}

// assertOneLockout checks Invariant 2 after everything is processed: one
// disable for the generation, with reason lockout, one stored alert about it,
// and one alert received live.
func (h *harness) assertOneLockout(site, passcodeID string) {
	h.tb.Helper()
	hist := h.history(site)
	if len(hist.disables) != 1 {
		h.tb.Fatalf("%d PasscodeDisabled events, want exactly 1", len(hist.disables))
	}
	dis := hist.disables[0]
	d := dis.Event.Data.(events.PasscodeDisabled)
	if d.PasscodeID != passcodeID || d.Reason != events.DisableLockout || dis.Event.Actor != handlers.LockoutActor {
		h.tb.Fatalf("disable %+v by %+v, want a lockout of %s by the saga", d, dis.Event.Actor, passcodeID)
	}
	stored := h.storedAlerts(site)
	if len(stored) != 1 {
		h.tb.Fatalf("%d alerts stored, want exactly 1", len(stored))
	}
	var ce alerts.LockoutAlert
	if err := json.Unmarshal(stored[0].Data, &ce); err != nil {
		h.tb.Fatal(err)
	}
	if ce.ID != dis.Event.ID || ce.Data.PasscodeID != passcodeID || ce.Type != alerts.TypePasscodeLockout {
		h.tb.Fatalf("alert %+v does not describe disable %s of %s", ce, dis.Event.ID, passcodeID)
	}
	validateAlert(h.tb, stored[0].Data)
	live := h.liveAlerts(2 * time.Second)
	if len(live) != 1 {
		h.tb.Fatalf("%d alerts received on the core subscription, want exactly 1", len(live))
	}
	if string(live[0].Data) != string(stored[0].Data) {
		h.tb.Fatalf("live alert differs from the stored one:\n%s\n%s", live[0].Data, stored[0].Data)
	}
}

// INV1: a tight lockout whatever the concurrency and the number of replicas.
func TestINV1TightLockoutUnderConcurrency(t *testing.T) {
	h := newHarness(t, 3, testPolicy())
	r := h.startLockout()
	const site, attempts, workers = "acme", 200, 50
	gen := h.generate(site)

	var mu sync.Mutex
	verdicts := map[domain.Reason]int{}
	var errs []error
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc := h.svcs[w%len(h.svcs)]
			for i := w; i < attempts; i += workers {
				res, err := svc.VerifyPasscode(context.Background(), handlers.VerifyPasscode{
					Site: site, Passcode: wrong(i), Source: source(i), AttemptID: fmt.Sprintf("attempt-%d", i)})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if res.OK {
					verdicts["ok"]++
				} else {
					verdicts[res.Reason]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d verifies failed, first: %v", len(errs), errs[0])
	}
	if verdicts[domain.ReasonWrongPasscode] != 10 || verdicts[domain.ReasonDisabled] != attempts-10 || len(verdicts) != 2 {
		t.Fatalf("verdicts %v, want 10 wrong_passcode and %d disabled", verdicts, attempts-10)
	}
	// The right passcode after the lockout is refused, on every replica.
	for i, svc := range h.svcs {
		if res := h.verify(svc, site, gen.Passcode, source(1000+i)); res.OK || res.Reason != domain.ReasonDisabled {
			t.Fatalf("replica %d: right passcode after lockout got %+v, want disabled", i, res.Verdict)
		}
	}
	h.waitDisabled(site)
	h.waitAlerts(site, 1)
	h.caughtUp(r, sagaDurable, alerts.Durable)

	hist := h.history(site)
	counts := map[int]int{}
	for _, f := range hist.failures {
		if f.PasscodeID != gen.State.PasscodeID {
			t.Fatalf("failure against another generation: %+v", f)
		}
		counts[f.FailedAttempts]++
	}
	if len(hist.failures) != 10 {
		t.Fatalf("%d EnrollmentAttemptFailed stored, want exactly 10", len(hist.failures))
	}
	for n := 1; n <= 10; n++ {
		if counts[n] != 1 {
			t.Fatalf("failure counts %v: want each of 1..10 exactly once", counts)
		}
	}
	h.assertOneLockout(site, gen.State.PasscodeID)
	d := hist.disables[0].Event.Data.(events.PasscodeDisabled)
	if d.FailedAttempts != 10 || d.MaxFailedAttempts != 10 || len(d.RecentSources) != 10 || d.FirstFailedAt == nil {
		t.Fatalf("disable carries %+v, want the 10 failures and their sources for the alert", d)
	}
}

// INV2: the saga stops after its disable and before the alert, without
// acknowledging; after a restart there is still one disable and one alert.
func TestINV2SagaStoppedAfterDisableBeforeAlert(t *testing.T) {
	h := newHarness(t, 1, testPolicy())
	const site = "acme"
	gen := h.generate(site)
	for i := range 10 {
		h.verify(h.svcs[0], site, wrong(i), source(i))
	}

	saga := h.sagaHandler()
	disabled := make(chan struct{})
	var once sync.Once
	crashing := func(ctx context.Context, rec events.Record) error {
		if err := saga(ctx, rec); err != nil {
			return err
		}
		if f, ok := rec.Event.Data.(events.EnrollmentAttemptFailed); ok && f.ReachesThreshold() {
			// The disable is stored; "crash" before the ack.
			once.Do(func() { close(disabled) })
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	r1 := h.startRouter(map[string]consume.Handler{sagaDurable: crashing})
	select {
	case <-disabled:
	case <-time.After(20 * time.Second):
		t.Fatal("saga did not disable")
	}
	r1.stop()
	if n := len(h.history(site).disables); n != 1 {
		t.Fatalf("%d disables before restart, want 1", n)
	}
	if n := len(h.storedAlerts(site)); n != 0 {
		t.Fatalf("%d alerts before the alert publisher ran, want 0", n)
	}
	if n, err := r1.Pending(context.Background(), sagaDurable); err == nil {
		t.Fatalf("pending on a closed router: %d", n)
	}

	// Restart: the threshold event is redelivered to the saga, which finds the
	// generation disabled and stores nothing; the alert publisher runs.
	var redelivered sync.WaitGroup
	redelivered.Add(1)
	var seen sync.Once
	counting := func(ctx context.Context, rec events.Record) error {
		if f, ok := rec.Event.Data.(events.EnrollmentAttemptFailed); ok && f.ReachesThreshold() {
			seen.Do(redelivered.Done)
		}
		return saga(ctx, rec)
	}
	r2 := h.startRouter(map[string]consume.Handler{sagaDurable: counting, alerts.Durable: h.alertHandler()})
	waitGroup(t, &redelivered, 20*time.Second, "the unacknowledged threshold event was not redelivered")
	h.waitAlerts(site, 1)
	h.caughtUp(r2, sagaDurable, alerts.Durable)
	h.assertOneLockout(site, gen.State.PasscodeID)
}

// INV2: the alert publisher stops after publishing and before its ack; it is
// redelivered the disable after the restart, and also handles the same
// record twice: still one alert.
func TestINV2AlertPublisherRedelivered(t *testing.T) {
	h := newHarness(t, 1, testPolicy())
	const site = "acme"
	gen := h.generate(site)
	r0 := h.startRouter(map[string]consume.Handler{sagaDurable: h.sagaHandler()})
	for i := range 10 {
		h.verify(h.svcs[0], site, wrong(i), source(i))
	}
	h.waitDisabled(site)
	h.caughtUp(r0, sagaDurable)

	pub := h.alertHandler()
	published := make(chan struct{})
	var once sync.Once
	crashing := func(ctx context.Context, rec events.Record) error {
		if err := pub(ctx, rec); err != nil {
			return err
		}
		if _, ok := rec.Event.Data.(events.PasscodeDisabled); ok {
			// Handled twice in a row, as a redelivery would.
			if err := pub(ctx, rec); err != nil {
				return err
			}
			once.Do(func() { close(published) })
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	r1 := h.startRouter(map[string]consume.Handler{alerts.Durable: crashing})
	select {
	case <-published:
	case <-time.After(20 * time.Second):
		t.Fatal("alert not published")
	}
	r1.stop()
	if n := len(h.storedAlerts(site)); n != 1 {
		t.Fatalf("%d alerts after the first run, want 1", n)
	}

	var redelivered sync.WaitGroup
	redelivered.Add(1)
	var seen sync.Once
	counting := func(ctx context.Context, rec events.Record) error {
		if _, ok := rec.Event.Data.(events.PasscodeDisabled); ok {
			seen.Do(redelivered.Done)
		}
		return pub(ctx, rec)
	}
	r2 := h.startRouter(map[string]consume.Handler{alerts.Durable: counting})
	waitGroup(t, &redelivered, 20*time.Second, "the unacknowledged disable was not redelivered")
	h.caughtUp(r2, alerts.Durable)
	h.assertOneLockout(site, gen.State.PasscodeID)
}

// INV3: a lockout of generation 1 that the saga processes only after the
// admin regenerated leaves generation 2 active; the lockout is still
// recorded, for generation 1 only, and alerted once.
func TestINV3LateLockoutLeavesNewGenerationActive(t *testing.T) {
	h := newHarness(t, 1, testPolicy())
	const site = "acme"
	gen1 := h.generate(site)
	for i := range 10 {
		h.verify(h.svcs[0], site, wrong(i), source(i))
	}
	gen2 := h.generate(site)
	if gen2.State.PasscodeID == gen1.State.PasscodeID {
		t.Fatal("regeneration kept the generation")
	}
	// Only now does the saga run: it sees the threshold of generation 1.
	r := h.startLockout()
	h.caughtUp(r, sagaDurable, alerts.Durable)

	disables := h.history(site).disables
	if len(disables) != 1 {
		t.Fatalf("%d disables, want the one lockout record of generation 1", len(disables))
	}
	if d := disables[0].Event.Data.(events.PasscodeDisabled); d.PasscodeID != gen1.State.PasscodeID ||
		d.Reason != events.DisableLockout || d.FailedAttempts != 10 {
		t.Fatalf("lockout record %+v, want generation 1's, with its 10 failures", d)
	}
	if res := h.verify(h.svcs[0], site, gen2.Passcode, source(100)); !res.OK || res.PasscodeID != gen2.State.PasscodeID {
		t.Fatalf("generation 2 refused: %+v", res.Verdict)
	}
	if res := h.verify(h.svcs[0], site, gen1.Passcode, source(101)); res.OK || res.Reason != domain.ReasonWrongPasscode {
		t.Fatalf("generation 1's passcode got %+v, want wrong_passcode", res.Verdict)
	}
	stored := h.storedAlerts(site)
	if len(stored) != 1 {
		t.Fatalf("%d alerts, want 1", len(stored))
	}
	var alert struct {
		Data struct {
			PasscodeID     string `json:"passcode_id"`
			FailedAttempts int    `json:"failed_attempts"`
		} `json:"data"`
	}
	if err := json.Unmarshal(stored[0].Data, &alert); err != nil {
		t.Fatal(err)
	}
	if alert.Data.PasscodeID != gen1.State.PasscodeID || alert.Data.FailedAttempts != 10 {
		t.Fatalf("alert data %+v, want generation 1 with 10 failures", alert.Data)
	}
}

// Throttling: one source cannot lock the site.
func TestOneSourceIsThrottledAndCannotLockTheSite(t *testing.T) {
	pol := testPolicy()
	h := newHarness(t, 1, pol)
	r := h.startLockout()
	const site = "acme"
	gen := h.generate(site)
	attacker := events.Source{IP: "203.0.113.66", Platform: "android", UserAgent: "curl/8"}
	verdicts := map[domain.Reason]int{}
	for i := range 100 {
		res := h.verify(h.svcs[0], site, wrong(i), attacker)
		if res.OK {
			t.Fatal("wrong passcode accepted")
		}
		verdicts[res.Reason]++
		// Its failures count against the generation for the failure window,
		// so it may try again only once they age out of it.
		if i >= pol.SourceLimit() && (res.Reason != domain.ReasonThrottled || res.RetryAfter <= 0 || res.RetryAfter > max(pol.SourceWindow, pol.FailureWindow)) {
			t.Fatalf("attempt %d: %+v, want throttled with a retry-after within the failure window", i, res.Verdict)
		}
	}
	if verdicts[domain.ReasonWrongPasscode] != pol.SourceLimit() || verdicts[domain.ReasonThrottled] != 100-pol.SourceLimit() {
		t.Fatalf("verdicts %v, want %d wrong_passcode then throttled", verdicts, pol.SourceLimit())
	}
	h.caughtUp(r, sagaDurable, alerts.Durable)
	hist := h.history(site)
	if len(hist.failures) != pol.SourceLimit() || len(hist.failures) >= pol.MaxFailedAttempts || len(hist.disables) != 0 {
		t.Fatalf("%d failures stored and %d disables, want %d failures (below the threshold %d) and no disable",
			len(hist.failures), len(hist.disables), pol.SourceLimit(), pol.MaxFailedAttempts)
	}
	// The site's passcode stays active: another device enrolls.
	if res := h.verify(h.svcs[0], site, gen.Passcode, source(7)); !res.OK {
		t.Fatalf("right passcode from another source refused: %+v", res.Verdict)
	}
	// The same device, now presenting the right passcode, is still throttled:
	// its candidate is not compared.
	if res := h.verify(h.svcs[0], site, gen.Passcode, attacker); res.Reason != domain.ReasonThrottled {
		t.Fatalf("throttled source got %+v", res.Verdict)
	}
	if n := len(h.storedAlerts(site)); n != 0 {
		t.Fatalf("%d alerts, want none", n)
	}
}

// Regeneration after a lockout re-enables verify at once, with a fresh count.
func TestRegenerationAfterLockoutReenablesWithFreshCount(t *testing.T) {
	h := newHarness(t, 1, testPolicy())
	r := h.startLockout()
	const site = "acme"
	gen1 := h.generate(site)
	for i := range 10 {
		h.verify(h.svcs[0], site, wrong(i), source(i))
	}
	h.waitDisabled(site)
	h.waitAlerts(site, 1)
	if res := h.verify(h.svcs[0], site, gen1.Passcode, source(50)); res.Reason != domain.ReasonDisabled {
		t.Fatalf("locked passcode got %+v", res.Verdict)
	}
	gen2 := h.generate(site)
	if gen2.State.Status != domain.StatusActive || gen2.State.FailedAttempts != 0 {
		t.Fatalf("state after regeneration %+v, want active with no failures", gen2.State)
	}
	if res := h.verify(h.svcs[0], site, gen2.Passcode, source(51)); !res.OK {
		t.Fatalf("new passcode refused right after regeneration: %+v", res.Verdict)
	}
	res := h.verify(h.svcs[0], site, wrong(99), source(52))
	if res.Reason != domain.ReasonWrongPasscode {
		t.Fatalf("wrong guess on generation 2: %+v", res.Verdict)
	}
	hist := h.history(site)
	last := hist.failures[len(hist.failures)-1]
	if last.PasscodeID != gen2.State.PasscodeID || last.FailedAttempts != 1 {
		t.Fatalf("first failure of generation 2 counted as %+v, want 1", last)
	}
	h.caughtUp(r, sagaDurable, alerts.Durable)
	if n := len(h.storedAlerts(site)); n != 1 {
		t.Fatalf("%d alerts, want only the first lockout's", n)
	}
}

// waitGroup waits for wg or fails with msg after timeout.
func waitGroup(t *testing.T, wg *sync.WaitGroup, timeout time.Duration, msg string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatal(msg)
	}
}

// validateAlert checks an alert the whole pipeline produced against the
// documented schema.
func validateAlert(tb testing.TB, raw []byte) {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile(filepath.Join(filepath.Dir(file), "..", "..", "docs", "alerts", "passcode-lockout.schema.json"))
	if err != nil {
		tb.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		tb.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		tb.Fatalf("alert does not match docs/alerts/passcode-lockout.schema.json: %v\n%s", err, raw)
	}
}
