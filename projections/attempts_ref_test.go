package projections

import "github.com/enrollgate/enrollgate/events"

// attemptEntryOf returns, straight from the event, the attempt entry of an EnrollmentAttemptFailed or
// EnrollmentAttemptSucceeded record, and false for any other event: what AttemptFromAudit must give
// for the audit entry of the same record.
func attemptEntryOf(rec events.Record) (AttemptEntry, bool) {
	e := rec.Event
	switch d := e.Data.(type) {
	case events.EnrollmentAttemptFailed:
		return AttemptEntry{Seq: rec.Seq, At: e.OccurredAt.UTC(), Outcome: OutcomeFailed, PasscodeID: d.PasscodeID,
			AttemptID: d.AttemptID, Source: d.Source, FailedAttempts: d.FailedAttempts}, true
	case events.EnrollmentAttemptSucceeded:
		return AttemptEntry{Seq: rec.Seq, At: e.OccurredAt.UTC(), Outcome: OutcomeSucceeded, PasscodeID: d.PasscodeID,
			AttemptID: d.AttemptID, Source: d.Source}, true
	case events.EnrollmentAttemptExcused:
		return AttemptEntry{Seq: rec.Seq, At: e.OccurredAt.UTC(), Outcome: excusedOutcome(d.Outcome), PasscodeID: d.PasscodeID,
			AttemptID: d.AttemptID, Source: d.Source, OutdatedPasscodeID: d.OutdatedPasscodeID}, true
	}
	return AttemptEntry{}, false
}
