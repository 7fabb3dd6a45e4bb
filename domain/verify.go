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
	ReasonOutdated      Reason = "outdated"
	ReasonMistyped      Reason = "mistyped"
	ReasonExpired       Reason = "expired"
	ReasonUsedUp        Reason = "used_up"
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
	// OtherMACs are the candidate's HMACs under the keys CandidateKeyIDs
	// named, for the retiring and outdated generations hashed under another
	// key; usually none.
	OtherMACs []KeyedMAC
	// Mistyped is Mistyped(candidate): the handler knows the plain text,
	// the aggregate never does. It matters only for a generation with a
	// check character.
	Mistyped bool
}

// KeyedMAC is a candidate's HMAC under the key KeyID.
type KeyedMAC struct {
	KeyID string
	MAC   []byte
}

// macUnder returns the candidate's MAC under keyID; nil when not given.
func (a *Attempt) macUnder(keyID, currentKeyID string) []byte {
	if keyID == currentKeyID {
		return a.CandidateMAC
	}
	for _, m := range a.OtherMACs {
		if m.KeyID == keyID {
			return m.MAC
		}
	}
	return nil
}

// Verify decides an enrollment attempt. It returns the verdict and the event
// to append, or a nil payload when nothing is to be recorded: the passcode is
// missing, disabled or locked, the source is throttled, the passcode lapsed
// (and its lapse is recorded already), or the attempt ID and candidate
// repeat an attempt already recorded. The verdict stands only once the event
// is stored.
//
// The order of the checks is the security argument: a locked or disabled
// generation and a throttled source are refused before the candidate is
// compared, so that once the threshold is reached no guess is evaluated.
// What is plainly not a guess (an outdated generation, a candidate failing
// the check character) is excused: it counts toward its source only.
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
				return Verdict{Reason: prev.wrongReason(), PasscodeID: g.id}, nil
			}
			repeatOK = true
		}
	}
	if g.disabled != nil || p.log.Locked() {
		return Verdict{Reason: ReasonDisabled, PasscodeID: g.id}, nil
	}
	pol := p.Policy()
	if wait := p.log.throttled(now, a.Source, pol); wait > 0 {
		return Verdict{Reason: ReasonThrottled, PasscodeID: g.id, RetryAfter: wait}, nil
	}
	if lapse := g.lapse(now); lapse != "" {
		v := Verdict{Reason: ReasonExpired, PasscodeID: g.id}
		if lapse == events.LapseUsedUp {
			v.Reason = ReasonUsedUp
		}
		if g.lapseRecorded {
			return v, nil
		}
		return v, g.lapseEvent(now)
	}
	if repeatOK {
		return Verdict{OK: true, PasscodeID: g.id}, nil
	}
	if equalBytes(a.CandidateMAC, g.hash()) {
		return Verdict{OK: true, PasscodeID: g.id}, g.success(a, dg)
	}
	if r := p.retiringAt(now); r != nil && r.lapse(now) == "" && equalBytes(a.macUnder(r.hashKeyID, g.hashKeyID), r.hash()) {
		return Verdict{OK: true, PasscodeID: r.id}, r.success(a, dg)
	}
	count := len(p.log.counted(now, pol.FailureWindow))
	for i := range p.outdated(now) {
		pg := &p.past[i]
		if pg.matches(a.macUnder(pg.hashKeyID, g.hashKeyID)) {
			return Verdict{Reason: ReasonOutdated, PasscodeID: g.id},
				events.EnrollmentAttemptExcused{PasscodeID: g.id, AttemptID: a.ID, AttemptDigest: dg, Source: a.Source,
					Outcome: events.OutcomeOutdated, OutdatedPasscodeID: pg.id, FailedAttempts: count}
		}
	}
	if g.checked && a.Mistyped {
		return Verdict{Reason: ReasonMistyped, PasscodeID: g.id},
			events.EnrollmentAttemptExcused{PasscodeID: g.id, AttemptID: a.ID, AttemptDigest: dg, Source: a.Source,
				Outcome: events.OutcomeMistyped, FailedAttempts: count}
	}
	f := events.EnrollmentAttemptFailed{PasscodeID: g.id, AttemptID: a.ID, AttemptDigest: dg, Source: a.Source,
		FailedAttempts: count + 1, MaxFailedAttempts: pol.MaxFailedAttempts, FailureWindow: events.Duration(pol.FailureWindow)}
	if pol.Mode.Monitor() {
		f.Mode = events.ModeMonitor
	}
	return Verdict{Reason: ReasonWrongPasscode, PasscodeID: g.id}, f
}

// success is the event of a right passcode for g.
func (g *generation) success(a Attempt, dg []byte) events.Payload {
	return events.EnrollmentAttemptSucceeded{PasscodeID: g.id, AttemptID: a.ID, AttemptDigest: dg, Source: a.Source,
		Enrollments: int(g.enrollments) + 1, MaxEnrollments: int(g.maxEnrollments)}
}
