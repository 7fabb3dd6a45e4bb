package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/apierror"
	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/projections"
)

func TestGenerate(t *testing.T) {
	f := &fakeCommands{}
	e := newEnv(t, f)
	r := e.do(t, "POST", "/v1/sites/acme/passcode", e.admin, nil)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	if m["site"] != "acme" || m["passcode"] != thePasscode || m["seq"] != float64(7) {
		t.Fatalf("body %s", r.body)
	}
	st := m["state"].(map[string]any)
	if st["status"] != "active" || st["passcode_id"] != "01JPASSCODE" || st["generated_by"] != adminEmail ||
		st["generated_at"] != "2026-11-24T08:30:00Z" || st["failure_window"] != "1h0m0s" ||
		st["max_failed_attempts"] != float64(10) || st["failed_attempts"] != float64(0) || st["seq"] != float64(7) {
		t.Fatalf("state %s", r.body)
	}
	for _, absent := range []string{"disabled_at", "disabled_by", "disabled_reason", "last_failed_at", "throttled_sources"} {
		if _, ok := st[absent]; ok {
			t.Errorf("state has empty member %s: %s", absent, r.body)
		}
	}
	if r.header.Get(HeaderSeq) != "7" || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", r.header)
	}
	// The actor is the token's identity.
	if cmd := f.Calls()[0].(handlers.GeneratePasscode); cmd.Actor != (events.Actor{Kind: events.ActorAdmin, ID: adminEmail}) || cmd.Site != "acme" {
		t.Fatalf("command %+v", cmd)
	}
	// {} is accepted; a field naming another actor is not.
	if r := e.do(t, "POST", "/v1/sites/acme/passcode", e.adminAcme, str(`{}`)); r.status != http.StatusCreated {
		t.Fatalf("with {}: %d %s", r.status, r.body)
	}
	if cmd := f.Calls()[1].(handlers.GeneratePasscode); cmd.Actor.ID != "alice@acme.example" {
		t.Fatalf("actor %+v", cmd.Actor)
	}
	wantProblem(t, e.do(t, "POST", "/v1/sites/acme/passcode", e.admin, str(`{"actor":"mallory@evil.example"}`)), 400, apierror.CodeInvalidRequest)
	if n := len(f.Calls()); n != 2 {
		t.Fatalf("%d commands ran, want 2", n)
	}
}

func TestReveal(t *testing.T) {
	f := &fakeCommands{}
	e := newEnv(t, f)
	r := e.do(t, "POST", "/v1/sites/acme/passcode/reveal", e.adminAcme, nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	if m["passcode"] != thePasscode || m["passcode_id"] != "01JPASSCODE" || m["seq"] != float64(8) || m["site"] != "acme" {
		t.Fatalf("body %s", r.body)
	}
	if r.header.Get(HeaderSeq) != "8" || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", r.header)
	}
	if cmd := f.Calls()[0].(handlers.RevealPasscode); cmd.Actor.ID != "alice@acme.example" || cmd.Actor.Kind != events.ActorAdmin {
		t.Fatalf("command %+v", cmd)
	}
	f.err = fmt.Errorf("reveal passcode: site acme: %w", domain.ErrNotGenerated)
	wantProblem(t, e.do(t, "POST", "/v1/sites/acme/passcode/reveal", e.admin, nil), 409, apierror.CodeNotGenerated)
}

func TestDisable(t *testing.T) {
	f := &fakeCommands{}
	e := newEnv(t, f)
	r := e.do(t, "POST", "/v1/sites/acme/passcode/disable", e.admin, str(" "))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	st := m["state"].(map[string]any)
	if m["seq"] != float64(9) || st["status"] != "disabled" || st["disabled_by"] != adminEmail || st["disabled_reason"] != "manual" {
		t.Fatalf("body %s", r.body)
	}
	if strings.Contains(string(r.body), thePasscode) {
		t.Fatal("disable response holds the passcode")
	}
	if cmd := f.Calls()[0].(handlers.DisablePasscode); cmd.Reason != events.DisableManual || cmd.PasscodeID != "" {
		t.Fatalf("command %+v", cmd)
	}
	f.err = fmt.Errorf("disable passcode: site acme: %w", domain.ErrNotActive)
	wantProblem(t, e.do(t, "POST", "/v1/sites/acme/passcode/disable", e.admin, nil), 409, apierror.CodeNotActive)
}

