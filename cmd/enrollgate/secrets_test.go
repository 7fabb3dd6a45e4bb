package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/enrollgate/enrollgate/internal/natstest"
)

// runFails runs the binary's run function with args and an empty
// environment, and returns its stdout, stderr and error (the test fails if
// it has none within 30 s).
func runFails(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, logs syncBuffer
	err = run(ctx, args, func(string) string { return "" }, &out, &logs)
	if err == nil {
		t.Fatalf("%v: run returned no error; logs:\n%s", args, logs.String())
	}
	return out.String(), logs.String(), err
}

// readyLine returns the fields of the "enrollgate ready" log line.
func readyLine(t *testing.T, logs string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["message"] == "enrollgate ready" {
			return rec
		}
	}
	t.Fatalf("no ready line in:\n%s", logs)
	return nil
}

// TestNATSURLCredentialsRedacted: a password or a token in --nats-url is in
// neither the ready line nor any other log line or stdout of a real start,
// nor in the error and logs of a start whose connect fails.
func TestNATSURLCredentialsRedacted(t *testing.T) {
	const secret = "url-s3cret-0123"
	for _, tc := range []struct {
		name     string
		auth     natstest.Option
		userinfo string
		shown    string
	}{
		{"user and password", func(o *server.Options) { o.Username, o.Password = "svc", secret }, "svc:" + secret, "svc:xxxxx"},
		{"token", func(o *server.Options) { o.Authorization = secret }, secret, "xxxxx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := natstest.StartServer(t, tc.auth)
			addr := ns.Addr().String()
			// A list, as a cluster is given: the first server is down.
			down := freeAddr(t)
			list := fmt.Sprintf("nats://%s@%s,nats://%s@%s", tc.userinfo, down, tc.userinfo, addr)
			in := startInstance(t, t.TempDir(), "--nats-url", list)
			want := fmt.Sprintf("nats://%s@%s,nats://%s@%s", tc.shown, down, tc.shown, addr)
			if got := readyLine(t, in.stderr.String())["nats_url"]; got != want {
				t.Fatalf("ready line nats_url %q, want %q", got, want)
			}
			// The server restarts on its port: the service reconnects and
			// logs where to.
			port := ns.Addr().(*net.TCPAddr).Port
			ns.Shutdown()
			ns.WaitForShutdown()
			ns = natstest.StartServer(t, tc.auth, func(o *server.Options) { o.Port = port })
			natstest.Eventually(t, 20*time.Second, func() error {
				if !strings.Contains(in.stderr.String(), `"message":"NATS reconnected"`) {
					return fmt.Errorf("not reconnected yet")
				}
				return nil
			})
			if !strings.Contains(in.stderr.String(), `"url":"nats://`+tc.shown+"@"+addr) {
				t.Fatalf("reconnect line does not show the redacted URL:\n%s", in.stderr.String())
			}
			in.stop()
			for name, out := range map[string]string{"log": in.stderr.String(), "stdout": in.stdout.String()} {
				if strings.Contains(out, secret) {
					t.Fatalf("%s holds the secret of the URL", name)
				}
			}

			// No server answers: the start (and a rebuild) fails on its first
			// connect.
			ns.Shutdown()
			ns.WaitForShutdown()
			_, _, err := runFails(t, "projections", "rebuild", "--data-dir", t.TempDir(), "--log-format", "json", "--nats-url", list)
			if !strings.Contains(err.Error(), "connect to NATS at "+want) || strings.Contains(err.Error(), secret) {
				t.Fatalf("rebuild's connect error %q does not name the redacted URL %s", err, want)
			}
			stdout, stderr, err := runFails(t, "serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--log-format", "json",
				"--log-level", "trace", "--nats-url", list)
			if !strings.Contains(err.Error(), "connect to NATS at "+want) {
				t.Fatalf("connect error %q does not name the redacted URL %s", err, want)
			}
			for name, out := range map[string]string{"error": err.Error(), "log": stderr, "stdout": stdout} {
				if strings.Contains(out, secret) {
					t.Fatalf("%s of the failed start holds the secret: %s", name, out)
				}
			}
		})
	}
	// A URL that does not parse: nats.Connect's error quotes it.
	_, _, err := runFails(t, "serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--log-format", "json",
		"--nats-url", "nats://svc:"+secret+"%zz@127.0.0.1:4222")
	if strings.Contains(err.Error(), "%zz") || !strings.Contains(err.Error(), "svc:xxxxx@127.0.0.1:4222") {
		t.Fatalf("parse error not redacted: %v", err)
	}
}

