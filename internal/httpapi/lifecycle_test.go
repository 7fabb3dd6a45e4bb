package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/internal/apierror"
	"github.com/enrollgate/enrollgate/internal/natstest"
	"github.com/enrollgate/enrollgate/internal/servicetest"
)

// TestLifecycleOverHTTP: the generate body, the policy mode and the new
// verdicts through the API on a real JetStream, and the 400s of bad values.
func TestLifecycleOverHTTP(t *testing.T) {
	ns := natstest.StartServer(t)
	js, err := jetstream.New(natstest.Connect(t, ns))
	if err != nil {
		t.Fatal(err)
	}
	svc, store := servicetest.New(t, js)
	e := newEnv(t, svc)

	before := lastSeq(t, store)
	for _, c := range []struct{ body, field string }{
		{`{"expires_in":"soon"}`, "expires_in"},
		{`{"expires_in":"1s"}`, "expires_in"},
		{`{"grace":"-1h"}`, "grace"},
		{`{"grace":"1000h"}`, "grace"},
		{`{"max_enrollments":-1}`, "max_enrollments"},
		{`{"max_enrollments":"5"}`, "max_enrollments"},
		{`{"ttl":"1h"}`, "ttl"},
	} {
		r := e.do(t, "POST", "/v1/sites/acme/passcode", e.admin, str(c.body))
		wantProblem(t, r, 400, apierror.CodeInvalidRequest)
		if !strings.Contains(string(r.body), c.field) {
			t.Errorf("%s: problem %s does not name %s", c.body, r.body, c.field)
		}
	}
	if after := lastSeq(t, store); after != before {
		t.Fatalf("bad generates stored events: %d -> %d", before, after)
	}

	r := e.do(t, "POST", "/v1/sites/acme/passcode", e.admin, nil)
	if r.status != http.StatusCreated {
		t.Fatalf("generate: %d %s", r.status, r.body)
	}
	old := r.json(t)["passcode"].(string)
	if !domain.ValidCheck(old) {
		t.Fatalf("generated passcode does not pass its check")
	}
	r = e.do(t, "POST", "/v1/sites/acme/passcode", e.admin, str(`{"expires_in":"720h","max_enrollments":500,"grace":"1h"}`))
	if r.status != http.StatusCreated {
		t.Fatalf("regenerate: %d %s", r.status, r.body)
	}
	gen := r.json(t)
	cur := gen["passcode"].(string)
	st := gen["state"].(map[string]any)
	ret, _ := st["retiring"].(map[string]any)
	if st["max_enrollments"] != float64(500) || st["expires_at"] == nil || st["check_character"] != true || ret == nil || ret["until"] == nil {
		t.Fatalf("state after regenerate: %s", r.body)
	}

	verify := func(candidate, ip string) map[string]any {
		t.Helper()
		r := e.do(t, "POST", "/v1/sites/acme/enrollments/verify", e.enroll, str(`{"passcode":"`+candidate+`","source":{"ip":"`+ip+`"}}`))
		if r.status != 200 {
			t.Fatalf("verify: %d %s", r.status, r.body)
		}
		return r.json(t)
	}
	if v := verify(old, "192.0.2.1"); v["ok"] != true || v["passcode_id"] != ret["passcode_id"] {
		t.Fatalf("retiring passcode: %v", v)
	}
	typo := []byte(cur)
	typo[0], typo[1] = typo[1], typo[0]
	if typo[0] == typo[1] {
		typo[0] = 'x'
	}
	if v := verify(string(typo), "192.0.2.2"); v["reason"] != "mistyped" {
		t.Fatalf("typo: %v, want mistyped", v)
	}

	// The policy mode, and its 400.
	wantProblem(t, e.do(t, "PUT", "/v1/sites/acme/lockout-policy", e.admin, str(`{"max_failed_attempts":3,"failure_window":"1h","mode":"shadow"}`)), 400, apierror.CodeInvalidRequest)
	r = e.do(t, "PUT", "/v1/sites/acme/lockout-policy", e.admin, str(`{"max_failed_attempts":2,"failure_window":"1h","mode":"monitor"}`))
	if r.status != 200 || r.json(t)["state"].(map[string]any)["mode"] != "monitor" {
		t.Fatalf("monitor: %d %s", r.status, r.body)
	}
	for i, ip := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		if v := verify(domain.Guess(i, cur, old), ip); v["reason"] != "wrong_passcode" {
			t.Fatalf("guess %d in monitor mode: %v", i, v)
		}
	}
	if v := verify(cur, "192.0.2.9"); v["ok"] != true {
		t.Fatalf("right passcode in monitor mode: %v", v)
	}
	r = e.do(t, "PUT", "/v1/sites/acme/lockout-policy", e.admin, str(`{"max_failed_attempts":2,"failure_window":"1h"}`))
	if st := r.json(t)["state"].(map[string]any); r.status != 200 || st["mode"] != "enforce" || st["locked"] != true || st["retiring"] != nil {
		t.Fatalf("back to enforce: %d %s, want locked at once and the grace ended", r.status, r.body)
	}
}
