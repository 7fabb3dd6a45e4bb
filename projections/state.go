package projections

import (
	"slices"
	"sort"
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
	Key   string     `json:"key"` // domain.SourceKeys: "ip:<addr or /64>", "device:<id>" or "anonymous"
	Until *time.Time `json:"until,omitempty"`
}

// SiteState is the compact fold of one site's events for the state document.
// It is not safe for concurrent mutation; Clone gives a copy that a writer can
// change while readers keep using the original.
//
// Memory (measured by readstore's TestMemoryPerSite): ~0.3 KB for a site
// with only a generation, ~1.3 KB for a typical one; beyond that, per failure
// of the current generation still in the window (at most
// domain.MaxMaxFailedAttempts) 8 bytes plus 8 under each of its source keys,
// and per source key that failed in the source window its key and at most
// MaxFailedPerSource times.
type SiteState struct {
	site     string
	seq      uint64
	defaults domain.Policy
	override *lockout
	gen      *generation
	// sources holds, per source key, the times (unix ns, oldest first) of its
	// most recent failures: only the last keepPerSource ones, because the
	// throttle decision looks at no more than SourceLimit of them.
	sources map[string][]int64
	// retiring is the replaced generation in its grace; nil for none.
	retiring *retiringInfo
}

type retiringInfo struct {
	ID    string
	Until int64
}

type lockout struct {
	MaxFailed int                `json:"max_failed"`
	Window    time.Duration      `json:"window"`
	Mode      events.LockoutMode `json:"mode,omitempty"`
}

type generation struct {
	ID          string       `json:"id"`
	GeneratedAt int64        `json:"at"`
	GeneratedBy string       `json:"by"`
	Locked      bool         `json:"locked,omitempty"`
	Disabled    *disableInfo `json:"disabled,omitempty"`
	// Failures are the times (unix ns, oldest first) that may still count,
	// pruned exactly as domain prunes them.
	Failures []int64 `json:"failures,omitempty"`
	// BySource holds the same failures per source key, for the per-source
	// cap on the failures that count against this generation.
	BySource map[string][]int64 `json:"by_source,omitempty"`
	// The lifecycle, as domain keeps it (not in the version 2 JSON form,
	// which predates it).
	Checked          bool           `json:"-"`
	ExpiresAt        int64          `json:"-"`
	MaxEnrollments   int            `json:"-"`
	Enrollments      int            `json:"-"`
	LastEnrolledAt   int64          `json:"-"`
	LastFailedSource *events.Source `json:"-"`
}

// hasLifecycle reports whether g has lifecycle data to encode.
func (g *generation) hasLifecycle() bool {
	return g.Checked || g.ExpiresAt != 0 || g.MaxEnrollments != 0 || g.Enrollments != 0 || g.LastEnrolledAt != 0 ||
		g.LastFailedSource != nil
}

