package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/oklog/ulid/v2"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/apierror"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
	"github.com/enrollgate/enrollgate/internal/secrets"
)

// generated is the answer of a generate.
type generated struct {
	Passcode string    `json:"passcode"`
	Seq      uint64    `json:"seq"`
	State    readState `json:"state"`
}

func (in *instance) generate(site, token string) generated {
	in.t.Helper()
	var g generated
	if code, _ := in.do("POST", "/v1/sites/"+site+"/passcode", token, nil, &g); code != http.StatusCreated {
		in.t.Fatalf("generate %s: %d", site, code)
	}
	return g
}

// tamperAlerts returns the stream sequences that the stored event_log_tampered
// alerts of site are about.
func tamperAlerts(t *testing.T, js jetstream.JetStream, site string) []uint64 {
	t.Helper()
	ctx := context.Background()
	stream, err := js.Stream(ctx, alerts.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != alerts.Subject(site, alerts.KindEventLogTampered) {
			continue
		}
		var a alerts.TamperedAlert
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Fatal(err)
		}
		if a.Type != alerts.TypeEventLogTampered || a.Data.Site != site {
			t.Fatalf("alert %s", m.Data)
		}
		out = append(out, a.Data.StreamSeq)
	}
	return out
}

// TestForgedEventsEndToEnd: messages on a site's subject that the service
// did not write (unsigned, a bad MAC, a signed event replayed onto another
// site's subject) change nothing: the right passcode verifies, a wrong one
// counts as before, regenerate works, the read model and the audit trail do
// not show them, each is dead-lettered and raises exactly one
// event_log_tampered alert, and the service stays ready.
func TestForgedEventsEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir)
	admin := readAdminToken(t, dataDir)
	acme := in.generate("acme", admin)

	// Only the service may write the event log; the test logs in as it, as
	// a compromised writer would.
	nc := connectService(t, in.natsURL)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := stream.GetMsg(ctx, acme.Seq)
	if err != nil {
		t.Fatal(err)
	}
	forge := func(subject string, hdr nats.Header, data []byte) uint64 {
		t.Helper()
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: hdr, Data: data})
		if err != nil {
			t.Fatalf("forge on %s: %v", subject, err)
		}
		return ack.Sequence
	}
	// A generation the attacker would like, as PasscodeGenerated claims it.
	fake := strings.Replace(string(stored.Data), acme.State.PasscodeID, "01JFORGED0000000000000000", 1)
	fake = strings.Replace(fake, `"id":"`+stored.Header.Get(jetstream.MsgIDHeader), `"id":"`+ulid.Make().String(), 1)
	hdr := func(mac string) nats.Header {
		h := nats.Header{}
		h.Set(events.HeaderEventType, string(events.TypePasscodeGenerated))
		h.Set(jetstream.MsgIDHeader, ulid.Make().String())
		if mac != "" {
			h.Set(events.HeaderMAC, mac)
		}
		return h
	}
	forgedAcme := []uint64{
		forge(events.Subject("acme"), hdr(""), []byte(fake)),
		forge(events.Subject("acme"), hdr(stored.Header.Get(events.HeaderMAC)), []byte(fake)), // someone else's MAC
	}
	// A generation of acme, signed with the service's own key, stored on
	// the empty site beta's subject (a copy of acme's stored event itself
	// would be dropped as its duplicate within the dedup window).
	keeper, err := secrets.Open(secrets.Config{Dir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := eventstore.OpenAuthenticator(ctx, js, keeper)
	if err != nil {
		t.Fatal(err)
	}
	copied := &nats.Msg{Subject: events.Subject("acme"), Header: hdr(""), Data: []byte(fake)}
	copied.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	if err := auth.SignMsg(copied); err != nil {
		t.Fatal(err)
	}
	forgedBeta := []uint64{forge(events.Subject("beta"), copied.Header, copied.Data)}

	// acme works as before.
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": acme.Passcode}); !v.OK || v.PasscodeID != acme.State.PasscodeID {
		t.Fatalf("right passcode after forgeries: %+v", v)
	}
	var wrong verdict
	if code, _ := in.do("POST", "/v1/sites/acme/enrollments/verify", admin, map[string]any{"passcode": domain.Guess(0, acme.Passcode)}, &wrong); code != http.StatusOK || wrong.OK {
		t.Fatalf("wrong passcode: %d %+v", code, wrong)
	}
	var st readState
	natstest.Eventually(t, 10*time.Second, func() error {
		if err := json.Unmarshal(in.get("/v1/sites/acme/passcode", admin), &st); err != nil {
			return err
		}
		if st.FailedAttempts != 1 {
			return fmt.Errorf("failed attempts %d", st.FailedAttempts)
		}
		return nil
	})
	if st.Status != "active" || st.PasscodeID != acme.State.PasscodeID {
		t.Fatalf("acme's read model after forgeries: %+v", st)
	}
	var page auditPage
	if err := json.Unmarshal(in.get("/v1/sites/acme/audit", admin), &page); err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Entries {
		if slices.Contains(forgedAcme, e.Seq) {
			t.Fatalf("the audit trail shows a forged message: %+v", e)
		}
	}
	if len(page.Entries) != 3 {
		t.Fatalf("audit trail %+v, want the generation and two attempts", page.Entries)
	}
	regen := in.generate("acme", admin)
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": regen.Passcode}); !v.OK {
		t.Fatalf("regenerated passcode: %+v", v)
	}
	// beta: the copied generation does not count; beta starts fresh.
	var none readState
	if err := json.Unmarshal(in.get("/v1/sites/beta/passcode", admin), &none); err != nil {
		t.Fatal(err)
	}
	if none.Status != "none" {
		t.Fatalf("beta after a copied event: %+v", none)
	}
	if v := verifyNATS(t, nc, "beta", map[string]any{"passcode": acme.Passcode}); v.OK || v.Reason != "not_generated" {
		t.Fatalf("acme's passcode on beta: %+v", v)
	}
	beta := in.generate("beta", admin)
	if v := verifyNATS(t, nc, "beta", map[string]any{"passcode": beta.Passcode}); !v.OK {
		t.Fatalf("beta's own passcode: %+v", v)
	}

	// One alert per forged message, and a dead letter of each.
	natstest.Eventually(t, 10*time.Second, func() error {
		// In the order the replicas raised them: any.
		if got := tamperAlerts(t, js, "acme"); !slices.Equal(slices.Sorted(slices.Values(got)), forgedAcme) {
			return fmt.Errorf("acme alerts about %v, want %v", got, forgedAcme)
		}
		if got := tamperAlerts(t, js, "beta"); !slices.Equal(slices.Sorted(slices.Values(got)), forgedBeta) {
			return fmt.Errorf("beta alerts about %v, want %v", got, forgedBeta)
		}
		return nil
	})
	dls, err := storedOn(ctx, js, consume.DefaultDeadLetterStream, consume.DefaultConfig().DeadLetterSubject(alerts.Durable))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(dls, func(m jetstream.Msg) bool {
		return m.Headers().Get(consume.HeaderOriginalSeq) == fmt.Sprint(forgedBeta[0])
	})
	if i < 0 || !strings.HasPrefix(dls[i].Headers().Get(consume.HeaderDeadLetterReason), "not authentic") {
		t.Fatalf("no dead letter of the forged message at %d among %d", forgedBeta[0], len(dls))
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if code, _, b := in.raw("GET", "/readyz", ""); code != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", code, b)
		}
		return nil
	})
	// Still one each, once everything is caught up.
	if got := tamperAlerts(t, js, "acme"); !slices.Equal(slices.Sorted(slices.Values(got)), forgedAcme) {
		t.Fatalf("acme alerts about %v, want %v", got, forgedAcme)
	}
}

