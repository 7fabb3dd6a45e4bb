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
		if old := p.gen; old != nil && old.lock != nil && !old.lockoutRecorded {
			old.secret = nil // only its failures and lock are needed now
			if p.unrecorded = append(p.unrecorded, old); len(p.unrecorded) > maxUnrecorded {
				p.unrecorded = p.unrecorded[1:]
			}
		}
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
			p.unrecorded = slices.DeleteFunc(p.unrecorded, func(g *generation) bool { return g.id == d.PasscodeID })
			if len(p.unrecorded) == 0 {
				p.unrecorded = nil
			}
		}
	case events.EnrollmentAttemptFailed:
		at := unixNano(e.OccurredAt)
		var keys sourceKeys
		if p.gen != nil && p.gen.id == d.PasscodeID {
			g := p.gen
			src := g.sourceOf(d.Source)
			keys = src.keys
			g.failures = append(g.failures, failure{at: at, src: src})
			// Keep only what can still count: failures in the window, and never
			// more than the largest threshold a policy may set.
			if w := p.Policy().FailureWindow; w > 0 {
				g.failures = g.countedFailures(e.OccurredAt, w)
			}
			if n := len(g.failures); n > MaxMaxFailedAttempts {
				g.failures = g.failures[n-MaxMaxFailedAttempts:]
			}
			if d.ReachesThreshold() && g.lock == nil {
				g.lock = &lockInfo{at: e.OccurredAt, maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D()}
				p.endGrace()
			}
			if d.ReachesSimulatedThreshold() && g.simLock == nil {
				g.simLock = &lockInfo{at: e.OccurredAt, maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D()}
			}
			g.lastFailed = src
		} else {
			keys = keysOf(d.Source)
		}
		p.addSourceFailure(e.OccurredAt, keys)
		p.attempts.add(p.attemptRecord(e.OccurredAt, d.AttemptID, d.PasscodeID, d.AttemptDigest, false))
	case events.EnrollmentAttemptExcused:
		var keys sourceKeys
		if g := p.gen; g != nil && g.id == d.PasscodeID {
			g.lastFailed = g.sourceOf(d.Source)
			keys = g.lastFailed.keys
		} else {
			keys = keysOf(d.Source)
		}
		// It counts toward its source's rate, never toward the lockout.
		p.addSourceFailure(e.OccurredAt, keys)
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
		// Decided events are valid; one that is not (written by other tooling)
		// is ignored rather than trusted, since a threshold of 0 would switch
		// the lockout off (ReachesThreshold needs a positive threshold).
		if ValidateLockout(d.MaxFailedAttempts, d.FailureWindow.D()) != nil || ValidateMode(d.Mode) != nil {
			break
		}
		mode := events.ModeEnforce
		if d.Mode.Monitor() {
			mode = events.ModeMonitor
		}
		p.override = &lockout{maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D(), mode: mode}
		g := p.gen
		if g == nil || g.id != d.PasscodeID {
			break
		}
		l := &lockInfo{at: e.OccurredAt, maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D()}
		if d.Locks() && g.lock == nil {
			g.lock = l
			p.endGrace()
		}
		if d.SimulatesLockout() && g.simLock == nil {
			g.simLock = l
		}
	case events.PasscodeRevealed:
		// Recorded for the audit trail; the state does not change.
	}
}

// retire moves the current generation among the past ones as d replaces it:
// outdated for a while, and retiring when d grants it a grace.
func (p *Passcode) retire(at time.Time, d events.PasscodeGenerated) {
	p.endGrace()
	old := p.gen
	if old == nil {
		return
	}
	if d.RetiringPasscodeID == old.id && d.RetiringUntil != nil && old.lock == nil && old.disabled == nil {
		r := *old
		r.secret = slices.Clone(old.hash()) // the sealed copy is not needed
		r.failures, r.lastFailed, r.lock, r.simLock = nil, nil, nil, nil
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

// sourceOf returns the failure source of s, shared with an earlier failure of
// the same source when the generation has one.
func (g *generation) sourceOf(s events.Source) *failureSource {
	for i := len(g.failures) - 1; i >= 0; i-- {
		if fs := g.failures[i].src; fs.source == s {
			return fs
		}
	}
	return &failureSource{source: s, keys: keysOf(s)}
}

// addSourceFailure counts a failure at t against the source's keys and drops
// the ones that have aged out of the source window.
func (p *Passcode) addSourceFailure(t time.Time, keys sourceKeys) {
	at, cut := unixNano(t), unixNano(t.Add(-p.defaults.SourceWindow))
	for _, k := range keys {
		if k == "" {
			continue
		}
		i := p.sourceIndex(k)
		if i < 0 {
			if p.sources == nil {
				p.sources = make([]sourceTimes, 0, 2)
			}
			p.sources = append(p.sources, sourceTimes{key: k})
			i = len(p.sources) - 1
		}
		times := append(inWindowNs(p.sources[i].times, cut), at)
		if n := len(times); n > MaxMaxFailedAttempts {
			times = times[n-MaxMaxFailedAttempts:]
		}
		p.sources[i].times = times
	}
	// Forget sources whose failures have all aged out, so that the list does
	// not grow with every address ever seen.
	kept := p.sources[:0]
	for _, st := range p.sources {
		if len(inWindowNs(st.times, cut)) > 0 {
			kept = append(kept, st)
		}
	}
	clear(p.sources[len(kept):])
	p.sources = kept
	if len(p.sources) == 0 {
		p.sources = nil
	}
}

// sourceIndex returns the index of key in p.sources, or -1.
func (p *Passcode) sourceIndex(key string) int {
	for i := range p.sources {
		if p.sources[i].key == key {
			return i
		}
	}
	return -1
}

// sourceTimesOf returns the recent failure times of key.
func (p *Passcode) sourceTimesOf(key string) []int64 {
	if i := p.sourceIndex(key); i >= 0 {
		return p.sources[i].times
	}
	return nil
}
