package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// runCmdErr runs a subcommand with env and returns stdout, stderr and its
// error.
func runCmdErr(env map[string]string, args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

// noTokenIn fails the test if any of the logs holds a token.
func noTokenIn(t *testing.T, tokens []string, logs ...string) {
	t.Helper()
	for _, l := range logs {
		for _, tok := range tokens {
			if strings.Contains(l, tok) || strings.Contains(l, strings.TrimPrefix(tok, auth.TokenPrefix)) {
				t.Fatal("a log line holds a token")
			}
		}
	}
}

// TestTokensSharedByReplicas: two replicas on one JetStream. A token made
// through A's API works on B within a second; revoked through B, it stops
// on A within a second; GET /v1/tokens on either lists it with the same
// record, and no log line holds it.
func TestTokensSharedByReplicas(t *testing.T) {
	s := natstest.StartServer(t)
	const admin = "replica-test-admin-token-0123"
	keys, _ := keysInit(t)
	flags := []string{"--nats-url", s.ClientURL(), "--admin-token", admin, "--keys-file", keys}
	a := startInstance(t, t.TempDir(), flags...)
	b := startInstance(t, t.TempDir(), flags...)

	var made struct {
		Token   string `json:"token"`
		TokenID string `json:"token_id"`
	}
	if code, _ := a.do("POST", "/v1/tokens", admin, map[string]any{"role": "auditor", "identity": "aud@acme.example", "sites": []string{"acme"}}, &made); code != http.StatusCreated {
		t.Fatalf("create on A: %d", code)
	}
	start := time.Now()
	natstest.Eventually(t, time.Second, func() error {
		if code, _ := b.do("GET", "/v1/sites/acme/passcode", made.Token, nil, nil); code != http.StatusOK {
			return fmt.Errorf("B answers %d", code)
		}
		return nil
	})
	t.Logf("made on A, works on B after %s", time.Since(start).Round(time.Millisecond))
	var list struct {
		Tokens []struct {
			TokenID   string `json:"token_id"`
			CreatedBy string `json:"created_by"`
		} `json:"tokens"`
	}
	if code, _ := b.do("GET", "/v1/tokens", admin, nil, &list); code != http.StatusOK {
		t.Fatalf("list on B: %d", code)
	}
	found := false
	for _, d := range list.Tokens {
		found = found || (d.TokenID == made.TokenID && d.CreatedBy == auth.DefaultAdminEmail)
	}
	if !found {
		t.Fatalf("B lists %+v, want %s made by %s", list.Tokens, made.TokenID, auth.DefaultAdminEmail)
	}

	if code, _ := b.do("DELETE", "/v1/tokens/"+made.TokenID, admin, nil, nil); code != http.StatusNoContent {
		t.Fatalf("revoke on B: %d", code)
	}
	start = time.Now()
	natstest.Eventually(t, time.Second, func() error {
		for name, in := range map[string]*instance{"A": a, "B": b} {
			if code, _ := in.do("GET", "/v1/sites/acme/passcode", made.Token, nil, nil); code != http.StatusUnauthorized {
				return fmt.Errorf("%s answers %d to a revoked token", name, code)
			}
		}
		return nil
	})
	t.Logf("revoked on B, refused on A after %s", time.Since(start).Round(time.Millisecond))
	if code, _ := a.do("DELETE", "/v1/tokens/"+made.TokenID, admin, nil, nil); code != http.StatusNotFound {
		t.Fatalf("revoke again on A: %d, want 404", code)
	}
	noTokenIn(t, []string{made.Token, admin}, a.stderr.String(), b.stderr.String(), a.stdout.String(), b.stdout.String())
}

// TestFirstAdminTokenOncePerCluster: two replicas started at the same moment
// on a fresh JetStream, without a bootstrap token, make one admin token
// between them, in every trial: one data dir has the admin-token file, and
// the token in it works on both; no log line holds it.
func TestFirstAdminTokenOncePerCluster(t *testing.T) {
	for trial := range 3 {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			s := natstest.StartServer(t)
			dirs := []string{t.TempDir(), t.TempDir()}
			keys, _ := keysInit(t)
			ins := make([]*instance, len(dirs))
			for i, d := range dirs {
				ins[i] = launch(t, d, "--nats-url", s.ClientURL(), "--keys-file", keys)
			}
			for i, in := range ins {
				if err := in.waitReady(30 * time.Second); err != nil {
					t.Fatalf("replica %d: %v\n%s", i, err, in.stderr.String())
				}
			}
			var token, holder string
			for _, d := range dirs {
				if _, err := os.Lstat(filepath.Join(d, adminTokenFile)); err == nil {
					if token != "" {
						t.Fatal("both replicas made an admin token")
					}
					token, holder = readAdminToken(t, d), d
				}
			}
			if token == "" {
				t.Fatal("no replica made an admin token")
			}
			for i, in := range ins {
				if code, _ := in.do("GET", "/v1/tokens", token, nil, nil); code != http.StatusOK {
					t.Fatalf("replica %d answers %d to the first admin token", i, code)
				}
				logs := in.stderr.String()
				noTokenIn(t, []string{token}, logs, in.stdout.String())
				if dirs[i] == holder && !strings.Contains(logs, filepath.Join(holder, adminTokenFile)) {
					t.Fatal("the log does not name the admin token file")
				}
			}
			var list struct {
				Tokens []json.RawMessage `json:"tokens"`
			}
			ins[0].do("GET", "/v1/tokens", token, nil, &list)
			if len(list.Tokens) != 1 {
				t.Fatalf("%d tokens stored, want the one admin token", len(list.Tokens))
			}
		})
	}
}

