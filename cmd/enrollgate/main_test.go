package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/app"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natsserver"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

type syncBuffer = natstest.LogBuffer

// instance is the service started as `serve` starts it, on random ports.
type instance struct {
	t      *testing.T
	stdout *syncBuffer // serve writes nothing here; tests check that
	stderr *syncBuffer
	app    *app.App
	// started receives Start's result (launch); nil once taken.
	started  chan startResult
	cancel   context.CancelFunc
	httpAddr string
	natsURL  string
	// clientURL is where frontends and security tooling connect.
	clientURL string
}

type startResult struct {
	app *app.App
	err error
}

// serveArgs are the flags every test instance runs with, then extra.
func serveArgs(dataDir string, extra ...string) []string {
	return append([]string{"--data-dir", dataDir, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--nats-service-password", testServicePassword, "--log-format", "json", "--log-level", "debug"}, extra...)
}

// launch starts the service with the flags of `enrollgate serve` on dataDir
// without waiting for it; waitReady waits.
func launch(t *testing.T, dataDir string, extra ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, started: make(chan startResult, 1), cancel: cancel}
	cfg, err := parseConfig("serve", serveArgs(dataDir, extra...), func(string) string { return "" }, in.stderr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		a, err := app.Start(ctx, cfg, newLogger(cfg, in.stderr))
		in.started <- startResult{a, err}
	}()
	t.Cleanup(in.stop)
	return in
}

// waitReady waits until in has started; an error if the start failed or
// did not end in time.
func (in *instance) waitReady(timeout time.Duration) error {
	select {
	case r := <-in.started:
		in.started = nil
		if r.err != nil {
			return fmt.Errorf("start: %w", r.err)
		}
		in.app, in.httpAddr, in.natsURL, in.clientURL = r.app, r.app.HTTPAddr(), r.app.NATSURL(), r.app.ClientURL()
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("not ready after %s", timeout)
	}
}

// startInstance starts the service with the flags of `enrollgate serve` on
// dataDir and random ports, and returns once it is ready.
func startInstance(t *testing.T, dataDir string, extra ...string) *instance {
	t.Helper()
	in := launch(t, dataDir, extra...)
	if err := in.waitReady(30 * time.Second); err != nil {
		t.Fatalf("%v\nlogs:\n%s", err, in.stderr.String())
	}
	return in
}

// stop shuts the service down (a start still under way is given up) and
// checks that it closed cleanly.
func (in *instance) stop() {
	if in.cancel != nil {
		in.cancel() // as serve's context ends before Close
	}
	if in.started != nil {
		r := <-in.started
		in.started, in.app = nil, r.app
	}
	if in.app == nil {
		return
	}
	err := in.app.Close()
	in.app = nil
	if err != nil {
		in.t.Errorf("close: %v", err)
	}
}

// do sends an HTTP request with a bearer token and decodes the JSON answer.
func (in *instance) do(method, path, token string, body any, out any) (int, http.Header) {
	in.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+in.httpAddr+path, r)
	if err != nil {
		in.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			in.t.Fatalf("%s %s: status %d, body %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, resp.Header
}

type verdict struct {
	OK         bool   `json:"ok"`
	Site       string `json:"site"`
	PasscodeID string `json:"passcode_id"`
	Reason     string `json:"reason"`
}

// verifyNATS asks the verify endpoint over NATS, as a frontend would.
func verifyNATS(t *testing.T, nc *nats.Conn, site string, req map[string]any) verdict {
	t.Helper()
	b, _ := json.Marshal(req)
	msg, err := nc.Request("enrollgate.verify."+site, b, 10*time.Second)
	if err != nil {
		t.Fatalf("verify request: %v", err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		t.Fatalf("verify answered error %s: %s", code, msg.Header.Get("Nats-Service-Error"))
	}
	var v verdict
	if err := json.Unmarshal(msg.Data, &v); err != nil {
		t.Fatalf("verify reply %q: %v", msg.Data, err)
	}
	return v
}

// testServicePassword lets a test log in to the embedded server as the
// service, to read the event log or put a poison message into it; frontends
// connect without credentials.
const testServicePassword = "test-service-password-0123"

// connectService connects to the embedded server as the service user.
func connectService(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo(natsserver.ServiceUser, testServicePassword))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// adminTokenFile and tokensFile are the data dir's files of the first admin
// token and of the tokens of earlier versions (DESIGN).
const (
	adminTokenFile = "admin-token"
	tokensFile     = "tokens.json"
)

var tokenPattern = regexp.MustCompile(`eg_[A-Za-z0-9_-]+`)

// readAdminToken reads the admin token a first start wrote into dataDir and
// checks that only the owner may read the file.
func readAdminToken(t *testing.T, dataDir string) string {
	t.Helper()
	path := filepath.Join(dataDir, adminTokenFile)
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("no admin token file: %v", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %s, want a regular file with 0600", path, fi.Mode())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSuffix(string(b), "\n")
	if !tokenPattern.MatchString(token) || tokenPattern.FindString(token) != token {
		t.Fatalf("%s holds %d bytes that are not one token", path, len(b))
	}
	return token
}

type stateDoc struct {
	Status         string `json:"status"`
	PasscodeID     string `json:"passcode_id"`
	GeneratedBy    string `json:"generated_by"`
	DisabledReason string `json:"disabled_reason"`
}

// TestEndToEnd runs the binary's run function: generate over HTTP, a wrong
// and a right passcode over NATS, reveal, disable, verify again; then a
// restart on the same data dir finds the same state in the stream. Finally no
// stored event, log line, or file in the data dir holds the passcode (INV5).
func TestEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir)

	token := readAdminToken(t, dataDir)
	if strings.Contains(in.stderr.String(), token) || strings.Contains(in.stdout.String(), token) {
		t.Fatal("the admin token was written to the log or to stdout")
	}
	if !strings.Contains(in.stderr.String(), filepath.Join(dataDir, adminTokenFile)) {
		t.Fatalf("the log does not say which file holds the admin token:\n%s", in.stderr.String())
	}

	var gen struct {
		Passcode string   `json:"passcode"`
		State    stateDoc `json:"state"`
		Seq      uint64   `json:"seq"`
	}
	if code, h := in.do("POST", "/v1/sites/acme/passcode", token, nil, &gen); code != http.StatusCreated || h.Get("Enrollgate-Seq") == "" {
		t.Fatalf("generate: status %d, seq header %q", code, h.Get("Enrollgate-Seq"))
	}
	if !regexp.MustCompile(`^[0-9A-Za-z]{12}$`).MatchString(gen.Passcode) {
		t.Fatalf("generated passcode %q is not 12 characters of [0-9A-Za-z]", gen.Passcode)
	}
	if gen.State.Status != "active" || gen.State.GeneratedBy != "admin@localhost" || gen.Seq == 0 {
		t.Fatalf("generate state: %+v seq %d", gen.State, gen.Seq)
	}
	passcode := gen.Passcode
	wrong := domain.Guess(0, passcode) // passes the check: a guess, not a typo
	if wrong == passcode {
		wrong = domain.Guess(1, passcode)
	}

	nc, err := nats.Connect(in.natsURL, nats.Token(token))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	src := map[string]any{"ip": "192.0.2.10", "device_id": "dev-1", "platform": "ios", "user_agent": "e2e"}
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": wrong, "source": src}); v.OK || v.Reason != "wrong_passcode" || v.Site != "acme" {
		t.Fatalf("wrong passcode: %+v", v)
	}
	v := verifyNATS(t, nc, "acme", map[string]any{"passcode": passcode, "attempt_id": "a-1", "source": src})
	if !v.OK || v.PasscodeID != gen.State.PasscodeID {
		t.Fatalf("right passcode: %+v, want ok with passcode_id %s", v, gen.State.PasscodeID)
	}

	var rev struct {
		Passcode string `json:"passcode"`
	}
	if code, _ := in.do("POST", "/v1/sites/acme/passcode/reveal", token, nil, &rev); code != http.StatusOK || rev.Passcode != passcode {
		t.Fatalf("reveal: status %d, passcode matches: %v", code, rev.Passcode == passcode)
	}
	var dis struct {
		State stateDoc `json:"state"`
	}
	if code, _ := in.do("POST", "/v1/sites/acme/passcode/disable", token, nil, &dis); code != http.StatusOK || dis.State.Status != "disabled" || dis.State.DisabledReason != "manual" {
		t.Fatalf("disable: status %d, state %+v", code, dis.State)
	}
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": passcode, "source": src}); v.OK || v.Reason != "disabled" {
		t.Fatalf("verify after disable: %+v", v)
	}
	nc.Close()
	in.stop()

	// A restart on the same data dir: the state comes back from the stream,
	// the token file still admits the admin, and no new token is made.
	in2 := startInstance(t, dataDir)
	if tokenPattern.MatchString(in2.stdout.String()) || tokenPattern.MatchString(in2.stderr.String()) {
		t.Fatal("second run printed a token")
	}
	if got := readAdminToken(t, dataDir); got != token {
		t.Fatal("second run replaced the admin token file")
	}
	nc2, err := nats.Connect(in2.natsURL, nats.Token(token))
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	if v := verifyNATS(t, nc2, "acme", map[string]any{"passcode": passcode, "source": src}); v.OK || v.Reason != "disabled" {
		t.Fatalf("verify after restart: %+v, want disabled", v)
	}
	if code, _ := in2.do("POST", "/v1/sites/acme/passcode/reveal", token, nil, &rev); code != http.StatusOK || rev.Passcode != passcode {
		t.Fatalf("reveal after restart: status %d", code)
	}

	// Only the service writes the event log: a client without credentials
	// (a frontend) cannot forge an event.
	if err := nc2.Publish("enrollgate.events.acme", []byte(`{"forged":true}`)); err != nil {
		t.Fatal(err)
	}
	nc2.Flush()

	// INV5: the plain text is in no stored event, no log line, no file.
	stored := storedMessages(t, in2.natsURL)
	if len(stored) < 6 {
		t.Fatalf("stream holds %d events, want at least 6", len(stored))
	}
	for _, m := range stored {
		if _, err := events.Decode(m.Data); err != nil {
			t.Fatalf("stored message %d does not decode: %v", m.Sequence, err)
		}
		if bytes.Contains(m.Data, []byte(passcode)) {
			t.Fatalf("a stored event holds the passcode: %s", m.Data)
		}
	}
	nc2.Close()
	in2.stop()
	for name, out := range map[string]string{"log 1": in.stderr.String(), "log 2": in2.stderr.String(),
		"stdout 1": in.stdout.String(), "stdout 2": in2.stdout.String()} {
		if strings.Contains(out, passcode) {
			t.Fatalf("%s holds the passcode", name)
		}
	}
	if n := strings.Count(in.stderr.String(), "\n") + strings.Count(in2.stderr.String(), "\n"); n < 20 {
		t.Fatalf("only %d log lines were scanned; the scan proves little", n)
	}
	err = filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(passcode)) {
			return fmt.Errorf("%s holds the passcode", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// storedMessages returns every message in the event stream, oldest first,
// read as the service user.
func storedMessages(t *testing.T, natsURL string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(connectService(t, natsURL))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}
