package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/internal/natstest"
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
