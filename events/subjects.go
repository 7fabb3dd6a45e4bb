package events

import (
	"fmt"
	"regexp"
	"strings"
)

// Stream, subjects and headers of the public contract.
const (
	// StreamName is the JetStream stream that holds the events of every site.
	// WARNING: it names stored data; renaming it loses the history.
	StreamName = "ENROLLGATE_EVENTS"
	// SubjectPrefix starts every event subject: enrollgate.events.<site>.
	SubjectPrefix = "enrollgate.events."
	// SubjectAll matches the events of every site.
	SubjectAll = SubjectPrefix + ">"
	// HeaderEventType carries the event's wire type on every stored message.
	HeaderEventType = "Enrollgate-Event-Type"
	// HeaderMAC authenticates a stored message: "<key-id>:<base64 HMAC-SHA256>"
	// over its subject, event ID, type, expectation and payload (see
	// internal/eventstore). A message without a valid one was not written by
	// the service.
	HeaderMAC = "Enrollgate-Mac"
)

var sitePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Site is a site ID of the contract: one NATS subject token and one URL
// segment. Each edge where a site ID enters (a request, a subject, a decoded
// event, a token's scope) makes it with ParseSite, so that code inside takes
// a Site as valid without checking it again.
type Site string

// ParseSite returns s as a Site if it is a site ID of the contract.
func ParseSite(s string) (Site, error) {
	if !sitePattern.MatchString(s) {
		return "", fmt.Errorf("invalid site ID %q: want 1-63 characters of a-z, 0-9 and '-', not starting with '-'", truncate(s, 70))
	}
	return Site(s), nil
}

// Subject returns the event subject of site.
func Subject(site Site) string { return SubjectPrefix + string(site) }

// SiteFromSubject returns the site of an event subject.
func SiteFromSubject(subject string) (Site, error) {
	site, ok := strings.CutPrefix(subject, SubjectPrefix)
	if !ok {
		return "", fmt.Errorf("subject %q is not an event subject", truncate(subject, 100))
	}
	return ParseSite(site)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
