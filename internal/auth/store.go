package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// TokenPrefix starts every token the store makes, so that a leaked one is
// recognisable by secret scanners.
const TokenPrefix = "eg_"

// DefaultAdminEmail is the identity recorded for the bootstrap admin token
// when none is configured.
const DefaultAdminEmail = "admin@localhost"

// Bootstrap token IDs, as List shows them.
const (
	BootstrapAdminID      = "bootstrap-admin"
	BootstrapEnrollmentID = "bootstrap-enrollment"
)

// BootstrapEnrollmentPrincipal is the identity of the bootstrap enrollment
// token.
const BootstrapEnrollmentPrincipal = "enrollment"

// MinBootstrapTokenLen bounds operator-chosen tokens from below: a short one
// could be guessed.
const MinBootstrapTokenLen = 16

// maxTokenLen bounds what Authenticate hashes.
const maxTokenLen = 512

// Errors of the store.
var (
	ErrNotFound  = errors.New("no such token")
	ErrBootstrap = errors.New("bootstrap tokens are configured on the command line and cannot be revoked")
)

// Config configures the token store.
type Config struct {
	// File is the tokens file, normally <data-dir>/tokens.json.
	File string
	// AdminToken, when set, is a bootstrap admin token for all sites, held in
	// memory only.
	AdminToken string
	// AdminEmail is the identity recorded for AdminToken; DefaultAdminEmail
	// when empty.
	AdminEmail string
	// EnrollmentToken, when set, is a bootstrap enrollment token for all
	// sites, held in memory only.
	EnrollmentToken string
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.File == "" {
		errs = append(errs, errors.New("auth: tokens file is required"))
	}
	for _, t := range []struct{ name, value string }{{"admin token", c.AdminToken}, {"enrollment token", c.EnrollmentToken}} {
		if t.value != "" && len(t.value) < MinBootstrapTokenLen {
			errs = append(errs, fmt.Errorf("auth: %s must be at least %d characters", t.name, MinBootstrapTokenLen))
		}
		if len(t.value) > maxTokenLen {
			errs = append(errs, fmt.Errorf("auth: %s must be at most %d characters", t.name, maxTokenLen))
		}
	}
	if c.AdminToken != "" && c.AdminToken == c.EnrollmentToken {
		errs = append(errs, errors.New("auth: admin and enrollment tokens must differ"))
	}
	if c.AdminToken != "" {
		email := c.AdminEmail
		if email == "" {
			email = DefaultAdminEmail
		}
		if err := (Principal{ID: email, Role: RoleAdmin, Sites: []string{AllSites}}).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("auth: admin email: %w", err))
		}
	}
	return errors.Join(errs...)
}

// TokenInfo describes a token without the token.
type TokenInfo struct {
	ID        string
	Principal Principal
	CreatedAt time.Time
	// Bootstrap tokens come from the configuration and are not stored.
	Bootstrap bool
}

type entry struct {
	info TokenInfo
	hash [sha256.Size]byte
}

// Store authenticates bearer tokens. Safe for concurrent use.
type Store struct {
	file string

	mu        sync.RWMutex
	stored    []entry // persisted in file
	bootstrap []entry // from the configuration, memory only
}

// Open loads the tokens file (a missing file is an empty one) and adds the
// bootstrap tokens of cfg.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{file: cfg.File}
	stored, err := load(cfg.File)
	if err != nil {
		return nil, err
	}
	s.stored = stored
	if cfg.AdminToken != "" {
		email := cfg.AdminEmail
		if email == "" {
			email = DefaultAdminEmail
		}
		s.bootstrap = append(s.bootstrap, entry{
			info: TokenInfo{ID: BootstrapAdminID, Bootstrap: true,
				Principal: Principal{ID: email, Role: RoleAdmin, Sites: []string{AllSites}}},
			hash: sha256.Sum256([]byte(cfg.AdminToken)),
		})
	}
	if cfg.EnrollmentToken != "" {
		s.bootstrap = append(s.bootstrap, entry{
			info: TokenInfo{ID: BootstrapEnrollmentID, Bootstrap: true,
				Principal: Principal{ID: BootstrapEnrollmentPrincipal, Role: RoleEnrollment, Sites: []string{AllSites}}},
			hash: sha256.Sum256([]byte(cfg.EnrollmentToken)),
		})
	}
	return s, nil
}

// Authenticate returns the principal of a token.
func (s *Store) Authenticate(token string) (Principal, bool) {
	info, ok := s.Identify(token)
	return info.Principal, ok
}

// Identify returns what the store knows of a token: its ID and principal.
//
// Every known hash is compared in constant time and the scan never stops
// early, so that the answer's timing says nothing about which tokens exist;
// a store holds few tokens, so the linear scan costs microseconds.
func (s *Store) Identify(token string) (TokenInfo, bool) {
	if token == "" || len(token) > maxTokenLen {
		return TokenInfo{}, false
	}
	h := sha256.Sum256([]byte(token))
	s.mu.RLock()
	defer s.mu.RUnlock()
	var found *entry
	for _, list := range [][]entry{s.bootstrap, s.stored} {
		for i := range list {
			if subtle.ConstantTimeCompare(h[:], list[i].hash[:]) == 1 && found == nil {
				found = &list[i]
			}
		}
	}
	if found == nil {
		return TokenInfo{}, false
	}
	info := found.info
	info.Principal = clonePrincipal(info.Principal)
	return info, true
}

