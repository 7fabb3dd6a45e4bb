package domain

import (
	"slices"
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// Replay folds stored events into the aggregate, in stream order. Records at
// or below the aggregate's sequence are skipped, so replaying a record twice
// is harmless.
func (p *Passcode) Replay(recs ...events.Record) {
	for _, r := range recs {
		if r.Seq <= p.seq {
			continue
		}
		p.apply(r.Event)
		p.seq = r.Seq
	}
}

// apply folds one event into the state. It cannot fail: the event was decided
// and stored already.
func (p *Passcode) apply(e events.Event) {
	switch d := e.Data.(type) {
	case events.PasscodeGenerated:
		p.retire(e.OccurredAt, d)
		if old := p.gen; old != nil && p.log.Locked() && !old.lockoutRecorded {
			if p.unrecorded = append(p.unrecorded, p.log.lockedGeneration(old.id)); len(p.unrecorded) > maxUnrecorded {
				p.unrecorded = p.unrecorded[1:]
			}
		}
		p.log.Apply(e, p.current(), p.defaults)
		g := newGeneration(d.PasscodeID, d.Hash, d.Sealed)
		g.hashKeyID, g.sealKeyID, g.generatedAt, g.generatedBy = d.HashKeyID, d.SealKeyID, e.OccurredAt, canonicalActor(e.Actor)
		g.checked, g.maxEnrollments = d.CheckCharacter, int32(min(max(d.MaxEnrollments, 0), MaxMaxEnrollments))
		if d.ExpiresAt != nil {
			g.expiresAt = unixNano(*d.ExpiresAt)
		}
		p.gen = g
	case events.PasscodeDisabled:
		if p.gen != nil && p.gen.id == d.PasscodeID && p.gen.disabled == nil {
			p.gen.disabled = &disableInfo{at: e.OccurredAt, by: canonicalActor(e.Actor), reason: d.Reason}
		}
		if d.Reason == events.DisableLockout || (p.gen != nil && p.gen.id == d.PasscodeID) {
			// A lockout ends the grace of every generation; so does disabling
			// the current one by hand: both stop self-service enrollment.
			p.endGrace()
		}
		if d.Reason == events.DisableLockout {
			if p.gen != nil && p.gen.id == d.PasscodeID {
				p.gen.lockoutRecorded = true
			}
			p.unrecorded = slices.DeleteFunc(p.unrecorded, func(u unrecorded) bool { return u.id == d.PasscodeID })
			if len(p.unrecorded) == 0 {
				p.unrecorded = nil
			}
		}
	case events.EnrollmentAttemptFailed:
		if p.log.Apply(e, p.current(), p.defaults) {
			p.endGrace()
		}
		if g := p.gen; g != nil && g.id == d.PasscodeID && d.ReachesSimulatedThreshold() && g.simLock == nil {
			g.simLock = &lockInfo{at: e.OccurredAt, maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D()}
		}
		p.attempts.add(p.attemptRecord(e.OccurredAt, d.AttemptID, d.PasscodeID, d.AttemptDigest, false))
	case events.EnrollmentAttemptExcused:
		p.log.Apply(e, p.current(), p.defaults)
		r := p.attemptRecord(e.OccurredAt, d.AttemptID, d.PasscodeID, d.AttemptDigest, false)
		r.excused = excusedCodeOf(d.Outcome)
		p.attempts.add(r)
	case events.EnrollmentAttemptSucceeded:
		var g *generation
		switch {
		case p.gen != nil && p.gen.id == d.PasscodeID:
			g = p.gen
		case p.retiring != nil && p.retiring.id == d.PasscodeID:
			g = p.retiring
		}
		if g != nil {
			g.enrollments = int32(min(max(int(g.enrollments)+1, d.Enrollments), MaxMaxEnrollments))
			g.lastEnrolledAt = unixNano(e.OccurredAt)
		}
		p.attempts.add(p.attemptRecord(e.OccurredAt, d.AttemptID, d.PasscodeID, d.AttemptDigest, true))
	case events.PasscodeExpired:
		if g := p.gen; g != nil && g.id == d.PasscodeID {
			g.lapseRecorded = true
		}
	case events.PasscodeLockoutSimulated:
		if g := p.gen; g != nil && g.id == d.PasscodeID {
			g.simRecorded = true
		}
	case events.LockoutPolicyChanged:
		if p.log.Apply(e, p.current(), p.defaults) {
			p.endGrace()
		}
		if g := p.gen; g != nil && g.id == d.PasscodeID && validPolicyChange(d) && d.SimulatesLockout() && g.simLock == nil {
			g.simLock = &lockInfo{at: e.OccurredAt, maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D()}
		}
	case events.PasscodeRevealed:
		// Recorded for the audit trail; the state does not change.
	}
}

// current is the ID of the current generation; empty for none.
func (p *Passcode) current() string {
	if p.gen == nil {
		return ""
	}
	return p.gen.id
}

// retire moves the current generation among the past ones as d replaces it:
// outdated for a while, and retiring when d grants it a grace.
func (p *Passcode) retire(at time.Time, d events.PasscodeGenerated) {
	p.endGrace()
	old := p.gen
	if old == nil {
		return
	}
	if d.RetiringPasscodeID == old.id && d.RetiringUntil != nil && !p.log.Locked() && old.disabled == nil {
		r := *old
		r.secret = slices.Clone(old.hash()) // the sealed copy is not needed
		r.simLock = nil
		p.retiring, p.retiringUntil = &r, unixNano(*d.RetiringUntil)
	}
	if !p.defaults.outdatedOn() {
		p.past = nil
		return
	}
	n := min(len(p.past)+1, p.defaults.OutdatedGenerations)
	past := make([]pastGeneration, 0, n)
	pg := newPastGeneration(old.id, old.hash(), old.hashKeyID, unixNano(at))
	if pg.hashKeyID == d.HashKeyID {
		pg.hashKeyID = d.HashKeyID // one copy of the key ID for both
	}
	past = append(past, pg)
	cut := unixNano(at.Add(-p.defaults.OutdatedFor))
	for _, q := range p.past {
		if len(past) < n && q.replacedAt > cut {
			past = append(past, q)
		}
	}
	p.past = past
}

// endGrace ends the grace of the retiring generation.
func (p *Passcode) endGrace() { p.retiring, p.retiringUntil = nil, 0 }

// maxUnrecorded bounds Passcode.unrecorded: more locked generations replaced
// while the saga is away than this is not a realistic history, and the oldest
// lockout is the one a later alert makes least urgent.
const maxUnrecorded = 8

// canonicalActor returns the actor with a known kind as the package's
// constant, so that an actor decoded from the stream does not keep its own
// copy of the kind's text.
func canonicalActor(a events.Actor) events.Actor {
	switch a.Kind {
	case events.ActorAdmin:
		a.Kind = events.ActorAdmin
	case events.ActorSystem:
		a.Kind = events.ActorSystem
	case events.ActorDevice:
		a.Kind = events.ActorDevice
	}
	return a
}

// attemptRecord is the record of an attempt event. The passcode ID is the
// current generation's string when it names it, so that the record does not
// keep the event's own copy.
func (p *Passcode) attemptRecord(at time.Time, id, passcodeID string, dg []byte, ok bool) attemptRecord {
	r := attemptRecord{id: id, passcodeID: passcodeID, ok: ok, at: at.UnixNano()}
	if p.gen != nil && p.gen.id == passcodeID {
		r.passcodeID = p.gen.id
	}
	if len(dg) == digestLen {
		copy(r.digest[:], dg)
		r.hasDigest = true
	}
	return r
}
