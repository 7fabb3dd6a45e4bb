package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enrollgate/enrollgate/events"
)

const (
	bootAdmin  = "bootstrap-admin-token-0123456789"
	bootEnroll = "bootstrap-enrollment-token-0123456789"
)

func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func TestAddPersistsHashOnly(t *testing.T) {
	file := filepath.Join(t.TempDir(), "data", "tokens.json")
	s := open(t, Config{File: file})
	alice := Principal{ID: "alice@acme.example", Role: RoleAdmin, Sites: []string{"acme"}}
	tok, err := s.Add(alice)
	if err != nil {
		t.Fatalf("add: %v", err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != len(TokenPrefix)+43 {
		t.Fatalf("token %q: want eg_ and 43 base64url characters", tok)
	}
	audit, err := s.Add(Principal{ID: "siem", Role: RoleAuditor, Sites: []string{AllSites}})
	if err != nil {
		t.Fatalf("add: %v", err)
	}

	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("tokens file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{tok, audit, strings.TrimPrefix(tok, TokenPrefix), strings.TrimPrefix(audit, TokenPrefix)} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("tokens file holds a token in plain text:\n%s", raw)
		}
	}
	if !strings.Contains(string(raw), "alice@acme.example") {
		t.Errorf("tokens file lacks the principal:\n%s", raw)
	}
	entries, _ := os.ReadDir(filepath.Dir(file))
	if len(entries) != 1 {
		t.Errorf("data dir holds %d files, want only tokens.json (no temporary leftovers)", len(entries))
	}

	// A new Store on the same file knows both tokens.
	s2 := open(t, Config{File: file})
	p, ok := s2.Authenticate(tok)
	if !ok || p.ID != alice.ID || p.Role != RoleAdmin || !p.CanSee("acme") || p.CanSee("other") {
		t.Fatalf("after reopen: %+v %v", p, ok)
	}
	if p, ok := s2.Authenticate(audit); !ok || p.Role != RoleAuditor || !p.CanSee("anything") {
		t.Fatalf("auditor after reopen: %+v %v", p, ok)
	}
	if _, ok := s2.Authenticate(tok + "x"); ok {
		t.Fatal("a wrong token authenticated")
	}
}

func TestWrongTokensFail(t *testing.T) {
	s := open(t, Config{File: filepath.Join(t.TempDir(), "tokens.json"), AdminToken: bootAdmin})
	tok, err := s.Add(Principal{ID: "bob", Role: RoleAdmin, Sites: []string{"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", " ", "eg_", tok[:len(tok)-1], strings.ToUpper(tok), bootAdmin[1:], strings.Repeat("a", 10_000)} {
		if p, ok := s.Authenticate(bad); ok {
			t.Errorf("token %.20q authenticated as %+v", bad, p)
		}
	}
}

func TestBootstrapTokensWorkAndAreNotWritten(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	s := open(t, Config{File: file, AdminToken: bootAdmin, AdminEmail: "ops@acme.example", EnrollmentToken: bootEnroll})
	p, ok := s.Authenticate(bootAdmin)
	if !ok || p.ID != "ops@acme.example" || p.Role != RoleAdmin || !p.CanSee("any-site") {
		t.Fatalf("bootstrap admin: %+v %v", p, ok)
	}
	p, ok = s.Authenticate(bootEnroll)
	if !ok || p.Role != RoleEnrollment || !allows(p, PermVerify, "x") || allows(p, PermWrite, "x") {
		t.Fatalf("bootstrap enrollment: %+v %v", p, ok)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bootstrap tokens wrote the tokens file: %v", err)
	}
	// Adding a stored token writes the file, still without the bootstrap ones.
	if _, err := s.Add(Principal{ID: "carol", Role: RoleAuditor, Sites: []string{"acme"}}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(file)
	if strings.Contains(string(raw), "ops@acme.example") || strings.Contains(string(raw), bootAdmin) {
		t.Fatalf("tokens file holds a bootstrap token:\n%s", raw)
	}
	if err := s.Revoke(BootstrapAdminID); !errors.Is(err, ErrBootstrap) {
		t.Fatalf("revoke bootstrap: %v", err)
	}
	// Without the flags, the bootstrap tokens are gone.
	s2 := open(t, Config{File: file})
	if _, ok := s2.Authenticate(bootAdmin); ok {
		t.Fatal("bootstrap admin token survived a restart without its flag")
	}
	if p, _ := s.Authenticate(bootAdmin); p.ID != "ops@acme.example" {
		t.Fatal("bootstrap admin token stopped working after Add")
	}
}

func TestDefaultAdminEmail(t *testing.T) {
	s := open(t, Config{File: filepath.Join(t.TempDir(), "tokens.json"), AdminToken: bootAdmin})
	if p, ok := s.Authenticate(bootAdmin); !ok || p.ID != DefaultAdminEmail {
		t.Fatalf("got %+v %v", p, ok)
	}
}

func TestEnsureAdmin(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	s := open(t, Config{File: file})
	tok, _, created, err := s.EnsureAdmin(context.Background(), "first@acme.example")
	if err != nil || !created || tok == "" {
		t.Fatalf("first run: %q %v %v", tok, created, err)
	}
	p, ok := s.Authenticate(tok)
	if !ok || p.ID != "first@acme.example" || p.Role != RoleAdmin || !p.AllSitesVisible() {
		t.Fatalf("generated admin: %+v %v", p, ok)
	}
	// Second run: a token exists, nothing is made.
	s2 := open(t, Config{File: file})
	if tok2, _, created, err := s2.EnsureAdmin(context.Background(), "first@acme.example"); err != nil || created || tok2 != "" {
		t.Fatalf("second run: %q %v %v", tok2, created, err)
	}
	if _, ok := s2.Authenticate(tok); !ok {
		t.Fatal("generated admin token did not survive a restart")
	}
	// A bootstrap token counts as configured.
	s3 := open(t, Config{File: filepath.Join(t.TempDir(), "tokens.json"), EnrollmentToken: bootEnroll})
	if _, _, created, err := s3.EnsureAdmin(context.Background(), ""); err != nil || created {
		t.Fatalf("with a bootstrap token: created=%v err=%v", created, err)
	}
}

func TestRevokeAndList(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	s := open(t, Config{File: file, EnrollmentToken: bootEnroll})
	tok, err := s.Add(Principal{ID: "dave", Role: RoleAdmin, Sites: []string{"acme", "beta"}})
	if err != nil {
		t.Fatal(err)
	}
	list := s.List()
	if len(list) != 2 || !list[0].Bootstrap || list[1].Principal.ID != "dave" || list[1].CreatedAt.IsZero() {
		t.Fatalf("list: %+v", list)
	}
	if err := s.Revoke("tok_nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if err := s.Revoke(list[1].ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Authenticate(tok); ok {
		t.Fatal("revoked token still works")
	}
	if _, ok := open(t, Config{File: file}).Authenticate(tok); ok {
		t.Fatal("revoked token works after reopen")
	}
}

func TestSiteScopesAndRoles(t *testing.T) {
	admin := Principal{ID: "a", Role: RoleAdmin, Sites: []string{"acme"}}
	auditor := Principal{ID: "b", Role: RoleAuditor, Sites: []string{AllSites}}
	enroll := Principal{ID: "c", Role: RoleEnrollment, Sites: []string{"acme", "beta"}}
	cases := []struct {
		p    Principal
		perm Permission
		site string
		want bool
	}{
		{admin, PermWrite, "acme", true},
		{admin, PermRead, "acme", true},
		{admin, PermVerify, "acme", true},
		{admin, PermWrite, "acme2", false},
		{auditor, PermRead, "zeta", true},
		{auditor, PermWrite, "zeta", false},
		{auditor, PermVerify, "zeta", false},
		{enroll, PermVerify, "beta", true},
		{enroll, PermVerify, "gamma", false},
		{enroll, PermRead, "acme", false},
		{Principal{ID: "x", Role: "root", Sites: []string{AllSites}}, PermRead, "acme", false},
	}
	for _, c := range cases {
		if got := allows(c.p, c.perm, events.Site(c.site)); got != c.want {
			t.Errorf("%s/%v allows %s on %s = %v, want %v", c.p.ID, c.p.Role, c.perm, c.site, got, c.want)
		}
	}
}

func TestValidation(t *testing.T) {
	s := open(t, Config{File: filepath.Join(t.TempDir(), "tokens.json")})
	for _, p := range []Principal{
		{ID: "", Role: RoleAdmin, Sites: []string{"acme"}},
		{ID: "x", Role: "root", Sites: []string{"acme"}},
		{ID: "x", Role: RoleAdmin},
		{ID: "x", Role: RoleAdmin, Sites: []string{"Bad Site"}},
		{ID: "a\u001b[31mb", Role: RoleAdmin, Sites: []string{"acme"}},
		{ID: "a\nb", Role: RoleAdmin, Sites: []string{"acme"}},
		{ID: "a\u202eb", Role: RoleAdmin, Sites: []string{"acme"}},
		{ID: "a\xffb", Role: RoleAdmin, Sites: []string{"acme"}},
	} {
		if _, err := s.Add(p); err == nil {
			t.Errorf("add %+v: want an error", p)
		}
	}
	for _, cfg := range []Config{
		{File: "f", AdminToken: "short"},
		{File: "f", AdminToken: bootAdmin, EnrollmentToken: bootAdmin},
	} {
		if _, err := Open(cfg); err == nil {
			t.Errorf("open %+v: want an error", cfg)
		}
	}
	bad := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(bad, []byte(`{"version":1,"tokens":[{"id":"t","sha256":"zz","principal":{"id":"a","role":"admin","sites":["*"]}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{File: bad}); err == nil {
		t.Error("a corrupt tokens file opened")
	}
}

// allows is what the HTTP API checks of a principal on a site: it sees the
// site and its role grants perm.
func allows(p Principal, perm Permission, site events.Site) bool {
	return p.CanSee(site) && p.Role.Grants(perm)
}
