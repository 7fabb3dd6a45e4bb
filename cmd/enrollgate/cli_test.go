package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/internal/natstest"
)

// admin runs an admin command with token and returns stdout and the exit
// code main would use.
func (in *instance) admin(token string, args ...string) (string, int) {
	in.t.Helper()
	env := map[string]string{"ENROLLGATE_URL": "http://" + in.httpAddr, "ENROLLGATE_TOKEN": token}
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return out.String(), 0
	}
	return out.String() + err.Error(), exitCode(err)
}

// TestAdminCLI: the admin commands do what the quick tour does with curl,
// print tables or the API's JSON, and exit with a code that says what failed.
func TestAdminCLI(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir)
	admin := readAdminToken(t, dataDir)
	auditor := addTokenCmd(t, in, admin, "auditor", "auditor@acme.example", "acme")
	mustOK := func(token string, args ...string) string {
		t.Helper()
		out, code := in.admin(token, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), code, out)
		}
		return out
	}

	// A read follows the writes before it within milliseconds: poll it.
	waitFor := func(ok func(string) bool, token string, args ...string) string {
		t.Helper()
		var out string
		natstest.Eventually(t, 5*time.Second, func() error {
			if out = mustOK(token, args...); !ok(out) {
				return fmt.Errorf("%s:\n%s", strings.Join(args, " "), out)
			}
			return nil
		})
		return out
	}

	passcode := strings.TrimSpace(mustOK(admin, "passcode", "generate", "--site", "acme"))
	if !regexp.MustCompile(`^[0-9A-Za-z]{12}$`).MatchString(passcode) {
		t.Fatalf("generate printed %q", passcode)
	}
	waitFor(regexp.MustCompile(`(?m)^acme\s+active\s+0/10\s`).MatchString, admin, "sites", "ls")
	if out := mustOK(auditor, "passcode", "show", "--site", "acme"); !strings.Contains(out, "status           active") ||
		!strings.Contains(out, "by admin@localhost") || strings.Contains(out, passcode) {
		t.Fatalf("passcode show:\n%s", out)
	}
	file := filepath.Join(t.TempDir(), "candidate")
	if err := os.WriteFile(file, []byte("000000000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustOK(admin, "verify", "--site", "acme", "--ip", "192.0.2.9", "--passcode-file", file); out != "refused: wrong_passcode\n" {
		t.Fatalf("verify: %q", out)
	}
	waitFor(regexp.MustCompile(`(?m)failed\s+1\s+192\.0\.2\.9`).MatchString, auditor, "attempts", "--site", "acme", "--outcome", "failed")
	if out := mustOK(admin, "passcode", "reveal", "--site", "acme"); strings.TrimSpace(out) != passcode {
		t.Fatalf("reveal printed %q", out)
	}
	out := waitFor(func(out string) bool {
		return strings.Contains(out, "PasscodeRevealed") && strings.Contains(out, "more: --cursor ")
	}, auditor, "audit", "--site", "acme", "--limit", "2")
	cursor := regexp.MustCompile(`--cursor (\S+)`).FindStringSubmatch(out)[1]
	if out := mustOK(auditor, "audit", "--site", "acme", "--limit", "2", "--cursor", cursor); !strings.Contains(out, "PasscodeGenerated") {
		t.Fatalf("audit page 2:\n%s", out)
	}
	if out := mustOK(admin, "policy", "set", "--site", "acme", "--max-failed-attempts", "5", "--failure-window", "30m", "--mode", "monitor"); !strings.Contains(out, "of 5 in 30m0s") ||
		!regexp.MustCompile(`(?m)^mode\s+monitor$`).MatchString(out) {
		t.Fatalf("policy set:\n%s", out)
	}

	// The lifecycle: expiry, a cap and a grace for the old passcode, shown by
	// passcode show; a typo is mistyped and listed as such.
	second := strings.TrimSpace(mustOK(admin, "passcode", "generate", "--site", "acme", "--expires-in", "720h", "--max-enrollments", "500", "--grace", "1h"))
	if len(second) != 12 || second == passcode {
		t.Fatalf("generate with a lifecycle printed %d characters, or the old passcode", len(second))
	}
	show := waitFor(func(out string) bool { return strings.Contains(out, "retiring") }, auditor, "passcode", "show", "--site", "acme")
	for _, re := range []string{`(?m)^mode\s+monitor$`, `(?m)^expires\s+\d{4}-\d\d-\d\d `, `(?m)^enrollments\s+0 of 500 \(last -\)$`, `(?m)^retiring\s+\S+ valid until \d{4}-`} {
		if !regexp.MustCompile(re).MatchString(show) {
			t.Fatalf("passcode show lacks %s:\n%s", re, show)
		}
	}
	if err := os.WriteFile(file, []byte("000000000001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustOK(admin, "verify", "--site", "acme", "--ip", "192.0.2.8", "--passcode-file", file); out != "refused: mistyped\n" {
		t.Fatalf("verify a typo: %q", out)
	}
	waitFor(regexp.MustCompile(`(?m)mistyped\s+-\s+192\.0\.2\.8`).MatchString, auditor, "attempts", "--site", "acme", "--outcome", "mistyped")
	var doc struct {
		Sites []struct{ Site, Status string }
	}
	if err := json.Unmarshal([]byte(mustOK(admin, "sites", "ls", "--json")), &doc); err != nil || len(doc.Sites) != 1 || doc.Sites[0].Site != "acme" {
		t.Fatalf("sites ls --json: %v %+v", err, doc)
	}
	if out := mustOK(admin, "passcode", "disable", "--site", "acme"); !strings.Contains(out, "manual") {
		t.Fatalf("disable:\n%s", out)
	}

	for _, c := range []struct {
		name  string
		token string
		args  []string
		code  int
		says  string
	}{
		{"nothing to disable", admin, []string{"passcode", "disable", "--site", "acme"}, exitConflict, "not_active"},
		{"a grace too long", admin, []string{"passcode", "generate", "--site", "acme", "--grace", "1000h"}, exitInvalid, "grace"},
		{"a cap not a number", admin, []string{"passcode", "generate", "--site", "acme", "--max-enrollments", "many"}, exitUsage, "--max-enrollments"},
		{"a bad mode", admin, []string{"policy", "set", "--site", "acme", "--max-failed-attempts", "5", "--failure-window", "1h", "--mode", "lenient"}, exitInvalid, "mode"},
		{"a bad policy", admin, []string{"policy", "set", "--site", "acme", "--max-failed-attempts", "0", "--failure-window", "1h"}, exitInvalid, "max_failed_attempts"},
		{"an invalid token", "eg_not-a-token", []string{"sites", "ls"}, exitUnauthorized, "401"},
		{"an auditor writes", auditor, []string{"passcode", "generate", "--site", "acme"}, exitForbidden, "403"},
		{"a site out of scope", auditor, []string{"passcode", "show", "--site", "globex"}, exitNotFound, "404"},
		{"no site", admin, []string{"passcode", "show"}, exitUsage, "--site"},
		{"an unknown flag", admin, []string{"sites", "ls", "--nope"}, exitUsage, "nope"},
	} {
		out, code := in.admin(c.token, c.args...)
		if code != c.code || !strings.Contains(out, c.says) {
			t.Errorf("%s: exit %d, %q; want exit %d saying %q", c.name, code, out, c.code, c.says)
		}
	}
	if _, code := in.admin(admin, "sites", "ls", "--help"); code != 0 {
		t.Errorf("sites ls --help: exit %d", code)
	}
	env := map[string]string{"ENROLLGATE_URL": "http://127.0.0.1:1", "ENROLLGATE_TOKEN": admin}
	err := run(context.Background(), []string{"sites", "ls"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
	if exitCode(err) != exitUnavailable || strings.Contains(err.Error(), admin) {
		t.Errorf("unreachable service: exit %d, %v", exitCode(err), err)
	}
}