type disableInfo struct {
	At     int64                `json:"at"`
	By     string               `json:"by"`
	Reason events.DisableReason `json:"reason"`
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

// policy is the policy in force, as domain.Passcode.Policy computes it.
func (s *SiteState) policy() domain.Policy {
	pol := s.defaults
	if s.override != nil {
		pol.MaxFailedAttempts = s.override.MaxFailed
		pol.FailureWindow = s.override.Window
		pol.Mode = s.override.Mode
	}
	return pol
}

// keepPerSource is how many failure times per source the state keeps: the
// source limit never exceeds the configured per-source maximum.
func (s *SiteState) keepPerSource() int {
	return min(max(s.defaults.MaxFailedPerSource, 1), domain.MaxMaxFailedAttempts)
}

// Apply folds records in stream order; records at or below Seq are skipped,
// so applying one twice is harmless. Records of another site are ignored.
func (s *SiteState) Apply(recs ...events.Record) {
	for _, r := range recs {
		if r.Seq <= s.seq || r.Event.Site != s.site {
			continue
		}
		s.apply(r.Event)
		s.seq = r.Seq
	}
}

// apply mirrors domain's apply for the fields of the state document.
func (s *SiteState) apply(e events.Event) {
	at := e.OccurredAt.UnixNano()
	switch d := e.Data.(type) {
	case events.PasscodeGenerated:
		s.retiring = nil
		if old := s.gen; old != nil && d.RetiringPasscodeID == old.ID && d.RetiringUntil != nil && !old.Locked && old.Disabled == nil {
			s.retiring = &retiringInfo{ID: old.ID, Until: d.RetiringUntil.UnixNano()}
		}
		g := &generation{ID: d.PasscodeID, GeneratedAt: at, GeneratedBy: e.Actor.ID, Checked: d.CheckCharacter,
			MaxEnrollments: max(d.MaxEnrollments, 0)}
		if d.ExpiresAt != nil {
			g.ExpiresAt = d.ExpiresAt.UnixNano()
		}
		s.gen = g
	case events.PasscodeDisabled:
		if d.Reason == events.DisableLockout || (s.gen != nil && s.gen.ID == d.PasscodeID) {
			s.retiring = nil // as domain: a lockout or a disable ends the grace
		}
		if g := s.gen; g != nil && g.ID == d.PasscodeID && g.Disabled == nil {
			g.Disabled = &disableInfo{At: at, By: e.Actor.ID, Reason: d.Reason}
		}
	case events.EnrollmentAttemptFailed:
		if g := s.gen; g != nil && g.ID == d.PasscodeID {
			w := s.policy().FailureWindow
			g.Failures = prune(append(g.Failures, at), at, w)
			if g.BySource == nil {
				g.BySource = make(map[string][]int64)
			}
			for _, k := range domain.SourceKeys(d.Source) {
				g.BySource[k] = append(g.BySource[k], at)
			}
			for k, times := range g.BySource {
				if times = prune(times, at, w); len(times) == 0 {
					delete(g.BySource, k)
				} else {
					g.BySource[k] = times
				}
			}
			if d.ReachesThreshold() {
				g.Locked = true
				s.retiring = nil
			}
			src := d.Source
			g.LastFailedSource = &src
		}
		s.addSourceFailure(at, d.Source)
	case events.EnrollmentAttemptExcused:
		if g := s.gen; g != nil && g.ID == d.PasscodeID {
			src := d.Source
			g.LastFailedSource = &src
		}
		s.addSourceFailure(at, d.Source) // the source's rate only, never the lockout
	case events.EnrollmentAttemptSucceeded:
		if g := s.gen; g != nil && g.ID == d.PasscodeID {
			g.Enrollments = min(max(g.Enrollments+1, d.Enrollments), domain.MaxMaxEnrollments)
			g.LastEnrolledAt = at
		}
	case events.LockoutPolicyChanged:
		mode := events.ModeEnforce
		if d.Mode.Monitor() {
			mode = events.ModeMonitor
		}
		s.override = &lockout{MaxFailed: d.MaxFailedAttempts, Window: d.FailureWindow.D(), Mode: mode}
		if g := s.gen; g != nil && g.ID == d.PasscodeID && d.Locks() {
			g.Locked = true
			s.retiring = nil
		}
	case events.PasscodeRevealed, events.PasscodeExpired, events.PasscodeLockoutSimulated:
		// Audit only: a lapse follows from the clock and the other events.
	}
}

// prune keeps what domain keeps of a generation's failures: those in the
// window (0: all), at most domain.MaxMaxFailedAttempts.
func prune(times []int64, at int64, window time.Duration) []int64 {
	if window > 0 {
		times = inWindow(times, at, window)
	}
	if n := len(times); n > domain.MaxMaxFailedAttempts {
		times = times[n-domain.MaxMaxFailedAttempts:]
	}
	return times
}

func (s *SiteState) addSourceFailure(at int64, src events.Source) {
	keys := domain.SourceKeys(src)
	if s.sources == nil {
		s.sources = make(map[string][]int64)
	}
	window := s.defaults.SourceWindow
	keep := s.keepPerSource()
	for _, k := range keys {
		times := append(inWindow(s.sources[k], at, window), at)
		if n := len(times); n > keep {
			// Copy so that the slice does not pin a growing backing array.
			times = append([]int64(nil), times[n-keep:]...)
		}
		s.sources[k] = times
	}
	for k, times := range s.sources {
		if len(inWindow(times, at, window)) == 0 {
			delete(s.sources, k)
		}
	}
}

// inWindow returns the times after at-window (same rule as domain: from the
// first time after the cut on).
func inWindow(times []int64, at int64, window time.Duration) []int64 {
	cut := at - int64(window)
	for i, t := range times {
		if t > cut {
			return times[i:]
		}
	}
	return nil
}

func timePtr(ns int64) *time.Time {
	t := time.Unix(0, ns).UTC()
	return &t
}

// Doc returns the state document at now: failures are counted in the window
// that ends at now.
func (s *SiteState) Doc(now time.Time) StateDoc {
	pol := s.policy()
	d := StateDoc{Site: s.site, Status: domain.StatusNone, MaxFailedAttempts: pol.MaxFailedAttempts,
		FailureWindow: events.Duration(pol.FailureWindow), Seq: s.seq, Mode: pol.Mode}
	if d.Mode == "" {
		d.Mode = events.ModeEnforce
	}
	d.ThrottledSources = s.throttledSources(now, pol)
	g := s.gen
	if g == nil {
		return d
	}
	d.Status, d.PasscodeID, d.GeneratedAt, d.GeneratedBy, d.Locked =
		domain.StatusActive, g.ID, timePtr(g.GeneratedAt), g.GeneratedBy, g.Locked
	if pol.FailureWindow == 0 {
		d.FailedAttempts = len(g.Failures)
	} else {
		d.FailedAttempts = len(inWindow(g.Failures, now.UnixNano(), pol.FailureWindow))
	}
	if n := len(g.Failures); n > 0 {
		d.LastFailedAt = timePtr(g.Failures[n-1])
	}
	d.CheckCharacter, d.MaxEnrollments, d.Enrollments, d.LastFailedSource = g.Checked, g.MaxEnrollments, g.Enrollments, g.LastFailedSource
	if g.ExpiresAt != 0 {
		d.ExpiresAt = timePtr(g.ExpiresAt)
	}
	if g.LastEnrolledAt != 0 {
		d.LastEnrolledAt = timePtr(g.LastEnrolledAt)
	}
	switch {
	case g.MaxEnrollments > 0 && g.Enrollments >= g.MaxEnrollments:
		d.Status = domain.StatusUsedUp
	case g.ExpiresAt != 0 && now.UnixNano() >= g.ExpiresAt:
		d.Status = domain.StatusExpired
	}
	if dis := g.Disabled; dis != nil {
		d.Status, d.DisabledAt, d.DisabledBy, d.DisabledReason = domain.StatusDisabled, timePtr(dis.At), dis.By, dis.Reason
	}
	if r := s.retiring; r != nil && now.UnixNano() < r.Until && d.Status != domain.StatusDisabled && !g.Locked {
		d.Retiring = &RetiringDoc{PasscodeID: r.ID, Until: time.Unix(0, r.Until).UTC()}
	}
	return d
}

// throttledSources lists the sources throttled at now, sorted by key, by
// domain's rule (Policy.SourceThrottle).
func (s *SiteState) throttledSources(now time.Time, pol domain.Policy) []ThrottledSource {
	var counted map[string][]int64
	if s.gen != nil {
		counted = s.gen.BySource
	}
	keys := make(map[string]bool, len(s.sources)+len(counted))
	for k := range s.sources {
		keys[k] = true
	}
	for k := range counted {
		keys[k] = true
	}
	var out []ThrottledSource
	for k := range keys {
		c := counted[k]
		if pol.FailureWindow > 0 {
			c = inWindow(c, now.UnixNano(), pol.FailureWindow)
		}
		until, forever, ok := pol.SourceThrottle(now, toTimes(s.sources[k]), toTimes(c))
		if !ok {
			continue
		}
		ts := ThrottledSource{Key: k}
		if !forever {
			u := until.UTC()
			ts.Until = &u
		}
		out = append(out, ts)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func toTimes(ns []int64) []time.Time {
	out := make([]time.Time, len(ns))
	for i, n := range ns {
		out[i] = time.Unix(0, n)
	}
	return out
}

// Clone returns a copy that Apply may change without changing s. The times
// slices are shared, capped at their length: Apply never writes into one in
// place (it appends, which then reallocates, or reslices), so sharing is
// safe and a site with hundreds of source keys is cloned without copying
// their times (the store clones a site's state for every commit that
// touches it).
func (s *SiteState) Clone() *SiteState {
	c := *s
	if s.override != nil {
		o := *s.override
		c.override = &o
	}
	if s.gen != nil {
		g := *s.gen
		g.Failures = slices.Clip(s.gen.Failures)
		g.BySource = clipTimesMap(s.gen.BySource)
		if s.gen.Disabled != nil {
			dis := *s.gen.Disabled
			g.Disabled = &dis
		}
		if s.gen.LastFailedSource != nil {
			src := *s.gen.LastFailedSource
			g.LastFailedSource = &src
		}
		c.gen = &g
	}
	c.sources = clipTimesMap(s.sources)
	if s.retiring != nil {
		r := *s.retiring
		c.retiring = &r
	}
	return &c
}

// clipTimesMap copies m, each slice capped at its length.
func clipTimesMap(m map[string][]int64) map[string][]int64 {
	if m == nil {
		return nil
	}
	c := make(map[string][]int64, len(m))
	for k, v := range m {
		c[k] = slices.Clip(v)
	}
	return c
}
