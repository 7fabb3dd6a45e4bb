package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/verifywire"
	"github.com/enrollgate/enrollgate/projections"
)

// contract is the embedded document, loaded once for all tests.
var contract struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadContract loads and validates the embedded document with kin-openapi,
// which validates 3.1 documents (and, through openapi3filter, their schemas
// as JSON Schema 2020-12).
func loadContract(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	contract.once.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(openAPIDocument)
		if err != nil {
			contract.err = err
			return
		}
		if err := doc.Validate(loader.Context); err != nil {
			contract.err = err
			return
		}
		contract.doc = doc
		// The console's page and files are text, read as strings.
		for _, ct := range []string{"text/html", "text/css", "text/javascript", "text/plain"} {
			openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
		}
		// The legacy router matches paths only (the document has no
		// servers), so httptest's random ports do not matter.
		contract.router, contract.err = legacy.NewRouter(doc)
	})
	if contract.err != nil {
		t.Fatalf("openapi.json: %v", contract.err)
	}
	return contract.doc, contract.router
}

// checkContract validates one response of the API (status, headers, body)
// against the document. Every response env.do sees goes through it, so each
// test of this package is also a test of the document. Requests the document
// has no operation for must be unknown routes or methods (404, 405).
func checkContract(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	if err := validateResponse(t, req, status, header, body); err != nil {
		t.Errorf("%s %s: the response does not match openapi.json: %v\nstatus %d\nheaders %v\nbody %s",
			req.Method, req.URL.Path, err, status, header, body)
	}
}

// findRoute finds the document's operation for a request. The router
// matches the path as sent (ServeMux matches the escaped path too: a site
// "a%2Fb" is one segment).
func findRoute(t testing.TB, req *http.Request) (*routers.Route, map[string]string, error) {
	_, router := loadContract(t)
	r := req.Clone(context.Background())
	r.URL.Path, r.URL.RawPath = req.URL.EscapedPath(), ""
	return router.FindRoute(r)
}

func validateResponse(t testing.TB, req *http.Request, status int, header http.Header, body []byte) error {
	if req.Method == http.MethodHead {
		return nil
	}
	route, params, err := findRoute(t, req)
	if err != nil {
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			return nil
		}
		return err
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		// A status the operation does not list is a disagreement too.
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// validateRequest checks a request the API accepted (a 2xx) against the
// document: what the service takes, the document must allow.
func validateRequest(t testing.TB, req *http.Request, body []byte) error {
	route, params, err := findRoute(t, req)
	if err != nil {
		return err
	}
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(body))
	if len(bytes.TrimSpace(body)) == 0 {
		// The API reads a body of white space as none, as the document's
		// optional bodies say; the validator would decode it as JSON.
		r.Body, r.ContentLength = http.NoBody, 0
		r.Header.Del("Content-Type")
	}
	return openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	})
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, _ := loadContract(t)
	if !doc.IsOpenAPI31OrLater() || doc.OpenAPIMajorMinor() != "3.1" {
		t.Fatalf("openapi %q, want 3.1.x", doc.OpenAPI)
	}
	// Every operation says which roles it admits, and only public ones
	// (security: []) admit none.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			roles, ok := op.Extensions["x-roles"].([]any)
			if !ok {
				t.Errorf("%s %s: no x-roles", method, path)
				continue
			}
			public := op.Security != nil && len(*op.Security) == 0
			if public != (len(roles) == 0) {
				t.Errorf("%s %s: public %v but x-roles %v", method, path, public, roles)
			}
			for _, r := range roles {
				if s, _ := r.(string); !auth.Role(s).Valid() {
					t.Errorf("%s %s: x-roles holds %v, not a role", method, path, r)
				}
			}
			if op.OperationID == "" {
				t.Errorf("%s %s: no operationId", method, path)
			}
		}
	}
}

// documentedOperation turns a ServeMux pattern of routes() into the method
// and OpenAPI path it must have in the document.
func documentedOperation(t *testing.T, pattern string) string {
	t.Helper()
	method, path, ok := strings.Cut(pattern, " ")
	if !ok || !strings.HasPrefix(path, "/") {
		t.Fatalf("route %q: want METHOD /path (the document needs a method and no host)", pattern)
	}
	path = strings.TrimSuffix(path, "{$}")       // exactly this path
	path = strings.ReplaceAll(path, "...}", "}") // a wildcard rest is one parameter
	return method + " " + path
}

