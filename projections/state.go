package projections

import (
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// StateDoc is the passcode state document of a site (DESIGN.md, GET
// /v1/sites/{site}/passcode), ready to be written as JSON. Optional times are
// nil and optional strings empty when they do not apply.
type StateDoc struct {
	Site              string               `json:"site"`
	Status            domain.Status        `json:"status"`
	PasscodeID        string               `json:"passcode_id,omitempty"`
	GeneratedAt       *time.Time           `json:"generated_at,omitempty"`
	GeneratedBy       string               `json:"generated_by,omitempty"`
	FailedAttempts    int                  `json:"failed_attempts"`
	MaxFailedAttempts int                  `json:"max_failed_attempts"`
	FailureWindow     events.Duration      `json:"failure_window"`
	Locked            bool                 `json:"locked"`
	LastFailedAt      *time.Time           `json:"last_failed_at,omitempty"`
	DisabledAt        *time.Time           `json:"disabled_at,omitempty"`
	DisabledBy        string               `json:"disabled_by,omitempty"`
	DisabledReason    events.DisableReason `json:"disabled_reason,omitempty"`
	Seq               uint64               `json:"seq"`
	ThrottledSources  []ThrottledSource    `json:"throttled_sources,omitempty"`
	// Mode is the lockout policy's mode: enforce or monitor.
	Mode events.LockoutMode `json:"mode"`
	// CheckCharacter: the passcode ends in a check character, so typos
	// answer mistyped.
	CheckCharacter bool       `json:"check_character,omitempty"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
	MaxEnrollments int        `json:"max_enrollments,omitempty"`
	Enrollments    int        `json:"enrollments"`
	LastEnrolledAt *time.Time `json:"last_enrolled_at,omitempty"`
	// LastFailedSource is the source of the last wrong attempt of the
	// current generation, of any outcome (wrong, outdated, mistyped).
	LastFailedSource *events.Source `json:"last_failed_source,omitempty"`
	// Retiring is the replaced generation still valid in its grace.
	Retiring *RetiringDoc `json:"retiring,omitempty"`
}

// RetiringDoc is a replaced generation that stays valid until Until.
type RetiringDoc struct {
	PasscodeID string    `json:"passcode_id"`
	Until      time.Time `json:"until"`
}

// ThrottledSource is a source that may not try again before Until; without
// Until it is throttled until the passcode is regenerated (a failure window
// of 0 never lets its failures age out).
type ThrottledSource struct {
	Key   string     `json:"key"` // "ip:<addr or /64>", "device:<id>" or "anonymous"
	Until *time.Time `json:"until,omitempty"`
}

// SiteState is the fold of one site's events for the state document: the
// display fields, and the failure log whose rules the aggregate decides with.
// It is not safe for concurrent mutation; Clone gives a copy that a writer can
// change while readers keep using the original.
type SiteState struct {
	site     string
	seq      uint64
	defaults domain.Policy
	gen      *generation
	log      domain.FailureLog
	// retiring is the replaced generation in its grace; nil for none.
	retiring *retiringInfo
}

type retiringInfo struct {
	id    string
	until int64
}

// generation is what the document shows of the current generation; times
// are unix nanoseconds.
type generation struct {
	id             string
	generatedAt    int64
	generatedBy    string
	disabled       *disableInfo
	checked        bool
	expiresAt      int64
	maxEnrollments int
	enrollments    int
	lastEnrolledAt int64
}

type disableInfo struct {
	at     int64
	by     string
	reason events.DisableReason
}

// NewSiteState returns the state of a site with no events under the default
// policy (from configuration; a site's LockoutPolicyChanged overrides the
// threshold and the window).
func NewSiteState(site string, defaults domain.Policy) *SiteState {
	return &SiteState{site: site, defaults: defaults}
}

// Site returns the site ID.
func (s *SiteState) Site() string { return s.site }

// Seq returns the stream sequence of the last event folded in.
func (s *SiteState) Seq() uint64 { return s.seq }

// Apply folds records in stream order; records at or below Seq are skipped,
// so applying one twice is harmless. Records of another site are ignored.
func (s *SiteState) Apply(recs ...events.Record) {
	for _, r := range recs {
		if r.Seq <= s.seq || string(r.Event.Site) != s.site {
			continue
		}
		s.apply(r.Event)
		s.seq = r.Seq
	}
}

// apply folds one event: the failure log as the aggregate folds it, and the
// display fields beside it.
func (s *SiteState) apply(e events.Event) {
	// A lock ends the grace too, but Doc shows no grace while locked, and
	// only a new generation, which ends it, lifts a lock.
	wasLocked := s.log.Locked()
	var current string
	if s.gen != nil {
		current = s.gen.id
	}
	s.log.Apply(e, current, s.defaults)
	at := e.OccurredAt.UnixNano()
	switch d := e.Data.(type) {
	case events.PasscodeGenerated:
		s.retiring = nil
		if old := s.gen; old != nil && d.RetiringPasscodeID == old.id && d.RetiringUntil != nil && !wasLocked && old.disabled == nil {
			s.retiring = &retiringInfo{id: old.id, until: d.RetiringUntil.UnixNano()}
		}
		g := &generation{id: d.PasscodeID, generatedAt: at, generatedBy: e.Actor.ID, checked: d.CheckCharacter,
			maxEnrollments: max(d.MaxEnrollments, 0)}
		if d.ExpiresAt != nil {
			g.expiresAt = d.ExpiresAt.UnixNano()
		}
		s.gen = g
	case events.PasscodeDisabled:
		if d.Reason == events.DisableLockout || (s.gen != nil && s.gen.id == d.PasscodeID) {
			s.retiring = nil // as domain: a lockout or a disable ends the grace
		}
		if g := s.gen; g != nil && g.id == d.PasscodeID && g.disabled == nil {
			g.disabled = &disableInfo{at: at, by: e.Actor.ID, reason: d.Reason}
		}
	case events.EnrollmentAttemptSucceeded:
		if g := s.gen; g != nil && g.id == d.PasscodeID {
			g.enrollments = min(max(g.enrollments+1, d.Enrollments), domain.MaxMaxEnrollments)
			g.lastEnrolledAt = at
		}
	}
}

func timePtr(ns int64) *time.Time {
	t := time.Unix(0, ns).UTC()
	return &t
}

func utcPtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// Doc returns the state document at now: failures are counted in the window
// that ends at now.
func (s *SiteState) Doc(now time.Time) StateDoc {
	pol := s.log.Policy(s.defaults)
	d := StateDoc{Site: s.site, Status: domain.StatusNone, MaxFailedAttempts: pol.MaxFailedAttempts,
		FailureWindow: events.Duration(pol.FailureWindow), Seq: s.seq, Mode: pol.Mode}
	if d.Mode == "" {
		d.Mode = events.ModeEnforce
	}
	for _, ts := range s.log.ThrottledSources(now, s.defaults) {
		d.ThrottledSources = append(d.ThrottledSources, ThrottledSource{Key: ts.Key, Until: utcPtr(ts.Until)})
	}
	g := s.gen
	if g == nil {
		return d
	}
	d.Status, d.PasscodeID, d.GeneratedAt, d.GeneratedBy, d.Locked =
		domain.StatusActive, g.id, timePtr(g.generatedAt), g.generatedBy, s.log.Locked()
	d.FailedAttempts, d.LastFailedAt = s.log.FailedAttempts(now, s.defaults), utcPtr(s.log.LastFailedAt())
	d.CheckCharacter, d.MaxEnrollments, d.Enrollments, d.LastFailedSource = g.checked, g.maxEnrollments, g.enrollments, s.log.LastFailedSource()
	if g.expiresAt != 0 {
		d.ExpiresAt = timePtr(g.expiresAt)
	}
	if g.lastEnrolledAt != 0 {
		d.LastEnrolledAt = timePtr(g.lastEnrolledAt)
	}
	switch {
	case g.maxEnrollments > 0 && g.enrollments >= g.maxEnrollments:
		d.Status = domain.StatusUsedUp
	case g.expiresAt != 0 && now.UnixNano() >= g.expiresAt:
		d.Status = domain.StatusExpired
	}
	if dis := g.disabled; dis != nil {
		d.Status, d.DisabledAt, d.DisabledBy, d.DisabledReason = domain.StatusDisabled, timePtr(dis.at), dis.by, dis.reason
	}
	if r := s.retiring; r != nil && now.UnixNano() < r.until && d.Status != domain.StatusDisabled && !d.Locked {
		d.Retiring = &RetiringDoc{PasscodeID: r.id, Until: time.Unix(0, r.until).UTC()}
	}
	return d
}

// Clone returns a copy that Apply may change without changing s. The failure
// log's times are shared (see domain.FailureLog.Clone): the store clones a
// site's state for every commit that touches it.
func (s *SiteState) Clone() *SiteState {
	c := *s
	c.log = s.log.Clone()
	if s.gen != nil {
		g := *s.gen
		if s.gen.disabled != nil {
			dis := *s.gen.disabled
			g.disabled = &dis
		}
		c.gen = &g
	}
	if s.retiring != nil {
		r := *s.retiring
		c.retiring = &r
	}
	return &c
}
