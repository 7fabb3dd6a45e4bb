package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// contractClient sends requests to a running binary and validates every
// response (status, headers, body) against the OpenAPI document the binary
// serves, and every request it accepted (2xx) too. It records which
// operations answered which statuses.
type contractClient struct {
	t      *testing.T
	in     *instance
	doc    *openapi3.T
	router routers.Router
	seen   map[string]map[int]bool // "METHOD /path/{template}" -> statuses
}

func newContractClient(t *testing.T, in *instance) *contractClient {
	t.Helper()
	resp, err := http.Get("http://" + in.httpAddr + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		t.Fatalf("load /openapi.json: %v", err)
	}
	// The console's page and files are text, read as strings.
	for _, ct := range []string{"text/html", "text/css", "text/javascript", "text/plain"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("/openapi.json is not a valid document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("/openapi.json is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &contractClient{t: t, in: in, doc: doc, router: router, seen: map[string]map[int]bool{}}
}

type contractResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r contractResponse) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// call sends a request (a body as application/json unless header says
// otherwise) and fails the test unless the answer has status want and matches the
// document.
func (c *contractClient) call(method, path, token string, body []byte, want int, header ...string) contractResponse {
	c.t.Helper()
	req, err := http.NewRequest(method, "http://"+c.in.httpAddr+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := contractResponse{status: resp.StatusCode, header: resp.Header, body: b}
	if r.status != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, b)
	}

	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Fatalf("%s %s: no operation in /openapi.json: %v", method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.status, Header: r.header,
		Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true}}
	out.SetBodyBytes(b)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		c.t.Errorf("%s %s: the %d response does not match /openapi.json: %v\nheaders %v\nbody %s",
			method, path, r.status, err, r.header, b)
	}
	if r.status < 300 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			c.t.Errorf("%s %s was accepted, but /openapi.json does not allow the request: %v", method, path, err)
		}
	}
	op := route.Method + " " + route.Path
	if c.seen[op] == nil {
		c.seen[op] = map[int]bool{}
	}
	c.seen[op][r.status] = true
	return r
}

