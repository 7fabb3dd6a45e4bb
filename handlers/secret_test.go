package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/enrollgate/enrollgate/events"
)

const plain = "Zq8Lm3Xw9Ty2"

func TestSecretNeverFormatsItsPlainText(t *testing.T) {
	s := NewSecret(plain)
	if s.Plain() != plain {
		t.Fatalf("Plain = %q", s.Plain())
	}
	res := GenerateResult{Passcode: s}
	rev := RevealResult{Passcode: s, PasscodeID: "g1"}
	cmd := VerifyPasscode{Site: "acme", Passcode: s, Source: events.Source{IP: "1.2.3.4"}}
	var outs []string
	hidden := struct{ s Secret }{s} // fmt cannot call the methods of an unexported field
	for _, verb := range []string{"%v", "%s", "%q", "%+v", "%#v", "%x", "%X", "%10s", "%-20v", "%d", "%t", "%e", "%U", "%T", "%p"} {
		for _, v := range []any{s, &s, res, &res, rev, cmd, []Secret{s}, map[string]Secret{"p": s}, map[Secret]int{s: 1}, hidden} {
			outs = append(outs, verb+": "+fmt.Sprintf(verb, v))
		}
	}
	outs = append(outs, fmt.Sprint(s), fmt.Sprintln(s, res), s.String(), s.GoString())
	// %p and an unexported field print without consulting any method, and
	// encoding/json writes string-kind map keys without MarshalText: Secret
	// holds a pointer, not a string, so that these print an address or
	// "[REDACTED]".
	for _, v := range []any{s, res, rev, cmd, map[Secret]int{s: 1}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, "json: "+string(b))
	}
	txt, _ := s.MarshalText()
	outs = append(outs, string(txt))
	inner := fmt.Errorf("check passcode %v for %s: %w", s, "acme", errors.New("boom"))
	wrapped := fmt.Errorf("verify: %w", inner)
	joined := errors.Join(wrapped, fmt.Errorf("%q", s))
	outs = append(outs, wrapped.Error(), joined.Error(), fmt.Sprintf("%+v", joined))

	for _, o := range outs {
		if strings.Contains(o, plain) || strings.Contains(o, fmt.Sprintf("%x", plain)) || strings.Contains(o, fmt.Sprintf("%X", plain)) {
			t.Errorf("plain text leaked: %s", o)
		}
	}
	for _, o := range []string{fmt.Sprint(s), fmt.Sprintf("%#v", s), wrapped.Error()} {
		if !strings.Contains(o, "[REDACTED]") {
			t.Errorf("%q does not say [REDACTED]", o)
		}
	}
}

func TestNoPlainTextInStoredEventsOrErrors(t *testing.T) {
	e := newEnv(testPolicy(2, 0, 1000))
	s := e.replica(t)
	saga := NewLockoutSaga(s)
	g := generate(t, s)
	if _, err := s.RevealPasscode(bgCtx, RevealPasscode{Site: siteID, Actor: admin}); err != nil {
		t.Fatal(err)
	}
	verifyFrom(t, s, g.Passcode, "10.0.0.1")
	verifyFrom(t, s, NewSecret("wrong"), "10.0.0.2")
	verifyFrom(t, s, NewSecret(g.Passcode.Plain()+"x"), "10.0.0.3")
	evs := e.store.events(t, siteID)
	if err := saga.Handle(bgCtx, events.Record{Event: evs[len(evs)-1]}); err != nil {
		t.Fatal(err)
	}
	if e.store.rawContains(g.Passcode.Plain()) {
		t.Fatal("the event log holds the plain-text passcode")
	}
	// An error of a verify carrying the passcode does not show it.
	_, err := s.VerifyPasscode(bgCtx, VerifyPasscode{Site: "", Passcode: g.Passcode, AttemptID: strings.Repeat("x", 200)})
	if err == nil || strings.Contains(err.Error(), g.Passcode.Plain()) {
		t.Fatalf("error %v", err)
	}
}
