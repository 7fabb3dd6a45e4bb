package app

import (
	"errors"
	"net/url"
	"strings"
)

// redacted replaces a secret in what is printed.
const redacted = "xxxxx"

// redactURL returns a NATS server list (one URL or several, comma-separated)
// fit for a log line or an error: a password is replaced, and so is a user
// without a password, since nats.go sends that as a token. It works on the
// text, not on a parsed URL, so that a URL that does not parse is redacted
// too; a path holding '@' is over-redacted, never under.
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		rest := p
		prefix := ""
		if j := strings.Index(p, "://"); j >= 0 {
			prefix, rest = p[:j+3], p[j+3:]
		}
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			continue
		}
		user := redacted
		if c := strings.Index(rest[:at], ":"); c >= 0 {
			user = rest[:c+1] + redacted
		}
		parts[i] = prefix + user + rest[at:]
	}
	return strings.Join(parts, ",")
}

// redactErr redacts the URL of a *url.Error: nats.Connect returns one, with
// the URL as given, for a URL that does not parse. An escape error quotes
// the bad escape, which may be part of a password.
func redactErr(err error) error {
	ue, ok := err.(*url.Error)
	if !ok {
		return err
	}
	inner := ue.Err
	if _, ok := inner.(url.EscapeError); ok {
		inner = errors.New("invalid URL escape")
	}
	return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: inner}
}
