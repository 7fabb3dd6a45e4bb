package verifyapi

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/internal/servicetest"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/natstest"
	"github.com/enrollgate/enrollgate/internal/verifywire"
)

// TestWithRealService runs the endpoint on handlers.Service, the JetStream
// event store and the secrets keeper: a verdict is answered after its event
// is stored, and a malformed request stores nothing.
func TestWithRealService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := natstest.StartServer(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	svc, store := servicetest.New(t, js)
	logs := &syncBuffer{}
	ms, err := Start(natstest.Connect(t, s), svc, Config{}, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ms.Stop() })
	nc := natstest.Connect(t, s)

	var rep verifywire.Reply
	if err := json.Unmarshal(request(t, nc, "enrollgate.verify.acme", `{"passcode":"Abc123def456"}`).Data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep != (verifywire.Reply{Site: "acme", Reason: "not_generated"}) {
		t.Fatalf("before generation: %+v", rep)
	}

	gen, err := svc.GeneratePasscode(ctx, handlers.GeneratePasscode{Site: "acme",
		Actor: events.Actor{Kind: events.ActorAdmin, ID: "alice@acme.example"}})
	if err != nil {
		t.Fatal(err)
	}
	passcodeID := gen.State.PasscodeID
	right := gen.Passcode.Plain()

	m := request(t, nc, "enrollgate.verify.acme", `{"passcode":"`+right+`","attempt_id":"a1","source":{"ip":"192.0.2.1","device_id":"d1","platform":"ios"}}`)
	if want := `{"ok":true,"site":"acme","passcode_id":"` + passcodeID + `"}`; string(m.Data) != want {
		t.Fatalf("right passcode:\n got %s\nwant %s", m.Data, want)
	}
	afterOK, err := store.LastSeq(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if afterOK <= gen.Seq {
		t.Fatalf("the success was not stored before the reply (last seq %d, generated at %d)", afterOK, gen.Seq)
	}

	wrong := domain.Guess(0, right) // passes the check: a guess, not a typo
	m = request(t, nc, "enrollgate.verify.acme", `{"passcode":"`+wrong+`","source":{"ip":"192.0.2.2"}}`)
	if want := `{"ok":false,"site":"acme","reason":"wrong_passcode"}`; string(m.Data) != want {
		t.Fatalf("wrong passcode:\n got %s\nwant %s", m.Data, want)
	}
	afterFail, _ := store.LastSeq(ctx, "acme")
	if afterFail <= afterOK {
		t.Fatal("the failure was not stored")
	}

	// Malformed: 400, and nothing stored.
	for _, body := range []string{`{"passcode":"` + right + `","x":1}`, `{"passcode":` + `1}`, `not json`} {
		m = request(t, nc, "enrollgate.verify.acme", body)
		if code := m.Header.Get(micro.ErrorCodeHeader); code != "400" {
			t.Fatalf("%s: code %q", body, code)
		}
	}
	if last, _ := store.LastSeq(ctx, "acme"); last != afterFail {
		t.Fatalf("a malformed request stored an event (last seq %d, was %d)", last, afterFail)
	}
	// No passcode in any stored event or log line.
	recs, err := store.Load(ctx, "acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		data, _ := events.Encode(r.Event)
		if strings.Contains(string(data), right) || strings.Contains(string(data), wrong) {
			t.Fatalf("event %d holds a passcode in plain text", r.Seq)
		}
	}
	if out := logs.String(); strings.Contains(out, right) || strings.Contains(out, wrong) {
		t.Fatalf("log holds a passcode: %s", out)
	}
}

// TestInputThatIsNotAnAttempt sends requests that carry a candidate but whose
// other fields are not what a frontend can mean: each is a micro 400 naming
// the field, and the stream holds no new event after it (invariant 6), even
// when the candidate is the right passcode.
func TestInputThatIsNotAnAttempt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := natstest.StartServer(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	svc, store := servicetest.New(t, js)
	logs := &syncBuffer{}
	ms, err := Start(natstest.Connect(t, s), svc, Config{}, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ms.Stop() })
	nc := natstest.Connect(t, s)
	gen, err := svc.GeneratePasscode(ctx, handlers.GeneratePasscode{Site: "acme",
		Actor: events.Actor{Kind: events.ActorAdmin, ID: "alice@acme.example"}})
	if err != nil {
		t.Fatal(err)
	}
	right := gen.Passcode.Plain()
	wrong := domain.Guess(0, right) // passes the check: a guess, not a typo
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 {
		t.Helper()
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	before := stored()

	for _, c := range []struct{ name, body, field, value string }{
		{"not an IP", `{"passcode":"` + wrong + `","source":{"ip":"not-an-ip"}}`, "source.ip", "not-an-ip"},
		{"octet over 255", `{"passcode":"` + wrong + `","source":{"ip":"999.1.1.1"}}`, "source.ip", "999.1.1.1"},
		{"right passcode, bad IP", `{"passcode":"` + right + `","source":{"ip":"192.0.2.1:80"}}`, "source.ip", "192.0.2.1:80"},
		{"ANSI and newline", `{"passcode":"` + wrong + `","source":{"device_id":"\u001b[2K\rdev\nforged"}}`, "source.device_id", "forged"},
		{"C1 control", `{"passcode":"` + wrong + `","source":{"platform":"ios\u009b"}}`, "source.platform", "ios"},
		{"line separator", `{"passcode":"` + wrong + `","source":{"user_agent":"UA\u2028forged"}}`, "source.user_agent", "forged"},
		{"bidi override", `{"passcode":"` + wrong + `","attempt_id":"a\u202eforged"}`, "attempt_id", "forged"},
		{"invalid UTF-8 passcode", "{\"passcode\":\"" + wrong + "\xff\"}", "passcode", wrong},
		{"invalid UTF-8 device", "{\"passcode\":\"" + wrong + "\",\"source\":{\"device_id\":\"kiosk7\xc0\xaf\"}}", "source.device_id", "kiosk7"},
		{"lone surrogate", `{"passcode":"` + wrong + `\udfff"}`, "passcode", wrong},
	} {
		m := request(t, nc, "enrollgate.verify.acme", c.body)
		code, desc := m.Header.Get(micro.ErrorCodeHeader), m.Header.Get(micro.ErrorHeader)
		if code != "400" || !strings.Contains(desc, c.field+" must") {
			t.Errorf("%s: code %q, description %q; want 400 naming %s", c.name, code, desc, c.field)
		}
		if strings.Contains(desc, c.value) || strings.Contains(desc, right) {
			t.Errorf("%s: description %q quotes the request", c.name, desc)
		}
		if n := stored(); n != before {
			t.Fatalf("%s: the stream holds %d events, was %d: counted as an attempt", c.name, n, before)
		}
	}

	// A well-formed attempt is counted, under its IP's one spelling.
	m := request(t, nc, "enrollgate.verify.acme", `{"passcode":"`+wrong+`","source":{"ip":"::FFFF:192.0.2.9"}}`)
	if want := `{"ok":false,"site":"acme","reason":"wrong_passcode"}`; string(m.Data) != want {
		t.Fatalf("good request: got %s %v, want %s", m.Data, m.Header, want)
	}
	recs, err := store.Load(ctx, "acme", gen.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || stored() != before+1 {
		t.Fatalf("%d events after the good request, want 1", len(recs))
	}
	if f, ok := recs[0].Event.Data.(events.EnrollmentAttemptFailed); !ok || f.Source.IP != "192.0.2.9" {
		t.Fatalf("stored %+v, want a failure from 192.0.2.9", recs[0].Event.Data)
	}
	if out := logs.String(); strings.Contains(out, "forged") || strings.Contains(out, right) || strings.Contains(out, wrong) {
		t.Fatalf("the log quotes a request: %s", out)
	}
}