func TestLockoutPolicy(t *testing.T) {
	f := &fakeCommands{}
	e := newEnv(t, f)
	r := e.do(t, "PUT", "/v1/sites/acme/lockout-policy", e.admin, str(`{"max_failed_attempts":5,"failure_window":"30m"}`))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	st := m["state"].(map[string]any)
	if m["seq"] != float64(11) || st["max_failed_attempts"] != float64(5) || st["failure_window"] != "30m0s" || r.header.Get(HeaderSeq) != "11" {
		t.Fatalf("body %s", r.body)
	}
	cmd := f.Calls()[0].(handlers.ChangeLockoutPolicy)
	if cmd.MaxFailedAttempts != 5 || cmd.FailureWindow != 30*time.Minute || cmd.Actor.ID != adminEmail {
		t.Fatalf("command %+v", cmd)
	}
	for _, c := range []struct{ body, mentions string }{
		{`{"max_failed_attempts":0,"failure_window":"1h"}`, "max_failed_attempts"},
		{`{"max_failed_attempts":5000,"failure_window":"1h"}`, "max_failed_attempts"},
		{`{"max_failed_attempts":5,"failure_window":"1s"}`, "failure_window"},
		{`{"max_failed_attempts":5,"failure_window":"-1h"}`, "failure_window"},
		{`{"max_failed_attempts":5,"failure_window":"soon"}`, "failure_window"},
		{`{"max_failed_attempts":"5","failure_window":"1h"}`, "max_failed_attempts must be an integer"},
		{`{"max_failed_attempts":5.5,"failure_window":"1h"}`, "max_failed_attempts must be an integer"},
		{`{"max_failed_attempts":5,"failure_window":3600}`, "failure_window must be a string"},
		{`{"max_failed_attempts":5}`, "required"},
		{``, "required"},
		{`{"max_failed_attempts":5,"failure_window":"1h","extra":1}`, "unknown field \"extra\""},
	} {
		m := wantProblem(t, e.do(t, "PUT", "/v1/sites/acme/lockout-policy", e.admin, str(c.body)), 400, apierror.CodeInvalidRequest)
		if d := m["detail"].(string); !strings.Contains(d, c.mentions) {
			t.Errorf("body %s: detail %q does not mention %q", c.body, d, c.mentions)
		}
	}
	// "0" counts every failure since generation.
	if r := e.do(t, "PUT", "/v1/sites/acme/lockout-policy", e.admin, str(`{"max_failed_attempts":3,"failure_window":"0"}`)); r.status != 200 {
		t.Fatalf("window 0: %d %s", r.status, r.body)
	}
	if n := len(f.Calls()); n != 2 {
		t.Fatalf("%d commands ran, want 2: bad policies must not reach the command", n)
	}
}

