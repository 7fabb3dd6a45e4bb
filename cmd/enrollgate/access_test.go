package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/natsserver"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// runCmd runs a subcommand of the binary with token as $ENROLLGATE_TOKEN
// and returns its stdout.
func runCmd(t *testing.T, token string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, tokenEnv(token), &out, &errOut); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// tokenEnv is an environment holding only ENROLLGATE_TOKEN.
func tokenEnv(token string) func(string) string {
	return func(k string) string {
		if k == "ENROLLGATE_TOKEN" {
			return token
		}
		return ""
	}
}

// tokenID finds the ID of the token of identity in `tokens ls`.
func tokenID(t *testing.T, in *instance, admin, identity string) string {
	t.Helper()
	for _, line := range strings.Split(runCmd(t, admin, "tokens", "ls", "--url", "http://"+in.httpAddr), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[2] == identity {
			return f[0]
		}
	}
	t.Fatalf("no token of %s in tokens ls", identity)
	return ""
}

// TestNATSAccessEndToEnd: on the binary's embedded server, a client without
// a token is refused; a frontend token scoped to acme verifies acme only and,
// listening on everything it may, captures no event and no other client's
// verdict; a token added while the service runs works within seconds, and a
// revoked one is cut off on NATS and HTTP within seconds (INV8).
func TestNATSAccessEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir)
	admin := readAdminToken(t, dataDir)

	if nc, err := nats.Connect(in.natsURL, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a client without a token connected")
	}
	var gen struct {
		Passcode string `json:"passcode"`
	}
	for _, site := range []string{"acme", "beta"} {
		if code, _ := in.do("POST", "/v1/sites/"+site+"/passcode", admin, nil, &gen); code != http.StatusCreated {
			t.Fatalf("generate %s: %d", site, code)
		}
	}

	// Tokens made while the service runs.
	frontend := addTokenCmd(t, in, admin, "enrollment", "acme-frontend", "acme")
	other := addTokenCmd(t, in, admin, "enrollment", "beta-frontend", "beta")
	auditor := addTokenCmd(t, in, admin, "auditor", "auditor@acme.example", "acme")
	connect := func(token string, opts ...nats.Option) *nats.Conn {
		t.Helper()
		var nc *nats.Conn
		natstest.Eventually(t, 10*time.Second, func() (err error) {
			nc, err = nats.Connect(in.natsURL, append(opts, nats.Token(token), nats.MaxReconnects(0))...)
			return err
		})
		t.Cleanup(nc.Close)
		return nc
	}
	var captured sync.Mutex
	var seen []string
	spy := connect(frontend)
	for _, subj := range []string{">", "_INBOX.>", "$JS.>"} {
		if _, err := spy.Subscribe(subj, func(m *nats.Msg) {
			captured.Lock()
			seen = append(seen, m.Subject+" "+string(m.Data))
			captured.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	spy.Flush()

	otherNC := connect(other)
	src := map[string]any{"ip": "192.0.2.77", "device_id": "other-frontend-device"}
	if v := verifyNATS(t, otherNC, "beta", map[string]any{"passcode": gen.Passcode, "source": src}); !v.OK {
		t.Fatalf("beta's frontend verifies beta: %+v", v)
	}
	if v := verifyNATS(t, spy, "acme", map[string]any{"passcode": "000000000000", "source": map[string]any{"ip": "192.0.2.1"}}); v.OK || v.Reason != "wrong_passcode" {
		t.Fatalf("acme's frontend verifies acme: %+v", v)
	}
	if _, err := spy.Request("enrollgate.verify.beta", []byte(`{"passcode":"000000000000"}`), time.Second); err == nil {
		t.Fatal("acme's frontend verified beta")
	}
	spy.Flush()
	time.Sleep(300 * time.Millisecond) // anything misrouted arrives before the look
	captured.Lock()
	all := strings.Join(seen, "\n")
	captured.Unlock()
	for _, leak := range []string{"other-frontend-device", "PasscodeGenerated", "EnrollmentAttempt", "attempt_digest", "ENROLLGATE_EVENTS", gen.Passcode} {
		if strings.Contains(all, leak) {
			t.Errorf("a frontend token captured %q:\n%s", leak, all)
		}
	}
	if !strings.Contains(all, "wrong_passcode") {
		t.Errorf("the capture did not see even its own verdict:\n%s", all)
	}

	// Revocation: NATS connection closed, HTTP refused, within seconds.
	closed := make(chan struct{})
	connect(auditor, nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if code, _ := in.do("GET", "/v1/sites/acme/passcode", auditor, nil, nil); code != http.StatusOK {
		t.Fatalf("auditor reads before revoke: %d", code)
	}
	start := time.Now()
	runCmd(t, admin, "tokens", "revoke", "--url", "http://"+in.httpAddr, tokenID(t, in, admin, "auditor@acme.example"))
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked token's NATS connection is still open after 5 s")
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if code, _ := in.do("GET", "/v1/sites/acme/passcode", auditor, nil, nil); code != http.StatusUnauthorized {
			return fmt.Errorf("HTTP answers %d to a revoked token", code)
		}
		return nil
	})
	t.Logf("revoked token cut off after %s", time.Since(start).Round(time.Millisecond))
	if nc, err := nats.Connect(in.natsURL, nats.Token(auditor), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a revoked token connected again")
	} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("revoked token: %v, want an authorization error", err)
	}
}

// TestAlertCopiesKeepAlertsAsLongAsTheStream: a token's copy of the alerts
// must not forget one that ENROLLGATE_ALERTS still holds.
func TestAlertCopiesKeepAlertsAsLongAsTheStream(t *testing.T) {
	if natsserver.AlertCopyMaxAge != alerts.MaxAge {
		t.Fatalf("alert copies keep alerts %s, the stream %s", natsserver.AlertCopyMaxAge, alerts.MaxAge)
	}
}
