package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// Creators recorded for tokens the service makes itself.
const (
	// CreatedByFirstStart marks the admin token made on a cluster's first
	// start.
	CreatedByFirstStart = "system:first-start"
	// CreatedByImport marks a token imported from a tokens.json file.
	CreatedByImport = "system:import"
)

// MinBootstrapTokenLen bounds operator-chosen tokens from below: a short one
// could be guessed.
const MinBootstrapTokenLen = 16

// maxTokenLen bounds what Authenticate hashes.
const maxTokenLen = 512

// Errors of the store.
var (
	ErrNotFound  = errors.New("no such token")
	ErrBootstrap = errors.New("bootstrap tokens are configured on the command line and cannot be revoked")
	// ErrInvalid wraps what is wrong with a principal given to Create.
	ErrInvalid = errors.New("invalid token principal")
	// ErrUnavailable wraps a failure of the token bucket: the change may or
	// may not have been made.
	ErrUnavailable = errors.New("the token store did not answer")
)

// tokenIDPattern is every token ID the store accepts: IDs are NATS account
// names and subject tokens (natsserver.Access) and KV keys.
var tokenIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidTokenID reports whether id has the form of a token ID.
func ValidTokenID(id string) bool { return tokenIDPattern.MatchString(id) }

// Config configures the token store.
type Config struct {
	// File, when set, keeps the stored tokens in a tokens file of one
	// process (tests and tools). Empty: the store holds the bootstrap tokens
	// until Share gives it the cluster's token bucket.
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
	// Now is the clock of created_at and last_used_at; time.Now when nil.
	Now func() time.Time
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
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
		if err := (Principal{ID: c.adminEmail(), Role: RoleAdmin, Sites: []string{AllSites}}).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("auth: admin email: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (c Config) adminEmail() string {
	if c.AdminEmail == "" {
		return DefaultAdminEmail
	}
	return c.AdminEmail
}

// TokenInfo describes a token without the token.
type TokenInfo struct {
	ID        string
	Principal Principal
	CreatedAt time.Time
	// CreatedBy is the identity of the principal that made the token, or
	// one of the CreatedBy constants.
	CreatedBy string
	// LastUsedAt is the last time the token authenticated (zero: never
	// seen): on this process to the second, on other replicas as of their
	// last write to the bucket (Share).
	LastUsedAt time.Time
	// Bootstrap tokens come from the configuration and are not stored.
	Bootstrap bool
}

type entry struct {
	info TokenInfo // without LastUsedAt
	hash [sha256.Size]byte
	// used is the last authentication on this process (Unix ns), shared by
	// every copy of the entry so that a new view keeps it.
	used *atomic.Int64
}

// Store authenticates bearer tokens. Safe for concurrent use.
//
// It holds a view in memory: the bootstrap tokens of the configuration and
// the stored ones, which live in a tokens file (Config.File) or in the
// cluster's token bucket (Share).
type Store struct {
	file string
	now  func() time.Time

	mu        sync.RWMutex
	stored    []entry // from the file or the bucket
	bootstrap []entry // from the configuration, memory only
	// viewChanged is closed and replaced whenever the stored tokens change,
	// so that a write can wait until the view shows it.
	viewChanged chan struct{}
	// changes is signalled (without blocking) when the stored tokens change.
	changes chan struct{}

	kv *shared // set by Share
}

// Open returns a store with the bootstrap tokens of cfg, and the tokens of
// cfg.File when set (a missing file is an empty one).
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{file: cfg.File, now: cfg.Now, viewChanged: make(chan struct{}), changes: make(chan struct{}, 1)}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.File != "" {
		recs, err := loadFile(cfg.File)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			e, err := r.entry()
			if err != nil {
				return nil, fmt.Errorf("tokens file %s: %w", cfg.File, err)
			}
			s.stored = append(s.stored, e)
		}
	}
	if cfg.AdminToken != "" {
		s.bootstrap = append(s.bootstrap, entry{
			info: TokenInfo{ID: BootstrapAdminID, Bootstrap: true,
				Principal: Principal{ID: cfg.adminEmail(), Role: RoleAdmin, Sites: []string{AllSites}}},
			hash: sha256.Sum256([]byte(cfg.AdminToken)), used: new(atomic.Int64),
		})
	}
	if cfg.EnrollmentToken != "" {
		s.bootstrap = append(s.bootstrap, entry{
			info: TokenInfo{ID: BootstrapEnrollmentID, Bootstrap: true,
				Principal: Principal{ID: BootstrapEnrollmentPrincipal, Role: RoleEnrollment, Sites: []string{AllSites}}},
			hash: sha256.Sum256([]byte(cfg.EnrollmentToken)), used: new(atomic.Int64),
		})
	}
	return s, nil
}

