package events_test

import (
	"strings"
	"testing"

	"github.com/enrollgate/enrollgate/events"
)

func TestParseSite(t *testing.T) {
	cases := []struct {
		site string
		ok   bool
	}{
		{"a", true},
		{"0", true},
		{"acme", true},
		{"acme-corp-2", true},
		{"a-", true},
		{"9lives", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-acme", false},
		{"Acme", false},
		{"acme_corp", false},
		{"acme.corp", false},
		{"acme corp", false},
		{"*", false},
		{">", false},
		{"acme/x", false},
		{"acme\n", false},
		{"\nacme", false},
		{"acmé", false},
		{"acme%2f", false},
	}
	for _, c := range cases {
		site, err := events.ParseSite(c.site)
		if (err == nil) != c.ok {
			t.Errorf("ParseSite(%q) = %v, want ok=%v", c.site, err, c.ok)
		}
		if want := map[bool]events.Site{true: events.Site(c.site)}[c.ok]; site != want {
			t.Errorf("ParseSite(%q) = %q, want %q", c.site, site, want)
		}
	}
}

func TestParseSiteTruncatesLongInput(t *testing.T) {
	_, err := events.ParseSite(strings.Repeat("X", 10_000))
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("error for a huge site = %d bytes, want a short error", len(err.Error()))
	}
}

func TestSubject(t *testing.T) {
	if got := events.Subject("acme"); got != "enrollgate.events.acme" {
		t.Errorf("Subject = %q", got)
	}
}

func TestSiteFromSubject(t *testing.T) {
	cases := []struct {
		subject string
		site    events.Site
		ok      bool
	}{
		{"enrollgate.events.acme", "acme", true},
		{"enrollgate.events.a-1", "a-1", true},
		{events.Subject("zeta"), "zeta", true},
		{"enrollgate.events.", "", false},
		{"enrollgate.events.acme.x", "", false},
		{"enrollgate.events.>", "", false},
		{"enrollgate.events.*", "", false},
		{"enrollgate.alerts.acme", "", false},
		{"enrollgate.eventsacme", "", false},
		{"acme", "", false},
		{"", "", false},
		{"x.enrollgate.events.acme", "", false},
		{"enrollgate.events.Acme", "", false},
	}
	for _, c := range cases {
		site, err := events.SiteFromSubject(c.subject)
		if (err == nil) != c.ok || site != c.site {
			t.Errorf("SiteFromSubject(%q) = %q, %v; want %q ok=%v", c.subject, site, err, c.site, c.ok)
		}
	}
}
