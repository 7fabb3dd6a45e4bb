package console

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, path string) *http.Response {
	t.Helper()
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestHeaders: every response carries the strict policy, whatever it is.
func TestHeaders(t *testing.T) {
	for _, c := range []struct {
		path, ctype string
		status      int
	}{
		{"/", "text/html", 200},
		{"/console/console.css", "text/css", 200},
		{"/console/main.js", "text/javascript", 200},
		{"/console/api.js", "text/javascript", 200},
		{"/console/nothing.js", "", 404},
		{"/console/", "", 404},
		{"/console/sub/", "", 404},
		{"/console/index.html", "", 404},
	} {
		resp := get(t, c.path)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", c.path, resp.StatusCode, c.status)
		}
		if c.ctype != "" && !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) {
			t.Errorf("%s: Content-Type %q", c.path, resp.Header.Get("Content-Type"))
		}
		h := resp.Header
		if h.Get("Content-Security-Policy") != ContentSecurityPolicy || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: headers %v", c.path, h)
		}
	}
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
		"frame-ancestors 'none'", "base-uri 'none'", "object-src 'none'", "require-trusted-types-for 'script'"} {
		if !strings.Contains(ContentSecurityPolicy, want) {
			t.Errorf("CSP lacks %s", want)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") || strings.Contains(ContentSecurityPolicy, "http") {
		t.Errorf("CSP allows too much: %s", ContentSecurityPolicy)
	}
	resp := get(t, "/")
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `src="/console/main.js"`) {
		t.Errorf("the page does not load the console's module")
	}
}

// TestAssetsAreSelfContained: no inline script, style or handler, no other
// origin, no markup built from strings: what the CSP enforces, checked in
// the source so that a change fails here before it fails in a browser.
func TestAssetsAreSelfContained(t *testing.T) {
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)
	handlerAttr := regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	n := 0
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := assets.ReadFile(path)
		if err != nil {
			return err
		}
		src := string(b)
		switch {
		case strings.HasSuffix(path, ".html"):
			if inlineScript.MatchString(src) || strings.Contains(src, "<style") || strings.Contains(src, "style=") ||
				handlerAttr.MatchString(src) {
				t.Errorf("%s has inline script, style or a handler attribute", path)
			}
		case strings.HasSuffix(path, ".js"):
			for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
				"new Function", "setAttribute('style'", "localStorage", "document.cookie"} {
				if strings.Contains(src, bad) {
					t.Errorf("%s uses %s", path, bad)
				}
			}
		}
		for _, m := range external.FindAllString(src, -1) {
			if m != "http://www.w3.org" && m != "//www.w3.org" {
				t.Errorf("%s refers to another origin: %s", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d assets embedded", n)
	}
}
