package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/internal/apierror"
	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// newTokenEnv is an API whose tokens live in the KV bucket of a real
// in-process JetStream, as the service's do.
func newTokenEnv(t *testing.T) *env {
	t.Helper()
	store, err := auth.Open(auth.Config{AdminToken: bootAdmin, AdminEmail: adminEmail, EnrollmentToken: bootEnroll})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(natstest.Connect(t, natstest.StartServer(t)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := zerolog.New(logs).With().Timestamp().Logger()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := store.Share(ctx, js, auth.ShareConfig{Log: log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	adminAcme, _, err := store.Create(ctx, auth.Principal{ID: "alice@acme.example", Role: auth.RoleAdmin, Sites: []string{"acme"}}, "setup")
	if err != nil {
		t.Fatal(err)
	}
	auditor, _, err := store.Create(ctx, auth.Principal{ID: "siem", Role: auth.RoleAuditor, Sites: []string{auth.AllSites}}, "setup")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCommands{}
	api, err := New(Config{}, Deps{Commands: f, Auth: store, Tokens: store, Reads: newFakeReads(), Clock: fixedClock{readNow}}, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &env{srv: srv, cmds: f, logs: logs, tokens: store, admin: bootAdmin, adminAcme: adminAcme, auditor: auditor, enroll: bootEnroll}
}

type createdToken struct {
	Token     string    `json:"token"`
	TokenID   string    `json:"token_id"`
	Role      string    `json:"role"`
	Identity  string    `json:"identity"`
	Sites     []string  `json:"sites"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

func (e *env) createToken(t *testing.T, token, body string) createdToken {
	t.Helper()
	r := e.do(t, "POST", "/v1/tokens", token, str(body))
	if r.status != http.StatusCreated {
		t.Fatalf("create token: %d %s", r.status, r.body)
	}
	var c createdToken
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTokenRoutesNeedAnAdminOfAllSites: without a token 401; with any token
// but an admin's of all sites 403 on every token route, the same for an
// existing and an unknown token ID, so that nothing is learnt; nothing is
// created or revoked.
func TestTokenRoutesNeedAnAdminOfAllSites(t *testing.T) {
	e := newTokenEnv(t)
	existing := e.tokens.List()[2].ID // alice's
	routes := []struct{ method, path, body string }{
		{"POST", "/v1/tokens", `{"role":"admin","identity":"x@acme.example","sites":["*"]}`},
		{"GET", "/v1/tokens", ""},
		{"DELETE", "/v1/tokens/" + existing, ""},
		{"DELETE", "/v1/tokens/tok_0000000000000000", ""},
		{"DELETE", "/v1/tokens/" + auth.BootstrapAdminID, ""},
	}
	before := len(e.tokens.List())
	for _, rt := range routes {
		body := func() *strings.Reader {
			if rt.body == "" {
				return nil
			}
			return strings.NewReader(rt.body)
		}
		send := func(token string) response {
			if b := body(); b != nil {
				return e.do(t, rt.method, rt.path, token, b)
			}
			return e.do(t, rt.method, rt.path, token, nil)
		}
		wantProblem(t, send(""), 401, apierror.CodeUnauthorized)
		wantProblem(t, send("eg_not-a-token"), 401, apierror.CodeUnauthorized)
		for name, tok := range map[string]string{"admin of acme": e.adminAcme, "auditor of all": e.auditor, "enrollment": e.enroll} {
			m := wantProblem(t, send(tok), 403, apierror.CodeForbidden)
			if !strings.Contains(m["detail"].(string), "admin token for all sites") {
				t.Errorf("%s %s as %s: detail %q", rt.method, rt.path, name, m["detail"])
			}
		}
	}
	if after := len(e.tokens.List()); after != before {
		t.Fatalf("%d tokens after refused calls, want %d", after, before)
	}
	if _, ok := e.tokens.Authenticate(e.adminAcme); !ok {
		t.Fatal("a refused DELETE revoked a token")
	}
}

// TestCreateToken: 201 with the token (only here, not cached), recorded as
// made by the caller; the token works at once, and its role and sites hold.
func TestCreateToken(t *testing.T) {
	e := newTokenEnv(t)
	r := e.do(t, "POST", "/v1/tokens", e.admin, str(`{"role":"auditor","identity":"aud@acme.example","sites":["acme","beta"]}`))
	if r.status != http.StatusCreated || r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("create: %d %v %s", r.status, r.header, r.body)
	}
	var c createdToken
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Token, auth.TokenPrefix) || !auth.ValidTokenID(c.TokenID) || c.Role != "auditor" ||
		c.Identity != "aud@acme.example" || strings.Join(c.Sites, ",") != "acme,beta" || c.CreatedBy != adminEmail ||
		c.CreatedAt.IsZero() {
		t.Fatalf("created %s", r.body)
	}
	m := r.json(t)
	for _, k := range []string{"token", "token_id", "role", "identity", "sites", "created_at", "created_by"} {
		if _, ok := m[k]; !ok {
			t.Errorf("response lacks %s: %s", k, r.body)
		}
	}
	// It works at once, as an auditor of its sites.
	if r := e.do(t, "GET", "/v1/sites/acme/passcode", c.Token, nil); r.status != 200 {
		t.Fatalf("the new token reads acme: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do(t, "GET", "/v1/sites/gamma/passcode", c.Token, nil), 404, apierror.CodeNotFound)
	wantProblem(t, e.do(t, "POST", "/v1/sites/acme/passcode", c.Token, nil), 403, apierror.CodeForbidden)

	// A stored admin of all sites may manage tokens too; created_by is its
	// identity, and a token it makes can manage tokens in turn.
	root := e.createToken(t, e.admin, `{"role":"admin","identity":"root@acme.example","sites":["*"]}`)
	fe := e.createToken(t, root.Token, `{"role":"enrollment","identity":"frontend","sites":["acme"]}`)
	if fe.CreatedBy != "root@acme.example" {
		t.Fatalf("created_by %q, want the caller's identity", fe.CreatedBy)
	}
	// The caller cannot choose created_by.
	wantProblem(t, e.do(t, "POST", "/v1/tokens", e.admin, str(`{"role":"admin","identity":"x","sites":["*"],"created_by":"mallory"}`)), 400, apierror.CodeInvalidRequest)
}

// TestCreateTokenValidation: each bad body is a 400 naming the field and not
// quoting the value; nothing is stored.
func TestCreateTokenValidation(t *testing.T) {
	e := newTokenEnv(t)
	before := len(e.tokens.List())
	const evil = `\u001b[31mevil` // JSON-escaped
	for _, c := range []struct{ body, field string }{
		{`{"identity":"x","sites":["*"]}`, "role"},
		{`{"role":"root","identity":"x","sites":["*"]}`, "role"},
		{`{"role":7,"identity":"x","sites":["*"]}`, "role"},
		{`{"role":"admin","sites":["*"]}`, "identity"},
		{`{"role":"admin","identity":"","sites":["*"]}`, "identity"},
		{`{"role":"admin","identity":"` + strings.Repeat("a", 255) + `","sites":["*"]}`, "identity"},
		{`{"role":"admin","identity":"\u001b[31mevil","sites":["*"]}`, "identity"},
		{`{"role":"admin","identity":"a\u2028b","sites":["*"]}`, "identity"},
		{`{"role":"admin","identity":"a\u202eb","sites":["*"]}`, "identity"},
		{"{\"role\":\"admin\",\"identity\":\"a\xffb\",\"sites\":[\"*\"]}", "identity"},
		{`{"role":"admin","identity":"x"}`, "sites"},
		{`{"role":"admin","identity":"x","sites":null}`, "sites"},
		{`{"role":"admin","identity":"x","sites":[]}`, "sites"},
		{`{"role":"admin","identity":"x","sites":"acme"}`, "sites"},
		{`{"role":"admin","identity":"x","sites":["acme","*"]}`, "sites"},
		{`{"role":"admin","identity":"x","sites":["acme","Bad Site"]}`, "sites[1]"},
		{`{"role":"admin","identity":"x","sites":["` + evil + `"]}`, "sites[0]"},
		{`{"role":"admin","identity":"x","sites":["acme","acme"]}`, "sites[1]"},
		{`{"role":"admin","identity":"x","sites":[` + strings.Repeat(`"s",`, 300) + `"s"]}`, "sites"},
		{`{"role":"admin","identity":"x","sites":["*"],"extra":1}`, "extra"},
		{`{"role":"admin","identity":"x","sites":["*"]`, "JSON"},
		{`[]`, "object"},
	} {
		m := wantProblem(t, e.do(t, "POST", "/v1/tokens", e.admin, str(c.body)), 400, apierror.CodeInvalidRequest)
		detail := m["detail"].(string)
		if !strings.Contains(detail, c.field) {
			t.Errorf("body %.60q: detail %q does not name %s", c.body, detail, c.field)
		}
		if strings.Contains(detail, "evil") || strings.Contains(detail, "Bad Site") || strings.Contains(detail, "root") {
			t.Errorf("detail quotes the value: %q", detail)
		}
	}
	wantProblem(t, e.do(t, "POST", "/v1/tokens", e.admin, nil), 400, apierror.CodeInvalidRequest)
	wantProblem(t, e.do(t, "POST", "/v1/tokens", e.admin, str(`{"role":"admin","identity":"x","sites":["*"]}`), "Content-Type", "text/plain"), 415, apierror.CodeUnsupportedMedia)
	// All problems at once.
	m := wantProblem(t, e.do(t, "POST", "/v1/tokens", e.admin, str(`{"role":"x","identity":"","sites":[]}`)), 400, apierror.CodeInvalidRequest)
	for _, f := range []string{"role", "identity", "sites"} {
		if !strings.Contains(m["detail"].(string), "field "+f) {
			t.Errorf("detail %q lacks %s", m["detail"], f)
		}
	}
	if after := len(e.tokens.List()); after != before {
		t.Fatalf("%d tokens after bad requests, want %d", after, before)
	}
}

// TestListTokens: every token without its secret or hash, bootstrap ones
// marked, last_used_at null until a use and set after it.
func TestListTokens(t *testing.T) {
	e := newTokenEnv(t)
	c := e.createToken(t, e.admin, `{"role":"auditor","identity":"frontend","sites":["acme"]}`)
	list := func() (map[string]map[string]any, string) {
		r := e.do(t, "GET", "/v1/tokens", e.admin, nil)
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		var doc struct {
			Tokens []map[string]any `json:"tokens"`
		}
		if err := json.Unmarshal(r.body, &doc); err != nil {
			t.Fatal(err)
		}
		out := make(map[string]map[string]any)
		for _, d := range doc.Tokens {
			out[d["token_id"].(string)] = d
		}
		return out, string(r.body)
	}
	docs, body := list()
	if len(docs) != 5 {
		t.Fatalf("%d tokens listed, want 2 bootstrap and 3 stored: %s", len(docs), body)
	}
	for _, secret := range []string{c.Token, bootAdmin, bootEnroll, e.adminAcme, e.auditor} {
		sum := sha256.Sum256([]byte(secret))
		if strings.Contains(body, secret) || strings.Contains(body, hex.EncodeToString(sum[:])) {
			t.Fatalf("the list holds a token or its hash: %s", body)
		}
	}
	fe := docs[c.TokenID]
	if fe == nil || fe["role"] != "auditor" || fe["identity"] != "frontend" || fe["created_by"] != adminEmail ||
		fe["last_used_at"] != nil || fe["bootstrap"] != nil || fe["created_at"] == nil {
		t.Fatalf("the new token is listed as %v", fe)
	}
	if _, ok := fe["last_used_at"]; !ok {
		t.Fatal("last_used_at is left out instead of null")
	}
	if b := docs[auth.BootstrapAdminID]; b == nil || b["bootstrap"] != true || b["identity"] != adminEmail {
		t.Fatalf("bootstrap admin listed as %v", b)
	}
	// A use shows at once on this replica.
	if r := e.do(t, "GET", "/v1/sites", c.Token, nil); r.status != 200 {
		t.Fatalf("a read: %d %s", r.status, r.body)
	}
	docs, _ = list()
	used, _ := docs[c.TokenID]["last_used_at"].(string)
	at, err := time.Parse(time.RFC3339, used)
	if err != nil || time.Since(at) > time.Minute {
		t.Fatalf("last_used_at %q after a use", used)
	}
}

// TestRevokeToken: 204, the token stops at once; again 404; an unknown ID
// 404; a malformed one 400; a bootstrap token 409 bootstrap_token.
func TestRevokeToken(t *testing.T) {
	e := newTokenEnv(t)
	c := e.createToken(t, e.admin, `{"role":"auditor","identity":"aud","sites":["*"]}`)
	if r := e.do(t, "GET", "/v1/sites", c.Token, nil); r.status != 200 {
		t.Fatalf("before revoke: %d", r.status)
	}
	r := e.do(t, "DELETE", "/v1/tokens/"+c.TokenID, e.admin, nil)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do(t, "GET", "/v1/sites", c.Token, nil), 401, apierror.CodeUnauthorized)
	wantProblem(t, e.do(t, "DELETE", "/v1/tokens/"+c.TokenID, e.admin, nil), 404, apierror.CodeNotFound)
	wantProblem(t, e.do(t, "DELETE", "/v1/tokens/tok_0123456789abcdef", e.admin, nil), 404, apierror.CodeNotFound)
	for _, bad := range []string{"TOK", "tok.x", "tok_%2A", "tok_%3E", strings.Repeat("a", 65)} {
		wantProblem(t, e.do(t, "DELETE", "/v1/tokens/"+bad, e.admin, nil), 400, apierror.CodeInvalidRequest)
	}
	for _, id := range []string{auth.BootstrapAdminID, auth.BootstrapEnrollmentID} {
		m := wantProblem(t, e.do(t, "DELETE", "/v1/tokens/"+id, e.admin, nil), 409, apierror.CodeBootstrapToken)
		if !strings.Contains(m["detail"].(string), "--admin-token") {
			t.Errorf("detail %q", m["detail"])
		}
	}
	if _, ok := e.tokens.Authenticate(bootAdmin); !ok {
		t.Fatal("the bootstrap admin token stopped working")
	}
	wantProblem(t, e.do(t, "PUT", "/v1/tokens/"+c.TokenID, e.admin, nil), 405, apierror.CodeMethodNotAllowed)
}

// TestTokenRoutesLogNoToken: the access log and the token change lines name
// the token's ID and who made it, never a token.
func TestTokenRoutesLogNoToken(t *testing.T) {
	e := newTokenEnv(t)
	c := e.createToken(t, e.admin, `{"role":"auditor","identity":"aud@acme.example","sites":["acme"]}`)
	e.do(t, "GET", "/v1/tokens", e.admin, nil)
	e.do(t, "GET", "/v1/sites", c.Token, nil)
	e.do(t, "DELETE", "/v1/tokens/"+c.TokenID, e.admin, nil)
	eventually(t, 2*time.Second, "the access log lines", func() bool { return strings.Count(e.logs.String(), `"http request"`) == 4 })
	logs := e.logs.String()
	for _, secret := range []string{c.Token, strings.TrimPrefix(c.Token, auth.TokenPrefix), bootAdmin, e.adminAcme, e.auditor} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log holds a token:\n%s", logs)
		}
	}
	for _, want := range []string{`"message":"API token created"`, `"message":"API token revoked"`, `"token_id":"` + c.TokenID + `"`,
		`"by":"` + adminEmail + `"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s:\n%s", want, logs)
		}
	}
}

// Without Deps.Tokens the token routes do not exist (a process without a
// token store, such as the benchmark's). Sent around env.do, whose contract
// check knows the routes.
func TestNoTokenRoutesWithoutTokens(t *testing.T) {
	e := newEnv(t, &fakeCommands{}, func(_ *Config, d *Deps) { d.Tokens = nil })
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/tokens", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /v1/tokens without a token store: %d, want 404", resp.StatusCode)
	}
}
