package verifywire

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
)

func TestDecodeRequestValid(t *testing.T) {
	cmd, err := DecodeRequest("acme", []byte(`{"passcode":"Abc123def456","attempt_id":"a-1",
		"source":{"ip":"192.0.2.7","device_id":"dev-1","platform":"ios","user_agent":"UA/1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Site != "acme" || cmd.Passcode.Plain() != "Abc123def456" || cmd.AttemptID != "a-1" ||
		cmd.Source.IP != "192.0.2.7" || cmd.Source.DeviceID != "dev-1" || cmd.Source.Platform != "ios" || cmd.Source.UserAgent != "UA/1" {
		t.Fatalf("decoded %+v", cmd)
	}
	for _, body := range []string{
		`{"passcode":"x"}`,
		` {"passcode":"x","source":null} ` + "\n",
		`{"passcode":"x","attempt_id":null,"source":{}}`,
	} {
		if _, err := DecodeRequest("acme", []byte(body)); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
}

// Text that is not unsafe passes as it is: letters of any script (also
// right-to-left ones), emoji with joiners, and a passcode with a control
// character, which is only hashed and counts like any wrong candidate.
func TestDecodeRequestKeepsText(t *testing.T) {
	cmd, err := DecodeRequest("acme", []byte(`{"passcode":"Abc\u0007def","attempt_id":"tentative-été",
		"source":{"device_id":"José’s iPhone 👩‍💻","platform":"ios","user_agent":"Enroll/1.0 (עברית; العربية)"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Passcode.Plain() != "Abc\adef" || cmd.AttemptID != "tentative-été" || cmd.Source.DeviceID != "José’s iPhone 👩‍💻" ||
		cmd.Source.UserAgent != "Enroll/1.0 (עברית; العربية)" || cmd.Source.IP != "" {
		t.Fatalf("decoded %+v", cmd)
	}
}

// One address has one spelling in the command, so it is stored and
// throttled as one source however the frontend writes it.
func TestDecodeRequestNormalisesIP(t *testing.T) {
	for raw, want := range map[string]string{
		"":                        "",
		"192.0.2.7":               "192.0.2.7",
		"::ffff:192.0.2.7":        "192.0.2.7",
		"::FFFF:c000:0207":        "192.0.2.7",
		"2001:DB8::1":             "2001:db8::1",
		"2001:0db8:0000:0000::01": "2001:db8::1",
		"fe80::1%eth0":            "fe80::1",
		"::1":                     "::1",
	} {
		cmd, err := DecodeRequest("acme", []byte(`{"passcode":"x","source":{"ip":"`+raw+`"}}`))
		if err != nil {
			t.Errorf("%q: %v", raw, err)
			continue
		}
		if cmd.Source.IP != want {
			t.Errorf("%q decoded as %q, want %q", raw, cmd.Source.IP, want)
		}
	}
}

const secretPasscode = "Zq7Wv9Xk2Lm4"

func TestDecodeRequestInvalid(t *testing.T) {
	p := secretPasscode
	cases := map[string]struct {
		site       events.Site
		body, want string
	}{
		"not JSON":          {"acme", `{"passcode":"` + p + `"`, "malformed JSON"},
		"garbage":           {"acme", `passcode=` + p, "malformed JSON"},
		"empty":             {"acme", ``, "malformed JSON"},
		"array":             {"acme", `["` + p + `"]`, "must be a JSON object"},
		"string":            {"acme", `"` + p + `"`, "must be a JSON object"},
		"unknown field":     {"acme", `{"passcode":"x","` + p + `":1}`, "unknown field"},
		"case-folded field": {"acme", `{"Passcode":"` + p + `"}`, "unknown field"},
		"unknown in source": {"acme", `{"passcode":"` + p + `","source":{"mac":"x"}}`, "unknown field in source"},
		"duplicate field":   {"acme", `{"passcode":"` + p + `","passcode":"` + p + `"}`, "more than once"},
		"trailing data":     {"acme", `{"passcode":"` + p + `"}{"passcode":"x"}`, "exactly one JSON object"},
		"trailing garbage":  {"acme", `{"passcode":"` + p + `"} x`, "exactly one JSON object"},
		"number passcode":   {"acme", `{"passcode":123456789012}`, "passcode must be a string"},
		"number elsewhere":  {"acme", `{"passcode":"x","attempt_id":123456789012}`, "attempt_id must be a string"},
		"wrong source type": {"acme", `{"passcode":"` + p + `","source":"` + p + `"}`, "source must be a JSON object"},
		"wrong nested type": {"acme", `{"passcode":"` + p + `","source":{"ip":["` + p + `"]}}`, "source.ip must be a string"},
		"missing passcode":  {"acme", `{"source":{"ip":"192.0.2.1"}}`, "passcode is required"},
		"null passcode":     {"acme", `{"passcode":null}`, "passcode is required"},
		"long passcode":     {"acme", `{"passcode":"` + strings.Repeat(p, 11) + `"}`, "at most 128 bytes"},
		"long user agent":   {"acme", `{"passcode":"` + p + `","source":{"user_agent":"` + strings.Repeat("u", 600) + `"}}`, "source.user_agent"},
		"huge body":         {"acme", `{"passcode":"` + p + `","attempt_id":"` + strings.Repeat("a", MaxRequestBytes) + `"}`, "larger than 8192 bytes"},
		"bad escape":        {"acme", `{"passcode":"\q` + p + `"}`, "malformed JSON"},
		"control character": {"acme", "{\"passcode\":\"" + p + "\x01\"}", "malformed JSON"},

		"ip not an address":      {"acme", `{"passcode":"` + p + `","source":{"ip":"not-an-ip-` + p + `"}}`, "source.ip must be an IPv4 or IPv6 address"},
		"ip octet too large":     {"acme", `{"passcode":"` + p + `","source":{"ip":"999.1.1.1"}}`, "source.ip must be an IPv4 or IPv6 address"},
		"ip with spaces":         {"acme", `{"passcode":"` + p + `","source":{"ip":" 192.0.2.1"}}`, "source.ip must be an IPv4 or IPv6 address"},
		"ip with a port":         {"acme", `{"passcode":"` + p + `","source":{"ip":"192.0.2.1:443"}}`, "source.ip must be an IPv4 or IPv6 address"},
		"ip as a CIDR":           {"acme", `{"passcode":"` + p + `","source":{"ip":"192.0.2.0/24"}}`, "source.ip must be an IPv4 or IPv6 address"},
		"ip leading zeros":       {"acme", `{"passcode":"` + p + `","source":{"ip":"192.000.2.1"}}`, "source.ip must be an IPv4 or IPv6 address"},
		"ip escape":              {"acme", `{"passcode":"` + p + `","source":{"ip":"192.0.2.1\u001b"}}`, "source.ip must not hold control characters"},
		"ANSI in device_id":      {"acme", `{"passcode":"` + p + `","source":{"device_id":"\u001b[31m` + p + `"}}`, "source.device_id must not hold control characters"},
		"newline in device":      {"acme", `{"passcode":"` + p + `","source":{"device_id":"d1\nWrong passcode from 10.0.0.1"}}`, "source.device_id must not hold"},
		"tab in platform":        {"acme", `{"passcode":"` + p + `","source":{"platform":"ios\t"}}`, "source.platform must not hold"},
		"NUL in user agent":      {"acme", `{"passcode":"` + p + `","source":{"user_agent":"UA\u0000"}}`, "source.user_agent must not hold"},
		"DEL in attempt_id":      {"acme", "{\"passcode\":\"" + p + "\",\"attempt_id\":\"a\x7f\"}", "attempt_id must not hold"},
		"C1 CSI in device":       {"acme", "{\"passcode\":\"" + p + "\",\"source\":{\"device_id\":\"\\u009b31m\"}}", "source.device_id must not hold"},
		"raw C1 in device":       {"acme", "{\"passcode\":\"" + p + "\",\"source\":{\"device_id\":\"d\xc2\x85\"}}", "source.device_id must not hold"},
		"line separator":         {"acme", `{"passcode":"` + p + `","source":{"user_agent":"UA\u2028x"}}`, "source.user_agent must not hold"},
		"paragraph separator":    {"acme", `{"passcode":"` + p + `","attempt_id":"a\u2029"}`, "attempt_id must not hold"},
		"RLO override":           {"acme", `{"passcode":"` + p + `","source":{"device_id":"\u202egnp.exe"}}`, "source.device_id must not hold"},
		"RLI isolate":            {"acme", `{"passcode":"` + p + `","source":{"device_id":"\u2067x"}}`, "source.device_id must not hold"},
		"RLM mark":               {"acme", `{"passcode":"` + p + `","source":{"platform":"\u200fios"}}`, "source.platform must not hold"},
		"invalid UTF-8 device":   {"acme", "{\"passcode\":\"" + p + "\",\"source\":{\"device_id\":\"d\xff\"}}", "source.device_id must be valid UTF-8"},
		"invalid UTF-8 passcode": {"acme", "{\"passcode\":\"" + p + "\xc3\"}", "passcode must be valid UTF-8"},
		"overlong UTF-8":         {"acme", "{\"passcode\":\"" + p + "\",\"attempt_id\":\"\xc0\xaf\"}", "attempt_id must be valid UTF-8"},
		"surrogate half":         {"acme", "{\"passcode\":\"" + p + "\",\"attempt_id\":\"\xed\xa0\x80\"}", "attempt_id must be valid UTF-8"},
		"lone surrogate escape":  {"acme", `{"passcode":"` + p + `\ud800"}`, "passcode must be valid UTF-8"},
		"replacement character":  {"acme", `{"passcode":"` + p + `","source":{"user_agent":"UA\ufffd"}}`, "source.user_agent must be valid UTF-8"},
		"every field at once": {"acme", `{"passcode":"` + p + `","attempt_id":"\n","source":{"ip":"x","device_id":"\r","platform":"\u0085","user_agent":"\u202d"}}`,
			"attempt_id, source.device_id, source.platform, source.user_agent must not hold control characters, " +
				"line or paragraph separators or bidirectional formatting characters; source.ip must be an IPv4 or IPv6 address"},
		"UTF-8 and control": {"acme", "{\"passcode\":\"\xff\",\"source\":{\"ip\":\"\\u0007\",\"user_agent\":\"\xfe\"}}",
			"passcode, source.user_agent must be valid UTF-8 (no invalid byte, unpaired surrogate or U+FFFD); " +
				"source.ip must not hold control characters"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cmd, err := DecodeRequest(c.site, []byte(c.body))
			if err == nil {
				t.Fatalf("accepted: %+v", cmd)
			}
			if !errors.Is(err, domain.ErrInvalid) {
				t.Fatalf("error does not wrap domain.ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
			if strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "123456789012") {
				t.Fatalf("error quotes the input: %q", err)
			}
			if cmd.Passcode.Plain() != "" {
				t.Fatal("a refused request returned its passcode")
			}
		})
	}
}

func TestReplyFromResult(t *testing.T) {
	cases := []struct {
		res  handlers.VerifyResult
		want string
	}{
		{handlers.VerifyResult{Site: "acme", Verdict: domain.Verdict{OK: true, PasscodeID: "01HX"}},
			`{"ok":true,"site":"acme","passcode_id":"01HX"}`},
		{handlers.VerifyResult{Site: "acme", Verdict: domain.Verdict{Reason: domain.ReasonWrongPasscode, PasscodeID: "01HX"}},
			`{"ok":false,"site":"acme","reason":"wrong_passcode"}`},
		{handlers.VerifyResult{Site: "acme", Verdict: domain.Verdict{Reason: domain.ReasonDisabled, PasscodeID: "01HX"}},
			`{"ok":false,"site":"acme","reason":"disabled"}`},
		{handlers.VerifyResult{Site: "acme", Verdict: domain.Verdict{Reason: domain.ReasonNotGenerated}},
			`{"ok":false,"site":"acme","reason":"not_generated"}`},
		{handlers.VerifyResult{Site: "acme", Verdict: domain.Verdict{Reason: domain.ReasonThrottled, RetryAfter: 90*time.Second + time.Millisecond}},
			`{"ok":false,"site":"acme","reason":"throttled","retry_after_seconds":91}`},
	}
	for _, c := range cases {
		got, err := json.Marshal(ReplyFromResult(c.res))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("got %s\nwant %s", got, c.want)
		}
	}
}

// fixedText holds every fixed phrase a decode error can contain; a passcode
// that happens to be part of it is not a leak.
const fixedText = "invalid command: verify request: body is larger than bytes must hold exactly one JSON object " +
	"(data after byte offset ) unknown field in request source at byte offset ; allowed: passcode, attempt_id, " +
	"source{ip, device_id, platform, user_agent} field given more than once malformed JSON at byte offset " +
	"malformed JSON: unexpected end of input malformed JSON near byte offset must be a string an object " +
	"of another type of type malformed request must be a JSON object passcode is required " +
	"passcode must be valid UTF-8 of at most bytes attempt_id source.ip source.device_id source.platform " +
	"source.user_agent invalid site ID want 1-63 characters of a-z, 0-9 and '-', not starting with '-' " +
	"must be valid UTF-8 (no invalid byte, unpaired surrogate or U+FFFD); must not hold control characters, " +
	"line or paragraph separators or bidirectional formatting characters source.ip must be an IPv4 or IPv6 address"

func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []struct{ site, body string }{
		{"acme", `{"passcode":"Abc123def456","attempt_id":"a-1","source":{"ip":"192.0.2.7","device_id":"d","platform":"ios","user_agent":"UA"}}`},
		{"acme", `{"passcode":"Abc123def456"}`},
		{"acme", `{"passcode":"Abc123def456","source":null}`},
		{"acme", `{"passcode":"Abc123def456","Abc123def456":true}`},
		{"acme", `{"passcode":"Abc123def456","attempt_id":12345678}`},
		{"acme", `{"passcode":"Abc123def456","passcode":"Abc123def457"}`},
		{"acme", `{"PASSCODE":"Abc123def456"}`},
		{"acme", `{"passcode":"Abc123def456"} {}`},
		{"acme", `{"passcode":"Abc123def456","source":{"ip":{"x":1}}}`},
		{"acme", `{"passcode":"Abc\u0000123def456"}`},
		{"acme", "{\"passcode\":\"Abc123def456\xff\"}"},
		{"acme", `{"passcode":`},
		{"acme", `[]`},
		{"acme", `null`},
		{"acme", ``},
		{"a-b", `{"passcode":"` + strings.Repeat("x", 129) + `"}`},
		{"ACME", `{"passcode":"Abc123def456"}`},
		{"", `{"passcode":"Abc123def456"}`},
		{strings.Repeat("a", 64), `{"passcode":"Abc123def456"}`},
		{"acme", `{"passcode":"Abc123def456","source":{"ip":"::ffff:192.0.2.7"}}`},
		{"acme", `{"passcode":"Abc123def456","source":{"ip":"fe80::1%eth0","device_id":"José’s iPhone"}}`},
		{"acme", `{"passcode":"Abc123def456","source":{"ip":"999.1.1.1"}}`},
		{"acme", `{"passcode":"Abc123def456","source":{"ip":"not-an-ip"}}`},
		{"acme", `{"passcode":"Abc123def456","source":{"device_id":"\u001b[31md\nx"}}`},
		{"acme", `{"passcode":"Abc123def456","attempt_id":"a\u2028\u202e\u0085"}`},
		{"acme", `{"passcode":"Abc123def456\ud800","source":{"user_agent":"\udc00"}}`},
		{"acme", "{\"passcode\":\"Abc123def456\",\"source\":{\"platform\":\"ios\xc2\x9b\x7f\"}}"},
		{"acme", "{\"passcode\":\"Abc123def456\",\"source\":{\"device_id\":\"d\xed\xa0\x80\"}}"},
	} {
		f.Add(seed.site, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, rawSite string, body []byte) {
		// A site reaches DecodeRequest parsed at its edge.
		site, err := events.ParseSite(rawSite)
		if err != nil {
			t.Skip()
		}
		cmd, err := DecodeRequest(site, body)
		if err == nil {
			if verr := cmd.Validate(); verr != nil {
				t.Fatalf("accepted a request that does not validate: %v", verr)
			}
			if cmd.Site != site {
				t.Fatalf("site %q, want %q", cmd.Site, site)
			}
			checkAccepted(t, body, cmd)
			return
		}
		if !errors.Is(err, domain.ErrInvalid) {
			t.Fatalf("error does not wrap domain.ErrInvalid: %v", err)
		}
		// The passcode as a lenient decoder would read it (case-folded keys,
		// last duplicate wins), and every string value of the body: none
		// may appear in the message unless the site or the fixed text holds
		// it anyway.
		msg := err.Error()
		for _, s := range stringsOf(body) {
			if len(s) >= 6 && strings.Contains(msg, s) && !strings.Contains(string(site), s) && !strings.Contains(fixedText, s) {
				t.Fatalf("error quotes %q from the body: %s", s, msg)
			}
		}
	})
}

// checkAccepted asserts what every accepted request holds: a body of valid
// UTF-8, fields without U+FFFD (what invalid input decodes to), no unsafe
// character in a text field, and an IP that is empty or an address in its
// one normal spelling.
func checkAccepted(t *testing.T, body []byte, cmd handlers.VerifyPasscode) {
	t.Helper()
	if !utf8.Valid(body) {
		t.Fatalf("accepted a body that is not valid UTF-8: %q", body)
	}
	if p := cmd.Passcode.Plain(); !utf8.ValidString(p) || strings.ContainsRune(p, utf8.RuneError) {
		t.Fatal("accepted a passcode that is not valid UTF-8")
	}
	for name, v := range map[string]string{"attempt_id": cmd.AttemptID, "ip": cmd.Source.IP,
		"device_id": cmd.Source.DeviceID, "platform": cmd.Source.Platform, "user_agent": cmd.Source.UserAgent} {
		if !utf8.ValidString(v) || strings.ContainsRune(v, utf8.RuneError) {
			t.Fatalf("accepted %s %q: not valid UTF-8", name, v)
		}
		if strings.ContainsFunc(v, events.UnsafeRune) {
			t.Fatalf("accepted %s %q: holds an unsafe character", name, v)
		}
	}
	if ip := cmd.Source.IP; ip != "" {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			t.Fatalf("accepted ip %q: %v", ip, err)
		}
		if norm := addr.Unmap().WithZone("").String(); norm != ip {
			t.Fatalf("accepted ip %q, not in its normal spelling %q", ip, norm)
		}
	}
}

// stringsOf returns the strings a lenient decoder finds in body: keys and
// string values at any depth.
func stringsOf(body []byte) []string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		// Not valid JSON: fall back to the quoted runs.
		parts := strings.Split(string(body), `"`)
		var out []string
		for i := 1; i < len(parts); i += 2 {
			out = append(out, parts[i])
		}
		return out
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for k, e := range x {
				out = append(out, k)
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

func TestReplyOfTheLifecycleReasons(t *testing.T) {
	for _, reason := range []domain.Reason{domain.ReasonOutdated, domain.ReasonMistyped, domain.ReasonExpired, domain.ReasonUsedUp} {
		rep := ReplyFromResult(handlers.VerifyResult{Site: "acme", Verdict: domain.Verdict{Reason: reason, PasscodeID: "p1"}})
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"ok":false,"site":"acme","reason":"` + string(reason) + `"}`; string(b) != want {
			t.Errorf("reply %s, want %s", b, want)
		}
	}
}
