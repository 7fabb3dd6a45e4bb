package domain

import (
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// State is the passcode state document of a site at a moment.
type State struct {
	Site              string
	Status            Status
	PasscodeID        string
	GeneratedAt       time.Time
	GeneratedBy       string
	FailedAttempts    int
	MaxFailedAttempts int
	FailureWindow     time.Duration
	Locked            bool
	LastFailedAt      time.Time
	DisabledAt        time.Time
	DisabledBy        string
	DisabledReason    events.DisableReason
	Seq               uint64
}

// State returns the state document at now.
func (p *Passcode) State(now time.Time) State {
	pol := p.Policy()
	s := State{Site: p.site, Status: StatusNone, MaxFailedAttempts: pol.MaxFailedAttempts,
		FailureWindow: pol.FailureWindow, Seq: p.seq}
	g := p.gen
	if g == nil {
		return s
	}
	s.Status = StatusActive
	s.PasscodeID, s.GeneratedAt, s.GeneratedBy, s.Locked = g.id, g.generatedAt, g.generatedBy.ID, g.lock != nil
	counted := g.countedFailures(now, pol.FailureWindow)
	s.FailedAttempts = len(counted)
	if len(g.failures) > 0 {
		s.LastFailedAt = unixTime(g.failures[len(g.failures)-1].at)
	}
	if d := g.disabled; d != nil {
		s.Status, s.DisabledAt, s.DisabledBy, s.DisabledReason = StatusDisabled, d.at, d.by.ID, d.reason
	}
	return s
}
