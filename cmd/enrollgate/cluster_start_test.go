package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// TestReplicasStartTogetherOnAFreshCluster: three replicas started at the
// same moment against a real 3-node cluster that has just formed all come
// up (streams, consumers and the key registry are created by whichever
// gets there first, the others retry), trial after trial. The default run
// does 3 trials; ENROLLGATE_START_TRIALS=10 does 10.
func TestReplicasStartTogetherOnAFreshCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3-node clusters of processes")
	}
	trials := 3
	if v := os.Getenv("ENROLLGATE_START_TRIALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ENROLLGATE_START_TRIALS=%q", v)
		}
		trials = n
	}
	const admin = "cluster-test-admin-token-0123"
	file, _ := keysInit(t)
	ok := 0
	for trial := range trials {
		t.Run(fmt.Sprintf("trial-%d", trial+1), func(t *testing.T) {
			c := natstest.StartCluster(t)
			flags := []string{"--nats-url", c.ServiceURLs(), "--replicas", "3", "--admin-token", admin, "--keys-file", file}
			t0 := time.Now()
			var ins []*instance
			for range 3 {
				ins = append(ins, launch(t, t.TempDir(), flags...))
			}
			for i, in := range ins {
				if err := in.waitReady(2*time.Minute + 30*time.Second); err != nil {
					t.Fatalf("replica %d: %v\nlogs:\n%s", i+1, err, in.stderr.String())
				}
			}
			t.Logf("3 replicas ready %s after they were started", time.Since(t0).Round(time.Millisecond))
			retries := 0
			for _, in := range ins {
				retries += strings.Count(in.stderr.String(), "start-up step failed; retrying")
			}
			t.Logf("%d start-up steps retried", retries)
			// They serve: a passcode generated on one verifies on the others.
			var g generated
			if code, _ := ins[trial%3].do("POST", "/v1/sites/acme/passcode", admin, nil, &g); code != http.StatusCreated {
				t.Fatalf("generate: %d", code)
			}
			for i, in := range ins {
				var v verdict
				if code, _ := in.do("POST", "/v1/sites/acme/enrollments/verify", admin,
					map[string]any{"passcode": g.Passcode, "source": map[string]any{"ip": "192.0.2.1"}}, &v); code != http.StatusOK || !v.OK {
					t.Fatalf("verify on replica %d: %d %+v", i+1, code, v)
				}
			}
			for _, in := range ins {
				in.stop()
			}
			ok++
		})
	}
	t.Logf("%d of %d trials came up", ok, trials)
}

// TestIncompatibleStreamFailsAtOnce: a stream that exists with a
// configuration the service cannot update it to is a configuration error:
// the start fails at once, naming it, instead of retrying until the
// deadline.
func TestIncompatibleStreamFailsAtOnce(t *testing.T) {
	s := natstest.StartServer(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cfg := alerts.StreamConfig(1)
	cfg.Storage = jetstream.MemoryStorage // storage cannot change
	if _, err := js.CreateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err = startFails(t, t.TempDir(), "--nats-url", s.ClientURL(), "--admin-token", "replica-test-admin-token-0123")
	if !strings.Contains(err.Error(), alerts.StreamName) {
		t.Fatalf("start failed with %v, want the alerts stream named", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("a configuration error took %s to fail", d)
	}
}
