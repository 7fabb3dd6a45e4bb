package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/enrollgate/enrollgate/internal/apierror"
)

// TestWhoami: the console learns the token's identity, role and scope, so
// that it shows an auditor no write button; no token, no answer.
func TestWhoami(t *testing.T) {
	e := newEnv(t, &fakeCommands{})
	for _, c := range []struct {
		token, id, role string
		sites           []string
	}{
		{e.admin, adminEmail, "admin", []string{"*"}},
		{e.adminAcme, "alice@acme.example", "admin", []string{"acme"}},
		{e.auditor, "siem", "auditor", []string{"*"}},
		{e.enroll, "enrollment", "enrollment", []string{"*"}},
	} {
		r := e.do(t, "GET", "/v1/whoami", c.token, nil)
		if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %d %q %s", c.id, r.status, r.header.Get("Cache-Control"), r.body)
		}
		var got WhoamiResponse
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		if got.ID != c.id || string(got.Role) != c.role || strings.Join(got.Sites, ",") != strings.Join(c.sites, ",") {
			t.Errorf("whoami of %s: %+v", c.id, got)
		}
		if strings.Contains(string(r.body), c.token) {
			t.Errorf("whoami of %s echoes the token", c.id)
		}
	}
	wantProblem(t, e.do(t, "GET", "/v1/whoami", "", nil), 401, apierror.CodeUnauthorized)
	wantProblem(t, e.do(t, "GET", "/v1/whoami", "eg_nope", nil), 401, apierror.CodeUnauthorized)
}

// TestConsoleMounted: the console's page at "/" and its files under
// /console/ come with their CSP; other paths stay the API's problems.
func TestConsoleMounted(t *testing.T) {
	e := newEnv(t, &fakeCommands{})
	for _, path := range []string{"/", "/console/main.js", "/console/console.css"} {
		r := e.do(t, "GET", path, "", nil)
		if r.status != 200 || !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("GET %s: %d, CSP %q", path, r.status, r.header.Get("Content-Security-Policy"))
		}
	}
	wantProblem(t, e.do(t, "GET", "/index.html", "", nil), 404, apierror.CodeNotFound)
	wantProblem(t, e.do(t, "POST", "/", "", nil), 405, apierror.CodeMethodNotAllowed)
}
