package verifywire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
)

// SubjectPrefix starts the NATS subject of a site's verify requests:
// enrollgate.verify.<site>. WARNING: frontends address it; renaming breaks
// them.
const SubjectPrefix = "enrollgate.verify."

// MaxRequestBytes bounds a verify request body. The HTTP API must read at
// most MaxRequestBytes+1 bytes and pass them to DecodeRequest, which refuses
// anything longer.
const MaxRequestBytes = 8 << 10

// Request is the verify request body of the contract.
type Request struct {
	Passcode  string     `json:"passcode"`
	AttemptID string     `json:"attempt_id,omitempty"`
	Source    SourceJSON `json:"source"`
}

// SourceJSON is where an attempt came from, as the frontend reports it.
type SourceJSON struct {
	IP        string `json:"ip,omitempty"`
	DeviceID  string `json:"device_id,omitempty"`
	Platform  string `json:"platform,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// Reply is the verdict of the contract: {"ok":true,"site":…,"passcode_id":…}
// or {"ok":false,"site":…,"reason":…}, the reason one of wrong_passcode,
// disabled, not_generated, throttled, outdated, mistyped, expired, used_up
// (domain's Reason values). RetryAfterSeconds is set only with reason
// "throttled", an optional addition to the contract. A success with the
// retiring passcode in its grace names the retiring generation.
type Reply struct {
	OK                bool   `json:"ok"`
	Site              string `json:"site"`
	PasscodeID        string `json:"passcode_id,omitempty"`
	Reason            string `json:"reason,omitempty"`
	RetryAfterSeconds int    `json:"retry_after_seconds,omitempty"`
}

// ReplyFromResult turns a verdict into its reply. A refusal carries no
// passcode ID: the contract has none, and a guesser learns nothing about
// which generation it hit.
func ReplyFromResult(r handlers.VerifyResult) Reply {
	if r.OK {
		return Reply{OK: true, Site: string(r.Site), PasscodeID: r.PasscodeID}
	}
	rep := Reply{Site: string(r.Site), Reason: string(r.Reason)}
	if r.Reason == domain.ReasonThrottled && r.RetryAfter > 0 {
		rep.RetryAfterSeconds = int(math.Ceil(r.RetryAfter.Seconds()))
	}
	return rep
}

// Fields of the request; the decoder accepts these names only, exactly
// (encoding/json alone would also take "Passcode" or "PASSCODE").
var (
	requestFields = map[string]bool{"passcode": true, "attempt_id": true, "source": true}
	sourceFields  = map[string]bool{"ip": true, "device_id": true, "platform": true, "user_agent": true}
)

const allowedFields = "passcode, attempt_id, source{ip, device_id, platform, user_agent}"

// DecodeRequest parses a verify request for site strictly: one JSON object,
// only the contract's field names (case-sensitive, each at most once), string
// values (null reads as empty), at most MaxRequestBytes; text that is valid
// UTF-8, without unsafe characters in the fields events store (checkText); a
// source.ip that is empty or an IP address, which it normalises; then the
// command's own Validate. Every error wraps domain.ErrInvalid, and none quotes
// the request: messages name fields and byte offsets, never values, so that a
// passcode typed into the wrong place is not echoed either.
func DecodeRequest(site events.Site, body []byte) (handlers.VerifyPasscode, error) {
	if len(body) > MaxRequestBytes {
		return handlers.VerifyPasscode{}, invalid("body is larger than %d bytes", MaxRequestBytes)
	}
	if err := checkShape(body); err != nil {
		return handlers.VerifyPasscode{}, err
	}
	var r Request
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return handlers.VerifyPasscode{}, describe(err)
	}
	ip, err := checkText(r)
	if err != nil {
		return handlers.VerifyPasscode{}, err
	}
	cmd := handlers.VerifyPasscode{
		Site:      site,
		Passcode:  handlers.NewSecret(r.Passcode),
		AttemptID: r.AttemptID,
		Source: events.Source{IP: ip, DeviceID: r.Source.DeviceID,
			Platform: r.Source.Platform, UserAgent: r.Source.UserAgent},
	}
	if err := cmd.Validate(); err != nil {
		return handlers.VerifyPasscode{}, fmt.Errorf("verify request: %w", err)
	}
	return cmd, nil
}

// checkText refuses text that is not valid Unicode, and unsafe characters
// (events.UnsafeRune) in the fields events store and audit lines show, and
// returns source.ip parsed (parseIP). The JSON decoder has already turned
// each invalid UTF-8 byte and each unpaired surrogate escape into U+FFFD, so
// U+FFFD itself is refused: no field silently holds something other than
// what was sent. The passcode is only hashed, never stored or shown, so only
// its encoding is checked: a candidate with a control character is an
// attempt like any other wrong one.
func checkText(r Request) (ip string, err error) {
	var notUTF8, unsafe []string
	if strings.ContainsRune(r.Passcode, utf8.RuneError) {
		notUTF8 = append(notUTF8, "passcode")
	}
	for _, f := range []struct{ name, value string }{
		{"attempt_id", r.AttemptID},
		{"source.ip", r.Source.IP},
		{"source.device_id", r.Source.DeviceID},
		{"source.platform", r.Source.Platform},
		{"source.user_agent", r.Source.UserAgent},
	} {
		switch {
		case strings.ContainsRune(f.value, utf8.RuneError):
			notUTF8 = append(notUTF8, f.name)
		case strings.ContainsFunc(f.value, events.UnsafeRune):
			unsafe = append(unsafe, f.name)
		}
	}
	var problems []string
	if len(notUTF8) > 0 {
		problems = append(problems, strings.Join(notUTF8, ", ")+" must be valid UTF-8 (no invalid byte, unpaired surrogate or U+FFFD)")
	}
	if len(unsafe) > 0 {
		problems = append(problems, strings.Join(unsafe, ", ")+
			" must not hold control characters, line or paragraph separators or bidirectional formatting characters")
	}
	if !slices.Contains(notUTF8, "source.ip") && !slices.Contains(unsafe, "source.ip") {
		var ok bool
		if ip, ok = parseIP(r.Source.IP); !ok {
			problems = append(problems, "source.ip must be an IPv4 or IPv6 address")
		}
	}
	if len(problems) > 0 {
		return "", invalid("%s", strings.Join(problems, "; "))
	}
	return ip, nil
}

// parseIP accepts an empty IP (the source is then its device ID, or
// anonymous) or an IP address, and returns the address in one spelling
// (IPv4-mapped IPv6 unmapped, zone dropped, netip's canonical text), so that
// the stored source is the one the throttle counts, however it was written.
func parseIP(raw string) (string, bool) {
	if raw == "" {
		return "", true
	}
	addr, err := netip.ParseAddr(raw)
	if err != nil { // err quotes the input: not passed on
		return "", false
	}
	return addr.Unmap().WithZone("").String(), true
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: verify request: %s", domain.ErrInvalid, fmt.Sprintf(format, args...))
}

// checkShape walks the tokens: exactly one object with known, unrepeated
// keys, and nothing after it.
func checkShape(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := checkObject(dec, "request", requestFields, false); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("body must hold exactly one JSON object (data after byte offset %d)", dec.InputOffset())
	}
	return nil
}

func checkObject(dec *json.Decoder, name string, fields map[string]bool, nullable bool) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err, dec)
	}
	if tok == nil && nullable {
		return nil
	}
	if tok != json.Delim('{') {
		return invalid("%s must be a JSON object", name)
	}
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err, dec)
		}
		key, _ := tok.(string) // inside an object, Token yields keys as strings
		if !fields[key] {
			// The unknown name is not quoted: it could be the passcode.
			return invalid("unknown field in %s at byte offset %d; allowed: %s", name, dec.InputOffset(), allowedFields)
		}
		if seen[key] {
			return invalid("field %s given more than once", qualified(name, key))
		}
		seen[key] = true
		if key == "source" {
			if err := checkObject(dec, "source", sourceFields, true); err != nil {
				return err
			}
			continue
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return syntaxError(err, dec)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return syntaxError(err, dec)
	}
	return nil
}

func qualified(object, key string) string {
	if object == "request" {
		return key
	}
	return object + "." + key
}

// syntaxError describes a tokenizer error without its text, which may quote
// a character of the input.
func syntaxError(err error, dec *json.Decoder) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalid("malformed JSON at byte offset %d", se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return invalid("malformed JSON: unexpected end of input")
	}
	return invalid("malformed JSON near byte offset %d", dec.InputOffset())
}

// describe turns a decode error into a message that names the field and the
// expected type: json's own message may quote a number from the input.
func describe(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "request"
		}
		return invalid("%s must be %s", field, kindName(te.Type))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalid("malformed JSON at byte offset %d", se.Offset)
	}
	return invalid("malformed request")
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Struct, reflect.Map:
		return "an object"
	default:
		return "of type " + t.Kind().String()
	}
}
