package domain

import (
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// Reason is why a verify was refused: a wire value of the verify reply.
type Reason string

// Refusal reasons of the contract.
const (
	ReasonWrongPasscode Reason = "wrong_passcode"
	ReasonDisabled      Reason = "disabled"
	ReasonNotGenerated  Reason = "not_generated"
	ReasonThrottled     Reason = "throttled"
)

// Verdict is the answer to one enrollment attempt.
type Verdict struct {
	OK         bool
	Reason     Reason // empty when OK
	PasscodeID string
	// RetryAfter is set for ReasonThrottled: when the source may try again.
	RetryAfter time.Duration
}

// Attempt is one typed passcode, as the handler prepared it: CandidateMAC is
// the HMAC of the candidate under the current generation's hash key.
type Attempt struct {
	ID           string
	Source       events.Source
	CandidateMAC []byte
}

// Verify decides an enrollment attempt. It returns the verdict and the event
// to append, or a nil payload when nothing is to be recorded: the passcode is
// missing, disabled or locked, the source is throttled, or the attempt ID and
// candidate repeat an attempt already recorded. The verdict stands only once
// the event is stored.
//
// The order of the checks is the security argument: a locked or disabled
// generation and a throttled source are refused before the candidate is
// compared, so that once the threshold is reached no guess is evaluated.
func (p *Passcode) Verify(now time.Time, a Attempt) (Verdict, events.Payload) {
	if p.gen == nil {
		return Verdict{Reason: ReasonNotGenerated}, nil
	}
	g := p.gen
	var dg []byte // the event's digest; none without an attempt ID
	repeatOK := false
	if a.ID != "" {
		sum := digest(a.ID, a.CandidateMAC)
		dg = sum[:]
		if prev, ok := p.attempts.lookup(a.ID); ok && prev.passcodeID == g.id && prev.hasDigest && equalBytes(prev.digest[:], dg) {
			// A repeated wrong guess gets its verdict again at once: it tells
			// the caller nothing it did not know. A repeated right guess is
			// answered only where a new guess would be compared: matching the
			// digest of a recorded success is a comparison with the passcode,
			// and answering it while locked, disabled or throttled would be an
			// uncounted oracle for anyone who knows that attempt ID.
			if !prev.ok {
				return Verdict{Reason: ReasonWrongPasscode, PasscodeID: g.id}, nil
			}
			repeatOK = true
		}
	}
	if g.disabled != nil || g.lock != nil {
		return Verdict{Reason: ReasonDisabled, PasscodeID: g.id}, nil
	}
	pol := p.Policy()
	if wait := p.throttled(now, a.Source, pol); wait > 0 {
		return Verdict{Reason: ReasonThrottled, PasscodeID: g.id, RetryAfter: wait}, nil
	}
	if repeatOK {
		return Verdict{OK: true, PasscodeID: g.id}, nil
	}
	if equalBytes(a.CandidateMAC, g.hash()) {
		return Verdict{OK: true, PasscodeID: g.id},
			events.EnrollmentAttemptSucceeded{PasscodeID: g.id, AttemptID: a.ID, AttemptDigest: dg, Source: a.Source}
	}
	count := len(g.countedFailures(now, pol.FailureWindow)) + 1
	return Verdict{Reason: ReasonWrongPasscode, PasscodeID: g.id},
		events.EnrollmentAttemptFailed{PasscodeID: g.id, AttemptID: a.ID, AttemptDigest: dg, Source: a.Source,
			FailedAttempts: count, MaxFailedAttempts: pol.MaxFailedAttempts, FailureWindow: events.Duration(pol.FailureWindow)}
}
