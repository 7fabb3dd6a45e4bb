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
	TypeEnrollmentAttemptExcused   Type = "EnrollmentAttemptExcused"
	TypePasscodeExpired            Type = "PasscodeExpired"
	TypePasscodeLockoutSimulated   Type = "PasscodeLockoutSimulated"
)

// Known reports whether t is one of the types above.
func (t Type) Known() bool {
	switch t {
	case TypePasscodeGenerated, TypePasscodeRevealed, TypePasscodeDisabled,
		TypeEnrollmentAttemptFailed, TypeEnrollmentAttemptSucceeded, TypeLockoutPolicyChanged,
		TypeEnrollmentAttemptExcused, TypePasscodeExpired, TypePasscodeLockoutSimulated:
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

// LockoutMode says whether a site's lockout policy disables a passcode that
// reaches the threshold (enforce, also the empty value of events written
// before modes existed) or only reports it (monitor).
type LockoutMode string

// Lockout modes.
const (
	ModeEnforce LockoutMode = "enforce"
	ModeMonitor LockoutMode = "monitor"
)

// Monitor reports whether m is the monitor mode; anything else enforces.
func (m LockoutMode) Monitor() bool { return m == ModeMonitor }

// ExcusedOutcome says why a wrong passcode does not count toward the lockout.
type ExcusedOutcome string

// Excused outcomes.
const (
	// OutcomeOutdated: the candidate is a recent earlier generation.
	OutcomeOutdated ExcusedOutcome = "outdated"
	// OutcomeMistyped: the candidate fails the check character.
	OutcomeMistyped ExcusedOutcome = "mistyped"
)

// LapseReason says why a passcode stopped being valid without a disable.
type LapseReason string

// Lapse reasons.
const (
	LapseExpired LapseReason = "expired"
	LapseUsedUp  LapseReason = "used_up"
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
//
// The optional fields came with the passcode lifecycle; events without them
// are generations without a check character, expiry, cap or grace.
type PasscodeGenerated struct {
	PasscodeID string `json:"passcode_id"`
	Hash       []byte `json:"hash"`
	HashKeyID  string `json:"hash_key_id"`
	Sealed     []byte `json:"sealed"`
	SealKeyID  string `json:"seal_key_id"`
	// CheckCharacter: the passcode's last character is a check character
	// over the others (domain.ValidCheck), so a typo is told from a guess.
	CheckCharacter bool `json:"check_character,omitempty"`
	// ExpiresAt is when the passcode starts answering expired.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// MaxEnrollments is the number of successful enrollments after which it
	// answers used_up; 0 for no cap.
	MaxEnrollments int `json:"max_enrollments,omitempty"`
	// RetiringPasscodeID is the replaced generation that stays valid until
	// RetiringUntil (the grace of the regeneration); empty for none.
	RetiringPasscodeID string     `json:"retiring_passcode_id,omitempty"`
	RetiringUntil      *time.Time `json:"retiring_until,omitempty"`
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
	// Mode is the policy's mode; in monitor a failure reaching the threshold
	// locks nothing (empty: enforce).
	Mode LockoutMode `json:"mode,omitempty"`
}

// EnrollmentAttemptSucceeded records a right passcode. PasscodeID is the
// generation it matched: the current one, or the retiring one in its grace.
type EnrollmentAttemptSucceeded struct {
	PasscodeID    string `json:"passcode_id"`
	AttemptID     string `json:"attempt_id,omitempty"`
	AttemptDigest []byte `json:"attempt_digest,omitempty"`
	Source        Source `json:"source"`
	// Enrollments counts the successes of that generation, this one
	// included; MaxEnrollments is its cap (0: none). Absent in events written
	// before caps existed.
	Enrollments    int `json:"enrollments,omitempty"`
	MaxEnrollments int `json:"max_enrollments,omitempty"`
}

// EnrollmentAttemptExcused records a wrong passcode that is plainly not a
// guess: an outdated generation, or a typo that fails the check character. It
// counts toward its source's limit, never toward the site's lockout.
// PasscodeID is the current generation; FailedAttempts its count, unchanged.
type EnrollmentAttemptExcused struct {
	PasscodeID    string         `json:"passcode_id"`
	AttemptID     string         `json:"attempt_id,omitempty"`
	AttemptDigest []byte         `json:"attempt_digest,omitempty"`
	Source        Source         `json:"source"`
	Outcome       ExcusedOutcome `json:"outcome"`
	// OutdatedPasscodeID is the earlier generation the candidate matched.
	OutdatedPasscodeID string `json:"outdated_passcode_id,omitempty"`
	FailedAttempts     int    `json:"failed_attempts"`
}

// PasscodeExpired records, once per generation, that a passcode stopped being
// valid: its expiry passed or its enrollments reached the cap. It changes
// nothing the clock and the other events do not already say; it is what the
// alert and the audit trail show.
type PasscodeExpired struct {
	PasscodeID     string      `json:"passcode_id"`
	Reason         LapseReason `json:"reason"`
	ExpiresAt      *time.Time  `json:"expires_at,omitempty"`
	Enrollments    int         `json:"enrollments"`
	MaxEnrollments int         `json:"max_enrollments,omitempty"`
}

// PasscodeLockoutSimulated records, once per generation, that its failures
// reached the threshold under a policy in monitor mode: nothing is disabled.
// It carries what the simulated-lockout alert reports.
type PasscodeLockoutSimulated struct {
	PasscodeID        string     `json:"passcode_id"`
	FailedAttempts    int        `json:"failed_attempts"`
	MaxFailedAttempts int        `json:"max_failed_attempts"`
	FailureWindow     Duration   `json:"failure_window"`
	FirstFailedAt     *time.Time `json:"first_failed_at,omitempty"`
	LastFailedAt      *time.Time `json:"last_failed_at,omitempty"`
	RecentSources     []Source   `json:"recent_sources,omitempty"`
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
	// Mode is the site's lockout mode from now on (empty: enforce).
	Mode LockoutMode `json:"mode,omitempty"`
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

// EventType implements Payload.
func (EnrollmentAttemptExcused) EventType() Type { return TypeEnrollmentAttemptExcused }

// EventType implements Payload.
func (PasscodeExpired) EventType() Type { return TypePasscodeExpired }

// EventType implements Payload.
func (PasscodeLockoutSimulated) EventType() Type { return TypePasscodeLockoutSimulated }

// ReachesThreshold reports whether this failure is the one at which the
// lockout threshold is reached and the passcode locked: never in monitor
// mode.
func (e EnrollmentAttemptFailed) ReachesThreshold() bool {
	return !e.Mode.Monitor() && e.reaches()
}

// ReachesSimulatedThreshold reports whether this failure reaches the
// threshold in monitor mode: a lockout that is only reported.
func (e EnrollmentAttemptFailed) ReachesSimulatedThreshold() bool {
	return e.Mode.Monitor() && e.reaches()
}

func (e EnrollmentAttemptFailed) reaches() bool {
	return e.MaxFailedAttempts > 0 && e.FailedAttempts >= e.MaxFailedAttempts
}

// Locks reports whether the change locks the active passcode at once: its
// failures already reach the new threshold and the mode enforces.
func (e LockoutPolicyChanged) Locks() bool {
	return e.PasscodeID != "" && !e.Mode.Monitor() && e.FailedAttempts >= e.MaxFailedAttempts
}

// SimulatesLockout reports whether the change reaches the threshold in
// monitor mode.
func (e LockoutPolicyChanged) SimulatesLockout() bool {
	return e.PasscodeID != "" && e.Mode.Monitor() && e.FailedAttempts >= e.MaxFailedAttempts
}

// Event is one decoded event: the envelope fields and a typed payload.
type Event struct {
	ID         string
	Site       Site
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
