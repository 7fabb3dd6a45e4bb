package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestParseConfigNATSClientAndTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // a part of the error; empty: valid
	}{
		{"user and password", []string{"--nats-url", "nats://n1:4222", "--nats-user", "svc", "--nats-password", "pw"}, ""},
		{"ca", []string{"--nats-url", "tls://n1:4222", "--nats-ca", "ca.pem"}, ""},
		{"cert and key", []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}, ""},
		{"password without user", []string{"--nats-url", "nats://n1:4222", "--nats-password", "pw"}, "--nats-password needs --nats-user"},
		{"user without password", []string{"--nats-url", "nats://n1:4222", "--nats-user", "svc"}, "--nats-user needs --nats-password"},
		{"user and creds", []string{"--nats-url", "nats://n1:4222", "--nats-user", "svc", "--nats-password", "pw", "--nats-creds", "x.creds"}, "give one"},
		{"user and credentials in the URL", []string{"--nats-url", "nats://a:s3cret@n1:4222", "--nats-user", "svc", "--nats-password", "pw"}, "nats://a:xxxxx@n1:4222 holds credentials"},
		{"user with the embedded server", []string{"--nats-user", "svc", "--nats-password", "pw"}, "--nats-user applies to --nats-url"},
		{"ca with the embedded server", []string{"--nats-ca", "ca.pem"}, "--nats-ca applies to --nats-url"},
		{"cert without key", []string{"--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{"key without cert", []string{"--tls-key", "k.pem"}, "--tls-cert and --tls-key go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig("serve", tc.args, func(string) string { return "" }, &bytes.Buffer{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one with %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Fatalf("the error holds the password: %v", err)
			}
		})
	}
}

// TestParseConfigSecretsFromEnv: a secret given in the environment is used,
// the flag still wins, and -h (which prints each flag's default) does not
// print it.
func TestParseConfigSecretsFromEnv(t *testing.T) {
	env := map[string]string{
		"ENROLLGATE_NATS_URL":              "nats://n1:4222",
		"ENROLLGATE_NATS_USER":             "svc",
		"ENROLLGATE_NATS_PASSWORD":         "env-nats-password",
		"ENROLLGATE_NATS_SERVICE_PASSWORD": "env-service-password-0123",
		"ENROLLGATE_ADMIN_TOKEN":           "env-admin-token-0123456789",
		"ENROLLGATE_ENROLLMENT_TOKEN":      "env-enrollment-token-0123",
		"ENROLLGATE_MAC_KEY":               "env-mac-key",
		"ENROLLGATE_SEAL_KEY":              "env-seal-key",
	}
	getenv := func(k string) string { return env[k] }
	c, err := parseConfig("serve", nil, getenv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSPassword != "env-nats-password" || c.NATSServicePassword != "env-service-password-0123" || c.AdminToken != "env-admin-token-0123456789" ||
		c.EnrollmentToken != "env-enrollment-token-0123" || c.MACKey != "env-mac-key" || c.SealKey != "env-seal-key" {
		t.Fatalf("secrets from the environment not used: %+v", c)
	}
	c, err = parseConfig("serve", []string{"--nats-password", "flag-password"}, getenv, &bytes.Buffer{})
	if err != nil || c.NATSPassword != "flag-password" {
		t.Fatalf("the flag does not win: %q, %v", c.NATSPassword, err)
	}
	var help bytes.Buffer
	if _, err := parseConfig("serve", []string{"-h"}, getenv, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if !strings.Contains(help.String(), "-nats-password") || !strings.Contains(help.String(), "nats://n1:4222") {
		t.Fatalf("-h output is not the flags with their defaults:\n%s", help.String())
	}
	for k, v := range env {
		if k != "ENROLLGATE_NATS_URL" && k != "ENROLLGATE_NATS_USER" && strings.Contains(help.String(), v) {
			t.Errorf("-h prints $%s", k)
		}
	}
}