// freeAddr returns a loopback address that nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// selfSigned writes a self-signed ECDSA certificate for 127.0.0.1 and
// localhost, and its key, into a temp dir.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "enrollgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLS: with --tls-cert/--tls-key, HTTP and the embedded server's client
// port speak TLS (at least 1.2) only; a client that trusts the certificate
// gets /healthz and verifies over NATS, a plain or an old client does not,
// and the service's own connections work (it became ready and answers).
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	dataDir := t.TempDir()
	in := startInstance(t, dataDir, "--tls-cert", certFile, "--tls-key", keyFile)
	if rec := readyLine(t, in.stderr.String()); rec["tls"] != true {
		t.Fatalf("ready line does not say tls: %v", rec)
	}

	get := func(c *http.Client, url string) (int, error) {
		resp, err := c.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if code, err := get(trusting, "https://"+in.httpAddr+"/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("HTTPS /healthz: %d, %v", code, err)
	}
	if code, err := get(http.DefaultClient, "http://"+in.httpAddr+"/healthz"); err == nil && code == http.StatusOK {
		t.Fatal("plain HTTP /healthz answered 200")
	}
	if _, err := get(&http.Client{Timeout: 10 * time.Second}, "https://"+in.httpAddr+"/healthz"); err == nil {
		t.Fatal("HTTPS client that does not trust the certificate got an answer")
	}
	old := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}}}
	if _, err := get(old, "https://"+in.httpAddr+"/healthz"); err == nil {
		t.Fatal("HTTPS with TLS 1.1 got an answer")
	}

	if !strings.HasPrefix(in.natsURL, "tls://") {
		t.Fatalf("ready line nats_url %q, want tls://", in.natsURL)
	}
	nc, err := nats.Connect(in.natsURL, nats.RootCAs(certFile), nats.Token(readAdminToken(t, dataDir)))
	if err != nil {
		t.Fatalf("NATS client trusting the certificate: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Fatal("the embedded server does not require TLS")
	}
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": "Ab3dEf6hIj9k", "source": map[string]any{"ip": "192.0.2.1"}}); v.OK || v.Reason == "" {
		t.Fatalf("verify over TLS: %+v", v)
	}
	plainURL := "nats://" + strings.TrimPrefix(in.natsURL, "tls://")
	for name, opts := range map[string][]nats.Option{
		"plain":        nil,
		"not trusting": {nats.Secure(&tls.Config{})},
		"TLS 1.1":      {nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})},
	} {
		// With a valid token, so that only TLS can refuse them.
		if nc, err := nats.Connect(plainURL, append(opts, nats.Timeout(5*time.Second), nats.Token(readAdminToken(t, dataDir)))...); err == nil {
			nc.Close()
			t.Errorf("%s NATS client connected", name)
		}
	}

	// The admin token works over HTTPS.
	req, _ := http.NewRequest("GET", "https://"+in.httpAddr+"/v1/sites", nil)
	req.Header.Set("Authorization", "Bearer "+readAdminToken(t, dataDir))
	resp, err := trusting.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/sites over HTTPS: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestExternalClusterTLSAndUser: --nats-ca and --nats-user/--nats-password
// log the service in to a TLS cluster; without the CA it cannot connect, and
// a wrong password fails without being printed.
func TestExternalClusterTLSAndUser(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	const password = "cluster-s3cret-0123"
	ns := natstest.StartServer(t, func(o *server.Options) {
		o.TLS, o.TLSConfig, o.TLSTimeout = true, tc, 5
		o.Username, o.Password = "svc", password
	})
	url := ns.ClientURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("cluster URL %s", url)
	}
	in := startInstance(t, t.TempDir(), "--nats-url", url, "--nats-ca", certFile, "--nats-user", "svc", "--nats-password", password)
	in.stop()
	if strings.Contains(in.stderr.String(), password) {
		t.Fatal("the log holds the password")
	}

	args := func(extra ...string) []string {
		return append([]string{"serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--log-format", "json", "--nats-url", url}, extra...)
	}
	if _, _, err := runFails(t, args("--nats-user", "svc", "--nats-password", password)...); !strings.Contains(err.Error(), "x509") {
		t.Fatalf("without --nats-ca: %v, want a certificate error", err)
	}
	stdout, stderr, err := runFails(t, args("--nats-ca", certFile, "--nats-user", "svc", "--nats-password", "wrong-"+password)...)
	if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("wrong password: %v", err)
	}
	if strings.Contains(err.Error()+stdout+stderr, password) {
		t.Fatal("a failed login prints the password")
	}
}

// TestDataDirLock: while a service runs on a data dir, a second serve and a
// rebuild refuse with the holder's pid; once it stopped, the rebuild runs.
func TestDataDirLock(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir)
	want := fmt.Sprintf("the data dir %s is in use by a running enrollgate (pid %d); stop it first", dataDir, os.Getpid())
	for name, args := range map[string][]string{
		"serve":   {"serve", "--data-dir", dataDir, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--log-format", "json"},
		"rebuild": {"projections", "rebuild", "--data-dir", dataDir, "--log-format", "json"},
	} {
		if _, _, err := runFails(t, args...); err.Error() != want {
			t.Errorf("%s while a service runs: %v, want %q", name, err, want)
		}
	}
	in.stop()
	var stdout, stderr syncBuffer
	if err := run(context.Background(), []string{"projections", "rebuild", "--data-dir", dataDir, "--log-format", "json"},
		func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("rebuild after the service stopped: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "rebuilt ") {
		t.Fatalf("rebuild printed %q", stdout.String())
	}
	// The rebuild released the lock too.
	startInstance(t, dataDir).stop()
}

// TestAdminTokenFileLeftOver: a token file from an earlier first start, with
// no token stored any more, stops the start before a new token is made.
func TestAdminTokenFileLeftOver(t *testing.T) {
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, adminTokenFile), []byte("eg_old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := runFails(t, "serve", "--data-dir", dataDir, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--log-format", "json")
	if !strings.Contains(err.Error(), "left from an earlier first start") {
		t.Fatalf("start with a left-over token file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dataDir, adminTokenFile)); string(b) != "eg_old\n" {
		t.Fatalf("the left-over file was changed: %q", b)
	}
}
