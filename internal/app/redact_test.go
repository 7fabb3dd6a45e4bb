package app

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://user:s3cret@host:4222", "nats://user:xxxxx@host:4222"},
		{"tls://user:s3cret@host:4222", "tls://user:xxxxx@host:4222"},
		{"nats://s3cret@host:4222", "nats://xxxxx@host:4222"},              // a user alone is sent as a token
		{"nats://user:@host", "nats://user:xxxxx@host"},                    // an empty password shows nothing either
		{"nats://user:p@ss:w@rd@host:4222", "nats://user:xxxxx@host:4222"}, // '@' unescaped in the password
		{"nats://user:pa%ss@host", "nats://user:xxxxx@host"},               // does not parse as a URL
		{"user:s3cret@host:4222", "user:xxxxx@host:4222"},                  // nats.go adds the scheme itself
		{"nats://a:s3cret@n1:4222,nats://s3cret@n2:4222, nats://n3:4222", "nats://a:xxxxx@n1:4222,nats://xxxxx@n2:4222, nats://n3:4222"},
		{"nats://n1:4222,n2:4222", "nats://n1:4222,n2:4222"},
	} {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(redactURL(tc.in), "s3cret") {
			t.Errorf("redactURL(%q) keeps the secret", tc.in)
		}
	}
}

func TestRedactErr(t *testing.T) {
	//lint:ignore SA1007 invalid on purpose: an escape error, which quotes the URL with its password
	_, perr := url.Parse("nats://user:pa%ss@host")
	if perr == nil || !strings.Contains(perr.Error(), "pa%ss") {
		t.Fatalf("url.Parse error %v does not quote the URL; the test proves nothing", perr)
	}
	err := redactErr(perr)
	if strings.Contains(err.Error(), "%ss") || !strings.Contains(err.Error(), "user:xxxxx@host") {
		t.Fatalf("redactErr: %v", err)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("redactErr lost the error's type: %#v", err)
	}
	//lint:ignore SA1007 invalid on purpose: a host error, which quotes the URL with its password
	_, herr := url.Parse("nats://user:pw@[::1")
	if err := redactErr(herr); strings.Contains(err.Error(), "pw") || !strings.Contains(err.Error(), "missing ']' in host") {
		t.Fatalf("redactErr of a host error: %v", err)
	}
	plain := errors.New("nats: no servers available for connection")
	if redactErr(plain) != plain {
		t.Fatal("redactErr changed an error without a URL")
	}
}
