package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
)

// ErrUnknownType is returned when decoding an event whose type this version
// does not know.
var ErrUnknownType = errors.New("unknown event type")

// ErrMalformed is returned when an event cannot be decoded.
var ErrMalformed = errors.New("malformed event")

// envelope is the JSON form of an Event.
type envelope struct {
	ID         string          `json:"id"`
	Type       Type            `json:"type"`
	Site       string          `json:"site"`
	OccurredAt time.Time       `json:"occurred_at"`
	Actor      Actor           `json:"actor"`
	Data       json.RawMessage `json:"data"`
}

// Encode returns the JSON envelope of e. OccurredAt is written in UTC with
// nanoseconds (RFC 3339).
func Encode(e Event) ([]byte, error) {
	if e.Data == nil {
		return nil, fmt.Errorf("encode event %s: no data", e.ID)
	}
	data, err := json.Marshal(e.Data)
	if err != nil {
		return nil, fmt.Errorf("encode %s data: %w", e.Type(), err)
	}
	b, err := json.Marshal(envelope{
		ID: e.ID, Type: e.Type(), Site: string(e.Site), OccurredAt: e.OccurredAt.UTC(), Actor: e.Actor, Data: data,
	})
	if err != nil {
		return nil, fmt.Errorf("encode %s envelope: %w", e.Type(), err)
	}
	return b, nil
}

// Decode parses a JSON envelope. It never panics: malformed input yields an
// error wrapping ErrMalformed, an unknown type one wrapping ErrUnknownType.
func Decode(b []byte) (Event, error) {
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return Event{}, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	if _, err := ulid.ParseStrict(env.ID); err != nil {
		return Event{}, fmt.Errorf("%w: id %q is not a ULID", ErrMalformed, env.ID)
	}
	site, err := ParseSite(env.Site)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if env.OccurredAt.IsZero() {
		return Event{}, fmt.Errorf("%w: event %s has no occurred_at", ErrMalformed, env.ID)
	}
	// Encode writes UTC, and JSON times are limited to years 0-9999: an
	// offset that moves the instant out of that range would decode here and
	// then fail to encode again.
	if y := env.OccurredAt.UTC().Year(); y < 0 || y > 9999 {
		return Event{}, fmt.Errorf("%w: event %s occurred_at is out of range", ErrMalformed, env.ID)
	}
	p, err := newPayload(env.Type)
	if err != nil {
		return Event{}, fmt.Errorf("event %s: %w", env.ID, err)
	}
	if len(env.Data) == 0 || bytes.Equal(env.Data, []byte("null")) {
		return Event{}, fmt.Errorf("%w: event %s has no data", ErrMalformed, env.ID)
	}
	if err := json.Unmarshal(env.Data, p); err != nil {
		return Event{}, fmt.Errorf("%w: %s %s data: %v", ErrMalformed, env.Type, env.ID, err)
	}
	return Event{
		ID: env.ID, Site: site, OccurredAt: env.OccurredAt, Actor: env.Actor,
		Data: deref(p),
	}, nil
}

// newPayload returns a pointer to a zero payload of type t.
func newPayload(t Type) (any, error) {
	switch t {
	case TypePasscodeGenerated:
		return &PasscodeGenerated{}, nil
	case TypePasscodeRevealed:
		return &PasscodeRevealed{}, nil
	case TypePasscodeDisabled:
		return &PasscodeDisabled{}, nil
	case TypeEnrollmentAttemptFailed:
		return &EnrollmentAttemptFailed{}, nil
	case TypeEnrollmentAttemptSucceeded:
		return &EnrollmentAttemptSucceeded{}, nil
	case TypeLockoutPolicyChanged:
		return &LockoutPolicyChanged{}, nil
	case TypeEnrollmentAttemptExcused:
		return &EnrollmentAttemptExcused{}, nil
	case TypePasscodeExpired:
		return &PasscodeExpired{}, nil
	case TypePasscodeLockoutSimulated:
		return &PasscodeLockoutSimulated{}, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownType, t)
}

// deref turns the pointer from newPayload into the value type that Event.Data
// holds, so that consumers switch on value types only.
func deref(p any) Payload {
	switch v := p.(type) {
	case *PasscodeGenerated:
		return *v
	case *PasscodeRevealed:
		return *v
	case *PasscodeDisabled:
		return *v
	case *EnrollmentAttemptFailed:
		return *v
	case *EnrollmentAttemptSucceeded:
		return *v
	case *LockoutPolicyChanged:
		return *v
	case *EnrollmentAttemptExcused:
		return *v
	case *PasscodeExpired:
		return *v
	case *PasscodeLockoutSimulated:
		return *v
	}
	panic(fmt.Sprintf("events: payload %T missing from deref", p)) // unreachable: newPayload and deref list the same types
}
