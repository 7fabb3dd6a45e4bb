package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
	"github.com/enrollgate/enrollgate/internal/secrets"
)

// TestTwoReplicasEachKeepACompleteReadModel runs two service instances on one
// external JetStream, each with its own data dir: a write through either is
// read back through both, because each instance's read model has a durable
// consumer of its own (a shared one would hand each event to one of them).
// The verify endpoint and the write side are shared as they should be.
func TestTwoReplicasEachKeepACompleteReadModel(t *testing.T) {
	s := natstest.StartServer(t)
	const token = "replica-test-admin-token-0123"
	// Replicas share their keys: each verifies the others' events (and
	// passcodes) with them.
	key := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	flags := []string{"--nats-url", s.ClientURL(), "--admin-token", token, "--mac-key", key(), "--seal-key", key()}
	a := startInstance(t, t.TempDir(), flags...)
	b := startInstance(t, t.TempDir(), flags...)

	type write struct {
		Seq uint64 `json:"seq"`
	}
	var last uint64
	for i := range 6 {
		in := a
		if i%2 == 1 {
			in = b
		}
		var w write
		site := fmt.Sprintf("site-%d", i%3)
		if code, _ := in.do("POST", "/v1/sites/"+site+"/passcode", token, nil, &w); code != http.StatusCreated {
			t.Fatalf("generate on %s: %d", site, code)
		}
		last = max(last, w.Seq)
	}
	for name, in := range map[string]*instance{"a": a, "b": b} {
		var list struct {
			Sites []stateDoc `json:"sites"`
		}
		if code, _ := in.do("GET", fmt.Sprintf("/v1/sites?min_seq=%d", last), token, nil, &list); code != http.StatusOK {
			t.Fatalf("replica %s: list sites: %d", name, code)
		}
		if len(list.Sites) != 3 {
			t.Fatalf("replica %s sees %d sites, want 3: %+v", name, len(list.Sites), list.Sites)
		}
		var page struct {
			Entries []struct {
				Seq uint64 `json:"seq"`
			} `json:"entries"`
		}
		total := 0
		for i := range 3 {
			if code, _ := in.do("GET", fmt.Sprintf("/v1/sites/site-%d/audit?min_seq=%d", i, last), token, nil, &page); code != http.StatusOK {
				t.Fatalf("replica %s: audit: %d", name, code)
			}
			total += len(page.Entries)
		}
		if total != 6 {
			t.Fatalf("replica %s's audit trails hold %d events, want all 6", name, total)
		}
	}
	// Both are ready: neither read model lags.
	natstest.Eventually(t, 10*time.Second, func() error {
		for name, in := range map[string]*instance{"a": a, "b": b} {
			if code, _ := in.do("GET", "/readyz", "", nil, nil); code != http.StatusOK {
				return fmt.Errorf("replica %s not ready: %d", name, code)
			}
		}
		return nil
	})
}

// keysInit creates a shared keys file with `enrollgate keys init` and
// returns its path and current MAC key ID.
func keysInit(t *testing.T, from ...string) (path, macID string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "keys.json")
	args := []string{"keys", "init", "--keys-file", path}
	for _, f := range from {
		args = append(args, "--from", f)
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("keys init: %v\n%s", err, errOut.String())
	}
	return path, keyFileField(t, path, "current_mac")
}

func keyFileField(t *testing.T, path, field string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[field].(string)
	return s
}

