package domain

import (
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
		p.gen = &generation{id: d.PasscodeID, hash: d.Hash, hashKeyID: d.HashKeyID, sealed: d.Sealed,
			sealKeyID: d.SealKeyID, generatedAt: e.OccurredAt, generatedBy: e.Actor}
	case events.PasscodeDisabled:
		if p.gen != nil && p.gen.id == d.PasscodeID && p.gen.disabled == nil {
			p.gen.disabled = &disableInfo{at: e.OccurredAt, by: e.Actor, reason: d.Reason}
		}
	case events.EnrollmentAttemptFailed:
		if p.gen != nil && p.gen.id == d.PasscodeID {
			g := p.gen
			g.failures = append(g.failures, failure{at: e.OccurredAt, source: d.Source, keys: SourceKeys(d.Source)})
			// Keep only what can still count: failures in the window, and never
			// more than the largest threshold a policy may set.
			if w := p.Policy().FailureWindow; w > 0 {
				g.failures = g.countedFailures(e.OccurredAt, w)
			}
			if n := len(g.failures); n > MaxMaxFailedAttempts {
				g.failures = g.failures[n-MaxMaxFailedAttempts:]
			}
			if d.ReachesThreshold() && !g.locked {
				g.locked = true
				g.lock = lockInfo{at: e.OccurredAt, maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D()}
			}
		}
		p.addSourceFailure(e.OccurredAt, d.Source)
		p.attempts.add(d.AttemptID, attemptRecord{passcodeID: d.PasscodeID, digest: d.AttemptDigest})
	case events.EnrollmentAttemptSucceeded:
		p.attempts.add(d.AttemptID, attemptRecord{passcodeID: d.PasscodeID, digest: d.AttemptDigest, ok: true})
	case events.LockoutPolicyChanged:
		// Decided events are valid; one that is not (written by other tooling)
		// is ignored rather than trusted, since a threshold of 0 would switch
		// the lockout off (ReachesThreshold needs a positive threshold).
		if ValidateLockout(d.MaxFailedAttempts, d.FailureWindow.D()) != nil {
			break
		}
		p.override = &lockout{maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D()}
		if g := p.gen; g != nil && g.id == d.PasscodeID && d.FailedAttempts >= d.MaxFailedAttempts && !g.locked {
			g.locked = true
			g.lock = lockInfo{at: e.OccurredAt, maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D()}
		}
	case events.PasscodeRevealed:
		// Recorded for the audit trail; the state does not change.
	}
}

// addSourceFailure counts a failure against the source's keys and drops the
// ones that have aged out of the source window.
func (p *Passcode) addSourceFailure(at time.Time, s events.Source) {
	keys := SourceKeys(s)
	if p.sources == nil {
		p.sources = make(map[string][]time.Time)
	}
	window := p.defaults.SourceWindow
	for _, k := range keys {
		times := append(inWindow(p.sources[k], at, window), at)
		if n := len(times); n > MaxMaxFailedAttempts {
			times = times[n-MaxMaxFailedAttempts:]
		}
		p.sources[k] = times
	}
	// Forget sources whose failures have all aged out, so that the map does
	// not grow with every address ever seen.
	for k, times := range p.sources {
		if len(inWindow(times, at, window)) == 0 {
			delete(p.sources, k)
		}
	}
}
