package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enrollgate/enrollgate/internal/natstest"
)

// scrape GETs /metrics with token (none when empty).
func (in *instance) scrape(token string) (int, string) {
	in.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+in.httpAddr+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sample returns the value of the sample named exactly series (name and
// labels as exposed), or -1.
func sample(text, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestMetricsAfterALockout: a scrape after real traffic (verifies over NATS
// and HTTP, a lockout) shows the verdicts, latencies, appends, the lockout,
// its alert, the consumers' lag, the read model's sequence and the build;
// /metrics needs an admin or auditor token.
func TestMetricsAfterALockout(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir, "--max-failed-attempts", "3")
	admin := readAdminToken(t, dataDir)
	auditor := addTokenCmd(t, in, admin, "auditor", "auditor@acme.example", "acme")
	frontend := addTokenCmd(t, in, admin, "enrollment", "frontend")

	var gen struct {
		Passcode string `json:"passcode"`
	}
	if code, _ := in.do("POST", "/v1/sites/acme/passcode", admin, nil, &gen); code != http.StatusCreated {
		t.Fatalf("generate: %d", code)
	}
	nc, err := nats.Connect(in.clientURL, nats.Token(frontend))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": gen.Passcode, "source": map[string]any{"ip": "192.0.2.1"}}); !v.OK {
		t.Fatalf("right passcode: %+v", v)
	}
	var v verdict
	if code, _ := in.do("POST", "/v1/sites/acme/enrollments/verify", frontend, map[string]any{"passcode": "000000000000",
		"source": map[string]any{"ip": "192.0.2.2"}}, &v); code != http.StatusOK || v.Reason != "wrong_passcode" {
		t.Fatalf("HTTP wrong passcode: %d %+v", code, v)
	}
	for i := range 2 {
		src := map[string]any{"ip": fmt.Sprintf("192.0.2.%d", 10+i)}
		if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": "000000000000", "source": src}); v.Reason != "wrong_passcode" {
			t.Fatalf("NATS wrong passcode %d: %+v", i, v)
		}
	}
	// The source 192.0.2.2 has had its one failure (3 / 2, at least 1).
	if code, _ := in.do("POST", "/v1/sites/beta/enrollments/verify", frontend, map[string]any{"passcode": "000000000000",
		"source": map[string]any{"ip": "192.0.2.2"}}, &v); code != http.StatusOK || v.Reason != "not_generated" {
		t.Fatalf("beta: %d %+v", code, v)
	}

	var text string
	natstest.Eventually(t, 10*time.Second, func() error {
		code, body := in.scrape(auditor)
		if code != http.StatusOK {
			return fmt.Errorf("scrape: %d", code)
		}
		text = body
		if got := sample(text, "enrollgate_lockouts_total"); got != 1 {
			return fmt.Errorf("enrollgate_lockouts_total %v", got)
		}
		// A scrape is no snapshot (its collectors are gathered
		// concurrently): one taken while the alert is counted may show the
		// lockout without the alert.
		if got := sample(text, `enrollgate_alerts_published_total{kind="passcode_lockout"}`); got != 1 {
			return fmt.Errorf("lockout alerts %v", got)
		}
		// Counted when the handler returns, acknowledged just after.
		if got := sample(text, `enrollgate_consumer_pending_events{consumer="alert_publisher"}`); got != 0 {
			return fmt.Errorf("alert publisher pending %v", got)
		}
		return nil
	})
	for series, want := range map[string]float64{
		`enrollgate_verify_verdicts_total{reason="ok",transport="nats"}`:             1,
		`enrollgate_verify_verdicts_total{reason="wrong_passcode",transport="nats"}`: 2,
		`enrollgate_verify_verdicts_total{reason="wrong_passcode",transport="http"}`: 1,
		`enrollgate_verify_verdicts_total{reason="not_generated",transport="http"}`:  1,
		`enrollgate_verify_duration_seconds_count{transport="nats"}`:                 3,
		`enrollgate_verify_duration_seconds_count{transport="http"}`:                 2,
		`enrollgate_alerts_published_total{kind="passcode_lockout"}`:                 1,
		`enrollgate_event_append_conflicts_total`:                                    0,
		`enrollgate_consumer_pending_events{consumer="alert_publisher"}`:             0,
	} {
		if got := sample(text, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// generate, 1 success, 3 failures, the lockout's disable: 6 appends.
	if got := sample(text, "enrollgate_event_append_duration_seconds_count"); got != 6 {
		t.Errorf("appends %v, want 6", got)
	}
	if got := sample(text, "enrollgate_read_model_sequence"); got < 1 {
		t.Errorf("read model sequence %v", got)
	}
	for _, c := range []string{"lockout_saga", "projections"} {
		if got := sample(text, `enrollgate_consumer_pending_events{consumer="`+c+`"}`); got < 0 {
			t.Errorf("no pending gauge for %s", c)
		}
	}
	if !regexp.MustCompile(`(?m)^enrollgate_build_info\{goversion="go[^"]+",version="[^"]+"\} 1$`).MatchString(text) {
		t.Error("no build info")
	}
	for _, secret := range []string{gen.Passcode, admin, auditor, frontend} {
		if strings.Contains(text, secret) {
			t.Fatal("the metrics hold a secret")
		}
	}

	if code, _ := in.scrape(""); code != http.StatusUnauthorized {
		t.Errorf("scrape without a token: %d", code)
	}
	if code, _ := in.scrape(frontend); code != http.StatusForbidden {
		t.Errorf("scrape with an enrollment token: %d", code)
	}
}

func TestMetricsPublic(t *testing.T) {
	in := startInstance(t, t.TempDir(), "--metrics-public")
	if code, text := in.scrape(""); code != http.StatusOK || sample(text, "enrollgate_lockouts_total") != 0 {
		t.Fatalf("public scrape: %d", code)
	}
}
