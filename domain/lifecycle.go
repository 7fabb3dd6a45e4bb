package domain

import (
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// Expire records, once, that the current generation passcodeID has stopped
// being valid at now (expired, or used up). It decides nothing for another
// generation, one that is still valid, disabled or locked, or one whose
// lapse is recorded already, so that a redelivered command stores nothing.
func (p *Passcode) Expire(now time.Time, passcodeID string) (events.Payload, error) {
	g := p.gen
	if g == nil || g.id != passcodeID || g.disabled != nil || p.log.Locked() || g.lapseRecorded {
		return nil, nil
	}
	return g.lapseEvent(now), nil
}

// lapseEvent is the PasscodeExpired of g at now, or nil while g is valid.
func (g *generation) lapseEvent(now time.Time) events.Payload {
	reason := g.lapse(now)
	if reason == "" {
		return nil
	}
	e := events.PasscodeExpired{PasscodeID: g.id, Reason: reason, Enrollments: int(g.enrollments),
		MaxEnrollments: int(g.maxEnrollments)}
	if g.expiresAt != 0 {
		t := unixTime(g.expiresAt)
		e.ExpiresAt = &t
	}
	return e
}

// SimulateLockout records, once per generation, that the current generation
// passcodeID reached the threshold in monitor mode: nothing is disabled. It
// carries the failures counted at the moment the threshold was reached.
func (p *Passcode) SimulateLockout(now time.Time, passcodeID string) (events.Payload, error) {
	g := p.gen
	if g == nil || g.id != passcodeID || g.simLock == nil || g.simRecorded || g.disabled != nil {
		return nil, nil
	}
	l := g.simLock
	counted := p.log.counted(l.at, l.window)
	// In monitor mode failures go on after the threshold: report the ones
	// that reached it.
	for end := unixNano(l.at); len(counted) > 0 && counted[len(counted)-1].at > end; {
		counted = counted[:len(counted)-1]
	}
	e := events.PasscodeLockoutSimulated{PasscodeID: g.id, FailedAttempts: len(counted),
		MaxFailedAttempts: l.maxFailed, FailureWindow: events.Duration(l.window)}
	if len(counted) > 0 {
		first, last := unixTime(counted[0].at), unixTime(counted[len(counted)-1].at)
		e.FirstFailedAt, e.LastFailedAt = &first, &last
	}
	e.RecentSources = recentSources(counted, maxAlertSources)
	return e, nil
}
