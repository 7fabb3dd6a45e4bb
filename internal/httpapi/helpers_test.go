package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/internal/natstest"

	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/auth"
)

const (
	bootAdmin   = "test-bootstrap-admin-token-0123456789"
	bootEnroll  = "test-bootstrap-enrollment-token-0123456789"
	adminEmail  = "ops@acme.example"
	thePasscode = "Zq7Kp2Xw9LmB" // what the fake generates and reveals
)

// fakeCommands is a Commands whose answers the test sets; it records every
// command it receives.
type fakeCommands struct {
	mu    sync.Mutex
	calls []any
	// err, when set, is returned by every command.
	err error
	// panicWith, when set, makes every command panic.
	panicWith any
	// block makes every command wait for its context to end.
	block bool
	// verdict is what VerifyPasscode answers.
	verdict domain.Verdict
}

func (f *fakeCommands) record(ctx context.Context, cmd any) error {
	f.mu.Lock()
	f.calls = append(f.calls, cmd)
	err, pv, block := f.err, f.panicWith, f.block
	f.mu.Unlock()
	if pv != nil {
		panic(pv)
	}
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeCommands) Calls() []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]any(nil), f.calls...)
}

var genAt = time.Date(2026, 11, 24, 9, 30, 0, 0, time.FixedZone("CET", 3600))

func activeState(site string, seq uint64) domain.State {
	return domain.State{Site: site, Status: domain.StatusActive, PasscodeID: "01JPASSCODE", GeneratedAt: genAt,
		GeneratedBy: adminEmail, MaxFailedAttempts: 10, FailureWindow: time.Hour, Seq: seq}
}

func (f *fakeCommands) GeneratePasscode(ctx context.Context, cmd handlers.GeneratePasscode) (handlers.GenerateResult, error) {
	if err := f.record(ctx, cmd); err != nil {
		return handlers.GenerateResult{}, err
	}
	return handlers.GenerateResult{Passcode: handlers.NewSecret(thePasscode), State: activeState(string(cmd.Site), 7), Seq: 7}, nil
}

func (f *fakeCommands) RevealPasscode(ctx context.Context, cmd handlers.RevealPasscode) (handlers.RevealResult, error) {
	if err := f.record(ctx, cmd); err != nil {
		return handlers.RevealResult{}, err
	}
	return handlers.RevealResult{Passcode: handlers.NewSecret(thePasscode), PasscodeID: "01JPASSCODE", State: activeState(string(cmd.Site), 8), Seq: 8}, nil
}

func (f *fakeCommands) DisablePasscode(ctx context.Context, cmd handlers.DisablePasscode) (handlers.DisableResult, error) {
	if err := f.record(ctx, cmd); err != nil {
		return handlers.DisableResult{}, err
	}
	st := activeState(string(cmd.Site), 9)
	st.Status, st.DisabledAt, st.DisabledBy, st.DisabledReason = domain.StatusDisabled, genAt.Add(time.Hour), cmd.Actor.ID, cmd.Reason
	return handlers.DisableResult{State: st, Seq: 9}, nil
}

func (f *fakeCommands) VerifyPasscode(ctx context.Context, cmd handlers.VerifyPasscode) (handlers.VerifyResult, error) {
	if err := f.record(ctx, cmd); err != nil {
		return handlers.VerifyResult{}, err
	}
	f.mu.Lock()
	v := f.verdict
	f.mu.Unlock()
	return handlers.VerifyResult{Verdict: v, Site: cmd.Site, Seq: 10}, nil
}

func (f *fakeCommands) ChangeLockoutPolicy(ctx context.Context, cmd handlers.ChangeLockoutPolicy) (handlers.ChangeLockoutPolicyResult, error) {
	if err := f.record(ctx, cmd); err != nil {
		return handlers.ChangeLockoutPolicyResult{}, err
	}
	st := activeState(string(cmd.Site), 11)
	st.MaxFailedAttempts, st.FailureWindow = cmd.MaxFailedAttempts, cmd.FailureWindow
	return handlers.ChangeLockoutPolicyResult{State: st, Seq: 11}, nil
}

type syncBuffer = natstest.LogBuffer

// env is a running API with its tokens.
type env struct {
	srv  *httptest.Server
	cmds Commands
	// reads is the fake read model the env was built with (unused when an
	// option replaced Deps.Reads).
	reads  *fakeReads
	tokens *auth.Store
	logs   *syncBuffer
	// tokens
	admin, adminAcme, auditor, enroll string
}

type envOption func(*Config, *Deps)

func newEnv(t *testing.T, cmds Commands, opts ...envOption) *env {
	t.Helper()
	store, err := auth.Open(auth.Config{File: filepath.Join(t.TempDir(), "tokens.json"),
		AdminToken: bootAdmin, AdminEmail: adminEmail, EnrollmentToken: bootEnroll})
	if err != nil {
		t.Fatal(err)
	}
	adminAcme, err := store.Add(auth.Principal{ID: "alice@acme.example", Role: auth.RoleAdmin, Sites: []string{"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := store.Add(auth.Principal{ID: "siem", Role: auth.RoleAuditor, Sites: []string{auth.AllSites}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{}
	reads := newFakeReads()
	deps := Deps{Commands: cmds, Auth: store, Tokens: store, Reads: reads, Clock: fixedClock{readNow}}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	logs := &syncBuffer{}
	api, err := New(cfg, deps, zerolog.New(logs).With().Timestamp().Logger())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &env{srv: srv, cmds: cmds, reads: reads, logs: logs, admin: bootAdmin, adminAcme: adminAcme, auditor: auditor,
		enroll: bootEnroll, tokens: store}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// do sends a request; token "" sends no Authorization header.
func (e *env) do(t *testing.T, method, path, token string, body io.Reader, header ...string) response {
	t.Helper()
	var sent []byte
	if body != nil {
		var err error
		if sent, err = io.ReadAll(body); err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(sent)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
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
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	// Every response is checked against openapi.json, and every request the
	// API accepted (openapi_test.go).
	checkContract(t, req, resp.StatusCode, resp.Header, b)
	if resp.StatusCode < 300 {
		if err := validateRequest(t, req, sent); err != nil {
			t.Errorf("%s %s was accepted, but openapi.json does not allow it: %v", method, path, err)
		}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func str(s string) io.Reader { return strings.NewReader(s) }

// wantProblem checks that r is a problem document with the status and code.
func wantProblem(t *testing.T, r response, status int, code string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	m := r.json(t)
	if m["code"] != code {
		t.Fatalf("code %v, want %s; body %s", m["code"], code, r.body)
	}
	if m["type"] != problemTypePrefix+code || m["status"] != float64(status) || m["title"] != http.StatusText(status) {
		t.Fatalf("problem members wrong: %s", r.body)
	}
	if d, _ := m["detail"].(string); d == "" {
		t.Fatalf("problem without detail: %s", r.body)
	}
	return m
}

// eventually polls fn until it returns true or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
