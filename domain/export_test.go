package domain

import (
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// ThrottledSources lists the sources throttled at now, for the black-box
// tests of the throttle.
func (p *Passcode) ThrottledSources(now time.Time) []ThrottledSource {
	return p.log.ThrottledSources(now, p.defaults)
}

// SourceKeys returns the keys a source's failures are counted under.
func SourceKeys(s events.Source) []string {
	ks := keysOf(s)
	if ks[1] == "" {
		return ks[:1]
	}
	return ks[:]
}