// TestOpenAPIMatchesRoutes fails when routes() and the document disagree, in
// either direction.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, _ := loadContract(t)
	api, err := New(Config{}, Deps{Commands: &fakeCommands{}, Auth: noTokens{}, Tokens: noTokens{}, Reads: newFakeReads()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	inRoutes := map[string]bool{}
	for _, rt := range api.routes() {
		inRoutes[documentedOperation(t, rt.pattern)] = true
	}
	inDoc := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inDoc[method+" "+path] = true
		}
	}
	var missing, extra []string
	for op := range inRoutes {
		if !inDoc[op] {
			missing = append(missing, op)
		}
	}
	for op := range inDoc {
		if !inRoutes[op] {
			extra = append(extra, op)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes() has operations openapi.json does not document: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("openapi.json documents operations routes() does not have: %v", extra)
	}
}

type noTokens struct{}

func (noTokens) Authenticate(string) (auth.Principal, bool) { return auth.Principal{}, false }
func (noTokens) List() []auth.TokenInfo                     { return nil }
func (noTokens) Delete(context.Context, string) error       { return auth.ErrNotFound }
func (noTokens) Create(context.Context, auth.Principal, string) (string, auth.TokenInfo, error) {
	return "", auth.TokenInfo{}, auth.ErrUnavailable
}