// TestOpenAPIEndToEnd drives every route of the binary, successes and the
// main errors, and validates each response against the /openapi.json it
// serves; every documented operation must have answered a success.
func TestOpenAPIEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	// A threshold of 6 throttles a source after 3 failures, before the site locks.
	const admin = "openapi-test-bootstrap-admin-0123" // recorded as admin@localhost
	in := startInstance(t, dataDir, "--max-failed-attempts", "6", "--admin-token", admin)
	auditor := addTokenCmd(t, in, admin, "auditor", "auditor@acme.example", "acme")
	frontend := addTokenCmd(t, in, admin, "enrollment", "acme-frontend", "acme")
	c := newContractClient(t, in)
	js := func(s string) []byte { return []byte(s) }

	c.call("GET", "/healthz", "", nil, 200)
	c.call("GET", "/readyz", "", nil, 200)
	r := c.call("GET", "/openapi.json", "", nil, 200)
	c.call("GET", "/openapi.json", "", nil, 304, "If-None-Match", r.header.Get("ETag"))
	c.call("GET", "/metrics", auditor, nil, 200)
	c.call("GET", "/metrics", frontend, nil, 403)
	c.call("GET", "/metrics", "", nil, 401)

	// The web console and who a token is.
	c.call("GET", "/", "", nil, 200)
	c.call("GET", "/console/main.js", "", nil, 200)
	c.call("GET", "/console/no-such-file.js", "", nil, 404)
	c.call("GET", "/v1/whoami", auditor, nil, 200)
	c.call("GET", "/v1/whoami", "", nil, 401)

	// Access: no token, a role without the permission, a site outside the
	// token's scope, a malformed site ID.
	c.call("GET", "/v1/sites", "", nil, 401)
	c.call("GET", "/v1/sites", frontend, nil, 403)
	c.call("POST", "/v1/sites/acme/passcode", auditor, nil, 403)
	c.call("GET", "/v1/sites/beta/passcode", auditor, nil, 404)
	c.call("GET", "/v1/sites/NOPE/passcode", admin, nil, 400)

	// Nothing generated yet.
	c.call("GET", "/v1/sites/acme/passcode", auditor, nil, 200)
	c.call("POST", "/v1/sites/acme/passcode/reveal", admin, nil, 409)
	c.call("POST", "/v1/sites/acme/passcode/disable", admin, nil, 409)

	// Writes, and reads of them with min_seq.
	c.call("POST", "/v1/sites/acme/passcode", admin, js(`{"actor":"mallory"}`), 400)
	c.call("POST", "/v1/sites/acme/passcode", admin, js(`{}`), 415, "Content-Type", "text/plain")
	c.call("POST", "/v1/sites/acme/passcode", admin, js(`{"x":"`+strings.Repeat("a", 17<<10)+`"}`), 413)
	r = c.call("POST", "/v1/sites/acme/passcode", admin, js(`{}`), 201)
	gen := r.json(t)
	passcode, _ := gen["passcode"].(string)
	seq := strconv.Itoa(int(gen["seq"].(float64)))
	if r.header.Get("Enrollgate-Seq") != seq {
		t.Fatalf("Enrollgate-Seq %q, seq %s", r.header.Get("Enrollgate-Seq"), seq)
	}
	c.call("GET", "/v1/sites/acme/passcode?min_seq="+seq, auditor, nil, 200)
	c.call("GET", "/v1/sites?min_seq="+seq, admin, nil, 200)
	if rev := c.call("POST", "/v1/sites/acme/passcode/reveal", admin, nil, 200).json(t); rev["passcode"] != passcode {
		t.Fatalf("reveal: %v", rev)
	}

	// Verify: right, wrong, malformed, throttled.
	verify := "/v1/sites/acme/enrollments/verify"
	c.call("POST", verify, frontend, js(`{"passcode":"`+passcode+`","attempt_id":"a-1","source":{"ip":"198.51.100.1","device_id":"C02XK1","platform":"ios","user_agent":"Mozilla/5.0"}}`), 200)
	c.call("POST", verify, auditor, js(`{"passcode":"`+passcode+`"}`), 403)
	c.call("POST", verify, frontend, js(`{"passcode":"x","source":{"ip":"not-an-ip"}}`), 400)
	c.call("POST", verify, frontend, js(`{"passcode":"x"}`), 415, "Content-Type", "text/plain")
	c.call("POST", verify, frontend, js(`{"passcode":"`+strings.Repeat("a", 9<<10)+`"}`), 413)
	for i := 0; i < 3; i++ {
		v := c.call("POST", verify, frontend, js(`{"passcode":"wrong-guess","source":{"ip":"203.0.113.7"}}`), 200).json(t)
		if v["reason"] != "wrong_passcode" {
			t.Fatalf("wrong passcode %d: %v", i, v)
		}
	}
	c.call("POST", verify, frontend, js(`{"passcode":"wrong-guess","source":{"ip":"203.0.113.7"}}`), 429)
	c.call("POST", verify, admin, js(`{"passcode":"wrong-guess","source":{"device_id":"D-1"}}`), 200)

	// The lockout policy.
	c.call("PUT", "/v1/sites/acme/lockout-policy", admin, js(`{"max_failed_attempts":0,"failure_window":"1h"}`), 400)
	c.call("PUT", "/v1/sites/acme/lockout-policy", admin, js(`{"max_failed_attempts":8}`), 400)
	pol := c.call("PUT", "/v1/sites/acme/lockout-policy", admin, js(`{"max_failed_attempts":8,"failure_window":"30m"}`), 200).json(t)
	seq = strconv.Itoa(int(pol["seq"].(float64)))

	// Reads: paging the audit trail, the attempts, bad parameters, and a
	// min_seq the read model never reaches.
	page := c.call("GET", "/v1/sites/acme/audit?limit=2&min_seq="+seq, auditor, nil, 200).json(t)
	cursor, _ := page["next_cursor"].(string)
	if cursor == "" {
		t.Fatalf("audit page without next_cursor: %v", page)
	}
	c.call("GET", "/v1/sites/acme/audit?limit=500&cursor="+cursor, auditor, nil, 200)
	c.call("GET", "/v1/sites/acme/audit?cursor=AAAA", auditor, nil, 400)
	c.call("GET", "/v1/sites/acme/audit?limit=501", auditor, nil, 400)
	c.call("GET", "/v1/sites/acme/attempts?outcome=failed&limit=", auditor, nil, 200)
	c.call("GET", "/v1/sites/acme/attempts", admin, nil, 200)
	c.call("GET", "/v1/sites/acme/attempts?outcome=maybe", auditor, nil, 400)
	c.call("GET", "/v1/sites/acme/audit?min_seq=999999", auditor, nil, 503)

	// Disable, and the verdict after it.
	c.call("POST", "/v1/sites/acme/passcode/disable", admin, nil, 200)
	c.call("POST", "/v1/sites/acme/passcode/disable", admin, nil, 409)
	c.call("POST", verify, frontend, js(`{"passcode":"`+passcode+`"}`), 200)

	// Tokens: create (and a bad body), list, revoke, and the refusals.
	c.call("POST", "/v1/tokens", admin, js(`{"role":"auditor","identity":"x"}`), 400)
	c.call("POST", "/v1/tokens", auditor, js(`{"role":"auditor","identity":"x","sites":["*"]}`), 403)
	made := c.call("POST", "/v1/tokens", admin, js(`{"role":"auditor","identity":"late@acme.example","sites":["acme","beta"]}`), 201).json(t)
	c.call("GET", "/v1/tokens", admin, nil, 200)
	c.call("GET", "/v1/tokens", "", nil, 401)
	id, _ := made["token_id"].(string)
	c.call("DELETE", "/v1/tokens/"+id, admin, nil, 204)
	c.call("DELETE", "/v1/tokens/"+id, admin, nil, 404)
	c.call("DELETE", "/v1/tokens/bootstrap-admin", admin, nil, 409)
	c.call("DELETE", "/v1/tokens/NOPE", admin, nil, 400)

	// Every documented operation answered a success, and the main errors
	// were seen.
	statuses := map[int]bool{}
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			ok := false
			for s := range c.seen[method+" "+path] {
				statuses[s] = true
				ok = ok || s < 300
			}
			if !ok {
				t.Errorf("%s %s: no success driven", method, path)
			}
		}
	}
	var got []int
	for s := range statuses {
		got = append(got, s)
	}
	sort.Ints(got)
	for _, s := range []int{400, 401, 403, 404, 409, 413, 415, 429, 503} {
		if !slices.Contains(got, s) {
			t.Errorf("no %d driven (statuses: %v)", s, got)
		}
	}
}
