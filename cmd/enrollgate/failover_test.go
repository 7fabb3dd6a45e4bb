package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// failoverBound is the contract (DESIGN "Replicas"): a lockout's disable and
// alert follow the N-th failure within this even when the replica that was
// handling them is SIGKILLed.
const failoverBound = 5 * time.Second

// process is `enrollgate serve` running as a process of its own, so that a
// test can SIGKILL it.
type process struct {
	*instance
	cmd *exec.Cmd
	log *syncBuffer
}

// buildBinary builds this command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "enrollgate")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProcess runs the binary's serve on a random HTTP port with dataDir
// and waits until it logs that it is ready. The test's cleanup kills it.
func startProcess(t *testing.T, bin, dataDir string, flags ...string) *process {
	t.Helper()
	args := append([]string{"serve", "--data-dir", dataDir, "--http", "127.0.0.1:0",
		"--log-format", "json", "--log-level", "info"}, flags...)
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ENROLLGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p := &process{instance: &instance{t: t}, cmd: cmd, log: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("log of %s:\n%s", dataDir, p.log.String())
		}
	})
	natstest.Eventually(t, 30*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("enrollgate exited at start:\n%s", p.log.String())
		default:
		}
		for _, line := range strings.Split(p.log.String(), "\n") {
			var rec struct {
				Message  string `json:"message"`
				HTTPAddr string `json:"http_addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Message == "enrollgate ready" {
				p.httpAddr = rec.HTTPAddr
				return nil
			}
		}
		return fmt.Errorf("not ready yet")
	})
	return p
}

func (p *process) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// pulling waits until a process pulls from the durable.
func pulling(t *testing.T, js jetstream.JetStream, durable string) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() error {
		c, err := js.Consumer(context.Background(), eventstore.StreamName, durable)
		if err != nil {
			return err
		}
		if c.CachedInfo().NumWaiting == 0 {
			return fmt.Errorf("nobody pulls from %s", durable)
		}
		return nil
	})
}

// storedOn returns the messages of stream on subject, oldest first.
func storedOn(ctx context.Context, js jetstream.JetStream, stream, subject string) ([]jetstream.Msg, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, err
	}
	// An empty subject would make the fetch wait for its whole timeout.
	if _, err := s.GetLastMsgForSubject(ctx, subject); errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []jetstream.Msg
	for {
		batch, err := c.Fetch(100, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if len(out) == 0 {
			return nil, errors.New("nothing fetched from a subject that is not empty")
		}
		last, err := out[len(out)-1].Metadata()
		if err != nil {
			return nil, err
		}
		if last.NumPending == 0 {
			return out, nil
		}
	}
}

// TestLockoutFailoverAfterSIGKILL runs two replicas as processes on one
// JetStream, both pulling from the lockout saga's and the alert publisher's
// shared durables. The N-th failure is sent to B while A is frozen, with
// its pull requests outstanding, so that the event may reach A and stay
// unhandled there; A is SIGKILLed right after the verdict. B must store the
// disable and the alert within failoverBound of the verdict, one of each.
func TestLockoutFailoverAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs replicas as processes")
	}
	const threshold = 4
	bin := buildBinary(t)
	s := natstest.StartServer(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	const admin, enrollment = "failover-test-admin-token-0123", "failover-test-enrollment-token-0123"
	flags := []string{"--nats-url", s.ClientURL(), "--admin-token", admin, "--enrollment-token", enrollment,
		"--mac-key", randomKey(t), "--seal-key", randomKey(t), "--max-failed-attempts", fmt.Sprint(threshold)}
	a := startProcess(t, bin, t.TempDir(), flags...)

	var gen struct {
		Passcode string `json:"passcode"`
	}
	if code, _ := a.do("POST", "/v1/sites/acme/passcode", admin, nil, &gen); code != http.StatusCreated {
		t.Fatalf("generate: %d", code)
	}
	for _, d := range []string{handlers.LockoutSagaDurable, alerts.Durable} {
		pulling(t, js, d)
	}
	b := startProcess(t, bin, t.TempDir(), flags...)

	verify := func(p *process, i int) {
		t.Helper()
		var v verdict
		req := map[string]any{"passcode": "wrong-guess-" + fmt.Sprint(i), "source": map[string]any{"ip": fmt.Sprintf("192.0.2.%d", i+1)}}
		if code, _ := p.do("POST", "/v1/sites/acme/enrollments/verify", enrollment, req, &v); code != http.StatusOK || v.OK || v.Reason != "wrong_passcode" {
			t.Fatalf("failure %d: %d %+v", i+1, code, v)
		}
	}
	for i := range threshold - 1 {
		verify([]*process{a, b}[i%2], i)
	}
	a.signal(syscall.SIGSTOP)
	verify(b, threshold-1)
	verdictAt := time.Now()
	a.signal(syscall.SIGKILL)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var disabledAt, alertedAt time.Time
	natstest.Eventually(t, 20*time.Second, func() error {
		if disabledAt.IsZero() {
			ms, err := storedOn(ctx, js, eventstore.StreamName, events.Subject("acme"))
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.Headers().Get(events.HeaderEventType) == string(events.TypePasscodeDisabled) {
					md, _ := m.Metadata()
					disabledAt = md.Timestamp
				}
			}
		}
		if alertedAt.IsZero() {
			ms, err := storedOn(ctx, js, alerts.StreamName, alerts.Subject("acme", alerts.KindPasscodeLockout))
			if err != nil {
				return err
			}
			if len(ms) > 0 {
				md, _ := ms[0].Metadata()
				alertedAt = md.Timestamp
			}
		}
		if disabledAt.IsZero() || alertedAt.IsZero() {
			return fmt.Errorf("disabled at %v, alerted at %v", disabledAt, alertedAt)
		}
		return nil
	})
	toDisable, toAlert := disabledAt.Sub(verdictAt), alertedAt.Sub(verdictAt)
	t.Logf("after a SIGKILL of the frozen replica: disable %s, alert %s after the N-th failure's verdict",
		toDisable.Round(time.Millisecond), toAlert.Round(time.Millisecond))
	if toDisable > failoverBound || toAlert > failoverBound {
		t.Errorf("disable %s, alert %s after the verdict; want both within %s", toDisable, toAlert, failoverBound)
	}

	// One of each, also once what A held has been redelivered and handled.
	time.Sleep(time.Second)
	ms, err := storedOn(ctx, js, eventstore.StreamName, events.Subject("acme"))
	if err != nil {
		t.Fatal(err)
	}
	disables := 0
	for _, m := range ms {
		if m.Headers().Get(events.HeaderEventType) == string(events.TypePasscodeDisabled) {
			disables++
		}
	}
	as, err := storedOn(ctx, js, alerts.StreamName, alerts.Subject("acme", alerts.KindPasscodeLockout))
	if err != nil {
		t.Fatal(err)
	}
	if disables != 1 || len(as) != 1 {
		t.Fatalf("%d disables and %d alerts, want one of each", disables, len(as))
	}
	// The survivor has caught up: ready.
	natstest.Eventually(t, 10*time.Second, func() error {
		if code, _ := b.do("GET", "/readyz", "", nil, nil); code != http.StatusOK {
			return fmt.Errorf("replica B not ready: %d", code)
		}
		return nil
	})
}

// sharedLag is how late the lockout saga or the alert publisher may be
// before /readyz reports it: the service's bound (internal/app).
const sharedLag = 10 * time.Second

// TestReadyzReportsALateAlertPublisher: when lockout alerts cannot be
// stored (here the alert stream no longer takes their subjects), /readyz
// stays 200 for sharedLag after the disable, so that a failover under way
// does not make the replicas unready, then answers 503 naming the alert
// publisher and how late it is, and 200 again once the alert is out.
func TestReadyzReportsALateAlertPublisher(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the readiness bound")
	}
	const admin, enrollment = "readyz-test-admin-token-0123", "readyz-test-enrollment-token-0123"
	in := startInstance(t, t.TempDir(), "--admin-token", admin, "--enrollment-token", enrollment, "--max-failed-attempts", "2")
	in.generate("acme", admin)
	js, err := jetstream.New(connectService(t, in.natsURL))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	broken := alerts.StreamConfig(1)
	broken.Subjects = []string{"enrollgate.alerts-misconfigured.>"}
	if _, err := js.UpdateStream(ctx, broken); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		var v verdict
		req := map[string]any{"passcode": fmt.Sprintf("wrong-guess-%d", i), "source": map[string]any{"ip": fmt.Sprintf("192.0.2.%d", i+1)}}
		if code, _ := in.do("POST", "/v1/sites/acme/enrollments/verify", enrollment, req, &v); code != http.StatusOK || v.OK {
			t.Fatalf("failure %d: %d %+v", i+1, code, v)
		}
	}
	var st struct {
		Status     string    `json:"status"`
		DisabledAt time.Time `json:"disabled_at"`
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if code, _ := in.do("GET", "/v1/sites/acme/passcode", admin, nil, &st); code != http.StatusOK || st.Status != "disabled" {
			return fmt.Errorf("state %d %+v", code, st)
		}
		return nil
	})
	var detail string
	natstest.Eventually(t, sharedLag+10*time.Second, func() error {
		code, _, b := in.raw("GET", "/readyz", "")
		if code == http.StatusOK {
			return errors.New("still ready")
		}
		var p struct {
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(b, &p)
		if !strings.Contains(p.Detail, alerts.Durable) {
			// Another reason, e.g. the read model a moment behind the
			// disable: not what this test is about.
			return fmt.Errorf("not ready for another reason: %s", p.Detail)
		}
		if since := time.Since(st.DisabledAt); since < sharedLag-time.Second {
			t.Fatalf("not ready %s after the disable, before the bound %s: %d %s", since, sharedLag, code, b)
		}
		detail = p.Detail
		return nil
	})
	if !strings.Contains(detail, alerts.Durable) || !strings.Contains(detail, "1 events behind") {
		t.Fatalf("readyz detail %q does not name the late alert publisher and its backlog", detail)
	}
	t.Logf("readyz: %s", detail)
	if _, err := js.UpdateStream(ctx, alerts.StreamConfig(1)); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 40*time.Second, func() error {
		if code, _, b := in.raw("GET", "/readyz", ""); code != http.StatusOK {
			return fmt.Errorf("not ready: %d %s", code, b)
		}
		return nil
	})
}
