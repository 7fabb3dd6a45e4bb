package verifyapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// fakeVerifier records its calls and answers with fn.
type fakeVerifier struct {
	mu    sync.Mutex
	calls []handlers.VerifyPasscode
	fn    func(ctx context.Context, cmd handlers.VerifyPasscode) (handlers.VerifyResult, error)
}

func (f *fakeVerifier) VerifyPasscode(ctx context.Context, cmd handlers.VerifyPasscode) (handlers.VerifyResult, error) {
	f.mu.Lock()
	f.calls = append(f.calls, cmd)
	f.mu.Unlock()
	return f.fn(ctx, cmd)
}

func (f *fakeVerifier) numCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// byPasscode answers like a site whose passcode is right, per site.
func byPasscode(right string) func(context.Context, handlers.VerifyPasscode) (handlers.VerifyResult, error) {
	return func(_ context.Context, cmd handlers.VerifyPasscode) (handlers.VerifyResult, error) {
		switch cmd.Site {
		case "never":
			return handlers.VerifyResult{Site: cmd.Site, Verdict: domain.Verdict{Reason: domain.ReasonNotGenerated}}, nil
		case "off":
			return handlers.VerifyResult{Site: cmd.Site, Verdict: domain.Verdict{Reason: domain.ReasonDisabled, PasscodeID: "P1"}}, nil
		case "slowdown":
			return handlers.VerifyResult{Site: cmd.Site, Verdict: domain.Verdict{Reason: domain.ReasonThrottled, PasscodeID: "P1", RetryAfter: 30 * time.Second}}, nil
		}
		if cmd.Passcode.Plain() == right {
			return handlers.VerifyResult{Site: cmd.Site, Seq: 7, Verdict: domain.Verdict{OK: true, PasscodeID: "P1"}}, nil
		}
		return handlers.VerifyResult{Site: cmd.Site, Seq: 8, Verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "P1"}}, nil
	}
}

type syncBuffer = natstest.LogBuffer

// setup starts a server, the endpoint on its own connection, and returns a
// client connection.
func setup(t *testing.T, v Verifier, cfg Config) (*nats.Conn, micro.Service, *syncBuffer) {
	t.Helper()
	s := natstest.StartServer(t)
	logs := &syncBuffer{}
	svc, err := Start(natstest.Connect(t, s), v, cfg, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return natstest.Connect(t, s), svc, logs
}

func request(t *testing.T, nc *nats.Conn, subject, body string) *nats.Msg {
	t.Helper()
	m, err := nc.Request(subject, []byte(body), 5*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	return m
}

func TestVerifyContractReplies(t *testing.T) {
	f := &fakeVerifier{fn: byPasscode("Right1234567")}
	nc, _, _ := setup(t, f, Config{})
	full := `{"passcode":"Right1234567","attempt_id":"a-1","source":{"ip":"192.0.2.7","device_id":"dev","platform":"ios","user_agent":"UA/1"}}`
	for _, c := range []struct{ subject, body, want string }{
		{"enrollgate.verify.acme", full, `{"ok":true,"site":"acme","passcode_id":"P1"}`},
		{"enrollgate.verify.acme", `{"passcode":"Wrong1234567"}`, `{"ok":false,"site":"acme","reason":"wrong_passcode"}`},
		{"enrollgate.verify.off", `{"passcode":"Right1234567"}`, `{"ok":false,"site":"off","reason":"disabled"}`},
		{"enrollgate.verify.never", `{"passcode":"Right1234567"}`, `{"ok":false,"site":"never","reason":"not_generated"}`},
		{"enrollgate.verify.slowdown", `{"passcode":"Right1234567"}`, `{"ok":false,"site":"slowdown","reason":"throttled","retry_after_seconds":30}`},
	} {
		m := request(t, nc, c.subject, c.body)
		if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
			t.Fatalf("%s: error %s %s", c.subject, code, m.Header.Get(micro.ErrorHeader))
		}
		if string(m.Data) != c.want {
			t.Errorf("%s %s:\n got %s\nwant %s", c.subject, c.body, m.Data, c.want)
		}
	}
	f.mu.Lock()
	first := f.calls[0]
	f.mu.Unlock()
	if first.Site != "acme" || first.AttemptID != "a-1" || first.Source.IP != "192.0.2.7" || first.Source.DeviceID != "dev" ||
		first.Source.Platform != "ios" || first.Source.UserAgent != "UA/1" {
		t.Fatalf("command passed to the verifier: %+v", first)
	}
}

func TestMalformedRequestsAre400AndNotAttempts(t *testing.T) {
	f := &fakeVerifier{fn: byPasscode("Right1234567")}
	nc, svc, _ := setup(t, f, Config{})
	p := "Right1234567"
	cases := map[string]struct{ subject, body string }{
		"malformed JSON": {"enrollgate.verify.acme", `{"passcode":"` + p},
		"unknown field":  {"enrollgate.verify.acme", `{"passcode":"` + p + `","pin":"1"}`},
		"wrong type":     {"enrollgate.verify.acme", `{"passcode":12345678}`},
		"wrong source":   {"enrollgate.verify.acme", `{"passcode":"` + p + `","source":[]}`},
		"empty body":     {"enrollgate.verify.acme", ``},
		"no passcode":    {"enrollgate.verify.acme", `{}`},
		"huge body":      {"enrollgate.verify.acme", `{"passcode":"` + p + `","attempt_id":"` + strings.Repeat("x", 100_000) + `"}`},
		"upper site":     {"enrollgate.verify.ACME", `{"passcode":"` + p + `"}`},
		"dash site":      {"enrollgate.verify.-acme", `{"passcode":"` + p + `"}`},
		"long site":      {"enrollgate.verify." + strings.Repeat("a", 64), `{"passcode":"` + p + `"}`},
		"two values":     {"enrollgate.verify.acme", `{"passcode":"` + p + `"}{}`},
		"multi-problem":  {"enrollgate.verify.acme", `{"passcode":"","attempt_id":"` + strings.Repeat("a", 200) + `"}`},
	}
	for name, c := range cases {
		m := request(t, nc, c.subject, c.body)
		code, desc := m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader)
		if code != "400" {
			t.Errorf("%s: code %q (%q), body %s; want 400", name, code, desc, m.Data)
			continue
		}
		if desc == "" || strings.Contains(desc, p) || strings.ContainsAny(desc, "\r\n") {
			t.Errorf("%s: description %q is empty, quotes the passcode or spans lines", name, desc)
		}
	}
	if n := f.numCalls(); n != 0 {
		t.Fatalf("the verifier was called %d times for malformed requests", n)
	}
	// A well-formed request right after still works and is counted.
	if m := request(t, nc, "enrollgate.verify.acme", `{"passcode":"`+p+`"}`); !bytes.Contains(m.Data, []byte(`"ok":true`)) {
		t.Fatalf("valid request after malformed ones: %s", m.Data)
	}
	if st := svc.Stats(); st.Endpoints[0].NumErrors != len(cases) {
		t.Fatalf("micro counted %d errors, want %d", st.Endpoints[0].NumErrors, len(cases))
	}
}

