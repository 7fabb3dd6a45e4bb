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
	Mode              events.LockoutMode
	CheckCharacter    bool
	ExpiresAt         time.Time
	MaxEnrollments    int
	Enrollments       int
	LastEnrolledAt    time.Time
	// LastFailedSource is the source of the last wrong attempt of the
	// current generation, of any outcome (wrong, outdated, mistyped).
	LastFailedSource *events.Source
	// Retiring is the replaced generation still valid in its grace.
	Retiring *Retiring
}

// Retiring is a replaced generation that stays valid until Until.
type Retiring struct {
	PasscodeID string
	Until      time.Time
}

// State returns the state document at now.
func (p *Passcode) State(now time.Time) State {
	pol := p.Policy()
	s := State{Site: string(p.site), Status: StatusNone, MaxFailedAttempts: pol.MaxFailedAttempts,
		FailureWindow: pol.FailureWindow, Seq: p.seq, Mode: pol.Mode}
	if s.Mode == "" {
		s.Mode = events.ModeEnforce
	}
	g := p.gen
	if g == nil {
		return s
	}
	s.Status = StatusActive
	s.PasscodeID, s.GeneratedAt, s.GeneratedBy, s.Locked = g.id, g.generatedAt, g.generatedBy.ID, p.log.Locked()
	s.FailedAttempts, s.LastFailedAt = p.log.FailedAttempts(now, p.defaults), p.log.LastFailedAt()
	s.CheckCharacter, s.MaxEnrollments, s.Enrollments = g.checked, int(g.maxEnrollments), int(g.enrollments)
	if g.expiresAt != 0 {
		s.ExpiresAt = unixTime(g.expiresAt)
	}
	if g.lastEnrolledAt != 0 {
		s.LastEnrolledAt = unixTime(g.lastEnrolledAt)
	}
	s.LastFailedSource = p.log.LastFailedSource()
	switch g.lapse(now) {
	case events.LapseExpired:
		s.Status = StatusExpired
	case events.LapseUsedUp:
		s.Status = StatusUsedUp
	}
	if d := g.disabled; d != nil {
		s.Status, s.DisabledAt, s.DisabledBy, s.DisabledReason = StatusDisabled, d.at, d.by.ID, d.reason
	}
	if r := p.retiringAt(now); r != nil && s.Status != StatusDisabled && !s.Locked {
		s.Retiring = &Retiring{PasscodeID: r.id, Until: unixTime(p.retiringUntil)}
	}
	return s
}