// Changes is signalled whenever the stored tokens change (created or
// revoked here or on another replica), so that the caller can follow, e.g.
// with natsserver.Access.Sync(List()). Several changes may be signalled once.
func (s *Store) Changes() <-chan struct{} { return s.changes }

// Authenticate returns the principal of a token.
func (s *Store) Authenticate(token string) (Principal, bool) {
	info, ok := s.Identify(token)
	return info.Principal, ok
}

// Identify returns what the store knows of a token: its ID and principal.
// It records the use in memory (last_used_at) and writes nothing.
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
	// One store a second at most: a busy token costs no write contention.
	now := s.now().UnixNano()
	if now-found.used.Load() >= int64(time.Second) {
		found.used.Store(now)
	}
	info := found.info
	info.Principal = clonePrincipal(info.Principal)
	return info, true
}

// Add is Create without a context or a creator, for tests and tools.
func (s *Store) Add(p Principal) (string, error) {
	token, _, err := s.Create(context.Background(), p, "")
	return token, err
}

// Create makes a token for p, recorded as made by createdBy, stores its
// hash, and returns the token: the only time it is shown. When Create
// returns, the token works on this process; other replicas follow their
// watch of the bucket.
func (s *Store) Create(ctx context.Context, p Principal, createdBy string) (string, TokenInfo, error) {
	if err := p.Validate(); err != nil {
		return "", TokenInfo{}, fmt.Errorf("create token: %w: %w", ErrInvalid, err)
	}
	token, e, err := s.newEntry(p, createdBy)
	if err != nil {
		return "", TokenInfo{}, err
	}
	if s.kv != nil {
		if err := s.kv.create(ctx, e); err != nil {
			return "", TokenInfo{}, err
		}
		return token, e.info, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := append(slices.Clone(s.stored), e)
	// The file is written before the token exists in memory: a token whose
	// hash could not be stored must not work, or it would stop working on the
	// next restart.
	if err := saveFile(s.file, recordsOf(next)); err != nil {
		return "", TokenInfo{}, err
	}
	s.setStoredLocked(next)
	return token, e.info, nil
}

// Revoke is Delete without a context, for tests and tools.
func (s *Store) Revoke(id string) error { return s.Delete(context.Background(), id) }

// Delete revokes a stored token by its ID. When it returns, the token no
// longer works on this process; other replicas follow their watch.
func (s *Store) Delete(ctx context.Context, id string) error {
	s.mu.RLock()
	boot := slices.ContainsFunc(s.bootstrap, func(e entry) bool { return e.info.ID == id })
	s.mu.RUnlock()
	if boot {
		return fmt.Errorf("revoke %s: %w", id, ErrBootstrap)
	}
	if !ValidTokenID(id) {
		return fmt.Errorf("revoke: %w", ErrNotFound)
	}
	if s.kv != nil {
		return s.kv.delete(ctx, id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.stored, func(e entry) bool { return e.info.ID == id })
	if i < 0 {
		return fmt.Errorf("revoke %s: %w", id, ErrNotFound)
	}
	next := slices.Delete(slices.Clone(s.stored), i, i+1)
	if err := saveFile(s.file, recordsOf(next)); err != nil {
		return fmt.Errorf("revoke %s: %w", id, err)
	}
	s.setStoredLocked(next)
	return nil
}

// EnsureAdmin makes an admin token for all sites, recorded as email, when no
// token is configured anywhere: no stored token and no bootstrap token. It
// returns the token and created=true only then, so that the caller delivers
// it once. With a bucket (Share) it happens once per cluster: of replicas
// starting together on an empty bucket, one makes the token.
func (s *Store) EnsureAdmin(ctx context.Context, email string) (token string, info TokenInfo, created bool, err error) {
	if email == "" {
		email = DefaultAdminEmail
	}
	p := Principal{ID: email, Role: RoleAdmin, Sites: []string{AllSites}}
	if err := p.Validate(); err != nil {
		return "", TokenInfo{}, false, fmt.Errorf("ensure admin token: %w", err)
	}
	s.mu.RLock()
	configured := len(s.stored) > 0 || len(s.bootstrap) > 0
	s.mu.RUnlock()
	if configured {
		return "", TokenInfo{}, false, nil
	}
	token, e, err := s.newEntry(p, CreatedByFirstStart)
	if err != nil {
		return "", TokenInfo{}, false, err
	}
	if s.kv != nil {
		won, err := s.kv.claimFirst(ctx, firstClaim{By: CreatedByFirstStart, TokenID: e.info.ID, At: e.info.CreatedAt})
		if err != nil {
			return "", TokenInfo{}, false, err
		}
		if !won {
			// Another replica may be storing the first token this moment:
			// give it a little time to show here, so that this replica
			// starts with it. (Long ago made and revoked, it never shows.)
			wait, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_ = s.waitView(wait, func(stored []entry) bool { return len(stored) > 0 })
			return "", TokenInfo{}, false, nil
		}
		if err := s.kv.create(ctx, e); err != nil {
			return "", TokenInfo{}, false, fmt.Errorf("ensure admin token: %w", err)
		}
		return token, e.info, true, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.stored) > 0 {
		return "", TokenInfo{}, false, nil
	}
	if err := saveFile(s.file, recordsOf([]entry{e})); err != nil {
		return "", TokenInfo{}, false, fmt.Errorf("ensure admin token: %w", err)
	}
	s.setStoredLocked([]entry{e})
	return token, e.info, true, nil
}

// List returns the tokens, bootstrap ones first, then by creation, without
// their secrets.
func (s *Store) List() []TokenInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]TokenInfo, 0, len(s.bootstrap)+len(s.stored))
	for _, list := range [][]entry{s.bootstrap, s.stored} {
		for _, e := range list {
			info := e.info
			info.Principal = clonePrincipal(info.Principal)
			if n := e.used.Load(); n > 0 {
				info.LastUsedAt = time.Unix(0, n).UTC().Truncate(time.Second)
			}
			if s.kv != nil {
				if u := s.kv.usedLocked(e.info.ID); u.After(info.LastUsedAt) {
					info.LastUsedAt = u
				}
			}
			out = append(out, info)
		}
	}
	return out
}

