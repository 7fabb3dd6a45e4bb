package events

import (
	"time"
)

// Type is the stable wire name of an event type.
type Type string

// Wire type names. WARNING: these strings are stored in the event log forever;
// renaming one makes every stored event of that type undecodable.
const (
	TypePasscodeGenerated          Type = "PasscodeGenerated"
	TypePasscodeRevealed           Type = "PasscodeRevealed"
	TypePasscodeDisabled           Type = "PasscodeDisabled"
	TypeEnrollmentAttemptFailed    Type = "EnrollmentAttemptFailed"
	TypeEnrollmentAttemptSucceeded Type = "EnrollmentAttemptSucceeded"
	TypeLockoutPolicyChanged       Type = "LockoutPolicyChanged"
)

// Known reports whether t is one of the types above.
func (t Type) Known() bool {
	switch t {
	case TypePasscodeGenerated, TypePasscodeRevealed, TypePasscodeDisabled,
		TypeEnrollmentAttemptFailed, TypeEnrollmentAttemptSucceeded, TypeLockoutPolicyChanged:
		return true
	}
	return false
}

// ActorKind says who caused an event.
type ActorKind string

// Actor kinds.
const (
	ActorAdmin  ActorKind = "admin"
	ActorSystem ActorKind = "system"
	ActorDevice ActorKind = "device"
)

// Actor is the identity recorded for an event: an administrator's email, the
// system (the lockout saga), or a device.
type Actor struct {
	Kind ActorKind `json:"kind"`
	ID   string    `json:"id"`
}

// DisableReason says why a passcode was disabled.
type DisableReason string

// Disable reasons.
const (
	DisableManual  DisableReason = "manual"
	DisableLockout DisableReason = "lockout"
)

// Source describes where an enrollment attempt came from, as the enrollment
// frontend reported it.
type Source struct {
	IP        string `json:"ip,omitempty"`
	DeviceID  string `json:"device_id,omitempty"`
	Platform  string `json:"platform,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// Payload is the data of one event type.
type Payload interface {
	EventType() Type
}

// PasscodeGenerated starts a new generation of a site's passcode and replaces
// the previous one at once. It holds no plain text: Hash is an HMAC-SHA256 of
// the passcode under the key HashKeyID, and Sealed is an AES-256-GCM sealed
// copy under the key SealKeyID, so that an administrator can reveal it.
type PasscodeGenerated struct {
	PasscodeID string `json:"passcode_id"`
	Hash       []byte `json:"hash"`
	HashKeyID  string `json:"hash_key_id"`
	Sealed     []byte `json:"sealed"`
	SealKeyID  string `json:"seal_key_id"`
}

// PasscodeRevealed records that an administrator read the plain text.
type PasscodeRevealed struct {
	PasscodeID string `json:"passcode_id"`
}

// PasscodeDisabled disables one generation of the passcode. For a lockout it
// carries what the security alert reports, so that the alert needs no other
// state.
type PasscodeDisabled struct {
	PasscodeID        string        `json:"passcode_id"`
	Reason            DisableReason `json:"reason"`
	FailedAttempts    int           `json:"failed_attempts"`
	MaxFailedAttempts int           `json:"max_failed_attempts,omitempty"`
	FailureWindow     Duration      `json:"failure_window,omitempty"`
	FirstFailedAt     *time.Time    `json:"first_failed_at,omitempty"`
	LastFailedAt      *time.Time    `json:"last_failed_at,omitempty"`
	RecentSources     []Source      `json:"recent_sources,omitempty"`
}

// EnrollmentAttemptFailed records a wrong passcode typed for an active
// passcode. FailedAttempts counts the failures against this generation in the
// current failure window, this one included.
type EnrollmentAttemptFailed struct {
	PasscodeID        string   `json:"passcode_id"`
	AttemptID         string   `json:"attempt_id,omitempty"`
	AttemptDigest     []byte   `json:"attempt_digest,omitempty"`
	Source            Source   `json:"source"`
	FailedAttempts    int      `json:"failed_attempts"`
	MaxFailedAttempts int      `json:"max_failed_attempts"`
	FailureWindow     Duration `json:"failure_window"`
}

// EnrollmentAttemptSucceeded records a right passcode.
type EnrollmentAttemptSucceeded struct {
	PasscodeID    string `json:"passcode_id"`
	AttemptID     string `json:"attempt_id,omitempty"`
	AttemptDigest []byte `json:"attempt_digest,omitempty"`
	Source        Source `json:"source"`
}

// LockoutPolicyChanged sets a site's own lockout threshold and window. When a
// passcode is active it carries its generation and the failures counted under
// the new policy, so that the lockout saga can act when the new threshold is
// already reached.
type LockoutPolicyChanged struct {
	MaxFailedAttempts int      `json:"max_failed_attempts"`
	FailureWindow     Duration `json:"failure_window"`
	PasscodeID        string   `json:"passcode_id,omitempty"`
	FailedAttempts    int      `json:"failed_attempts"`
}

// EventType implements Payload.
func (PasscodeGenerated) EventType() Type { return TypePasscodeGenerated }

// EventType implements Payload.
func (PasscodeRevealed) EventType() Type { return TypePasscodeRevealed }

// EventType implements Payload.
func (PasscodeDisabled) EventType() Type { return TypePasscodeDisabled }

// EventType implements Payload.
func (EnrollmentAttemptFailed) EventType() Type { return TypeEnrollmentAttemptFailed }

// EventType implements Payload.
func (EnrollmentAttemptSucceeded) EventType() Type { return TypeEnrollmentAttemptSucceeded }

// EventType implements Payload.
func (LockoutPolicyChanged) EventType() Type { return TypeLockoutPolicyChanged }

// ReachesThreshold reports whether this failure is the one at which the
// lockout threshold is reached.
func (e EnrollmentAttemptFailed) ReachesThreshold() bool {
	return e.MaxFailedAttempts > 0 && e.FailedAttempts >= e.MaxFailedAttempts
}

// Event is one decoded event: the envelope fields and a typed payload.
type Event struct {
	ID         string
	Site       string
	OccurredAt time.Time
	Actor      Actor
	Data       Payload
}

// Type returns the wire type of the event's payload.
func (e Event) Type() Type {
	if e.Data == nil {
		return ""
	}
	return e.Data.EventType()
}

// Record is an event as stored: with its stream sequence.
type Record struct {
	Seq   uint64
	Event Event
}