// TestOpenAPIRoles checks each operation's x-roles against the access rules
// the routes apply: a token of a listed role gets past them (whatever the
// answer then is, it is not 401 or 403), one of another role gets 403, and
// a public operation answers without a token.
func TestOpenAPIRoles(t *testing.T) {
	doc, _ := loadContract(t)
	e := newEnv(t, &fakeCommands{})
	tokens := map[auth.Role]string{auth.RoleAdmin: e.admin, auth.RoleAuditor: e.auditor, auth.RoleEnrollment: e.enroll}
	for path, item := range doc.Paths.Map() {
		concrete := strings.ReplaceAll(path, "{site}", "acme")
		for method, op := range item.Operations() {
			var roles []auth.Role
			for _, r := range op.Extensions["x-roles"].([]any) {
				roles = append(roles, auth.Role(r.(string)))
			}
			if len(roles) == 0 {
				if r := e.do(t, method, concrete, "", nil); r.status == 401 || r.status == 403 {
					t.Errorf("%s %s is public in the document but answers %d without a token", method, path, r.status)
				}
				continue
			}
			if r := e.do(t, method, concrete, "", nil); r.status != 401 {
				t.Errorf("%s %s needs a token in the document but answers %d without one", method, path, r.status)
			}
			for role, token := range tokens {
				r := e.do(t, method, concrete, token, nil)
				switch listed := slices.Contains(roles, role); {
				case listed && (r.status == 401 || r.status == 403):
					t.Errorf("%s %s: x-roles lists %s, but its token gets %d", method, path, role, r.status)
				case !listed && r.status != 403:
					t.Errorf("%s %s: x-roles does not list %s, but its token gets %d, not 403", method, path, role, r.status)
				}
			}
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t, &fakeCommands{})
	r := e.do(t, "GET", "/openapi.json", "", nil)
	if r.status != 200 || !bytes.Equal(r.body, openAPIDocument) {
		t.Fatalf("GET /openapi.json: %d, %d bytes (want the embedded %d)", r.status, len(r.body), len(openAPIDocument))
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") || strings.Contains(cc, "no-store") {
		t.Errorf("Cache-Control %q: want a short public max-age", cc)
	}
	etag := r.header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	// A client that has this version is told so, without the body.
	if r := e.do(t, "GET", "/openapi.json", "", nil, "If-None-Match", etag); r.status != http.StatusNotModified || len(r.body) != 0 {
		t.Fatalf("If-None-Match: %d, %d bytes", r.status, len(r.body))
	}
	// A token changes nothing: the document is the same for everyone.
	if r := e.do(t, "GET", "/openapi.json", e.auditor, nil); r.status != 200 || !bytes.Equal(r.body, openAPIDocument) {
		t.Fatalf("with a token: %d", r.status)
	}
}

// TestContractCatchesDisagreement makes sure that the validation env.do runs
// can fail: responses the document does not allow are refused.
func TestContractCatchesDisagreement(t *testing.T) {
	loadContract(t)
	req, _ := http.NewRequest("GET", "http://example.test/v1/sites/acme/passcode", nil)
	good := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"abc"}, "Cache-Control": {"no-store"}}
	state := `{"site":"acme","status":"none","failed_attempts":0,"max_failed_attempts":10,"failure_window":"1h0m0s","locked":false,"seq":0,"mode":"enforce","enrollments":0}`
	if err := validateResponse(t, req, 200, good, []byte(state)); err != nil {
		t.Fatalf("a good response is refused: %v", err)
	}
	problem := http.Header{"Content-Type": {"application/problem+json"}, "X-Request-Id": {"abc"}}
	for name, c := range map[string]struct {
		status int
		header http.Header
		body   string
	}{
		"undocumented member": {200, good, strings.Replace(state, `"seq":0`, `"seq":0,"passcode":"Zq7Kp2Xw9LmB"`, 1)},
		"missing member":      {200, good, strings.Replace(state, `"locked":false,`, ``, 1)},
		"unknown status":      {200, good, strings.Replace(state, `"none"`, `"retiring"`, 1)},
		"no Cache-Control":    {200, http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"abc"}}, state},
		"undocumented status": {http.StatusTeapot, good, state},
		"problem without code": {400, problem,
			`{"type":"urn:enrollgate:problem:invalid_request","title":"Bad Request","status":400,"request_id":"abc"}`},
		"problem with another status's code": {400, problem,
			`{"type":"urn:enrollgate:problem:not_found","title":"Bad Request","status":400,"code":"not_found","request_id":"abc"}`},
		"401 without WWW-Authenticate": {401, problem,
			`{"type":"urn:enrollgate:problem:unauthorized","title":"Unauthorized","status":401,"code":"unauthorized","request_id":"abc"}`},
		"503 without Retry-After": {503, problem,
			`{"type":"urn:enrollgate:problem:busy","title":"Service Unavailable","status":503,"code":"busy","request_id":"abc"}`},
	} {
		if err := validateResponse(t, req, c.status, c.header, []byte(c.body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	verify, _ := http.NewRequest("POST", "http://example.test/v1/sites/acme/enrollments/verify", nil)
	verdict := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"abc"}, "Cache-Control": {"no-store"}}
	if err := validateResponse(t, verify, 200, verdict, []byte(`{"ok":false,"site":"acme","reason":"wrong_passcode"}`)); err != nil {
		t.Fatalf("a good verdict is refused: %v", err)
	}
	for name, body := range map[string]string{
		"ok with a reason":       `{"ok":true,"site":"acme","passcode_id":"01K","reason":"wrong_passcode"}`,
		"refusal with an ID":     `{"ok":false,"site":"acme","passcode_id":"01K","reason":"wrong_passcode"}`,
		"refusal without reason": `{"ok":false,"site":"acme"}`,
		"unknown reason":         `{"ok":false,"site":"acme","reason":"locked"}`,
	} {
		if err := validateResponse(t, verify, 200, verdict, []byte(body)); err == nil {
			t.Errorf("verdict %s: accepted", name)
		}
	}
	// 429 is a throttled verdict with Retry-After.
	throttled := `{"ok":false,"site":"acme","reason":"throttled","retry_after_seconds":60}`
	verdict429 := verdict.Clone()
	verdict429.Set("Retry-After", "60")
	if err := validateResponse(t, verify, 429, verdict429, []byte(throttled)); err != nil {
		t.Fatalf("a good 429 is refused: %v", err)
	}
	if err := validateResponse(t, verify, 429, verdict, []byte(throttled)); err == nil {
		t.Error("429 without Retry-After: accepted")
	}
	if err := validateResponse(t, verify, 429, verdict429, []byte(`{"ok":false,"site":"acme","reason":"wrong_passcode"}`)); err == nil {
		t.Error("429 with another reason: accepted")
	}
	if err := validateResponse(t, req, 200, good, []byte(strings.Replace(state, `"seq":0`, `"seq":0,"generated_at":"yesterday"`, 1))); err == nil {
		t.Error("a time that is not RFC 3339: accepted")
	}

	// A route the document does not have, answered with anything but 404
	// or 405, is refused too.
	other, _ := http.NewRequest("GET", "http://example.test/v1/undocumented", nil)
	if err := validateResponse(t, other, 200, good, []byte(`{}`)); err == nil {
		t.Error("a 200 from an undocumented route is accepted")
	}
}