func TestVerify(t *testing.T) {
	f := &fakeCommands{}
	e := newEnv(t, f)
	body := `{"passcode":"guess-123","attempt_id":"a1","source":{"ip":"203.0.113.9","device_id":"dev-1","platform":"ios","user_agent":"UA"}}`

	f.verdict = domain.Verdict{OK: true, PasscodeID: "01JPASSCODE"}
	r := e.do(t, "POST", "/v1/sites/acme/enrollments/verify", e.enroll, str(body))
	if r.status != 200 || string(r.body) != `{"ok":true,"site":"acme","passcode_id":"01JPASSCODE"}`+"\n" {
		t.Fatalf("ok verdict: %d %s", r.status, r.body)
	}
	if r.header.Get(HeaderSeq) != "10" {
		t.Fatalf("seq header %q", r.header.Get(HeaderSeq))
	}
	cmd := f.Calls()[0].(handlers.VerifyPasscode)
	if cmd.Site != "acme" || cmd.Passcode.Plain() != "guess-123" || cmd.AttemptID != "a1" ||
		cmd.Source != (events.Source{IP: "203.0.113.9", DeviceID: "dev-1", Platform: "ios", UserAgent: "UA"}) {
		t.Fatalf("command %+v", cmd)
	}

	f.verdict = domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "01JPASSCODE"}
	r = e.do(t, "POST", "/v1/sites/acme/enrollments/verify", e.enroll, str(body))
	if r.status != 200 || string(r.body) != `{"ok":false,"site":"acme","reason":"wrong_passcode"}`+"\n" {
		t.Fatalf("wrong verdict: %d %s", r.status, r.body)
	}

	f.verdict = domain.Verdict{Reason: domain.ReasonThrottled, PasscodeID: "01JPASSCODE", RetryAfter: 2500 * time.Millisecond}
	r = e.do(t, "POST", "/v1/sites/acme/enrollments/verify", e.enroll, str(body))
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "3" ||
		string(r.body) != `{"ok":false,"site":"acme","reason":"throttled","retry_after_seconds":3}`+"\n" {
		t.Fatalf("throttled: %d Retry-After=%q %s", r.status, r.header.Get("Retry-After"), r.body)
	}

	// An admin may verify; an auditor may not.
	f.verdict = domain.Verdict{Reason: domain.ReasonDisabled}
	if r := e.do(t, "POST", "/v1/sites/acme/enrollments/verify", e.admin, str(body)); r.status != 200 || r.json(t)["reason"] != "disabled" {
		t.Fatalf("admin verify: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do(t, "POST", "/v1/sites/acme/enrollments/verify", e.auditor, str(body)), 403, apierror.CodeForbidden)
}

func TestAuthRules(t *testing.T) {
	f := &fakeCommands{}
	e := newEnv(t, f)
	gen := "/v1/sites/acme/passcode"

	for _, c := range []struct {
		name   string
		header string
	}{
		{"no header", ""},
		{"wrong token", "Bearer eg_not-a-token"},
		{"empty bearer", "Bearer "},
		{"basic scheme", "Basic " + bootAdmin},
		{"token without scheme", bootAdmin},
	} {
		r := e.do(t, "POST", gen, "", nil, "Authorization", c.header)
		wantProblem(t, r, 401, apierror.CodeUnauthorized)
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", c.name, r.header.Get("WWW-Authenticate"))
		}
	}
	// The scheme is case-insensitive.
	if r := e.do(t, "POST", gen, "", nil, "Authorization", "bearer "+bootAdmin); r.status != 201 {
		t.Fatalf("lower-case scheme: %d %s", r.status, r.body)
	}
	// No token says nothing about the site, even a malformed one.
	wantProblem(t, e.do(t, "POST", "/v1/sites/NOPE/passcode", "", nil), 401, apierror.CodeUnauthorized)

	// A site outside the token's scope does not exist for it; its answer is
	// the same as an unknown route's.
	out := wantProblem(t, e.do(t, "POST", "/v1/sites/beta/passcode", e.adminAcme, nil), 404, apierror.CodeNotFound)
	unknown := wantProblem(t, e.do(t, "POST", "/v1/nothing-here", e.adminAcme, nil), 404, apierror.CodeNotFound)
	if out["detail"] != unknown["detail"] {
		t.Errorf("out-of-scope site and unknown route differ: %v vs %v", out, unknown)
	}
	// Role insufficient on a visible site: 403.
	wantProblem(t, e.do(t, "POST", gen, e.auditor, nil), 403, apierror.CodeForbidden)
	wantProblem(t, e.do(t, "POST", gen, e.enroll, nil), 403, apierror.CodeForbidden)
	wantProblem(t, e.do(t, "PUT", "/v1/sites/acme/lockout-policy", e.enroll, str(`{}`)), 403, apierror.CodeForbidden)
	wantProblem(t, e.do(t, "POST", "/v1/sites/acme/passcode/reveal", e.auditor, nil), 403, apierror.CodeForbidden)
	if n := len(f.Calls()); n != 1 {
		t.Fatalf("%d commands ran, want only the allowed one", n)
	}
	// In scope: allowed.
	if r := e.do(t, "POST", gen, e.adminAcme, nil); r.status != 201 {
		t.Fatalf("in scope: %d %s", r.status, r.body)
	}
}