// Reload reads the tokens file again, so that tokens added or revoked by
// another process (`enrollgate tokens add|revoke`) hold here too. It reports
// whether the stored tokens changed; on an error the store keeps what it had.
func (s *Store) Reload() (changed bool, err error) {
	stored, err := load(s.file)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.EqualFunc(stored, s.stored, func(a, b entry) bool { return a.info.ID == b.info.ID && a.hash == b.hash }) {
		return false, nil
	}
	s.stored = stored
	return true, nil
}

// Add makes a token for p, stores its hash, and returns the token: the only
// time it is shown.
func (s *Store) Add(p Principal) (string, error) {
	if err := p.Validate(); err != nil {
		return "", fmt.Errorf("add token: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addLocked(p)
}

// EnsureAdmin makes an admin token for all sites, recorded as email, when no
// token is configured anywhere: no stored token and no bootstrap token. It
// returns the token and created=true only then, so that the caller prints it
// once on a first run.
func (s *Store) EnsureAdmin(email string) (token string, created bool, err error) {
	if email == "" {
		email = DefaultAdminEmail
	}
	p := Principal{ID: email, Role: RoleAdmin, Sites: []string{AllSites}}
	if err := p.Validate(); err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.stored) > 0 || len(s.bootstrap) > 0 {
		return "", false, nil
	}
	token, err = s.addLocked(p)
	if err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	return token, true, nil
}

// List returns the tokens, bootstrap ones first, without their secrets.
func (s *Store) List() []TokenInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]TokenInfo, 0, len(s.bootstrap)+len(s.stored))
	for _, list := range [][]entry{s.bootstrap, s.stored} {
		for _, e := range list {
			info := e.info
			info.Principal = clonePrincipal(info.Principal)
			out = append(out, info)
		}
	}
	return out
}

// Revoke removes a stored token by its ID.
func (s *Store) Revoke(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.ContainsFunc(s.bootstrap, func(e entry) bool { return e.info.ID == id }) {
		return fmt.Errorf("revoke %s: %w", id, ErrBootstrap)
	}
	i := slices.IndexFunc(s.stored, func(e entry) bool { return e.info.ID == id })
	if i < 0 {
		return fmt.Errorf("revoke %s: %w", id, ErrNotFound)
	}
	next := slices.Delete(slices.Clone(s.stored), i, i+1)
	if err := save(s.file, next); err != nil {
		return fmt.Errorf("revoke %s: %w", id, err)
	}
	s.stored = next
	return nil
}

func (s *Store) addLocked(p Principal) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	var idRaw [8]byte
	if _, err := rand.Read(idRaw[:]); err != nil {
		return "", fmt.Errorf("random token ID: %w", err)
	}
	e := entry{
		info: TokenInfo{ID: "tok_" + hex.EncodeToString(idRaw[:]), Principal: clonePrincipal(p),
			CreatedAt: time.Now().UTC().Truncate(time.Second)},
		hash: sha256.Sum256([]byte(token)),
	}
	next := append(slices.Clone(s.stored), e)
	// The file is written before the token exists in memory: a token whose
	// hash could not be stored must not work, or it would stop working on the
	// next restart.
	if err := save(s.file, next); err != nil {
		return "", err
	}
	s.stored = next
	return token, nil
}

func clonePrincipal(p Principal) Principal {
	p.Sites = slices.Clone(p.Sites)
	return p
}

// fileVersion is the format of the tokens file.
const fileVersion = 1

type fileDoc struct {
	Version int         `json:"version"`
	Tokens  []fileToken `json:"tokens"`
}

type fileToken struct {
	ID        string    `json:"id"`
	SHA256    string    `json:"sha256"`
	Principal Principal `json:"principal"`
	CreatedAt time.Time `json:"created_at"`
}

func load(path string) ([]entry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	var doc fileDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	if doc.Version != fileVersion {
		return nil, fmt.Errorf("tokens file %s: unsupported version %d", path, doc.Version)
	}
	out := make([]entry, 0, len(doc.Tokens))
	seen := make(map[string]bool)
	for i, t := range doc.Tokens {
		h, err := hex.DecodeString(t.SHA256)
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("tokens file %s: token %d: sha256 must be 64 hex digits", path, i)
		}
		if err := t.Principal.Validate(); err != nil {
			return nil, fmt.Errorf("tokens file %s: token %d: %w", path, i, err)
		}
		if t.ID == "" || seen[t.ID] {
			return nil, fmt.Errorf("tokens file %s: token %d: missing or duplicate id", path, i)
		}
		seen[t.ID] = true
		e := entry{info: TokenInfo{ID: t.ID, Principal: t.Principal, CreatedAt: t.CreatedAt}}
		copy(e.hash[:], h)
		out = append(out, e)
	}
	return out, nil
}

// save replaces the tokens file atomically: a temporary file in the same
// directory, created 0600, synced, renamed over the old one, and the
// directory synced, so that a crash leaves the old file or the new one.
func save(path string, entries []entry) error {
	doc := fileDoc{Version: fileVersion, Tokens: make([]fileToken, 0, len(entries))}
	for _, e := range entries {
		doc.Tokens = append(doc.Tokens, fileToken{ID: e.info.ID, SHA256: hex.EncodeToString(e.hash[:]),
			Principal: e.info.Principal, CreatedAt: e.info.CreatedAt})
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode tokens file: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tokens file directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tokens-*.json")
	if err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write tokens file: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write tokens file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync tokens file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace tokens file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		// Best effort: some filesystems cannot sync a directory.
		_ = d.Sync()
		d.Close()
	}
	return nil
}
