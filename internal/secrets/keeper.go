package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/enrollgate/enrollgate/handlers"
)

// KeySize is the size of every key: HMAC-SHA256 and AES-256 keys alike.
const KeySize = 32

const (
	kindMAC  = "mac"
	kindSeal = "seal"
	// sealAD prefixes the additional data of every sealed passcode; the key ID
	// follows it, so that a sealed copy presented under another key ID fails
	// authentication instead of being opened.
	sealAD = "enrollgate/passcode/v1\x00"
	// eventMACLabel derives the event-MAC key from a MAC key, so that
	// passcode hashes and event MACs never share a key.
	eventMACLabel = "enrollgate event MAC v1"
)

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Errors of the keeper; none of them carries key material or a passcode.
var (
	// ErrUnknownKey wraps handlers.ErrKeyUnavailable, so that the transports
	// answer it as a missing key (503), not as an internal error.
	ErrUnknownKey = fmt.Errorf("unknown key ID: %w", handlers.ErrKeyUnavailable)
	ErrOpen       = errors.New("sealed passcode failed authentication")
)

var _ handlers.SecretKeeper = (*Keeper)(nil)

// Config says where the keys come from.
type Config struct {
	// File is a keys file that several replicas share (mounted read-only):
	// the keys come from it instead of Dir, and it must exist (InitFile).
	File string
	// Dir holds keys.json. Required unless File is set or both keys are
	// configured; when they are and Dir holds a keys file, its keys still
	// verify and open older generations.
	Dir string
	// MACKey and SealKey are optional base64 (standard encoding) 32-byte
	// keys. Each one given becomes the current key of its kind, overriding
	// the file's (and a rotation pending in it).
	MACKey, SealKey string
	// Now tells the time a pending rotation is due; nil: time.Now.
	Now func() time.Time
}

// KeyRef names a key: its kind ("mac" or "seal") and ID.
type KeyRef struct{ Kind, ID string }

func (r KeyRef) String() string { return r.Kind + " key " + r.ID }

// Keeper holds the keys. Safe for concurrent use: the keys in use are an
// immutable set, replaced as a whole by Reload.
type Keeper struct {
	path            string // the keys file in use; empty: configured keys only
	macCfg, sealCfg []byte
	random          io.Reader
	now             func() time.Time

	mu       sync.Mutex // serialises loads
	raw      []byte     // the keys file as Reload last applied it
	set      atomic.Pointer[keySet]
	lastMiss atomic.Int64 // when a lookup miss last reread the file (unix ns)
}

// keySet is the keys at one time. Immutable.
type keySet struct {
	macKeys map[string][]byte
	// eventKeys are derived from macKeys, under the same IDs.
	eventKeys map[string][]byte
	sealKeys  map[string]cipher.AEAD
	sealRaw   map[string][]byte
	curMAC    string
	curSeal   string
	// nextMAC and nextSeal become current at nextFrom; empty: none pending.
	nextMAC, nextSeal string
	nextFrom          time.Time
}

// missReload bounds how often a lookup of an unknown key rereads the file.
const missReload = time.Second

// Open returns a Keeper with the keys of cfg: configured keys, else the keys
// file (cfg.File, or keys.json in cfg.Dir, generated there on first start).
func Open(cfg Config) (*Keeper, error) {
	macCfg, err := decodeConfigKey("mac key", cfg.MACKey)
	if err != nil {
		return nil, err
	}
	sealCfg, err := decodeConfigKey("seal key", cfg.SealKey)
	if err != nil {
		return nil, err
	}
	k := &Keeper{macCfg: macCfg, sealCfg: sealCfg, random: rand.Reader, now: cfg.Now}
	if k.now == nil {
		k.now = time.Now
	}
	var kf *keyFile
	switch {
	case cfg.File != "":
		k.path = cfg.File
		if kf, k.raw, err = readKeyFile(cfg.File); errors.Is(err, errNoKeyFile) {
			return nil, fmt.Errorf("secrets: keys file %s does not exist: create it once with `enrollgate keys init --keys-file %s` and give every replica the same file", cfg.File, cfg.File)
		}
	case macCfg != nil && sealCfg != nil:
		if cfg.Dir != "" {
			// The file is optional here: it only supplies older keys.
			k.path = filepath.Join(cfg.Dir, KeyFileName)
			if kf, k.raw, err = readKeyFile(k.path); errors.Is(err, errNoKeyFile) {
				kf, k.path, err = nil, "", nil
			}
		}
	case cfg.Dir == "":
		return nil, errors.New("secrets: a keys directory is required unless both keys are configured")
	default:
		if _, err = loadOrCreateKeyFile(cfg.Dir, rand.Reader); err == nil {
			k.path = filepath.Join(cfg.Dir, KeyFileName)
			kf, k.raw, err = readKeyFile(k.path)
		}
	}
	if err != nil {
		return nil, err
	}
	set, _, err := k.build(nil, kf, true)
	if err != nil {
		return nil, err
	}
	k.set.Store(set)
	return k, nil
}

