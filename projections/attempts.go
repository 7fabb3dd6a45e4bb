package projections

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// Outcome of an enrollment attempt.
type Outcome string

// Outcomes.
const (
	OutcomeFailed    Outcome = "failed"
	OutcomeSucceeded Outcome = "succeeded"
	// OutcomeOutdated and OutcomeMistyped are wrong passcodes that did not
	// count toward the lockout (EnrollmentAttemptExcused): a recent earlier
	// generation, a typo caught by the check character.
	OutcomeOutdated Outcome = "outdated"
	OutcomeMistyped Outcome = "mistyped"
)

// AttemptEntry is one recent enrollment attempt of a site.
type AttemptEntry struct {
	Seq        uint64        `json:"seq"`
	At         time.Time     `json:"at"`
	Outcome    Outcome       `json:"outcome"`
	PasscodeID string        `json:"passcode_id"`
	AttemptID  string        `json:"attempt_id,omitempty"`
	Source     events.Source `json:"source"`
	// FailedAttempts is, for a failure, the count in the window this failure
	// reached (this one included); 0 for a success.
	FailedAttempts int `json:"failed_attempts,omitempty"`
	// OutdatedPasscodeID is, for an outdated entry, the earlier generation
	// it matched: who still uses the old passcode.
	OutdatedPasscodeID string `json:"outdated_passcode_id,omitempty"`
}

func excusedOutcome(o events.ExcusedOutcome) Outcome {
	if o == events.OutcomeOutdated {
		return OutcomeOutdated
	}
	return OutcomeMistyped
}

// ParseOutcome checks an outcome filter: "" (all), "failed" (counted wrong
// passcodes), "succeeded", "outdated" or "mistyped".
func ParseOutcome(s string) (Outcome, bool) {
	switch o := Outcome(s); o {
	case "", OutcomeFailed, OutcomeSucceeded, OutcomeOutdated, OutcomeMistyped:
		return o, true
	}
	return "", false
}

// attemptDetails is the part of an attempt's audit details that an
// AttemptEntry shows.
type attemptDetails struct {
	PasscodeID     string        `json:"passcode_id"`
	AttemptID      string        `json:"attempt_id"`
	Source         events.Source `json:"source"`
	FailedAttempts int           `json:"failed_attempts"`
	Outcome        string        `json:"outcome"`
	OutdatedID     string        `json:"outdated_passcode_id"`
}

// AttemptFromAudit returns the attempt entry of an attempt's audit entry, so
// that a read model can keep attempts as an index into the audit trail
// instead of a second copy.
func AttemptFromAudit(a AuditEntry) (AttemptEntry, error) {
	var outcome Outcome
	switch a.Type {
	case events.TypeEnrollmentAttemptFailed:
		outcome = OutcomeFailed
	case events.TypeEnrollmentAttemptSucceeded:
		outcome = OutcomeSucceeded
	case events.TypeEnrollmentAttemptExcused:
	default:
		return AttemptEntry{}, fmt.Errorf("audit entry %d is a %s, not an attempt", a.Seq, a.Type)
	}
	var d attemptDetails
	if err := json.Unmarshal(a.Details, &d); err != nil {
		return AttemptEntry{}, fmt.Errorf("details of attempt %d: %w", a.Seq, err)
	}
	if a.Type == events.TypeEnrollmentAttemptExcused {
		outcome = excusedOutcome(events.ExcusedOutcome(d.Outcome))
	}
	e := AttemptEntry{Seq: a.Seq, At: a.At, Outcome: outcome, PasscodeID: d.PasscodeID, AttemptID: d.AttemptID,
		Source: d.Source, OutdatedPasscodeID: d.OutdatedID}
	if outcome == OutcomeFailed {
		e.FailedAttempts = d.FailedAttempts
	}
	return e, nil
}