func TestBadRequests(t *testing.T) {
	f := &fakeCommands{}
	e := newEnv(t, f)
	huge := `{"passcode":"` + strings.Repeat("x", 17<<10) + `"}`
	for _, c := range []struct {
		name, method, path, body, ctype string
		status                          int
		code, mentions                  string
	}{
		{"malformed JSON", "PUT", "/v1/sites/acme/lockout-policy", `{"max_failed_attempts":`, "", 400, apierror.CodeInvalidRequest, "malformed JSON"},
		{"syntax error", "POST", "/v1/sites/acme/enrollments/verify", `{"passcode" "x"}`, "", 400, apierror.CodeInvalidRequest, "malformed JSON at byte"},
		{"unknown field", "POST", "/v1/sites/acme/enrollments/verify", `{"passcode":"x","pin":1}`, "", 400, apierror.CodeInvalidRequest, "unknown field in request"},
		{"field name in another case", "POST", "/v1/sites/acme/enrollments/verify", `{"PASSCODE":"x"}`, "", 400, apierror.CodeInvalidRequest, "unknown field in request"},
		{"unknown field on generate", "POST", "/v1/sites/acme/passcode", `{"pin":1}`, "", 400, apierror.CodeInvalidRequest, `unknown field "pin"`},
		{"unknown nested field", "POST", "/v1/sites/acme/enrollments/verify", `{"passcode":"x","source":{"mac":"x"}}`, "", 400, apierror.CodeInvalidRequest, "unknown field in source"},
		{"wrong type", "POST", "/v1/sites/acme/enrollments/verify", `{"passcode":123456}`, "", 400, apierror.CodeInvalidRequest, "passcode must be a string"},
		{"wrong nested type", "POST", "/v1/sites/acme/enrollments/verify", `{"passcode":"x","source":{"ip":7}}`, "", 400, apierror.CodeInvalidRequest, "source.ip must be a string"},
		{"not an object", "POST", "/v1/sites/acme/enrollments/verify", `["x"]`, "", 400, apierror.CodeInvalidRequest, "JSON object"},
		{"two values", "POST", "/v1/sites/acme/enrollments/verify", `{"passcode":"x"}{"passcode":"y"}`, "", 400, apierror.CodeInvalidRequest, "exactly one JSON object"},
		{"two values on policy", "PUT", "/v1/sites/acme/lockout-policy", `{"max_failed_attempts":3,"failure_window":"1h"}{}`, "", 400, apierror.CodeInvalidRequest, "exactly one JSON value"},
		{"trailing garbage", "POST", "/v1/sites/acme/passcode", `{} x`, "", 400, apierror.CodeInvalidRequest, "exactly one JSON value"},
		{"missing passcode", "POST", "/v1/sites/acme/enrollments/verify", `{"attempt_id":"a"}`, "", 400, apierror.CodeInvalidRequest, "passcode is required"},
		{"empty verify body", "POST", "/v1/sites/acme/enrollments/verify", ``, "", 400, apierror.CodeInvalidRequest, "body is required"},
		{"huge body", "POST", "/v1/sites/acme/enrollments/verify", huge, "", 413, apierror.CodeBodyTooLarge, "exceeds 8192 bytes"},
		{"huge body on policy", "PUT", "/v1/sites/acme/lockout-policy", huge, "", 413, apierror.CodeBodyTooLarge, "exceeds 16384 bytes"},
		{"huge body on generate", "POST", "/v1/sites/acme/passcode", huge, "", 413, apierror.CodeBodyTooLarge, "exceeds"},
		{"not JSON", "POST", "/v1/sites/acme/enrollments/verify", `passcode=x`, "application/x-www-form-urlencoded", 415, apierror.CodeUnsupportedMedia, "application/json"},
		{"upper-case site", "POST", "/v1/sites/ACME/passcode", ``, "", 400, apierror.CodeInvalidRequest, "path parameter site"},
		{"site with a dot", "POST", "/v1/sites/acme.corp/enrollments/verify", `{"passcode":"x"}`, "", 400, apierror.CodeInvalidRequest, "path parameter site"},
		{"site with a slash", "POST", "/v1/sites/a%2Fb/passcode", ``, "", 400, apierror.CodeInvalidRequest, "path parameter site"},
		{"site too long", "POST", "/v1/sites/" + strings.Repeat("a", 64) + "/passcode", ``, "", 400, apierror.CodeInvalidRequest, "path parameter site"},
		{"site starting with -", "POST", "/v1/sites/-acme/passcode", ``, "", 400, apierror.CodeInvalidRequest, "path parameter site"},
		{"unknown route", "GET", "/v1/whatever", ``, "", 404, apierror.CodeNotFound, "not found"},
		{"unknown sub-resource", "POST", "/v1/sites/acme/passcode/explode", ``, "", 404, apierror.CodeNotFound, "not found"},
		{"unknown top-level path (the console is at /)", "GET", "/index.php", ``, "", 404, apierror.CodeNotFound, "not found"},
		{"wrong method", "DELETE", "/v1/sites/acme/passcode", ``, "", 405, apierror.CodeMethodNotAllowed, "Allow"},
		{"wrong method on verify", "GET", "/v1/sites/acme/enrollments/verify", ``, "", 405, apierror.CodeMethodNotAllowed, "Allow"},
		{"wrong method on policy", "POST", "/v1/sites/acme/lockout-policy", ``, "", 405, apierror.CodeMethodNotAllowed, "Allow"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r response
			hdr := []string{}
			if c.ctype != "" {
				hdr = append(hdr, "Content-Type", c.ctype)
			}
			if c.body == "" {
				r = e.do(t, c.method, c.path, e.admin, nil, hdr...)
			} else {
				r = e.do(t, c.method, c.path, e.admin, str(c.body), hdr...)
			}
			m := wantProblem(t, r, c.status, c.code)
			if d := m["detail"].(string); !strings.Contains(d, c.mentions) {
				t.Errorf("detail %q does not mention %q", d, c.mentions)
			}
			if c.status == 405 {
				allow := r.header.Get("Allow")
				if allow == "" || strings.Contains(allow, c.method) {
					t.Errorf("Allow %q", allow)
				}
			}
			if m["request_id"] != r.header.Get(HeaderRequestID) || r.header.Get(HeaderRequestID) == "" {
				t.Errorf("request_id %v vs header %q", m["request_id"], r.header.Get(HeaderRequestID))
			}
		})
	}
	if n := len(f.Calls()); n != 0 {
		t.Fatalf("%d commands ran for bad requests, want 0: %+v", n, f.Calls())
	}
}

