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
func TestNATSAccessOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster of processes")
	}
	c := natscluster.Start(t)
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
	frontend := addTokenCmd(t, dirB, "enrollment", "acme-frontend", "acme")
	auditor := addTokenCmd(t, dirA, "auditor", "auditor@acme.example", "acme")
	outsider := addTokenCmd(t, dirA, "auditor", "auditor@globex.example", "globex")
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
	// Tokens are per replica until they move to the cluster: each works on
	// the replica whose data dir holds it.
	if nc, err := nats.Connect(a.clientURL, nats.Token(frontend), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("replica A admitted a token of replica B")
	}
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
	mu.Lock()
	all := strings.Join(seen, "\n")
	mu.Unlock()
	// (The passcode itself is in the spy's own requests.)
	for _, leak := range []string{"PasscodeGenerated", "EnrollmentAttempt", "attempt_digest", "ENROLLGATE_EVENTS", "passcode_lockout", "sealed"} {
		if strings.Contains(all, leak) {
			t.Errorf("acme's frontend captured %q on B's edge:\n%s", leak, all)
		}
	}
}
