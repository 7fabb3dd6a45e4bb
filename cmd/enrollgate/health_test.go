package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runHealth(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"health"}, args...), func(k string) string { return env[k] }, &out, io.Discard)
	return out.String(), err
}

// TestHealthOfARunningService: `enrollgate health` says ready for a started
// service, and fails once it is stopped.
func TestHealthOfARunningService(t *testing.T) {
	in := startInstance(t, t.TempDir())
	out, err := runHealth(t, nil, "--http", in.httpAddr)
	if err != nil || strings.TrimSpace(out) != "ready" {
		t.Fatalf("health of a ready service: %q, %v", out, err)
	}
	in.stop()
	if _, err := runHealth(t, nil, "--http", in.httpAddr, "--timeout", "1s"); err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Fatalf("health of a stopped service: %v", err)
	}
}

// TestHealthReportsTheReason: a 503 fails with the problem's detail, and
// an unspecified listen address from the environment is asked on loopback.
func TestHealthReportsTheReason(t *testing.T) {
	ready := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if ready {
			w.Write([]byte(`{"status":"ready"}`))
			return
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]any{"status": 503, "code": "not_ready", "detail": "projections 42 events behind"})
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	env := map[string]string{"ENROLLGATE_HTTP_ADDR": "0.0.0.0:" + port}
	_, err := runHealth(t, env)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "projections 42 events behind") {
		t.Fatalf("health of a lagging service: %v", err)
	}
	ready = true
	if out, err := runHealth(t, env); err != nil || strings.TrimSpace(out) != "ready" {
		t.Fatalf("health of a ready service: %q, %v", out, err)
	}
	if _, err := runHealth(t, nil, "--url", "http://user:pw@127.0.0.1:"+port); err == nil {
		t.Fatal("a URL with credentials was accepted")
	}
}

// TestHealthOverTLS: HTTPS is verified against --tls-ca (or the system's
// CAs, which do not know a test certificate).
func TestHealthOverTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"ready"}`))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runHealth(t, nil, "--url", srv.URL); err == nil {
		t.Fatal("an unknown certificate was trusted")
	}
	if out, err := runHealth(t, nil, "--url", srv.URL, "--tls-ca", ca); err != nil || strings.TrimSpace(out) != "ready" {
		t.Fatalf("health over TLS with the CA: %q, %v", out, err)
	}
	// With --http, a service that has a certificate is asked over HTTPS.
	addr := strings.TrimPrefix(srv.URL, "https://")
	if out, err := runHealth(t, map[string]string{"ENROLLGATE_TLS_CERT": "/etc/cert.pem"}, "--http", addr, "--tls-ca", ca); err != nil || strings.TrimSpace(out) != "ready" {
		t.Fatalf("health over TLS from the listen address: %q, %v", out, err)
	}
}

// TestComposeHealthcheckRunsHealth: the enrollgate services' health check
// runs this subcommand with flags it accepts.
func TestComposeHealthcheckRunsHealth(t *testing.T) {
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`test: \["CMD", "/enrollgate", "health"((?:, "[^"]*")*)\]`).FindSubmatch(compose)
	if m == nil {
		t.Fatal("docker-compose.yml has no health check running /enrollgate health")
	}
	var args []string
	for _, a := range regexp.MustCompile(`"([^"]*)"`).FindAllSubmatch(m[1], -1) {
		args = append(args, string(a[1]))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) }))
	defer srv.Close()
	env := map[string]string{"ENROLLGATE_HTTP_ADDR": "0.0.0.0:" + srv.URL[strings.LastIndex(srv.URL, ":")+1:]}
	if _, err := runHealth(t, env, args...); err != nil {
		t.Fatalf("the compose health check %v: %v", args, err)
	}
}
