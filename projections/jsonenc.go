package projections

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/enrollgate/enrollgate/events"
)

// Hand-written JSON encoding of audit entries. A rebuild writes one audit
// entry per event, and reflection-based encoding/json was a third of its
// cost; these functions write the same JSON (decodable by encoding/json into
// the same values) several times faster.

// object appends the members of one JSON object.
type object struct {
	b     []byte
	first bool
}

func beginObject(b []byte) object { return object{b: append(b, '{'), first: true} }

func (o *object) key(k string) {
	if !o.first {
		o.b = append(o.b, ',')
	}
	o.first = false
	o.b = append(o.b, '"')
	o.b = append(o.b, k...) // keys are constants without characters to escape
	o.b = append(o.b, '"', ':')
}

func (o *object) str(k, v string) {
	o.key(k)
	o.b = appendString(o.b, v)
}

func (o *object) strOmitEmpty(k, v string) {
	if v != "" {
		o.str(k, v)
	}
}

func (o *object) int(k string, v int64) {
	o.key(k)
	o.b = strconv.AppendInt(o.b, v, 10)
}

func (o *object) uint(k string, v uint64) {
	o.key(k)
	o.b = strconv.AppendUint(o.b, v, 10)
}

func (o *object) time(k string, t time.Time) {
	o.key(k)
	o.b = appendTime(o.b, t)
}

func (o *object) source(k string, s events.Source) {
	o.key(k)
	o.b = appendSource(o.b, s)
}

func (o *object) raw(k string, v []byte) {
	o.key(k)
	o.b = append(o.b, v...)
}

func (o *object) end() []byte { return append(o.b, '}') }

func appendSource(b []byte, s events.Source) []byte {
	o := beginObject(b)
	o.strOmitEmpty("ip", s.IP)
	o.strOmitEmpty("device_id", s.DeviceID)
	o.strOmitEmpty("platform", s.Platform)
	o.strOmitEmpty("user_agent", s.UserAgent)
	return o.end()
}

// appendTime writes t as encoding/json does (RFC 3339 with nanoseconds).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// with encoding/json.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendJSON appends the entry as a JSON object: the same members as
// encoding/json writes for AuditEntry.
func (a AuditEntry) AppendJSON(b []byte) []byte {
	o := beginObject(b)
	o.uint("seq", a.Seq)
	o.str("id", a.ID)
	o.str("type", string(a.Type))
	o.time("at", a.At)
	o.key("actor")
	ao := beginObject(o.b)
	ao.str("kind", string(a.Actor.Kind))
	ao.str("id", a.Actor.ID)
	o.b = ao.end()
	o.str("summary", a.Summary)
	details := a.Details
	if len(details) == 0 {
		details = []byte("{}")
	}
	o.raw("details", details)
	return o.end()
}
