package domain

import "time"

// ThrottledSources lists the sources throttled at now, for the black-box
// tests of the throttle.
func (p *Passcode) ThrottledSources(now time.Time) []ThrottledSource {
	return p.log.ThrottledSources(now, p.defaults)
}
