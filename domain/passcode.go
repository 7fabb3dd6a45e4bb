package domain

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// Errors of the decisions. Callers classify them with errors.Is.
var (
	ErrNotGenerated = errors.New("no passcode has been generated for this site")
	ErrNotActive    = errors.New("no passcode is active for this site")
	ErrInvalid      = errors.New("invalid command")
)

// Status of a site's passcode.
type Status string

// Statuses.
const (
	StatusNone     Status = "none"
	StatusActive   Status = "active"
	StatusDisabled Status = "disabled"
	// StatusExpired and StatusUsedUp: the generation lapsed (its expiry
	// passed, its enrollments reached the cap) and answers so.
	StatusExpired Status = "expired"
	StatusUsedUp  Status = "used_up"
)

// Passcode is the aggregate of one site's company passcode: the current
// generation, the failures counted against it, the per-source failures and the
// recent attempt IDs. Not safe for concurrent use: callers serialise commands
// per site.
//
// It is kept compact, because a service caches one per site (S7 of
// docs/benchmarks.md): failure times as unix nanoseconds, the recent attempts
// and the per-source failures as short slices allocated when first needed, a
// failing source and its keys stored once per generation, the hash and the
// sealed copy in one allocation.
type Passcode struct {
	site     events.Site
	seq      uint64
	defaults Policy
	gen      *generation
	// log holds the site's policy override, the failures and lock of the
	// current generation and the per-source failures.
	log FailureLog
	// unrecorded are earlier generations that reached the threshold but were
	// replaced before their lockout was recorded (the saga had not acted yet):
	// the saga's disable still records it, so that the alert is not lost.
	// Empty but for that window; at most maxUnrecorded, oldest dropped.
	unrecorded []unrecorded
	attempts   attemptLog
	// past are the replaced generations a candidate may still match as
	// outdated, newest first: at most Policy.OutdatedGenerations.
	past []pastGeneration
	// retiring is the replaced generation that stays valid in the grace of
	// the regeneration, until retiringUntil (unix ns); nil for none.
	retiring      *generation
	retiringUntil int64
}

// unrecorded is a replaced generation's lock and the failures that caused it.
type unrecorded struct {
	id       string
	failures []failure
	lock     *lockInfo
}

type lockout struct {
	maxFailed int
	window    time.Duration
	mode      events.LockoutMode
}

// pastGeneration is what an outdated comparison needs of a replaced
// generation. It keeps the last pastMACLen bytes of its keyed hash (and its
// length), inline: a guess matching 128 bits of an HMAC by chance is out of
// reach, and a site keeps up to three of these in its cached aggregate.
type pastGeneration struct {
	id         string
	mac        [pastMACLen]byte
	macLen     int32 // the hash's full length
	hashKeyID  string
	replacedAt int64
}

const pastMACLen = 16

func newPastGeneration(id string, hash []byte, keyID string, at int64) pastGeneration {
	pg := pastGeneration{id: id, macLen: int32(len(hash)), hashKeyID: keyID, replacedAt: at}
	copy(pg.mac[:], hash[len(hash)-min(len(hash), pastMACLen):])
	return pg
}

// matches reports whether a candidate's MAC under the generation's key is
// its hash (as far as the kept bytes tell).
func (pg *pastGeneration) matches(mac []byte) bool {
	if pg.macLen == 0 || len(mac) != int(pg.macLen) {
		return false
	}
	k := min(len(mac), pastMACLen)
	return equalBytes(mac[len(mac)-k:], pg.mac[:k])
}

type generation struct {
	id string
	// secret is the keyed hash and then the sealed copy, in one allocation:
	// hash() and sealed() slice it at hashLen.
	secret      []byte
	hashLen     int
	hashKeyID   string
	sealKeyID   string
	generatedAt time.Time
	generatedBy events.Actor
	disabled    *disableInfo
	// lockoutRecorded: a PasscodeDisabled with reason lockout names this
	// generation (the alert's event), whether or not it was still active.
	lockoutRecorded bool
	// checked: the passcode ends in a check character (ValidCheck).
	checked bool
	// expiresAt (unix ns, 0: never) and maxEnrollments (0: no cap) end the
	// generation's validity; enrollments counts its successes.
	expiresAt      int64
	maxEnrollments int32
	enrollments    int32
	lastEnrolledAt int64
	// lapseRecorded: a PasscodeExpired names this generation.
	lapseRecorded bool
	// simLock is set, in monitor mode, by the failure that reached the
	// threshold; simRecorded once PasscodeLockoutSimulated names it.
	simLock     *lockInfo
	simRecorded bool
}

