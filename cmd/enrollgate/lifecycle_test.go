package main

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// alertCounter counts the alerts a security tool receives live, by subject.
type alertCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *alertCounter) count(subject string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[subject]
}

func countAlerts(t *testing.T, url, token string) *alertCounter {
	t.Helper()
	nc, err := nats.Connect(url, nats.Token(token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := &alertCounter{n: map[string]int{}}
	if _, err := nc.Subscribe("enrollgate.alerts.>", func(m *nats.Msg) {
		c.mu.Lock()
		c.n[m.Subject]++
		c.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

// exactlyOnce waits for the alert on subject, then makes sure no second one
// follows.
func (c *alertCounter) exactlyOnce(t *testing.T, subject string) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		if n := c.count(subject); n == 0 {
			return fmt.Errorf("no alert on %s yet", subject)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // room for a duplicate to arrive
	if n := c.count(subject); n != 1 {
		t.Fatalf("%d alerts on %s, want 1", n, subject)
	}
}

type lifecycleState struct {
	Status         string `json:"status"`
	PasscodeID     string `json:"passcode_id"`
	FailedAttempts int    `json:"failed_attempts"`
	Locked         bool   `json:"locked"`
	Mode           string `json:"mode"`
	Enrollments    int    `json:"enrollments"`
	MaxEnrollments int    `json:"max_enrollments"`
	Retiring       *struct {
		PasscodeID string    `json:"passcode_id"`
		Until      time.Time `json:"until"`
	} `json:"retiring"`
	LastFailedSource *struct {
		IP string `json:"ip"`
	} `json:"last_failed_source"`
	Seq uint64 `json:"seq"`
}

type lifecycleGen struct {
	Passcode string         `json:"passcode"`
	State    lifecycleState `json:"state"`
	Seq      uint64         `json:"seq"`
}

// TestLifecycleEndToEnd runs the binary on a real JetStream and checks over
// NATS and HTTP: an outdated passcode and a typo do not count, and are
// shown; ten outdated entries throttle their source; threshold-many guesses
// still lock; a cap, a grace and monitor mode, each alert exactly once.
func TestLifecycleEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir)
	admin := readAdminToken(t, dataDir)
	frontend := addTokenCmd(t, in, admin, "enrollment", "frontend")
	alerts := countAlerts(t, in.clientURL, admin)
	nc, err := nats.Connect(in.clientURL, nats.Token(frontend))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	generate := func(site string, body any) lifecycleGen {
		t.Helper()
		var g lifecycleGen
		if code, _ := in.do("POST", "/v1/sites/"+site+"/passcode", admin, body, &g); code != http.StatusCreated {
			t.Fatalf("generate %s: %d", site, code)
		}
		if !domain.ValidCheck(g.Passcode) {
			t.Fatalf("generated passcode of %s does not pass its check", site)
		}
		return g
	}
	state := func(site string, minSeq uint64) lifecycleState {
		t.Helper()
		var s lifecycleState
		if code, _ := in.do("GET", fmt.Sprintf("/v1/sites/%s/passcode?min_seq=%d", site, minSeq), admin, nil, &s); code != http.StatusOK {
			t.Fatalf("state of %s: %d", site, code)
		}
		return s
	}
	viaNATS := func(site, passcode, ip string) verdict {
		t.Helper()
		return verifyNATS(t, nc, site, map[string]any{"passcode": passcode, "source": map[string]any{"ip": ip}})
	}
	viaHTTP := func(site, passcode, ip string) (int, verdict) {
		t.Helper()
		var v verdict
		code, _ := in.do("POST", "/v1/sites/"+site+"/enrollments/verify", frontend,
			map[string]any{"passcode": passcode, "source": map[string]any{"ip": ip}}, &v)
		return code, v
	}

	t.Run("outdated and mistyped do not count; guesses still lock", func(t *testing.T) {
		const site = "lc-outdated"
		old := generate(site, nil)
		cur := generate(site, nil)
		if v := viaNATS(site, old.Passcode, "192.0.2.1"); v.Reason != "outdated" {
			t.Fatalf("old passcode over NATS: %+v, want outdated", v)
		}
		if code, v := viaHTTP(site, old.Passcode, "192.0.2.2"); code != http.StatusOK || v.Reason != "outdated" {
			t.Fatalf("old passcode over HTTP: %d %+v, want outdated", code, v)
		}
		b := []byte(cur.Passcode)
		b[5] = map[bool]byte{true: 'A', false: 'B'}[b[5] != 'A']
		if code, v := viaHTTP(site, string(b), "192.0.2.3"); code != http.StatusOK || v.Reason != "mistyped" {
			t.Fatalf("typo over HTTP: %d %+v, want mistyped", code, v)
		}
		if v := viaNATS(site, string(b), "192.0.2.4"); v.Reason != "mistyped" {
			t.Fatalf("typo over NATS: %+v, want mistyped", v)
		}
		s := state(site, cur.Seq+4)
		if s.FailedAttempts != 0 || s.LastFailedSource == nil || s.LastFailedSource.IP != "192.0.2.4" {
			t.Fatalf("state %+v, want 0 failures and the last failed source", s)
		}
		var attempts struct {
			Attempts []struct {
				Outcome            string `json:"outcome"`
				OutdatedPasscodeID string `json:"outdated_passcode_id"`
			} `json:"attempts"`
		}
		for outcome, n := range map[string]int{"outdated": 2, "mistyped": 2, "failed": 0} {
			if code, _ := in.do("GET", fmt.Sprintf("/v1/sites/%s/attempts?outcome=%s&min_seq=%d", site, outcome, cur.Seq+4), admin, nil, &attempts); code != http.StatusOK || len(attempts.Attempts) != n {
				t.Fatalf("attempts?outcome=%s: %d %+v, want %d", outcome, code, attempts, n)
			}
			for _, a := range attempts.Attempts {
				if a.Outcome != outcome || (outcome == "outdated" && a.OutdatedPasscodeID != old.State.PasscodeID) {
					t.Fatalf("attempt %+v", a)
				}
			}
		}

		// Ten outdated entries from one source: throttled after its limit (5).
		var outdated, throttled int
		for i := range 10 {
			if i%2 == 0 {
				switch v := viaNATS(site, old.Passcode, "198.51.100.9"); v.Reason {
				case "outdated":
					outdated++
				case "throttled":
					throttled++
				default:
					t.Fatalf("entry %d: %+v", i, v)
				}
				continue
			}
			switch code, v := viaHTTP(site, old.Passcode, "198.51.100.9"); {
			case code == http.StatusOK && v.Reason == "outdated":
				outdated++
			case code == http.StatusTooManyRequests && v.Reason == "throttled":
				throttled++
			default:
				t.Fatalf("entry %d: %d %+v", i, code, v)
			}
		}
		if outdated != 5 || throttled != 5 {
			t.Fatalf("%d outdated, %d throttled; want 5 and 5", outdated, throttled)
		}
		if s := state(site, 0); s.FailedAttempts != 0 {
			t.Fatalf("failed attempts %d after outdated entries, want 0", s.FailedAttempts)
		}

		// Threshold-many (10) different guesses from different sources lock.
		for i := range 10 {
			guess := domain.Guess(i, cur.Passcode, old.Passcode)
			var reason string
			if i%2 == 0 {
				reason = viaNATS(site, guess, fmt.Sprintf("203.0.113.%d", i)).Reason
			} else {
				_, v := viaHTTP(site, guess, fmt.Sprintf("203.0.113.%d", i))
				reason = v.Reason
			}
			if reason != "wrong_passcode" {
				t.Fatalf("guess %d: %s, want wrong_passcode", i, reason)
			}
		}
		if v := viaNATS(site, cur.Passcode, "192.0.2.100"); v.OK || v.Reason != "disabled" {
			t.Fatalf("right passcode after the lockout: %+v", v)
		}
		alerts.exactlyOnce(t, "enrollgate.alerts."+site+".passcode_lockout")
	})

	t.Run("a cap alerts once", func(t *testing.T) {
		const site = "lc-cap"
		g := generate(site, map[string]any{"max_enrollments": 2, "expires_in": "720h"})
		if g.State.MaxEnrollments != 2 {
			t.Fatalf("state %+v", g.State)
		}
		if v := viaNATS(site, g.Passcode, "192.0.2.1"); !v.OK {
			t.Fatalf("enrollment 1: %+v", v)
		}
		if code, v := viaHTTP(site, g.Passcode, "192.0.2.2"); code != http.StatusOK || !v.OK {
			t.Fatalf("enrollment 2: %d %+v", code, v)
		}
		if v := viaNATS(site, g.Passcode, "192.0.2.3"); v.Reason != "used_up" {
			t.Fatalf("enrollment 3: %+v, want used_up", v)
		}
		if code, v := viaHTTP(site, g.Passcode, "192.0.2.4"); code != http.StatusOK || v.Reason != "used_up" {
			t.Fatalf("enrollment 4 over HTTP: %d %+v, want used_up", code, v)
		}
		alerts.exactlyOnce(t, "enrollgate.alerts."+site+".passcode_used_up")
		if s := state(site, 0); s.Status != "used_up" || s.Enrollments != 2 {
			t.Fatalf("state %+v", s)
		}
	})

	t.Run("a grace keeps the old passcode for a while", func(t *testing.T) {
		const site = "lc-grace"
		old := generate(site, nil)
		cur := generate(site, map[string]any{"grace": "2s"})
		if cur.State.Retiring == nil || cur.State.Retiring.PasscodeID != old.State.PasscodeID {
			t.Fatalf("retiring %+v", cur.State.Retiring)
		}
		if v := viaNATS(site, old.Passcode, "192.0.2.1"); !v.OK || v.PasscodeID != old.State.PasscodeID {
			t.Fatalf("old passcode in the grace: %+v", v)
		}
		natstest.Eventually(t, 10*time.Second, func() error {
			if v := viaNATS(site, old.Passcode, "192.0.2.1"); v.Reason != "outdated" {
				return fmt.Errorf("old passcode: %+v", v)
			}
			return nil
		})
		if v := viaNATS(site, cur.Passcode, "192.0.2.1"); !v.OK {
			t.Fatalf("new passcode: %+v", v)
		}
	})

	t.Run("monitor mode alerts once, and enforce locks at once", func(t *testing.T) {
		const site = "lc-monitor"
		g := generate(site, nil)
		var res struct {
			State lifecycleState `json:"state"`
		}
		if code, _ := in.do("PUT", "/v1/sites/"+site+"/lockout-policy", admin,
			map[string]any{"max_failed_attempts": 2, "failure_window": "1h", "mode": "monitor"}, &res); code != http.StatusOK || res.State.Mode != "monitor" {
			t.Fatalf("monitor: %d %+v", code, res.State)
		}
		for i := range 4 {
			if v := viaNATS(site, domain.Guess(i, g.Passcode), fmt.Sprintf("203.0.113.%d", i)); v.Reason != "wrong_passcode" {
				t.Fatalf("guess %d: %+v", i, v)
			}
		}
		if v := viaNATS(site, g.Passcode, "192.0.2.1"); !v.OK {
			t.Fatalf("right passcode in monitor mode: %+v", v)
		}
		alerts.exactlyOnce(t, "enrollgate.alerts."+site+".passcode_lockout_simulated")
		if n := alerts.count("enrollgate.alerts." + site + ".passcode_lockout"); n != 0 {
			t.Fatalf("monitor mode raised a lockout alert")
		}
		if code, _ := in.do("PUT", "/v1/sites/"+site+"/lockout-policy", admin,
			map[string]any{"max_failed_attempts": 2, "failure_window": "1h", "mode": "enforce"}, &res); code != http.StatusOK || !res.State.Locked {
			t.Fatalf("enforce: %d %+v, want locked at once", code, res.State)
		}
		if v := viaNATS(site, g.Passcode, "192.0.2.1"); v.Reason != "disabled" {
			t.Fatalf("right passcode after enforce: %+v", v)
		}
		alerts.exactlyOnce(t, "enrollgate.alerts."+site+".passcode_lockout")
	})
}
