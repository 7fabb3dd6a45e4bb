package handlers

import (
	"fmt"
	"io"
	"strconv"
)

// Secret is a passcode in plain text. It formats as "[REDACTED]" with every
// fmt verb and in JSON, so that a passcode that slips into a log line or an
// error stays hidden; Plain is the one deliberate way to read it.
type Secret string

const redacted = "[REDACTED]"

// Plain returns the plain text. Call it only to put the passcode into the
// generate and reveal responses, or to hash or seal it.
func (s Secret) Plain() string { return string(s) }

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