// lapse says whether g has stopped being valid at now, and why.
func (g *generation) lapse(now time.Time) events.LapseReason {
	switch {
	case g.maxEnrollments > 0 && g.enrollments >= g.maxEnrollments:
		return events.LapseUsedUp
	case g.expiresAt != 0 && unixNano(now) >= g.expiresAt:
		return events.LapseExpired
	}
	return ""
}

func newGeneration(id string, hash, sealed []byte) *generation {
	secret := make([]byte, 0, len(hash)+len(sealed))
	secret = append(append(secret, hash...), sealed...)
	return &generation{id: id, secret: secret, hashLen: len(hash)}
}

// hash is the keyed hash of the passcode.
func (g *generation) hash() []byte { return g.secret[:g.hashLen:g.hashLen] }

// sealed is the sealed copy of the passcode; nil when the event had none.
func (g *generation) sealed() []byte {
	if len(g.secret) == g.hashLen {
		return nil
	}
	return g.secret[g.hashLen:]
}

type lockInfo struct {
	at        time.Time
	maxFailed int
	window    time.Duration
}

type disableInfo struct {
	at     time.Time
	by     events.Actor
	reason events.DisableReason
}

// failure is one failure counted against a generation: its time in unix
// nanoseconds and its source, shared by the failures of one source.
type failure struct {
	at  int64
	src *failureSource
}

// failureSource is a source of failures with its keys, computed once.
type failureSource struct {
	source events.Source
	keys   sourceKeys
}

// sourceKeys are the keys of a source (keysOf): one or two, the second empty
// when there is one.
type sourceKeys [2]string

// has reports whether key is one of the keys.
func (ks *sourceKeys) has(key string) bool {
	return key != "" && (ks[0] == key || ks[1] == key)
}

// sourceTimes is a source key's recent failure times (unix ns, in the order
// of the events).
type sourceTimes struct {
	key   string
	times []int64
}

// unixTime is the time of unix nanoseconds, in UTC.
func unixTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// unixNano is t in unix nanoseconds, saturated at the bounds that they hold
// (years 1677 to 2262), so that a time outside them (the zero time, say)
// still compares in order.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// New returns the aggregate of a site with no history, under the given default
// policy (the site's own LockoutPolicyChanged events override its threshold
// and window).
func New(site events.Site, defaults Policy) *Passcode {
	return &Passcode{site: site, defaults: defaults}
}

// Site returns the site ID.
func (p *Passcode) Site() events.Site { return p.site }

// Seq returns the stream sequence of the last event folded in; 0 for none.
func (p *Passcode) Seq() uint64 { return p.seq }

// Policy returns the policy in force: the defaults with the site's override.
func (p *Passcode) Policy() Policy { return p.log.Policy(p.defaults) }

// Generation is what callers may read of the current generation.
type Generation struct {
	PasscodeID  string
	HashKeyID   string
	Sealed      []byte
	SealKeyID   string
	GeneratedAt time.Time
	GeneratedBy events.Actor
	// CheckCharacter: the passcode ends in a check character.
	CheckCharacter bool
}

// Current returns the current generation, active or disabled.
func (p *Passcode) Current() (Generation, bool) {
	if p.gen == nil {
		return Generation{}, false
	}
	g := p.gen
	return Generation{PasscodeID: g.id, HashKeyID: g.hashKeyID, Sealed: g.sealed(), SealKeyID: g.sealKeyID,
		GeneratedAt: g.generatedAt, GeneratedBy: g.generatedBy, CheckCharacter: g.checked}, true
}