// INV6: a burst of bad verify requests never counts as an attempt, and the
// service keeps serving.
func TestBadVerifyRequestsNeverCount(t *testing.T) {
	f := &fakeCommands{verdict: domain.Verdict{OK: true, PasscodeID: "p"}}
	e := newEnv(t, f)
	bad := []struct{ path, body string }{
		{"/v1/sites/acme/enrollments/verify", `{"passcode":`},
		{"/v1/sites/acme/enrollments/verify", `{"passcode":1}`},
		{"/v1/sites/acme/enrollments/verify", `{"passcode":"x","extra":true}`},
		{"/v1/sites/acme/enrollments/verify", `{"passcode":""}`},
		{"/v1/sites/acme/enrollments/verify", `{"passcode":"` + strings.Repeat("y", 200) + `"}`},
		{"/v1/sites/acme/enrollments/verify", `{"passcode":"x","source":{"user_agent":"` + strings.Repeat("u", 600) + `"}}`},
		{"/v1/sites/acme/enrollments/verify", `{"passcode":"x","attempt_id":"` + strings.Repeat("a", 200) + `"}`},
		{"/v1/sites/acme/enrollments/verify", `{"passcode":"` + strings.Repeat("z", 20<<10) + `"}`},
		{"/v1/sites/acme/enrollments/verify", `null`},
		{"/v1/sites/acme/enrollments/verify", `{"passcode":"x","source":{"ip":"999.1.1.1"}}`},
		{"/v1/sites/acme/enrollments/verify", `{"passcode":"x","source":{"device_id":"\u001b[31md\nx"}}`},
		{"/v1/sites/acme/enrollments/verify", "{\"passcode\":\"x\xff\"}"},
		{"/v1/sites/Acme/enrollments/verify", `{"passcode":"x"}`},
		{"/v1/sites/acme/enrollment/verify", `{"passcode":"x"}`},
		{"/v1/sites/acme/enrollments/verify/", `{"passcode":"x"}`},
	}
	const rounds = 8
	var wg sync.WaitGroup
	errs := make(chan string, rounds*len(bad))
	for i := 0; i < rounds; i++ {
		for _, b := range bad {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("POST", e.srv.URL+b.path, strings.NewReader(b.body))
				req.Header.Set("Authorization", "Bearer "+e.enroll)
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				resp.Body.Close()
				if resp.StatusCode < 400 || resp.StatusCode >= 500 {
					errs <- fmt.Sprintf("%s %.40s: status %d", b.path, b.body, resp.StatusCode)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if n := len(f.Calls()); n != 0 {
		t.Fatalf("bad requests reached the verifier %d times", n)
	}
	if r := e.do(t, "POST", "/v1/sites/acme/enrollments/verify", e.enroll, str(`{"passcode":"x"}`)); r.status != 200 {
		t.Fatalf("good request after the burst: %d %s", r.status, r.body)
	}
	if n := len(f.Calls()); n != 1 {
		t.Fatalf("verifier called %d times, want 1", n)
	}
}

func TestErrorMapping(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		code   string
		logged bool
	}{
		{fmt.Errorf("generate passcode: site acme: %w", handlers.ErrBusy), 503, apierror.CodeBusy, true},
		// A deadline the service set below the request's: NATS did not
		// answer in time (the request's own deadline: TestRequestTimeout).
		{fmt.Errorf("generate passcode: %w", context.DeadlineExceeded), 503, apierror.CodeUnavailable, true},
		{fmt.Errorf("generate passcode: load site acme: %w", nats.ErrTimeout), 503, apierror.CodeUnavailable, true},
		{fmt.Errorf("generate passcode: load site acme: %w", nats.ErrNoResponders), 503, apierror.CodeUnavailable, true},
		{fmt.Errorf("generate passcode: load site acme: %w", nats.ErrConnectionClosed), 503, apierror.CodeUnavailable, true},
		// What the event store wraps when an append went unanswered.
		{fmt.Errorf("generate passcode: append: append outcome unknown: %w", handlers.ErrUnavailable), 503, apierror.CodeUnavailable, true},
		// What the event store wraps for an event of a newer version.
		{fmt.Errorf("generate passcode: load site acme: event at seq 7: %w: unknown event type", handlers.ErrUpgradeRequired), 503, apierror.CodeUpgradeRequired, true},
		// What the keeper wraps for a key this replica does not hold.
		{fmt.Errorf("reveal passcode: seal key seal-0badc0de: unknown key ID: %w", handlers.ErrKeyUnavailable), 503, apierror.CodeKeyUnavailable, true},
		{fmt.Errorf("generate passcode: site acme: %w", domain.ErrInvalid), 400, apierror.CodeInvalidRequest, false},
		{fmt.Errorf("generate passcode: nats: connection closed to 10.0.0.7 secret-internals"), 500, apierror.CodeInternal, true},
	} {
		t.Run(c.code, func(t *testing.T) {
			f := &fakeCommands{err: c.err}
			e := newEnv(t, f)
			r := e.do(t, "POST", "/v1/sites/acme/passcode", e.admin, nil, HeaderRequestID, "req-"+c.code)
			m := wantProblem(t, r, c.status, c.code)
			if c.code == apierror.CodeInternal && strings.Contains(string(r.body), "secret-internals") {
				t.Fatalf("a 500 shows the internal error: %s", r.body)
			}
			if c.status == 503 && r.header.Get("Retry-After") == "" {
				t.Errorf("%s without Retry-After", c.code)
			}
			if m["request_id"] != "req-"+c.code {
				t.Errorf("request_id %v", m["request_id"])
			}
			eventually(t, 2*time.Second, "access log", func() bool { return strings.Contains(e.logs.String(), `"http request"`) })
			logs := e.logs.String()
			failures := strings.Count(logs, `"request failed"`)
			if c.logged {
				if failures != 1 || !strings.Contains(logs, c.err.Error()) || !strings.Contains(logs, `"request_id":"req-`+c.code+`"`) {
					t.Fatalf("want the error logged once with its request ID:\n%s", logs)
				}
			} else if failures != 0 {
				t.Fatalf("a client error was logged as a failure:\n%s", logs)
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	f := &fakeCommands{block: true}
	e := newEnv(t, f, func(c *Config, _ *Deps) { c.RequestTimeout = 50 * time.Millisecond })
	wantProblem(t, e.do(t, "POST", "/v1/sites/acme/passcode", e.admin, nil), 504, apierror.CodeTimeout)
}

func TestPanicRecovery(t *testing.T) {
	f := &fakeCommands{panicWith: "kaboom"}
	e := newEnv(t, f)
	wantProblem(t, e.do(t, "POST", "/v1/sites/acme/passcode/reveal", e.admin, nil), 500, apierror.CodeInternal)
	eventually(t, 2*time.Second, "panic log", func() bool { return strings.Contains(e.logs.String(), `"handler panicked"`) })
	if !strings.Contains(e.logs.String(), "kaboom") {
		t.Fatalf("panic value not logged:\n%s", e.logs.String())
	}
	f.mu.Lock()
	f.panicWith = nil
	f.mu.Unlock()
	if r := e.do(t, "POST", "/v1/sites/acme/passcode/reveal", e.admin, nil); r.status != 200 {
		t.Fatalf("after a panic: %d %s", r.status, r.body)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var mu sync.Mutex
	var readyErr error
	e := newEnv(t, &fakeCommands{}, func(_ *Config, d *Deps) {
		d.Ready = func(context.Context) error { mu.Lock(); defer mu.Unlock(); return readyErr }
	})
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := e.do(t, "GET", p, "", nil); r.status != 200 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
	mu.Lock()
	readyErr = errors.New("projections behind: at 10 of 42")
	mu.Unlock()
	m := wantProblem(t, e.do(t, "GET", "/readyz", "", nil), 503, apierror.CodeNotReady)
	if !strings.Contains(m["detail"].(string), "projections behind") {
		t.Fatalf("detail %v", m["detail"])
	}
	if r := e.do(t, "GET", "/healthz", "", nil); r.status != 200 {
		t.Fatalf("healthz while not ready: %d", r.status)
	}
	wantProblem(t, e.do(t, "POST", "/healthz", "", nil), 405, apierror.CodeMethodNotAllowed)
}

func TestRequestID(t *testing.T) {
	e := newEnv(t, &fakeCommands{})
	if r := e.do(t, "GET", "/healthz", "", nil, HeaderRequestID, "abc-123"); r.header.Get(HeaderRequestID) != "abc-123" {
		t.Fatalf("request ID not echoed: %q", r.header.Get(HeaderRequestID))
	}
	r := e.do(t, "GET", "/healthz", "", nil, HeaderRequestID, `bad id {"x":1}`)
	if id := r.header.Get(HeaderRequestID); id == "" || strings.Contains(id, " ") {
		t.Fatalf("unsafe request ID kept: %q", id)
	}
}

// INV5: the access log holds neither the passcode nor a token, whatever the
// route and outcome.
func TestAccessLogHoldsNoSecrets(t *testing.T) {
	f := &fakeCommands{verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode}}
	e := newEnv(t, f)
	typed := "TypedGuess42x"
	reqs := []struct{ method, path, token, body string }{
		{"POST", "/v1/sites/acme/passcode", e.admin, ""},
		{"POST", "/v1/sites/acme/passcode/reveal", e.adminAcme, ""},
		{"POST", "/v1/sites/acme/enrollments/verify", e.enroll, `{"passcode":"` + typed + `"}`},
		{"POST", "/v1/sites/acme/enrollments/verify", e.enroll, `{"passcode":"` + typed + `","x":1}`},
		{"POST", "/v1/sites/acme/enrollments/verify", e.enroll, `{"passcode":"` + typed},
		{"POST", "/v1/sites/acme/passcode", "eg_wrong-" + typed, ""},
	}
	for _, q := range reqs {
		var r response
		if q.body == "" {
			r = e.do(t, q.method, q.path, q.token, nil)
		} else {
			r = e.do(t, q.method, q.path, q.token, str(q.body))
		}
		if r.status >= 500 {
			t.Fatalf("%s %s: %d", q.method, q.path, r.status)
		}
	}
	eventually(t, 2*time.Second, "all access log lines", func() bool {
		return strings.Count(e.logs.String(), `"http request"`) == len(reqs)
	})
	logs := e.logs.String()
	for _, secret := range []string{thePasscode, typed, bootAdmin, bootEnroll, e.adminAcme, "Bearer"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log holds %q:\n%s", secret, logs)
		}
	}
	for _, want := range []string{`"principal":"ops@acme.example"`, `"principal":"alice@acme.example"`, `"principal":"enrollment"`,
		`"status":201`, `"status":401`, `"path":"/v1/sites/acme/enrollments/verify"`, `"request_id":"`, `"duration":`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s:\n%s", want, logs)
		}
	}
}

// The write responses carry projections.StateDoc, the read model's document:
// empty optional members are left out, and the shape is the reads' shape.
func TestWriteStateDocOmitsEmpty(t *testing.T) {
	doc := projections.StateDocFromDomain(domain.State{Site: "acme", Status: domain.StatusNone, MaxFailedAttempts: 10, FailureWindow: time.Hour})
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"site":"acme","status":"none","failed_attempts":0,"max_failed_attempts":10,"failure_window":"1h0m0s","locked":false,"seq":0,"mode":"enforce","enrollments":0}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{MaxBodyBytes: 10}, Deps{Commands: &fakeCommands{}, Auth: nil}, zerolog.Nop()); err == nil {
		t.Fatal("New accepted a bad config and no authenticator")
	}
	store, err := auth.Open(auth.Config{File: filepath.Join(t.TempDir(), "tokens.json"), AdminToken: bootAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{}, Deps{Commands: &fakeCommands{}, Auth: store}, zerolog.Nop()); err == nil {
		t.Fatal("New accepted no read model")
	}
	if _, err := New(Config{MinSeqTimeout: 10 * time.Second, RequestTimeout: 5 * time.Second}, Deps{Commands: &fakeCommands{}, Auth: store, Reads: newFakeReads()}, zerolog.Nop()); err == nil {
		t.Fatal("New accepted a min_seq timeout above the request timeout")
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

// TestProblemsAsDocumented: every error the API answers gets the status
// that openapi.json documents for its code, and every documented code is
// one the API answers.
func TestProblemsAsDocumented(t *testing.T) {
	var doc any
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	// code -> status, from every problem response of the document (shared
	// and per operation); 405 is documented in the description only.
	documented := map[string]int{apierror.CodeMethodNotAllowed: 405}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if c, ok := v["application/problem+json"].(map[string]any); ok {
				schema, _ := c["schema"].(map[string]any)
				props, _ := schema["properties"].(map[string]any)
				status, _ := props["status"].(map[string]any)["const"].(float64)
				code, _ := props["code"].(map[string]any)
				codes, _ := code["enum"].([]any)
				if cst, ok := code["const"]; ok {
					codes = append(codes, cst)
				}
				for _, c := range codes {
					c := c.(string)
					if s, dup := documented[c]; dup && s != int(status) {
						t.Fatalf("code %s documented with %d and %v", c, s, status)
					}
					documented[c] = int(status)
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	var problem struct {
		Components struct {
			Schemas struct {
				Problem struct {
					Properties struct{ Code struct{ Enum []string } }
				}
			}
		}
	}
	if err := json.Unmarshal(openAPIDocument, &problem); err != nil || len(problem.Components.Schemas.Problem.Properties.Code.Enum) == 0 {
		t.Fatalf("the Problem schema's codes: %v", err)
	}
	expired, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	live := context.Background()
	answered := map[string]bool{}
	for _, c := range []struct {
		ctx context.Context
		err error
	}{
		{live, badRequest("x")}, {live, errUnauthenticated}, {live, forbidden("reads")}, {live, errNotTokenAdmin},
		{live, errNotFound}, {live, errMethodNotAllowed}, {live, errUnsupportedMedia}, {live, &http.MaxBytesError{Limit: 8}},
		{live, fmt.Errorf("x: %w", domain.ErrInvalid)}, {live, fmt.Errorf("x: %w", domain.ErrInvalidPolicy)},
		{live, domain.ErrNotActive}, {live, domain.ErrNotGenerated},
		{live, auth.ErrNotFound}, {live, auth.ErrBootstrap}, {live, auth.ErrInvalid}, {live, auth.ErrUnavailable},
		{live, handlers.ErrBusy}, {live, handlers.ErrUnavailable}, {live, handlers.ErrUpgradeRequired}, {live, handlers.ErrKeyUnavailable},
		{live, nats.ErrTimeout}, {live, nats.ErrNoResponders}, {live, nats.ErrConnectionClosed}, {live, nats.ErrConnectionReconnecting},
		{live, context.DeadlineExceeded}, {expired, context.DeadlineExceeded},
		{live, &apierror.Error{Class: apierror.Unavailable, Code: apierror.CodeNotReady, Detail: "x"}},
		{live, &apierror.Error{Class: apierror.Unavailable, Code: apierror.CodeNotCaughtUp, Detail: "x"}},
		{live, errors.New("disk on fire")},
	} {
		p, _ := problemFor(c.ctx, c.err)
		want, ok := documented[p.Code]
		if !ok || p.Status != want {
			t.Errorf("%v: %d %s, documented: %d (%v)", c.err, p.Status, p.Code, want, ok)
		}
		if p.Type != "urn:enrollgate:problem:"+p.Code || p.Title != http.StatusText(p.Status) {
			t.Errorf("%v: type %q title %q", c.err, p.Type, p.Title)
		}
		answered[p.Code] = true
	}
	for _, code := range problem.Components.Schemas.Problem.Properties.Code.Enum {
		if !answered[code] {
			t.Errorf("documented code %s is never answered", code)
		}
	}
}