// newEntry makes a token and its entry.
func (s *Store) newEntry(p Principal, createdBy string) (string, entry, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", entry{}, fmt.Errorf("random token: %w", err)
	}
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	var idRaw [8]byte
	if _, err := rand.Read(idRaw[:]); err != nil {
		return "", entry{}, fmt.Errorf("random token ID: %w", err)
	}
	e := entry{
		info: TokenInfo{ID: "tok_" + hex.EncodeToString(idRaw[:]), Principal: clonePrincipal(p),
			CreatedAt: s.now().UTC().Truncate(time.Second), CreatedBy: createdBy},
		hash: sha256.Sum256([]byte(token)),
		used: new(atomic.Int64),
	}
	return token, e, nil
}

// setStoredLocked replaces the stored tokens, keeping the recorded uses of
// those that stay, and tells the waiters and Changes when the set changed.
func (s *Store) setStoredLocked(next []entry) {
	old := make(map[string]entry, len(s.stored))
	for _, e := range s.stored {
		old[e.info.ID] = e
	}
	same := len(next) == len(s.stored)
	for i := range next {
		if o, ok := old[next[i].info.ID]; ok {
			next[i].used = o.used
			same = same && o.hash == next[i].hash
		} else {
			same = false
		}
		if next[i].used == nil {
			next[i].used = new(atomic.Int64)
		}
	}
	slices.SortFunc(next, func(a, b entry) int {
		if c := a.info.CreatedAt.Compare(b.info.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.info.ID, b.info.ID)
	})
	s.stored = next
	if same {
		return
	}
	close(s.viewChanged)
	s.viewChanged = make(chan struct{})
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// waitView waits until cond holds for the stored tokens, or ctx ends.
func (s *Store) waitView(ctx context.Context, cond func(stored []entry) bool) error {
	for {
		s.mu.RLock()
		ok, ch := cond(s.stored), s.viewChanged
		s.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func hasToken(id string) func([]entry) bool {
	return func(stored []entry) bool {
		return slices.ContainsFunc(stored, func(e entry) bool { return e.info.ID == id })
	}
}

func clonePrincipal(p Principal) Principal {
	p.Sites = slices.Clone(p.Sites)
	return p
}
