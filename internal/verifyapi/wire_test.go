package verifyapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
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

const secretPasscode = "Zq7Wv9Xk2Lm4"

func TestDecodeRequestInvalid(t *testing.T) {
	p := secretPasscode
	cases := map[string]struct {
		site, body, want string
	}{
		"not JSON":           {"acme", `{"passcode":"` + p + `"`, "malformed JSON"},
		"garbage":            {"acme", `passcode=` + p, "malformed JSON"},
		"empty":              {"acme", ``, "malformed JSON"},
		"array":              {"acme", `["` + p + `"]`, "must be a JSON object"},
		"string":             {"acme", `"` + p + `"`, "must be a JSON object"},
		"unknown field":      {"acme", `{"passcode":"x","` + p + `":1}`, "unknown field"},
		"case-folded field":  {"acme", `{"Passcode":"` + p + `"}`, "unknown field"},
		"unknown in source":  {"acme", `{"passcode":"` + p + `","source":{"mac":"x"}}`, "unknown field in source"},
		"duplicate field":    {"acme", `{"passcode":"` + p + `","passcode":"` + p + `"}`, "more than once"},
		"trailing data":      {"acme", `{"passcode":"` + p + `"}{"passcode":"x"}`, "exactly one JSON object"},
		"trailing garbage":   {"acme", `{"passcode":"` + p + `"} x`, "exactly one JSON object"},
		"number passcode":    {"acme", `{"passcode":123456789012}`, "passcode must be a string"},
		"number elsewhere":   {"acme", `{"passcode":"x","attempt_id":123456789012}`, "attempt_id must be a string"},
		"wrong source type":  {"acme", `{"passcode":"` + p + `","source":"` + p + `"}`, "source must be a JSON object"},
		"wrong nested type":  {"acme", `{"passcode":"` + p + `","source":{"ip":["` + p + `"]}}`, "source.ip must be a string"},
		"missing passcode":   {"acme", `{"source":{"ip":"192.0.2.1"}}`, "passcode is required"},
		"null passcode":      {"acme", `{"passcode":null}`, "passcode is required"},
		"long passcode":      {"acme", `{"passcode":"` + strings.Repeat(p, 11) + `"}`, "at most 128 bytes"},
		"long user agent":    {"acme", `{"passcode":"` + p + `","source":{"user_agent":"` + strings.Repeat("u", 600) + `"}}`, "source.user_agent"},
		"huge body":          {"acme", `{"passcode":"` + p + `","attempt_id":"` + strings.Repeat("a", MaxRequestBytes) + `"}`, "larger than 8192 bytes"},
		"invalid site":       {"ACME", `{"passcode":"` + p + `"}`, "invalid site ID"},
		"bad escape":         {"acme", `{"passcode":"\q` + p + `"}`, "malformed JSON"},
		"control character":  {"acme", "{\"passcode\":\"" + p + "\x01\"}", "malformed JSON"},
		"invalid UTF-8 site": {"ac\xffme", `{"passcode":"` + p + `"}`, "invalid site ID"},
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
	"source.user_agent invalid site ID want 1-63 characters of a-z, 0-9 and '-', not starting with '-'"

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
	} {
		f.Add(seed.site, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, site string, body []byte) {
		cmd, err := DecodeRequest(site, body)
		if err == nil {
			if verr := cmd.Validate(); verr != nil {
				t.Fatalf("accepted a request that does not validate: %v", verr)
			}
			if cmd.Site != site {
				t.Fatalf("site %q, want %q", cmd.Site, site)
			}
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
			if len(s) >= 6 && strings.Contains(msg, s) && !strings.Contains(site, s) && !strings.Contains(fixedText, s) {
				t.Fatalf("error quotes %q from the body: %s", s, msg)
			}
		}
	})
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
