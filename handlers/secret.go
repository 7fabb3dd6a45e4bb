package handlers

import (
	"fmt"
	"io"
	"strconv"
)

// Secret is a passcode in plain text. It formats as "[REDACTED]" with every
// fmt verb and in JSON (as a value and as a map key), so that a passcode that
// slips into a log line or an error stays hidden; Plain is the one deliberate
// way to read it. It holds a pointer, not a string: fmt's error text for a
// verb it cannot apply (%p) and encoding/json's string-kind map keys read a
// string-kind value directly, past every method; a pointer prints as an
// address. The zero Secret is the empty passcode.
type Secret struct{ p *string }

const redacted = "[REDACTED]"

// NewSecret wraps a plain-text passcode.
func NewSecret(plain string) Secret { return Secret{p: &plain} }

// Plain returns the plain text. Call it only to put the passcode into the
// generate and reveal responses, or to hash or seal it.
func (s Secret) Plain() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// Format implements fmt.Formatter. Without it a verb that does not fit a
// string (%d, %t, …) makes fmt print the raw value inside its %!d(…) error
// text, bypassing String.
func (Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		_, _ = io.WriteString(f, strconv.Quote(redacted))
		return
	}
	_, _ = io.WriteString(f, redacted)
}

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return redacted }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