// generatedKeys returns the key IDs of the site's last PasscodeGenerated.
func generatedKeys(t *testing.T, js jetstream.JetStream, site string) (hashKey, sealKey string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, events.Subject(events.Site(site)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := events.Decode(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := e.Data.(events.PasscodeGenerated)
	if !ok {
		t.Fatalf("last event of %s is %s", site, e.Type())
	}
	return g.HashKeyID, g.SealKeyID
}

// verifyAndReveal checks on in that passcode verifies for site and that
// reveal returns it.
func (in *instance) verifyAndReveal(site, token, passcode string) {
	in.t.Helper()
	var v verdict
	if code, _ := in.do("POST", "/v1/sites/"+site+"/enrollments/verify", token,
		map[string]any{"passcode": passcode, "source": map[string]any{"ip": "192.0.2.1"}}, &v); code != http.StatusOK || !v.OK {
		in.t.Fatalf("verify %s: %d %+v", site, code, v)
	}
	var r struct {
		Passcode string `json:"passcode"`
	}
	if code, _ := in.do("POST", "/v1/sites/"+site+"/passcode/reveal", token, nil, &r); code != http.StatusOK || r.Passcode != passcode {
		in.t.Fatalf("reveal %s: %d, same passcode %v", site, code, r.Passcode == passcode)
	}
}

// TestReplicasShareAKeysFile: two replicas that mount the same keys file
// (and nothing else in common but the stream) verify and reveal each
// other's passcodes; after `keys rotate`, new passcodes on both use the new
// keys, and the older ones still verify and reveal on both.
func TestReplicasShareAKeysFile(t *testing.T) {
	s := natstest.StartServer(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	const token = "replica-test-admin-token-0123"
	file, oldMAC := keysInit(t)
	oldSeal := keyFileField(t, file, "current_seal")
	flags := []string{"--nats-url", s.ClientURL(), "--admin-token", token, "--keys-file", file}
	a := startInstance(t, t.TempDir(), flags...)
	b := startInstance(t, t.TempDir(), flags...)

	ga := a.generate("acme", token)
	gb := b.generate("globex", token)
	if h, sk := generatedKeys(t, js, "acme"); h != oldMAC || sk != oldSeal {
		t.Fatalf("acme generated under %s/%s, want the file's %s/%s", h, sk, oldMAC, oldSeal)
	}
	b.verifyAndReveal("acme", token, ga.Passcode)
	a.verifyAndReveal("globex", token, gb.Passcode)

	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"keys", "rotate", "--keys-file", file, "--activate-after", "3s"},
		func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("keys rotate: %v\n%s", err, errOut.String())
	}
	newMAC, newSeal := keyFileField(t, file, "next_mac"), keyFileField(t, file, "next_seal")
	if newMAC == "" || newMAC == oldMAC || newSeal == oldSeal || keyFileField(t, file, "current_mac") != oldMAC {
		t.Fatalf("rotation: current %s, next %s/%s", keyFileField(t, file, "current_mac"), newMAC, newSeal)
	}
	for name, in := range map[string]*instance{"a": a, "b": b} {
		n := 0
		natstest.Eventually(t, 20*time.Second, func() error {
			n++
			site := fmt.Sprintf("rot-%s-%d", name, n)
			g := in.generate(site, token)
			if h, sk := generatedKeys(t, js, site); h != newMAC || sk != newSeal {
				return fmt.Errorf("replica %s generated under %s/%s, want %s/%s", name, h, sk, newMAC, newSeal)
			}
			// The other replica verifies and reveals it.
			other := a
			if in == a {
				other = b
			}
			other.verifyAndReveal(site, token, g.Passcode)
			return nil
		})
	}
	// Passcodes made before the rotation still verify and reveal on both.
	a.verifyAndReveal("acme", token, ga.Passcode)
	b.verifyAndReveal("acme", token, ga.Passcode)
	a.verifyAndReveal("globex", token, gb.Passcode)
	b.verifyAndReveal("globex", token, gb.Passcode)
}

// startFails runs `serve` and returns its error, which it must return
// within a minute.
func startFails(t *testing.T, dataDir string, extra ...string) error {
	t.Helper()
	var stderr syncBuffer
	args := append([]string{"serve", "--data-dir", dataDir, "--http", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--nats-service-password", testServicePassword, "--log-format", "json"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, func(string) string { return "" }, io.Discard, &stderr) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("serve returned nil; logs:\n%s", stderr.String())
		}
		return err
	case <-time.After(70 * time.Second):
		t.Fatal("serve neither failed nor returned")
	}
	return nil
}

// TestReplicaWithOtherKeysRefusesToStart: a replica whose keys lack a key
// the event log names refuses to start and names it, from the key registry
// and, on a log written before the registry, from a scan of the log; its
// failed start records nothing that would stop a right replica.
func TestReplicaWithOtherKeysRefusesToStart(t *testing.T) {
	s := natstest.StartServer(t)
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const token = "replica-test-admin-token-0123"
	file, macID := keysInit(t)
	base := []string{"--nats-url", s.ClientURL(), "--admin-token", token}
	a := startInstance(t, t.TempDir(), append(base, "--keys-file", file)...)
	g := a.generate("acme", token)
	a.stop()

	want := "key " + macID + " named by the event log is not in this replica's keys"
	other, _ := keysInit(t)
	for name, keys := range map[string][]string{
		"another keys file":   {"--keys-file", other},
		"generated keys":      nil,
		"flags of other keys": {"--mac-key", randomKey(t), "--seal-key", randomKey(t)},
	} {
		err := startFails(t, t.TempDir(), append(base, keys...)...)
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), secrets.RegistryBucket) {
			t.Fatalf("%s: start failed with %v, want %q", name, err, want)
		}
	}

	// A log written before the registry: the first start scans it.
	if err := js.DeleteKeyValue(context.Background(), secrets.RegistryBucket); err != nil {
		t.Fatal(err)
	}
	err = startFails(t, t.TempDir(), append(base, "--keys-file", other)...)
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "from stream sequence 1") {
		t.Fatalf("scan: start failed with %v, want %q from stream sequence 1", err, want)
	}
	// The right keys start (the scan records them), and so does a file
	// that adds keys to them.
	b := startInstance(t, t.TempDir(), append(base, "--keys-file", file)...)
	b.verifyAndReveal("acme", token, g.Passcode)
	if !strings.Contains(b.stderr.String(), "scanned the event log for the keys it names") {
		t.Fatal("no scan logged")
	}
	b.stop()
	merged, _ := keysInit(t, file, other)
	c := startInstance(t, t.TempDir(), append(base, "--keys-file", merged)...)
	c.verifyAndReveal("acme", token, g.Passcode)
	if strings.Contains(c.stderr.String(), "scanned the event log") {
		t.Fatal("the log was scanned twice")
	}
}