// TestTokensFileImportedOnce: a data dir of an earlier version keeps its
// tokens: tokens.json is imported into the bucket at start and renamed, no
// admin token is made, and a restart does not import it again (a token
// revoked meanwhile stays revoked).
func TestTokensFileImportedOnce(t *testing.T) {
	dataDir := t.TempDir()
	old, err := auth.Open(auth.Config{File: filepath.Join(dataDir, tokensFile)})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := old.Add(auth.Principal{ID: "admin@localhost", Role: auth.RoleAdmin, Sites: []string{auth.AllSites}})
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := old.Add(auth.Principal{ID: "aud@acme.example", Role: auth.RoleAuditor, Sites: []string{"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	in := startInstance(t, dataDir)
	for _, tok := range []string{admin, auditor} {
		if code, _ := in.do("GET", "/v1/sites/acme/passcode", tok, nil, nil); code != http.StatusOK {
			t.Fatalf("an imported token gets %d", code)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, tokensFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tokens.json is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, tokensFile+auth.ImportedSuffix)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dataDir, adminTokenFile)); err == nil {
		t.Fatal("an admin token was made although tokens were imported")
	}
	if !strings.Contains(in.stderr.String(), `"imported":2`) {
		t.Fatalf("the log does not report the import:\n%s", in.stderr.String())
	}
	runCmd(t, admin, "tokens", "revoke", "--url", "http://"+in.httpAddr, tokenID(t, in, admin, "aud@acme.example"))
	in.stop()

	in2 := startInstance(t, dataDir)
	if strings.Contains(in2.stderr.String(), "tokens file was imported") {
		t.Fatal("the second start imported again")
	}
	if code, _ := in2.do("GET", "/v1/sites/acme/passcode", auditor, nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("a revoked imported token gets %d after a restart", code)
	}
	if code, _ := in2.do("GET", "/v1/sites/acme/passcode", admin, nil, nil); code != http.StatusOK {
		t.Fatalf("the imported admin token gets %d after a restart", code)
	}
	noTokenIn(t, []string{admin, auditor}, in.stderr.String(), in2.stderr.String())
}

// TestTokensCLI: add prints the token alone on stdout, once; ls shows it
// without the secret; revoke stops it. Each failure says what to do and
// exits non-zero: no token, a wrong one (401), one that may not manage
// tokens (403), nothing listening.
func TestTokensCLI(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir)
	admin := readAdminToken(t, dataDir)
	url := "http://" + in.httpAddr
	env := map[string]string{"ENROLLGATE_TOKEN": admin, "ENROLLGATE_URL": url}

	out, errOut, err := runCmdErr(env, "tokens", "add", "--role", "auditor", "--id", "aud@acme.example", "--site", "acme", "--site", "beta")
	if err != nil {
		t.Fatalf("add: %v %s", err, errOut)
	}
	tok := strings.TrimSpace(out)
	if !tokenPattern.MatchString(tok) || tokenPattern.FindString(tok) != tok || strings.Count(out, "\n") != 1 {
		t.Fatalf("add printed %q, want the token on one line", out)
	}
	if strings.Contains(errOut, tok) || !strings.Contains(errOut, "shown only this once") {
		t.Fatalf("add's message %q", errOut)
	}
	// When add returns, the token works on this replica, HTTP and NATS alike.
	nc, err := nats.Connect(in.natsURL, nats.Token(tok), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("NATS right after add: %v", err)
	}
	nc.Close()
	if code, _ := in.do("GET", "/v1/sites/beta/passcode", tok, nil, nil); code != http.StatusOK {
		t.Fatalf("the new token gets %d", code)
	}
	out, _, err = runCmdErr(env, "tokens", "ls")
	if err != nil || strings.Contains(out, tok) || !strings.Contains(out, "aud@acme.example") || !strings.Contains(out, "acme,beta") ||
		!strings.Contains(out, "LAST USED") || !strings.Contains(out, auth.DefaultAdminEmail) {
		t.Fatalf("ls: %v\n%s", err, out)
	}
	out, _, err = runCmdErr(env, "tokens", "ls", "--json")
	var doc struct {
		Tokens []map[string]any `json:"tokens"`
	}
	if err != nil || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Tokens) != 2 {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	// The token comes from the environment only: a flag would show in ps.
	if _, _, err := runCmdErr(env, "tokens", "ls", "--token", admin); exitCode(err) != exitUsage {
		t.Fatalf("--token: %v", err)
	}

	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string
		code int
	}{
		{"no token", map[string]string{"ENROLLGATE_URL": url}, []string{"tokens", "ls"}, "set ENROLLGATE_TOKEN", exitUnauthorized},
		{"wrong token", map[string]string{"ENROLLGATE_URL": url, "ENROLLGATE_TOKEN": "eg_wrong-token"}, []string{"tokens", "ls"}, "401 a valid bearer token is required", exitUnauthorized},
		{"auditor", map[string]string{"ENROLLGATE_URL": url, "ENROLLGATE_TOKEN": tok}, []string{"tokens", "add", "--role", "admin", "--id", "x"},
			"403 managing API tokens needs an admin token for all sites", exitForbidden},
		{"refused", map[string]string{"ENROLLGATE_TOKEN": admin}, []string{"tokens", "ls", "--url", closedURL(t)}, "connection refused", exitUnavailable},
		{"bad role", env, []string{"tokens", "add", "--role", "root", "--id", "x"}, "field role", exitInvalid},
		{"bad site", env, []string{"tokens", "add", "--role", "auditor", "--id", "x", "--site", "Bad Site"}, "field sites[0]", exitInvalid},
		{"unknown ID", env, []string{"tokens", "revoke", "tok_0123456789abcdef"}, "404 no such token (not_found)", exitNotFound},
		{"no ID", env, []string{"tokens", "revoke"}, "TOKEN_ID", exitUsage},
	} {
		out, _, err := runCmdErr(c.env, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || exitCode(err) != c.code {
			t.Errorf("%s: %v (exit %d), want an error saying %q, exit %d", c.name, err, exitCode(err), c.want, c.code)
		}
		if out != "" {
			t.Errorf("%s: stdout %q", c.name, out)
		}
		if err != nil && (strings.Contains(err.Error(), admin) || strings.Contains(err.Error(), tok)) {
			t.Errorf("%s: the error holds a token", c.name)
		}
	}

	id := tokenID(t, in, admin, "aud@acme.example")
	if out, _, err := runCmdErr(env, "tokens", "revoke", id); err != nil || out != "token "+id+" revoked\n" {
		t.Fatalf("revoke: %q %v", out, err)
	}
	if code, _ := in.do("GET", "/v1/sites/acme/passcode", tok, nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("revoked token gets %d", code)
	}
	noTokenIn(t, []string{tok, admin}, in.stderr.String(), in.stdout.String())
}

// closedURL is an HTTP URL where nothing listens.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TestTokenBucketClosedToClients: on the embedded server, no token, whatever
// its role, can read the token bucket: not through the KV API, not by
// subscribing to its subjects or the stream's, not by a direct get; a token
// created meanwhile reaches none of its subscriptions.
func TestTokenBucketClosedToClients(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir)
	admin := readAdminToken(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var mu sync.Mutex
	var seen []string
	for _, tok := range []string{admin, addTokenCmd(t, in, admin, "auditor", "aud", "acme"), addTokenCmd(t, in, admin, "enrollment", "fe")} {
		var nc *nats.Conn
		natstest.Eventually(t, 5*time.Second, func() (err error) {
			nc, err = nats.Connect(in.natsURL, nats.Token(tok), nats.MaxReconnects(0),
				nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the refusals are expected
			return err
		})
		t.Cleanup(nc.Close)
		for _, subj := range []string{">", "$KV.>", "$KV." + auth.Bucket + ".>", "$JS.>"} {
			if _, err := nc.Subscribe(subj, func(m *nats.Msg) {
				mu.Lock()
				seen = append(seen, m.Subject+" "+string(m.Data))
				mu.Unlock()
			}); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		short, cancelShort := context.WithTimeout(ctx, time.Second)
		if _, err := js.KeyValue(short, auth.Bucket); err == nil {
			t.Error("a token opened the token bucket")
		}
		if _, err := js.Stream(short, "KV_"+auth.Bucket); err == nil {
			t.Error("a token read the token bucket's stream")
		}
		cancelShort()
		if m, err := nc.Request("$JS.API.DIRECT.GET.KV_"+auth.Bucket, []byte(`{"last_by_subj":"$KV.ENROLLGATE_TOKENS.first-admin"}`), 500*time.Millisecond); err == nil && len(m.Data) > 0 && m.Header.Get("Status") == "" {
			t.Errorf("a direct get of the bucket answered %q", m.Data)
		}
	}
	// A token made now is written to the bucket while the clients listen
	// (what they saw of their own probes is not a leak).
	mu.Lock()
	seen = nil
	mu.Unlock()
	addTokenCmd(t, in, admin, "auditor", "late-auditor", "acme")
	time.Sleep(300 * time.Millisecond) // anything misrouted arrives by now
	mu.Lock()
	all := strings.Join(seen, "\n")
	mu.Unlock()
	for _, leak := range []string{"late-auditor", "sha256", "principal"} {
		if strings.Contains(all, leak) {
			t.Fatalf("a client saw %q:\n%s", leak, all)
		}
	}
	// The service itself reads it: the bucket is there, holding hashes.
	sjs, err := jetstream.New(connectService(t, in.natsURL))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := sjs.KeyValue(ctx, auth.Bucket)
	if err != nil {
		t.Fatalf("the service cannot open the bucket: %v", err)
	}
	if keys, err := kv.Keys(ctx); err != nil || len(keys) < 4 {
		t.Fatalf("bucket keys %v %v", keys, err)
	}
}