// TestNewerEventTypeIsUpgradeRequired: an authentic event of a type this
// build does not know makes the site's commands answer 503
// upgrade_required over HTTP and NATS, never 500; other sites still work.
func TestNewerEventTypeIsUpgradeRequired(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir)
	admin := readAdminToken(t, dataDir)
	gamma := in.generate("gamma", admin)
	acme := in.generate("acme", admin)

	nc := connectService(t, in.natsURL)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A newer version of the service shares the keys and signs its events.
	keeper, err := secrets.Open(secrets.Config{Dir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := eventstore.OpenAuthenticator(ctx, js, keeper)
	if err != nil {
		t.Fatal(err)
	}
	data := fmt.Sprintf(`{"id":%q,"type":"PasscodeFrobnicated","site":"gamma","occurred_at":%q,"actor":{"kind":"system","id":"expiry"},"data":{"passcode_id":%q}}`,
		ulid.Make().String(), time.Now().UTC().Format(time.RFC3339Nano), gamma.State.PasscodeID)
	msg := &nats.Msg{Subject: events.Subject("gamma"), Data: []byte(data), Header: nats.Header{}}
	msg.Header.Set(events.HeaderEventType, "PasscodeFrobnicated")
	msg.Header.Set(jetstream.MsgIDHeader, ulid.Make().String())
	if err := auth.SignMsg(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}

	in.wantStatus("POST", "/v1/sites/gamma/passcode/disable", admin, http.StatusServiceUnavailable, apierror.CodeUpgradeRequired)
	var p struct {
		Code string `json:"code"`
	}
	if code, _ := in.do("POST", "/v1/sites/gamma/enrollments/verify", admin, map[string]any{"passcode": gamma.Passcode}, &p); code != http.StatusServiceUnavailable || p.Code != apierror.CodeUpgradeRequired {
		t.Fatalf("HTTP verify on gamma: %d %q, want 503 upgrade_required", code, p.Code)
	}
	b, _ := json.Marshal(map[string]any{"passcode": gamma.Passcode})
	reply, err := nc.Request("enrollgate.verify.gamma", b, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code, desc := reply.Header.Get(micro.ErrorCodeHeader), reply.Header.Get(micro.ErrorHeader); code != "503" || !strings.HasPrefix(desc, "upgrade_required") {
		t.Fatalf("NATS verify on gamma: code %q %q, want 503 upgrade_required", code, desc)
	}
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": acme.Passcode}); !v.OK {
		t.Fatalf("another site after gamma's newer event: %+v", v)
	}
	// The read model holds at the newer event rather than skip it: not ready.
	natstest.Eventually(t, 10*time.Second, func() error {
		if code, _, b := in.raw("GET", "/readyz", ""); code != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d: %s", code, b)
		}
		return nil
	})
}