func TestVerifierErrorsMapped(t *testing.T) {
	const p = "Secret123456"
	f := &fakeVerifier{fn: func(ctx context.Context, cmd handlers.VerifyPasscode) (handlers.VerifyResult, error) {
		switch cmd.Site {
		case "invalid":
			return handlers.VerifyResult{}, fmt.Errorf("verify passcode: %w: bad", domain.ErrInvalid)
		case "busy":
			return handlers.VerifyResult{}, fmt.Errorf("site busy: %w", handlers.ErrBusy)
		case "nolog":
			return handlers.VerifyResult{}, fmt.Errorf("append: append outcome unknown: %w", handlers.ErrUnavailable)
		case "newer":
			return handlers.VerifyResult{}, fmt.Errorf("load site newer: event at seq 7: %w: unknown event type", handlers.ErrUpgradeRequired)
		case "nokey":
			return handlers.VerifyResult{}, fmt.Errorf("verify passcode: hash candidate: mac key \"mac-0badc0de\": unknown key ID: %w", handlers.ErrKeyUnavailable)
		case "natstimeout":
			return handlers.VerifyResult{}, fmt.Errorf("load site natstimeout: read last event: %w", nats.ErrTimeout)
		case "closed":
			return handlers.VerifyResult{}, fmt.Errorf("load site closed: read last event: %w", nats.ErrConnectionClosed)
		case "slowlog":
			return handlers.VerifyResult{}, fmt.Errorf("load site slowlog: read last event: %w", context.DeadlineExceeded)
		case "hang":
			<-ctx.Done()
			return handlers.VerifyResult{}, fmt.Errorf("load: %w", ctx.Err())
		default:
			return handlers.VerifyResult{}, errors.New("disk on fire")
		}
	}}
	nc, _, logs := setup(t, f, Config{Timeout: 200 * time.Millisecond})
	for site, want := range map[string]string{"invalid": "400", "busy": "503", "nolog": "503", "hang": "503", "boom": "500", "newer": "503", "nokey": "503",
		"natstimeout": "503", "closed": "503", "slowlog": "503"} {
		m := request(t, nc, "enrollgate.verify."+site, `{"passcode":"`+p+`"}`)
		if code := m.Header.Get(micro.ErrorCodeHeader); code != want {
			t.Errorf("%s: code %q, want %s", site, code, want)
		}
		if upgrade := strings.HasPrefix(m.Header.Get(micro.ErrorHeader), "upgrade_required"); upgrade != (site == "newer") {
			t.Errorf("%s: description %q", site, m.Header.Get(micro.ErrorHeader))
		}
		if nokey := strings.HasPrefix(m.Header.Get(micro.ErrorHeader), "key_unavailable"); nokey != (site == "nokey") {
			t.Errorf("%s: description %q", site, m.Header.Get(micro.ErrorHeader))
		}
		if desc := m.Header.Get(micro.ErrorHeader); strings.Contains(desc, "disk on fire") || strings.Contains(desc, p) {
			t.Errorf("%s: description %q leaks internals", site, desc)
		}
	}
	out := logs.String()
	if strings.Contains(out, p) {
		t.Fatalf("log holds the passcode: %s", out)
	}
	for _, site := range []string{"busy", "nolog", "hang", "boom", "newer", "nokey", "natstimeout", "closed", "slowlog"} {
		if n := strings.Count(out, `"site":"`+site+`"`); n != 1 {
			t.Errorf("site %s logged %d times, want once: %s", site, n, out)
		}
	}
	if strings.Contains(out, `"site":"invalid"`) {
		t.Errorf("a 400 was logged as an error: %s", out)
	}
}

