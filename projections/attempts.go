package projections

import (
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// Outcome of an enrollment attempt.
type Outcome string

// Outcomes.
const (
	OutcomeFailed    Outcome = "failed"
	OutcomeSucceeded Outcome = "succeeded"
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
}

// NewAttemptEntry returns the attempt entry of an EnrollmentAttemptFailed or
// EnrollmentAttemptSucceeded record, and false for any other event.
func NewAttemptEntry(rec events.Record) (AttemptEntry, bool) {
	e := rec.Event
	switch d := e.Data.(type) {
	case events.EnrollmentAttemptFailed:
		return AttemptEntry{Seq: rec.Seq, At: e.OccurredAt.UTC(), Outcome: OutcomeFailed, PasscodeID: d.PasscodeID,
			AttemptID: d.AttemptID, Source: d.Source, FailedAttempts: d.FailedAttempts}, true
	case events.EnrollmentAttemptSucceeded:
		return AttemptEntry{Seq: rec.Seq, At: e.OccurredAt.UTC(), Outcome: OutcomeSucceeded, PasscodeID: d.PasscodeID,
			AttemptID: d.AttemptID, Source: d.Source}, true
	}
	return AttemptEntry{}, false
}

// ParseOutcome checks an outcome filter: "" (all), "failed" or "succeeded".
func ParseOutcome(s string) (Outcome, bool) {
	switch o := Outcome(s); o {
	case "", OutcomeFailed, OutcomeSucceeded:
		return o, true
	}
	return "", false
}
