package httpapi

import (
	"strings"
	"testing"
	"time"
)

// The access log shows the path percent-encoded, as it was on the wire: a
// client cannot put into a log line a character the JSON encoder passes
// through as itself (C1 controls, DEL, U+2028, bidi overrides), nor a
// decoded newline or escape.
func TestAccessLogEscapesPath(t *testing.T) {
	e := newEnv(t, &fakeCommands{})
	paths := []string{
		"/v1/sites/acme/%c2%9b31mforged",
		"/v1/sites/acme/%e2%80%a8forged",
		"/v1/sites/acme/%e2%80%aeforged",
		"/v1/sites/acme/%7fforged",
		"/v1/sites/acme/%1b[2K%0d%0aforged",
	}
	for _, p := range paths {
		if r := e.do(t, "GET", p, e.auditor, nil); r.status != 404 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
	eventually(t, 2*time.Second, "access log lines", func() bool {
		return strings.Count(e.logs.String(), `"http request"`) == len(paths)
	})
	logs := e.logs.String()
	for _, bad := range []string{"\u009b", "\u2028", "\u202e", "\x7f", "\x1b", `\u001b`, `\n`, `\r`} {
		if strings.Contains(logs, bad) {
			t.Errorf("the access log holds %q:\n%s", bad, logs)
		}
	}
	for _, p := range paths {
		want := `"path":"` + p + `"`
		if !strings.Contains(logs, want) {
			t.Errorf("the access log lacks %s:\n%s", want, logs)
		}
	}
}