// build returns the key set of kf (nil: configured keys only) and the
// configured keys, keeping every key of prev: a key once loaded is never
// dropped, so that nothing it made stops verifying. kept names the keys of
// prev that kf no longer holds. With activate false, the keys in use stay
// prev's: only keys to verify and open are added.
func (k *Keeper) build(prev *keySet, kf *keyFile, activate bool) (_ *keySet, kept []KeyRef, err error) {
	s := &keySet{macKeys: map[string][]byte{}, sealKeys: map[string]cipher.AEAD{}, sealRaw: map[string][]byte{}}
	if kf != nil {
		for id, raw := range kf.mac {
			s.macKeys[id] = raw
		}
		for id, raw := range kf.seal {
			if err := s.addSealKey(id, raw); err != nil {
				return nil, nil, err
			}
		}
		s.curMAC, s.curSeal = kf.CurrentMAC, kf.CurrentSeal
		if kf.NextFrom != nil {
			s.nextMAC, s.nextSeal, s.nextFrom = kf.NextMAC, kf.NextSeal, *kf.NextFrom
		}
	}
	if k.macCfg != nil {
		id := deriveKeyID(kindMAC, k.macCfg)
		if old, ok := s.macKeys[id]; ok && !hmac.Equal(old, k.macCfg) {
			return nil, nil, fmt.Errorf("secrets: configured mac key ID %s is already used by another key in the keys file", id)
		}
		s.macKeys[id], s.curMAC, s.nextMAC = k.macCfg, id, ""
	}
	if k.sealCfg != nil {
		id := deriveKeyID(kindSeal, k.sealCfg)
		if old, ok := s.sealRaw[id]; ok && !hmac.Equal(old, k.sealCfg) {
			return nil, nil, fmt.Errorf("secrets: configured seal key ID %s is already used by another key in the keys file", id)
		} else if !ok {
			if err := s.addSealKey(id, k.sealCfg); err != nil {
				return nil, nil, err
			}
		}
		s.curSeal, s.nextSeal = id, ""
	}
	if prev != nil {
		for id, raw := range prev.macKeys {
			if cur, ok := s.macKeys[id]; !ok {
				s.macKeys[id] = raw
				kept = append(kept, KeyRef{kindMAC, id})
			} else if !hmac.Equal(cur, raw) {
				return nil, nil, fmt.Errorf("secrets: mac key %s in the keys file is not the key loaded under that ID before", id)
			}
		}
		for id, raw := range prev.sealRaw {
			if cur, ok := s.sealRaw[id]; !ok {
				s.sealKeys[id], s.sealRaw[id] = prev.sealKeys[id], raw
				kept = append(kept, KeyRef{kindSeal, id})
			} else if !hmac.Equal(cur, raw) {
				return nil, nil, fmt.Errorf("secrets: seal key %s in the keys file is not the key loaded under that ID before", id)
			}
		}
		if !activate {
			s.curMAC, s.curSeal, s.nextMAC, s.nextSeal, s.nextFrom = prev.curMAC, prev.curSeal, prev.nextMAC, prev.nextSeal, prev.nextFrom
		}
	}
	s.eventKeys = make(map[string][]byte, len(s.macKeys))
	for id, key := range s.macKeys {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(eventMACLabel))
		s.eventKeys[id] = m.Sum(nil)
	}
	return s, kept, nil
}