// CandidateKeyIDs returns the hash keys, other than the current generation's,
// under which a candidate must be hashed to compare it with the retiring and
// the outdated generations at now; nil when they share the current key, as
// they do unless the key was rotated.
func (p *Passcode) CandidateKeyIDs(now time.Time) []string {
	if p.gen == nil {
		return nil
	}
	var ids []string
	add := func(id string) {
		if id != p.gen.hashKeyID && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if r := p.retiringAt(now); r != nil {
		add(r.hashKeyID)
	}
	for _, pg := range p.outdated(now) {
		add(pg.hashKeyID)
	}
	return ids
}

// retiringAt returns the retiring generation while its grace lasts at now.
func (p *Passcode) retiringAt(now time.Time) *generation {
	if p.retiring == nil || unixNano(now) >= p.retiringUntil {
		return nil
	}
	return p.retiring
}

// outdated returns the replaced generations that answer outdated at now.
func (p *Passcode) outdated(now time.Time) []pastGeneration {
	pol := p.defaults
	if !pol.outdatedOn() {
		return nil
	}
	cut := unixNano(now.Add(-pol.OutdatedFor))
	past := p.past[:min(len(p.past), pol.OutdatedGenerations)]
	for i, pg := range past {
		if pg.replacedAt <= cut {
			return past[:i]
		}
	}
	return past
}

// NewGeneration is the input of Generate: a fresh generation ID and the keyed
// hash and sealed copy of a freshly generated passcode.
type NewGeneration struct {
	PasscodeID string
	Hash       []byte
	HashKeyID  string
	Sealed     []byte
	SealKeyID  string
	// CheckCharacter: the passcode ends in a check character.
	CheckCharacter bool
	Lifecycle
}

// Lifecycle is what a generate may ask of the new generation's life; zero
// values mean no expiry, no cap, no grace.
type Lifecycle struct {
	// ExpiresIn: the passcode answers expired this long after generation.
	ExpiresIn time.Duration
	// MaxEnrollments: it answers used_up after this many enrollments.
	MaxEnrollments int
	// Grace: the replaced passcode stays valid (retiring) this long.
	Grace time.Duration
}

// Bounds of a Lifecycle.
const (
	MinExpiresIn      = time.Minute
	MaxExpiresIn      = 10 * 365 * 24 * time.Hour
	MaxMaxEnrollments = 1_000_000
	MaxGrace          = 30 * 24 * time.Hour
)

// Validate reports every problem of the lifecycle at once.
func (l Lifecycle) Validate() error {
	var errs []error
	if l.ExpiresIn != 0 && (l.ExpiresIn < MinExpiresIn || l.ExpiresIn > MaxExpiresIn) {
		errs = append(errs, fmt.Errorf("expires_in must be %s to %s, got %s", MinExpiresIn, "87600h", l.ExpiresIn))
	}
	if l.MaxEnrollments < 0 || l.MaxEnrollments > MaxMaxEnrollments {
		errs = append(errs, fmt.Errorf("max_enrollments must be 0 (no cap) to %d, got %d", MaxMaxEnrollments, l.MaxEnrollments))
	}
	if l.Grace < 0 || l.Grace > MaxGrace {
		errs = append(errs, fmt.Errorf("grace must be 0 to %s, got %s", "720h", l.Grace))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// Generate starts a new generation that replaces the current one at once, with
// a fresh failure count. With a grace, the replaced generation stays valid as
// retiring until now+grace, if it is valid now: never after a lockout or a
// disable, nor once it expired or was used up.
func (p *Passcode) Generate(now time.Time, g NewGeneration) (events.Payload, error) {
	if g.PasscodeID == "" || len(g.Hash) == 0 || g.HashKeyID == "" || len(g.Sealed) == 0 || g.SealKeyID == "" {
		return nil, errors.Join(ErrInvalid, errors.New("a generation needs an ID, a hash and a sealed copy with their key IDs"))
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	e := events.PasscodeGenerated{PasscodeID: g.PasscodeID, Hash: g.Hash, HashKeyID: g.HashKeyID,
		Sealed: g.Sealed, SealKeyID: g.SealKeyID, CheckCharacter: g.CheckCharacter, MaxEnrollments: g.MaxEnrollments}
	if g.ExpiresIn > 0 {
		t := now.Add(g.ExpiresIn).UTC()
		e.ExpiresAt = &t
	}
	if old := p.gen; g.Grace > 0 && old != nil && old.disabled == nil && !p.log.Locked() && old.lapse(now) == "" {
		t := now.Add(g.Grace).UTC()
		e.RetiringPasscodeID, e.RetiringUntil = old.id, &t
	}
	return e, nil
}

// Reveal records that an administrator reads the plain text of the current
// generation, active or disabled.
func (p *Passcode) Reveal() (events.Payload, error) {
	if p.gen == nil {
		return nil, ErrNotGenerated
	}
	return events.PasscodeRevealed{PasscodeID: p.gen.id}, nil
}

// Disable disables a generation. passcodeID names the generation the caller
// aims at; empty means the current one. A disable aimed at an older generation
// never touches a newer one: it is a no-op (nil payload, nil error); a manual
// disable of a passcode that is not active is ErrNotActive. A lockout
// (reason lockout, from the saga) is recorded once per generation: see
// recordLockout; a redelivered one yields no second event.
func (p *Passcode) Disable(now time.Time, passcodeID string, reason events.DisableReason) (events.Payload, error) {
	if reason != events.DisableManual && reason != events.DisableLockout {
		return nil, errors.Join(ErrInvalid, errors.New("disable reason must be manual or lockout"))
	}
	if reason == events.DisableLockout {
		if passcodeID == "" {
			return nil, errors.Join(ErrInvalid, errors.New("a lockout names the generation it disables"))
		}
		return p.recordLockout(now, passcodeID), nil
	}
	switch {
	case p.gen != nil && passcodeID != "" && passcodeID != p.gen.id:
		return nil, nil // aimed at another generation: never touch a newer one
	case p.gen == nil || p.gen.disabled != nil:
		return nil, ErrNotActive
	}
	return events.PasscodeDisabled{PasscodeID: p.gen.id, Reason: reason,
		FailedAttempts: p.log.FailedAttempts(now, p.defaults)}, nil
}

// recordLockout decides the lockout of generation id, once: a disable with
// the alert's data while the generation is active, and the same record (the
// disable changing nothing) when it was disabled by hand or replaced after it
// reached the threshold and before the saga acted, so that the lockout is
// still alerted. Anything else (an unknown or unlocked generation, a lockout
// recorded already) decides nothing.
func (p *Passcode) recordLockout(now time.Time, id string) events.Payload {
	var u unrecorded
	switch g := p.gen; {
	case g != nil && g.id == id:
		if g.lockoutRecorded || (g.disabled != nil && !p.log.Locked()) {
			return nil
		}
		u = p.log.lockedGeneration(id)
	default:
		for _, r := range p.unrecorded {
			if r.id == id {
				u = r
			}
		}
		if u.lock == nil {
			return nil
		}
	}
	at, maxFailed, window := p.lockMoment(u.lock, now)
	counted := countedAt(u.failures, at, window)
	e := events.PasscodeDisabled{PasscodeID: id, Reason: events.DisableLockout, FailedAttempts: len(counted),
		MaxFailedAttempts: maxFailed, FailureWindow: events.Duration(window)}
	if len(counted) > 0 {
		first, last := unixTime(counted[0].at), unixTime(counted[len(counted)-1].at)
		e.FirstFailedAt, e.LastFailedAt = &first, &last
	}
	e.RecentSources = recentSources(counted, maxAlertSources)
	return e
}

// lockMoment is when and under which policy g's failures are counted for its
// lockout: as at the lock, since the saga may act after the window has
// passed or the policy has changed, and the alert must still report the
// failures that exceeded the threshold; without a lock (a lockout of an
// active generation decided before its lock was folded), now.
func (p *Passcode) lockMoment(l *lockInfo, now time.Time) (time.Time, int, time.Duration) {
	if l != nil {
		return l.at, l.maxFailed, l.window
	}
	pol := p.Policy()
	return now, pol.MaxFailedAttempts, pol.FailureWindow
}

// maxAlertSources bounds the sources a lockout carries to its alert.
const maxAlertSources = 20

// recentSources returns the distinct sources of the failures, newest first.
func recentSources(fs []failure, limit int) []events.Source {
	var out []events.Source
	seen := make(map[events.Source]bool)
	for i := len(fs) - 1; i >= 0 && len(out) < limit; i-- {
		s := fs[i].src.source
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// ChangePolicy sets the site's own threshold, window and mode ("" is
// enforce). When the new policy already counts the threshold against the
// active passcode, the event says so and the lockout saga disables it (in
// enforce mode) or reports a simulated lockout (in monitor mode).
func (p *Passcode) ChangePolicy(now time.Time, maxFailed int, window time.Duration, mode events.LockoutMode) (events.Payload, error) {
	err := ValidateLockout(maxFailed, window)
	if errMode := ValidateMode(mode); errMode != nil {
		err = errors.Join(err, errMode)
	}
	if err != nil {
		return nil, err
	}
	if mode == "" {
		mode = events.ModeEnforce
	}
	e := events.LockoutPolicyChanged{MaxFailedAttempts: maxFailed, FailureWindow: events.Duration(window), Mode: mode}
	if p.gen != nil && p.gen.disabled == nil {
		e.PasscodeID = p.gen.id
		e.FailedAttempts = len(p.log.counted(now, window))
	}
	return e, nil
}

// digest binds an attempt ID to the candidate typed in it, so that a retried
// attempt is recognised only with the same candidate: reusing an attempt ID
// with another guess is a new attempt and counts.
func digest(attemptID string, candidateMAC []byte) [digestLen]byte {
	h := sha256.New()
	h.Write([]byte(attemptID))
	h.Write([]byte{0})
	h.Write(candidateMAC)
	var sum [sha256.Size]byte
	var dg [digestLen]byte
	copy(dg[:], h.Sum(sum[:0]))
	return dg
}

func equalBytes(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