// TestContractDocumentsLifecycle checks the lifecycle members against the
// document from the Go types themselves, every optional member set, since the
// handler tests do not reach every status, outcome and event type.
func TestContractDocumentsLifecycle(t *testing.T) {
	loadContract(t)
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	good := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"abc"}, "Cache-Control": {"no-store"}}
	check := func(method, path string, v any) {
		t.Helper()
		body, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(method, "http://example.test"+path, nil)
		if err := validateResponse(t, req, 200, good, body); err != nil {
			t.Errorf("%s %s: %v\n%s", method, path, err, body)
		}
	}
	src := events.Source{IP: "192.0.2.7", DeviceID: "dev-1", Platform: "ios", UserAgent: "ua"}
	for _, status := range []domain.Status{domain.StatusNone, domain.StatusActive, domain.StatusDisabled, domain.StatusExpired, domain.StatusUsedUp} {
		for _, mode := range []events.LockoutMode{events.ModeEnforce, events.ModeMonitor} {
			check("GET", "/v1/sites/acme/passcode", projections.StateDoc{
				Site: "acme", Status: status, PasscodeID: "01K", GeneratedAt: &at, GeneratedBy: "admin@acme.example",
				FailedAttempts: 1, MaxFailedAttempts: 10, FailureWindow: events.Duration(time.Hour), LastFailedAt: &at,
				Seq: 7, ThrottledSources: []projections.ThrottledSource{{Key: "ip:192.0.2.7", Until: &at}},
				Mode: mode, CheckCharacter: true, ExpiresAt: &at, MaxEnrollments: 500, Enrollments: 3, LastEnrolledAt: &at,
				LastFailedSource: &src, Retiring: &projections.RetiringDoc{PasscodeID: "01J", Until: at},
			})
		}
	}
	var attempts AttemptsResponse
	for _, o := range []projections.Outcome{projections.OutcomeFailed, projections.OutcomeSucceeded, projections.OutcomeOutdated, projections.OutcomeMistyped} {
		e := projections.AttemptEntry{Seq: 3, At: at, Outcome: o, PasscodeID: "01K", AttemptID: "a-1", Source: src}
		switch o {
		case projections.OutcomeFailed:
			e.FailedAttempts = 2
		case projections.OutcomeOutdated:
			e.OutdatedPasscodeID = "01J"
		}
		attempts.Attempts = append(attempts.Attempts, e)
		check("GET", "/v1/sites/acme/attempts?outcome="+string(o), AttemptsResponse{Attempts: []projections.AttemptEntry{e}})
	}
	check("GET", "/v1/sites/acme/attempts", attempts)
	var audit AuditResponse
	for _, typ := range []events.Type{events.TypeEnrollmentAttemptExcused, events.TypePasscodeExpired, events.TypePasscodeLockoutSimulated} {
		audit.Entries = append(audit.Entries, projections.AuditEntry{Seq: 4, ID: "e-1", Type: typ, At: at,
			Actor: events.Actor{Kind: events.ActorSystem, ID: "enrollgate"}, Summary: "s", Details: json.RawMessage(`{}`)})
	}
	check("GET", "/v1/sites/acme/audit", audit)
	for _, r := range []domain.Reason{domain.ReasonWrongPasscode, domain.ReasonDisabled, domain.ReasonNotGenerated, domain.ReasonThrottled,
		domain.ReasonOutdated, domain.ReasonMistyped, domain.ReasonExpired, domain.ReasonUsedUp} {
		check("POST", "/v1/sites/acme/enrollments/verify", verifywire.Reply{Site: "acme", Reason: string(r)})
	}
}