// TestMissingKeyAtRunTime: a key another replica began to use after this
// one started (here a sealing key given to one replica only) is never a
// 500: reveal answers 503 key_unavailable, verify still works, and /readyz
// reports the key missing.
func TestMissingKeyAtRunTime(t *testing.T) {
	s := natstest.StartServer(t)
	const token = "replica-test-admin-token-0123"
	file, _ := keysInit(t)
	base := []string{"--nats-url", s.ClientURL(), "--admin-token", token, "--keys-file", file}
	b := startInstance(t, t.TempDir(), base...)
	a := startInstance(t, t.TempDir(), append(base, "--seal-key", randomKey(t))...)
	g := a.generate("late", token)

	var p struct {
		Code string `json:"code"`
	}
	code, h := b.do("POST", "/v1/sites/late/passcode/reveal", token, nil, &p)
	if code != http.StatusServiceUnavailable || p.Code != "key_unavailable" || h.Get("Retry-After") == "" {
		t.Fatalf("reveal without the seal key: %d %q, Retry-After %q", code, p.Code, h.Get("Retry-After"))
	}
	var v verdict
	if code, _ := b.do("POST", "/v1/sites/late/enrollments/verify", token,
		map[string]any{"passcode": g.Passcode, "source": map[string]any{"ip": "192.0.2.1"}}, &v); code != http.StatusOK || !v.OK {
		t.Fatalf("verify: %d %+v", code, v)
	}
	natstest.Eventually(t, 15*time.Second, func() error {
		var body bytes.Buffer
		resp, err := http.Get("http://" + b.httpAddr + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(&body, resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body.String(), "recorded in use by another replica") {
			return fmt.Errorf("readyz %d %s", resp.StatusCode, body.String())
		}
		return nil
	})
}
