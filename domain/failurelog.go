package domain

import (
	"slices"
	"strings"
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// FailureLog is what a site's lockout and per-source throttle decide on: the
// site's own policy override, the failures counted against the current
// generation (in the failure window, at most MaxMaxFailedAttempts) with its
// lock, and per source key the recent failure times across generations. The
// aggregate decides with it and the read model shows it, so that both follow
// one copy of the rules. The zero value is a site with no history. Not safe
// for concurrent use.
type FailureLog struct {
	// failures count against the current generation, whose ID the caller
	// passes to Apply (kept once per site, by the caller).
	failures []failure
	// lock is set by the failure (or policy change) that reached the
	// threshold: from then on no candidate is compared, whatever the window
	// does later. It keeps the moment and policy of the lock, so that a late
	// lockout disable still reports the failures that caused it.
	lock *lockInfo
	// lastFailed is the source of the current generation's last wrong
	// attempt of any outcome.
	lastFailed *failureSource
	// override is the site's own threshold, window and mode.
	override *lockout
	// sources holds, per source key, its recent failure times: the rate limit
	// of sourceThrottle. A slice sorted by key rather than a map, for a map
	// costs several hundred bytes; a key stays only while it has failures in
	// the source window.
	sources []sourceTimes
}

// Apply folds one event into the log under the configured defaults and
// reports whether the event locked the current generation. current is the ID
// of the site's current generation before e; empty for none. Events the log
// does not depend on change nothing.
func (l *FailureLog) Apply(e events.Event, current string, defaults Policy) (locked bool) {
	switch d := e.Data.(type) {
	case events.PasscodeGenerated:
		// A new generation starts with a fresh count; the per-source rate
		// goes on across generations.
		l.failures, l.lock, l.lastFailed = nil, nil, nil
	case events.EnrollmentAttemptFailed:
		var keys sourceKeys
		if d.PasscodeID == current && current != "" {
			src := l.sourceOf(d.Source)
			keys = src.keys
			l.failures = append(l.failures, failure{at: unixNano(e.OccurredAt), src: src})
			// Keep only what can still count: failures in the window, and
			// never more than the largest threshold a policy may set.
			if w := l.Policy(defaults).FailureWindow; w > 0 {
				l.failures = l.counted(e.OccurredAt, w)
			}
			if n := len(l.failures); n > MaxMaxFailedAttempts {
				l.failures = l.failures[n-MaxMaxFailedAttempts:]
			}
			if d.ReachesThreshold() && l.lock == nil {
				l.lock = &lockInfo{at: e.OccurredAt, maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D()}
				locked = true
			}
			l.lastFailed = src
		} else {
			keys = keysOf(d.Source)
		}
		l.addSourceFailure(e.OccurredAt, keys, defaults)
	case events.EnrollmentAttemptExcused:
		var keys sourceKeys
		if d.PasscodeID == current && current != "" {
			l.lastFailed = l.sourceOf(d.Source)
			keys = l.lastFailed.keys
		} else {
			keys = keysOf(d.Source)
		}
		// It counts toward its source's rate, never toward the lockout.
		l.addSourceFailure(e.OccurredAt, keys, defaults)
	case events.LockoutPolicyChanged:
		if !validPolicyChange(d) {
			break
		}
		mode := events.ModeEnforce
		if d.Mode.Monitor() {
			mode = events.ModeMonitor
		}
		l.override = &lockout{maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D(), mode: mode}
		if d.Locks() && d.PasscodeID == current && current != "" && l.lock == nil {
			l.lock = &lockInfo{at: e.OccurredAt, maxFailed: d.MaxFailedAttempts, window: d.FailureWindow.D()}
			locked = true
		}
	}
	return locked
}

// validPolicyChange reports whether d is a policy a decision could have
// stored. One that is not (written by other tooling) is ignored rather than
// trusted, since a threshold of 0 would switch the lockout off
// (ReachesThreshold needs a positive threshold).
func validPolicyChange(d events.LockoutPolicyChanged) bool {
	return ValidateLockout(d.MaxFailedAttempts, d.FailureWindow.D()) == nil && ValidateMode(d.Mode) == nil
}

// Policy returns the policy in force: the defaults with the site's override.
func (l *FailureLog) Policy(defaults Policy) Policy {
	if o := l.override; o != nil {
		defaults.MaxFailedAttempts, defaults.FailureWindow, defaults.Mode = o.maxFailed, o.window, o.mode
	}
	return defaults
}

// Locked reports whether the current generation reached the threshold.
func (l *FailureLog) Locked() bool { return l.lock != nil }

// FailedAttempts returns how many failures count against the current
// generation at now.
func (l *FailureLog) FailedAttempts(now time.Time, defaults Policy) int {
	return len(l.counted(now, l.Policy(defaults).FailureWindow))
}

// LastFailedAt returns the time of the current generation's last kept
// failure; zero for none.
func (l *FailureLog) LastFailedAt() time.Time {
	if len(l.failures) == 0 {
		return time.Time{}
	}
	return unixTime(l.failures[len(l.failures)-1].at)
}

// LastFailedSource returns the source of the current generation's last wrong
// attempt of any outcome (wrong, outdated, mistyped); nil for none.
func (l *FailureLog) LastFailedSource() *events.Source {
	if l.lastFailed == nil {
		return nil
	}
	s := l.lastFailed.source
	return &s
}

// Clone returns a copy that Apply may change without changing l. The times
// are shared, capped at their length: Apply never writes into them in place,
// it appends (which then reallocates) or reslices.
func (l *FailureLog) Clone() FailureLog {
	c := *l
	c.failures = slices.Clip(l.failures)
	if l.sources != nil {
		c.sources = make([]sourceTimes, len(l.sources))
		for i, st := range l.sources {
			c.sources[i] = sourceTimes{key: st.key, times: slices.Clip(st.times)}
		}
	}
	return c
}

// counted returns the failures that count at now under window (0: all),
// oldest first.
func (l *FailureLog) counted(now time.Time, window time.Duration) []failure {
	return countedAt(l.failures, now, window)
}

// countedAt returns the failures of fs (oldest first) that count at now
// under window (0: all).
func countedAt(fs []failure, now time.Time, window time.Duration) []failure {
	if window == 0 {
		return fs
	}
	cut := unixNano(now.Add(-window))
	for i, f := range fs {
		if f.at > cut {
			return fs[i:]
		}
	}
	return nil
}

// lockedGeneration is what a lockout alert needs of the current generation
// id once it is replaced: its failures and its lock.
func (l *FailureLog) lockedGeneration(id string) unrecorded {
	return unrecorded{id: id, failures: l.failures, lock: l.lock}
}

// sourceOf returns the failure source of s, shared with an earlier failure of
// the same source when the generation has one.
func (l *FailureLog) sourceOf(s events.Source) *failureSource {
	for i := len(l.failures) - 1; i >= 0; i-- {
		if fs := l.failures[i].src; fs.source == s {
			return fs
		}
	}
	return &failureSource{source: s, keys: keysOf(s)}
}

// keepPerSource is how many failure times a source key keeps: the source
// limit in force never exceeds the configured per-source maximum, and
// sourceThrottle looks at no more than that many.
func keepPerSource(defaults Policy) int {
	return min(max(defaults.MaxFailedPerSource, 1), MaxMaxFailedAttempts)
}

// addSourceFailure counts a failure at t against the source's keys and drops
// the ones that have aged out of the source window.
func (l *FailureLog) addSourceFailure(t time.Time, keys sourceKeys, defaults Policy) {
	at, cut := unixNano(t), unixNano(t.Add(-defaults.SourceWindow))
	keep := keepPerSource(defaults)
	for _, k := range keys {
		if k == "" {
			continue
		}
		i, ok := l.sourceIndex(k)
		if !ok {
			if l.sources == nil {
				l.sources = make([]sourceTimes, 0, 2)
			}
			l.sources = slices.Insert(l.sources, i, sourceTimes{key: k})
		}
		times := append(inWindowNs(l.sources[i].times, cut), at)
		if n := len(times); n > keep {
			times = times[n-keep:]
		}
		l.sources[i].times = times
	}
	// Forget sources whose failures have all aged out, so that the list does
	// not grow with every address ever seen.
	kept := l.sources[:0]
	for _, st := range l.sources {
		if len(inWindowNs(st.times, cut)) > 0 {
			kept = append(kept, st)
		}
	}
	clear(l.sources[len(kept):])
	l.sources = kept
	if len(l.sources) == 0 {
		l.sources = nil
	}
}

// sourceIndex returns the index of key in l.sources, or where it would go,
// and whether it is there.
func (l *FailureLog) sourceIndex(key string) (int, bool) {
	return slices.BinarySearchFunc(l.sources, key, func(st sourceTimes, k string) int { return strings.Compare(st.key, k) })
}

// throttled returns how long the source must wait at now, or 0 when it may
// try.
func (l *FailureLog) throttled(now time.Time, s events.Source, pol Policy) time.Duration {
	var wait time.Duration
	counted := l.counted(now, pol.FailureWindow)
	for _, k := range keysOf(s) {
		if k == "" {
			continue
		}
		var recent []int64
		if i, ok := l.sourceIndex(k); ok {
			recent = l.sources[i].times
		}
		var byKey []int64
		for _, f := range counted {
			if f.src.keys.has(k) {
				byKey = append(byKey, f.at)
			}
		}
		until, forever, ok := pol.sourceThrottle(now, recent, byKey)
		switch {
		case !ok:
			continue
		case forever:
			// Until a regeneration: suggest the source window as a pause.
			wait = max(wait, pol.SourceWindow)
		default:
			wait = max(wait, until.Sub(now))
		}
	}
	if wait > 0 && wait < time.Second {
		wait = time.Second
	}
	return wait
}

// ThrottledSource is a source that is throttled now.
type ThrottledSource struct {
	Key string // "ip:<addr or /64>", "device:<id>" or AnonymousSource
	// Until is when it may try again; zero when it is throttled until the
	// passcode is regenerated (a failure window of 0).
	Until time.Time
}

// ThrottledSources lists the sources throttled at now, sorted by key. It
// walks the source keys and the counted failures' keys, each sorted, side by
// side, so that a site with many sources costs a sort, not a scan per key.
func (l *FailureLog) ThrottledSources(now time.Time, defaults Policy) []ThrottledSource {
	pol := l.Policy(defaults)
	limit := pol.SourceLimit()
	failures := l.counted(now, pol.FailureWindow)
	// The common case: no key has failures enough to be throttled (a key
	// has no more counted failures than the generation).
	if len(failures) < limit && !slices.ContainsFunc(l.sources, func(st sourceTimes) bool { return len(st.times) >= limit }) {
		return nil
	}
	srcs := l.sources
	type keyTime struct {
		key string
		at  int64
	}
	var counted []keyTime
	for _, f := range failures {
		for _, k := range f.src.keys {
			if k != "" {
				counted = append(counted, keyTime{k, f.at})
			}
		}
	}
	// Stable: a key's failures stay oldest first.
	slices.SortStableFunc(counted, func(a, b keyTime) int { return strings.Compare(a.key, b.key) })
	var out []ThrottledSource
	var times []int64
	for i, j := 0, 0; i < len(srcs) || j < len(counted); {
		var key string
		switch {
		case j == len(counted) || (i < len(srcs) && srcs[i].key <= counted[j].key):
			key = srcs[i].key
		default:
			key = counted[j].key
		}
		var recent []int64
		if i < len(srcs) && srcs[i].key == key {
			recent = srcs[i].times
			i++
		}
		times = times[:0]
		for ; j < len(counted) && counted[j].key == key; j++ {
			times = append(times, counted[j].at)
		}
		if len(recent) < limit && len(times) < limit {
			continue // the common case: nothing to throttle
		}
		if until, _, ok := pol.sourceThrottle(now, recent, times); ok {
			out = append(out, ThrottledSource{Key: key, Until: until})
		}
	}
	return out
}