// Reload rereads the keys file and, when it changed, takes its keys: new
// keys are added (none is ever dropped: kept names those the file no longer
// holds), and the current keys and a pending rotation become the file's.
// Before the new set is used, register is given the keys it may use (the
// current and the pending ones), so that they are recorded as in use before
// anything names them; when register fails, the keys in use stay as they
// were. changed is false when the file is as last loaded (or there is none).
func (k *Keeper) Reload(register func([]KeyRef) error) (changed bool, kept []KeyRef, err error) {
	if k.path == "" {
		return false, nil, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	kf, raw, err := readKeyFile(k.path)
	if err != nil {
		return false, nil, err
	}
	if bytes.Equal(raw, k.raw) {
		return false, nil, nil
	}
	set, kept, err := k.build(k.set.Load(), kf, true)
	if err != nil {
		return false, nil, err
	}
	if register != nil {
		if err := register(set.inUse()); err != nil {
			return false, nil, fmt.Errorf("secrets: record the keys in use: %w", err)
		}
	}
	k.set.Store(set)
	k.raw = raw
	return true, kept, nil
}

// missed rereads the keys file, at most once per missReload, after a lookup
// of an unknown key: a key another replica has begun to use is then known
// here even before Reload runs. It only adds keys to verify and open; the
// keys in use change in Reload, after registration.
func (k *Keeper) missed() *keySet {
	now := time.Now().UnixNano()
	last := k.lastMiss.Load()
	if k.path == "" || now-last < int64(missReload) || !k.lastMiss.CompareAndSwap(last, now) {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	kf, raw, err := readKeyFile(k.path)
	if err != nil || bytes.Equal(raw, k.raw) {
		return nil
	}
	set, _, err := k.build(k.set.Load(), kf, false)
	if err != nil {
		return nil
	}
	k.set.Store(set)
	return set
}

// InUse returns the keys this keeper may use to hash, seal and sign: the
// current ones and those of a pending rotation.
func (k *Keeper) InUse() []KeyRef { return k.set.Load().inUse() }

// Has reports whether the keeper holds the key r.
func (k *Keeper) Has(r KeyRef) bool {
	s := k.set.Load()
	switch r.Kind {
	case kindMAC:
		_, ok := s.macKeys[r.ID]
		return ok
	case kindSeal:
		_, ok := s.sealKeys[r.ID]
		return ok
	}
	return false
}

func (s *keySet) inUse() []KeyRef {
	refs := []KeyRef{{kindMAC, s.curMAC}, {kindSeal, s.curSeal}}
	if s.nextMAC != "" {
		refs = append(refs, KeyRef{kindMAC, s.nextMAC})
	}
	if s.nextSeal != "" {
		refs = append(refs, KeyRef{kindSeal, s.nextSeal})
	}
	return refs
}

// current returns the IDs of the keys in use at now.
func (s *keySet) current(now time.Time) (mac, seal string) {
	mac, seal = s.curMAC, s.curSeal
	if !s.nextFrom.IsZero() && !now.Before(s.nextFrom) {
		if s.nextMAC != "" {
			mac = s.nextMAC
		}
		if s.nextSeal != "" {
			seal = s.nextSeal
		}
	}
	return mac, seal
}

func (s *keySet) addSealKey(id string, raw []byte) error {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return fmt.Errorf("secrets: seal key %s: %w", id, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("secrets: seal key %s: %w", id, err)
	}
	s.sealKeys[id], s.sealRaw[id] = aead, raw
	return nil
}

// NewPasscode implements handlers.SecretKeeper with crypto/rand.
func (k *Keeper) NewPasscode() (handlers.Secret, error) {
	p, err := GeneratePasscode(k.random)
	if err != nil {
		return handlers.Secret{}, fmt.Errorf("new passcode: %w", err)
	}
	return handlers.NewSecret(p), nil
}

// MACKeyID implements handlers.SecretKeeper.
func (k *Keeper) MACKeyID() string {
	mac, _ := k.set.Load().current(k.now())
	return mac
}

// SealKeyID names the key Seal uses.
func (k *Keeper) SealKeyID() string {
	_, seal := k.set.Load().current(k.now())
	return seal
}

// MAC implements handlers.SecretKeeper: HMAC-SHA256 of the passcode.
func (k *Keeper) MAC(keyID string, passcode handlers.Secret) ([]byte, error) {
	key, ok := k.set.Load().macKeys[keyID]
	if !ok {
		if s := k.missed(); s != nil {
			key, ok = s.macKeys[keyID]
		}
	}
	if !ok {
		return nil, fmt.Errorf("mac key %q: %w", truncate(keyID), ErrUnknownKey)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(passcode.Plain()))
	return m.Sum(nil), nil
}

// EventMACKeyID names the key new events are authenticated with: the
// event-MAC key derived from the current MAC key, under that key's ID.
func (k *Keeper) EventMACKeyID() string { return k.MACKeyID() }

// NewEventMAC returns an HMAC-SHA256 under the event-MAC key keyID (derived
// as HMAC-SHA256(MAC key, "enrollgate event MAC v1")); false when no MAC key
// has that ID. Every key the keeper knows verifies, so that events signed
// before a rotation stay authentic.
func (k *Keeper) NewEventMAC(keyID string) (hash.Hash, bool) {
	key, ok := k.set.Load().eventKeys[keyID]
	if !ok {
		if s := k.missed(); s != nil {
			key, ok = s.eventKeys[keyID]
		}
	}
	if !ok {
		return nil, false
	}
	return hmac.New(sha256.New, key), true
}

// Seal implements handlers.SecretKeeper: AES-256-GCM under the current seal
// key, as nonce||ciphertext, with the key ID bound as additional data.
func (k *Keeper) Seal(passcode handlers.Secret) ([]byte, string, error) {
	s := k.set.Load()
	_, id := s.current(k.now())
	aead := s.sealKeys[id]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(passcode.Plain())+aead.Overhead())
	if _, err := io.ReadFull(k.random, nonce); err != nil {
		return nil, "", fmt.Errorf("seal passcode: read nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, []byte(passcode.Plain()), additionalData(id)), id, nil
}

// Open implements handlers.SecretKeeper.
func (k *Keeper) Open(keyID string, sealed []byte) (handlers.Secret, error) {
	aead, ok := k.set.Load().sealKeys[keyID]
	if !ok {
		if s := k.missed(); s != nil {
			aead, ok = s.sealKeys[keyID]
		}
	}
	if !ok {
		return handlers.Secret{}, fmt.Errorf("seal key %q: %w", truncate(keyID), ErrUnknownKey)
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return handlers.Secret{}, fmt.Errorf("open passcode: too short: %w", ErrOpen)
	}
	ns := aead.NonceSize()
	plain, err := aead.Open(nil, sealed[:ns], sealed[ns:], additionalData(keyID))
	if err != nil {
		// GCM's error says nothing about the key or plain text, but ours is
		// the one to classify with errors.Is.
		return handlers.Secret{}, fmt.Errorf("open passcode under key %s: %w", keyID, ErrOpen)
	}
	return handlers.NewSecret(string(plain)), nil
}

func additionalData(keyID string) []byte { return []byte(sealAD + keyID) }

// deriveKeyID names a key by a short hash of it: stable across restarts for a
// configured key, and 32 bits of SHA-256 of a 256-bit random key reveal
// nothing usable about it.
func deriveKeyID(kind string, key []byte) string {
	h := sha256.New()
	h.Write([]byte("enrollgate key id\x00" + kind + "\x00"))
	h.Write(key)
	return kind + "-" + hex.EncodeToString(h.Sum(nil)[:4])
}

func decodeConfigKey(name, s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != KeySize {
		// Neither the value nor the decoder's error (which quotes a byte
		// offset of the value) goes into the message.
		return nil, fmt.Errorf("secrets: %s must be standard base64 of %d bytes", name, KeySize)
	}
	return raw, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