func TestSitesDoNotWaitOnEachOther(t *testing.T) {
	release := make(chan struct{})
	f := &fakeVerifier{fn: func(ctx context.Context, cmd handlers.VerifyPasscode) (handlers.VerifyResult, error) {
		if cmd.Site == "slow" {
			select {
			case <-release:
			case <-ctx.Done():
				return handlers.VerifyResult{}, ctx.Err()
			}
		}
		return byPasscode("Right1234567")(ctx, cmd)
	}}
	nc, svc, _ := setup(t, f, Config{MaxPerSite: 2, Timeout: 10 * time.Second})
	slow := make([]*nats.Msg, 2)
	var wg sync.WaitGroup
	for i := range slow {
		wg.Go(func() {
			m, err := nc.Request("enrollgate.verify.slow", []byte(`{"passcode":"Right1234567"}`), 10*time.Second)
			if err == nil {
				slow[i] = m
			}
		})
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if n := f.numCalls(); n != 2 {
			return fmt.Errorf("%d slow calls started", n)
		}
		return nil
	})
	// Another site is answered while "slow" holds two workers.
	if m := request(t, nc, "enrollgate.verify.fast", `{"passcode":"Right1234567"}`); string(m.Data) != `{"ok":true,"site":"fast","passcode_id":"P1"}` {
		t.Fatalf("fast site: %s", m.Data)
	}
	// A third request for the flooded site is refused at once, uncounted.
	m := request(t, nc, "enrollgate.verify.slow", `{"passcode":"Right1234567"}`)
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "503" {
		t.Fatalf("over the per-site limit: code %q", code)
	}
	if n := f.numCalls(); n != 3 {
		t.Fatalf("%d calls, want 3 (two slow, one fast)", n)
	}
	// Stop waits for the requests in flight, which are still answered.
	stopped := make(chan error, 1)
	go func() { stopped <- svc.Stop() }()
	select {
	case <-stopped:
		t.Fatal("Stop returned with requests in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, m := range slow {
		if m == nil || string(m.Data) != `{"ok":true,"site":"slow","passcode_id":"P1"}` {
			t.Fatalf("slow request %d not answered after Stop: %v", i, m)
		}
	}
}

func TestMonitoringSubjects(t *testing.T) {
	f := &fakeVerifier{fn: byPasscode("Right1234567")}
	nc, _, _ := setup(t, f, Config{Version: "1.2.3"})
	request(t, nc, "enrollgate.verify.acme", `{"passcode":"Right1234567"}`)
	request(t, nc, "enrollgate.verify.acme", `{"passcode":`)

	var ping micro.Ping
	for _, subj := range []string{"$SRV.PING", "$SRV.PING.enrollgate"} {
		if err := json.Unmarshal(request(t, nc, subj, "").Data, &ping); err != nil {
			t.Fatal(err)
		}
		if ping.Name != ServiceName || ping.Version != "1.2.3" || ping.Type != micro.PingResponseType {
			t.Fatalf("%s: %+v", subj, ping)
		}
	}
	var info micro.Info
	if err := json.Unmarshal(request(t, nc, "$SRV.INFO.enrollgate", "").Data, &info); err != nil {
		t.Fatal(err)
	}
	if len(info.Endpoints) != 1 || info.Endpoints[0].Subject != "enrollgate.verify.*" || info.Endpoints[0].Name != EndpointName {
		t.Fatalf("info endpoints: %+v", info.Endpoints)
	}
	// A request leaves the in-flight gauge just after its reply was sent:
	// the gauge may lag the reply by a moment.
	natstest.Eventually(t, 5*time.Second, func() error {
		var stats micro.Stats
		if err := json.Unmarshal(request(t, nc, "$SRV.STATS.enrollgate."+ping.ID, "").Data, &stats); err != nil {
			return err
		}
		var own Stats
		if len(stats.Endpoints) != 1 || json.Unmarshal(stats.Endpoints[0].Data, &own) != nil {
			return fmt.Errorf("stats: %+v", stats)
		}
		if own.Verdicts != 1 || own.Malformed != 1 || own.InFlight != 0 {
			return fmt.Errorf("own stats: %+v", own)
		}
		return nil
	})
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Timeout: -1},
		{MaxConcurrent: -1},
		{MaxConcurrent: 4, MaxPerSite: 5},
	} {
		if err := c.WithDefaults().Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Fatal(err)
	}
	s := natstest.StartServer(t)
	if _, err := Start(natstest.Connect(t, s), &fakeVerifier{}, Config{Version: "not semver"}, zerolog.Nop()); err == nil {
		t.Fatal("accepted a version that is not SemVer")
	}
}
