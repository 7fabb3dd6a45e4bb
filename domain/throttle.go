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

// keysOf returns the keys a source's failures are counted under: its IP and
// its device ID, each when given, or AnonymousSource for neither. An IPv4
// address (also written IPv4-mapped) counts as itself; an IPv6 address counts
// as its /64, the smallest block a single subscriber usually holds, so that
// walking through one's own addresses does not make new sources.
func keysOf(s events.Source) sourceKeys {
	var ks sourceKeys
	n := 0
	if s.IP != "" {
		ks[n], n = ipKey(s.IP), n+1
	}
	if s.DeviceID != "" {
		ks[n], n = "device:"+s.DeviceID, n+1
	}
	if n == 0 {
		ks[0] = AnonymousSource
	}
	return ks
}

// ipKey is the key of an IP: "ip:" and the address, or its /64 for IPv6,
// written in one allocation.
func ipKey(raw string) string {
	addr, err := netip.ParseAddr(strings.TrimSpace(raw))
	if err != nil {
		return "ip:" + strings.ToLower(strings.TrimSpace(raw))
	}
	b := append(make([]byte, 0, 64), "ip:"...)
	if addr = addr.Unmap().WithZone(""); addr.Is6() {
		b = netip.PrefixFrom(addr, 64).Masked().AppendTo(b)
	} else {
		b = addr.AppendTo(b)
	}
	return string(b)
}

// sourceThrottle says whether a source key is throttled at now, and until
// when. recent are the key's failure times (unix ns, oldest first) across
// generations: a rate limit over the source window; counted are its failures
// among those counted against the current generation's lockout (in the
// failure window). The second rule is what makes the contract hold: one
// source can contribute at most SourceLimit (below the threshold) failures to
// any lockout, however slowly it spreads them. With a failure window of 0
// counted failures never age out; the source stays throttled until a
// regeneration, and forever is true.
func (pol Policy) sourceThrottle(now time.Time, recent, counted []int64) (until time.Time, forever, throttled bool) {
	limit := pol.SourceLimit()
	if r := inWindowNs(recent, unixNano(now.Add(-pol.SourceWindow))); len(r) >= limit {
		until, throttled = unixTime(r[len(r)-limit]).Add(pol.SourceWindow), true
	}
	if len(counted) >= limit {
		if pol.FailureWindow == 0 {
			return time.Time{}, true, true
		}
		if u := unixTime(counted[len(counted)-limit]).Add(pol.FailureWindow); u.After(until) {
			until = u
		}
		throttled = true
	}
	return until, false, throttled
}

// inWindowNs returns the times (unix ns, oldest first) after cut.
func inWindowNs(times []int64, cut int64) []int64 {
	for i, t := range times {
		if t > cut {
			return times[i:]
		}
	}
	return nil
}
