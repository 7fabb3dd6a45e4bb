package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/internal/natscluster"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TestNATSAccessOnACluster: on a real 3-node cluster of nats-server
// processes running the shipped configuration, with two replicas, nobody but
// the service may connect to the cluster; clients connect to a replica's
// edge with their token, where the access model is the embedded server's: a
// scoped frontend verifies its site only and captures no event, and
// auditors get the lockout alert of their sites, live and replayed (INV8).
// Tokens are the cluster's: one made through replica A's API works on B,
// over HTTP and NATS, within a second, and one revoked through B stops on
// both within a second, its NATS connections closed.
func TestNATSAccessOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster of processes")
	}
	c := natstest.StartCluster(t)
	for name, opts := range map[string][]nats.Option{
		"anonymous":        nil,
		"a token":          {nats.Token("cluster-test-admin-token-0123")},
		"a wrong password": {nats.UserInfo(natscluster.ServiceUser, "wrong-password-0123")},
	} {
		if nc, err := nats.Connect(c.Nodes[0].ClientURL(), append(opts, nats.MaxReconnects(0))...); err == nil {
			nc.Close()
			t.Errorf("the cluster admitted %s", name)
		}
	}

	const admin = "cluster-test-admin-token-0123"
	dirA, dirB := t.TempDir(), t.TempDir()
	// The replicas mount one keys file, and share nothing else but the
	// cluster.
	keys, _ := keysInit(t)
	flags := []string{"--nats-url", c.ServiceURLs(), "--nats-leaf-url", c.LeafURLs(), "--replicas", "3",
		"--admin-token", admin, "--keys-file", keys, "--max-failed-attempts", "3"}
	a := startInstance(t, dirA, flags...)
	b := startInstance(t, dirB, flags...)
	if a.clientURL == "" || b.clientURL == "" || a.clientURL == b.clientURL {
		t.Fatalf("client URLs %q and %q", a.clientURL, b.clientURL)
	}

	connect := func(url, token string) *nats.Conn {
		t.Helper()
		var nc *nats.Conn
		natstest.Eventually(t, 10*time.Second, func() (err error) {
			nc, err = nats.Connect(url, nats.Token(token), nats.MaxReconnects(0))
			return err
		})
		t.Cleanup(nc.Close)
		return nc
	}
	// Made through A, the frontend's token works on B within a second, over
	// HTTP and on B's edge.
	frontend := addTokenCmd(t, a, admin, "enrollment", "acme-frontend", "acme")
	made := time.Now()
	verifyHTTP := func(in *instance) int {
		code, _ := in.do("POST", "/v1/sites/acme/enrollments/verify", frontend, map[string]any{"passcode": "000000000000"}, nil)
		return code
	}
	natstest.Eventually(t, time.Second, func() error {
		if code := verifyHTTP(b); code != http.StatusOK {
			return fmt.Errorf("B answers %d over HTTP", code)
		}
		nc, err := nats.Connect(b.clientURL, nats.Token(frontend), nats.MaxReconnects(0))
		if err != nil {
			return fmt.Errorf("B's edge: %w", err)
		}
		nc.Close()
		return nil
	})
	t.Logf("a token made on A works on B after %s", time.Since(made).Round(time.Millisecond))
	auditor := addTokenCmd(t, b, admin, "auditor", "auditor@acme.example", "acme")
	outsider := addTokenCmd(t, b, admin, "auditor", "auditor@globex.example", "globex")
	live := connect(a.clientURL, auditor)
	liveAlerts, err := live.SubscribeSync("enrollgate.alerts.>")
	if err != nil {
		t.Fatal(err)
	}
	outsiderNC := connect(a.clientURL, outsider)
	outsiderAlerts, err := outsiderNC.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	spy := connect(b.clientURL, frontend)
	var mu sync.Mutex
	var seen []string
	if _, err := spy.Subscribe(">", func(m *nats.Msg) { mu.Lock(); seen = append(seen, m.Subject+" "+string(m.Data)); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	for _, nc := range []*nats.Conn{live, outsiderNC, spy} {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	var gen struct {
		Passcode string `json:"passcode"`
	}
	if code, _ := a.do("POST", "/v1/sites/acme/passcode", admin, nil, &gen); code != http.StatusCreated {
		t.Fatalf("generate on A: %d", code)
	}
	// The right passcode verifies through B's edge, the cluster and
	// whichever replica's endpoint answers.
	if v := verifyNATS(t, spy, "acme", map[string]any{"passcode": gen.Passcode, "source": map[string]any{"ip": "192.0.2.1"}}); !v.OK {
		t.Fatalf("right passcode through B's edge: %+v", v)
	}
	// B verifies and reveals what A generated.
	b.verifyAndReveal("acme", admin, gen.Passcode)
	if _, err := spy.Request("enrollgate.verify.globex", []byte(`{"passcode":"000000000000"}`), time.Second); err == nil {
		t.Fatal("a frontend of acme verified globex")
	}
	for i := range 3 {
		src := map[string]any{"ip": fmt.Sprintf("192.0.2.%d", 10+i)}
		if v := verifyNATS(t, spy, "acme", map[string]any{"passcode": "000000000000", "source": src}); v.OK {
			t.Fatalf("wrong passcode %d verified", i)
		}
	}

	m, err := liveAlerts.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no live lockout alert on A's edge: %v", err)
	}
	if m.Subject != "enrollgate.alerts.acme.passcode_lockout" {
		t.Fatalf("live alert on %s", m.Subject)
	}
	ajs, _ := jetstream.New(live)
	natstest.Eventually(t, 15*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		oc, err := ajs.OrderedConsumer(ctx, "ENROLLGATE_ALERTS", jetstream.OrderedConsumerConfig{})
		if err != nil {
			return err
		}
		batch, err := oc.Fetch(5, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			if m.Subject() != "enrollgate.alerts.acme.passcode_lockout" {
				return fmt.Errorf("replayed %s", m.Subject())
			}
			n++
		}
		if n != 1 {
			return fmt.Errorf("replayed %d alerts, want 1", n)
		}
		return nil
	})
	// The outsider's account carries its own copy's source traffic, and
	// nothing of acme.
	for {
		m, err := outsiderAlerts.NextMsg(500 * time.Millisecond)
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(m.Subject, "enrollgate.") || strings.Contains(string(m.Data), "acme") {
			t.Fatalf("globex's auditor received %s %s", m.Subject, m.Data)
		}
	}
	// A token made while the spy listens: its record in the cluster's token
	// bucket reaches no client.
	addTokenCmd(t, a, admin, "auditor", "late@acme.example", "acme")
	time.Sleep(300 * time.Millisecond) // anything misrouted arrives by now
	mu.Lock()
	all := strings.Join(seen, "\n")
	mu.Unlock()
	// (The passcode itself is in the spy's own requests.)
	for _, leak := range []string{"PasscodeGenerated", "EnrollmentAttempt", "attempt_digest", "ENROLLGATE_EVENTS", "passcode_lockout", "sealed",
		"ENROLLGATE_TOKENS", "late@acme.example", "sha256"} {
		if strings.Contains(all, leak) {
			t.Errorf("acme's frontend captured %q on B's edge:\n%s", leak, all)
		}
	}

	// Revoked through B: refused on both, over HTTP and NATS, and its
	// connections on both edges closed, within a second.
	closed := make(chan string, 2)
	for name, in := range map[string]*instance{"A": a, "B": b} {
		nc, err := nats.Connect(in.clientURL, nats.Token(frontend), nats.MaxReconnects(0),
			nats.ClosedHandler(func(*nats.Conn) { closed <- name }))
		if err != nil {
			t.Fatalf("frontend on %s's edge before the revoke: %v", name, err)
		}
		t.Cleanup(nc.Close)
	}
	id := tokenID(t, b, admin, "acme-frontend")
	revoked := time.Now()
	runCmd(t, admin, "tokens", "revoke", "--url", "http://"+b.httpAddr, id)
	for range 2 {
		select {
		case <-closed:
		case <-time.After(time.Until(revoked.Add(time.Second))):
			t.Fatal("a revoked token's NATS connection is still open a second after the revoke")
		}
	}
	natstest.Eventually(t, time.Until(revoked.Add(time.Second)), func() error {
		for name, in := range map[string]*instance{"A": a, "B": b} {
			if code := verifyHTTP(in); code != http.StatusUnauthorized {
				return fmt.Errorf("%s answers %d over HTTP to a revoked token", name, code)
			}
			if nc, err := nats.Connect(in.clientURL, nats.Token(frontend), nats.MaxReconnects(0)); err == nil {
				nc.Close()
				return fmt.Errorf("%s's edge admits a revoked token", name)
			}
		}
		return nil
	})
	t.Logf("revoked on B, refused on both after %s", time.Since(revoked).Round(time.Millisecond))
}
