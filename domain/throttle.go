package domain

import (
	"net/netip"
	"strings"
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// AnonymousSource is the key of attempts that name neither an IP nor a device
// ID. They share one key, so that attempts without a source can never lock a
// site on their own either.
const AnonymousSource = "anonymous"

// SourceKeys returns the keys a source's failures are counted under: its IP
// and its device ID, each when given, or AnonymousSource for neither. An IPv4
// address (also written IPv4-mapped) counts as itself; an IPv6 address counts
// as its /64, the smallest block a single subscriber usually holds, so that
// walking through one's own addresses does not make new sources.
func SourceKeys(s events.Source) []string {
	keys := make([]string, 0, 2)
	if s.IP != "" {
		keys = append(keys, "ip:"+normaliseIP(s.IP))
	}
	if s.DeviceID != "" {
		keys = append(keys, "device:"+s.DeviceID)
	}
	if len(keys) == 0 {
		keys = append(keys, AnonymousSource)
	}
	return keys
}

func normaliseIP(raw string) string {
	addr, err := netip.ParseAddr(strings.TrimSpace(raw))
	if err != nil {
		return strings.ToLower(strings.TrimSpace(raw))
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		return netip.PrefixFrom(addr, 64).Masked().String()
	}
	return addr.String()
}

// SourceThrottle says whether a source key is throttled at now, and until
// when. recent are the key's failure times in the source window (across
// generations: a rate limit); counted are its failures among those counted
// against the current generation's lockout (in the failure window). The
// second rule is what makes the contract hold: one source can contribute at
// most SourceLimit (below the threshold) failures to any lockout, however
// slowly it spreads them. With a failure window of 0 counted failures never
// age out; the source stays throttled until a regeneration, and forever is
// true.
func (pol Policy) SourceThrottle(now time.Time, recent, counted []time.Time) (until time.Time, forever, throttled bool) {
	limit := pol.SourceLimit()
	if r := inWindow(recent, now, pol.SourceWindow); len(r) >= limit {
		until, throttled = r[len(r)-limit].Add(pol.SourceWindow), true
	}
	if len(counted) >= limit {
		if pol.FailureWindow == 0 {
			return time.Time{}, true, true
		}
		if u := counted[len(counted)-limit].Add(pol.FailureWindow); u.After(until) {
			until = u
		}
		throttled = true
	}
	return until, false, throttled
}

// inWindow returns the times (oldest first) after now-window.
func inWindow(times []time.Time, now time.Time, window time.Duration) []time.Time {
	cut := now.Add(-window)
	for i, t := range times {
		if t.After(cut) {
			return times[i:]
		}
	}
	return nil
}

// inWindowNs is inWindow for unix nanoseconds: the times (oldest first)
// after cut.
func inWindowNs(times []int64, cut int64) []int64 {
	for i, t := range times {
		if t > cut {
			return times[i:]
		}
	}
	return nil
}

// toTimes converts unix nanoseconds to times (UTC).
func toTimes(ns []int64) []time.Time {
	if len(ns) == 0 {
		return nil
	}
	out := make([]time.Time, len(ns))
	for i, n := range ns {
		out[i] = unixTime(n)
	}
	return out
}

// throttled returns how long the source must wait, or 0 when it may try.
func (p *Passcode) throttled(now time.Time, s events.Source, pol Policy) time.Duration {
	var wait time.Duration
	for _, k := range SourceKeys(s) {
		until, forever, ok := pol.SourceThrottle(now, p.recentOf(now, pol, k), p.countedBySource(now, pol, k))
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

// recentOf returns the failure times of key in the source window at now, as
// SourceThrottle takes them (it applies the same window again).
func (p *Passcode) recentOf(now time.Time, pol Policy, key string) []time.Time {
	return toTimes(inWindowNs(p.sourceTimesOf(key), unixNano(now.Add(-pol.SourceWindow))))
}

// countedBySource returns the times of the failures counted against the
// current generation that came from key.
func (p *Passcode) countedBySource(now time.Time, pol Policy, key string) []time.Time {
	if p.gen == nil {
		return nil
	}
	var out []time.Time
	for _, f := range p.gen.countedFailures(now, pol.FailureWindow) {
		if f.src.keys.has(key) {
			out = append(out, unixTime(f.at))
		}
	}
	return out
}

// ThrottledSource is a source that is throttled now.
type ThrottledSource struct {
	Key string // "ip:<addr or /64>", "device:<id>" or AnonymousSource
	// Until is when it may try again; zero when it is throttled until the
	// passcode is regenerated (a failure window of 0).
	Until time.Time
}

// ThrottledSources lists the sources throttled at now.
func (p *Passcode) ThrottledSources(now time.Time) []ThrottledSource {
	pol := p.Policy()
	keys := make(map[string]bool, len(p.sources))
	for _, st := range p.sources {
		keys[st.key] = true
	}
	if p.gen != nil {
		for _, f := range p.gen.countedFailures(now, pol.FailureWindow) {
			for _, k := range f.src.keys {
				if k != "" {
					keys[k] = true
				}
			}
		}
	}
	var out []ThrottledSource
	for k := range keys {
		until, _, ok := pol.SourceThrottle(now, p.recentOf(now, pol, k), p.countedBySource(now, pol, k))
		if ok {
			out = append(out, ThrottledSource{Key: k, Until: until})
		}
	}
	return out
}
