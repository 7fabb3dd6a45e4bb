package secrets

import (
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
	"regexp"

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
	ErrUnknownKey = errors.New("unknown key ID")
	ErrOpen       = errors.New("sealed passcode failed authentication")
)

var _ handlers.SecretKeeper = (*Keeper)(nil)

// Config says where the keys come from.
type Config struct {
	// Dir holds keys.json. Required unless both keys are configured; when
	// they are and Dir holds a keys file, its keys still verify and open
	// older generations.
	Dir string
	// MACKey and SealKey are optional base64 (standard encoding) 32-byte
	// keys. Each one given becomes the current key of its kind, overriding
	// the file's.
	MACKey, SealKey string
}

// Keeper holds the keys. Safe for concurrent use: it is immutable after Open.
type Keeper struct {
	macKeys map[string][]byte
	// eventKeys are derived from macKeys, under the same IDs.
	eventKeys map[string][]byte
	sealKeys  map[string]cipher.AEAD
	curMAC    string
	curSeal   string
	random    io.Reader
}

// Open returns a Keeper with the keys of cfg: configured keys, else the keys
// file in cfg.Dir, generated there on first start.
func Open(cfg Config) (*Keeper, error) {
	macCfg, err := decodeConfigKey("mac key", cfg.MACKey)
	if err != nil {
		return nil, err
	}
	sealCfg, err := decodeConfigKey("seal key", cfg.SealKey)
	if err != nil {
		return nil, err
	}
	var kf *keyFile
	switch {
	case macCfg != nil && sealCfg != nil:
		if cfg.Dir != "" {
			// The file is optional here: it only supplies older keys.
			if kf, err = loadKeyFile(cfg.Dir); errors.Is(err, errNoKeyFile) {
				kf, err = nil, nil
			}
		}
	case cfg.Dir == "":
		return nil, errors.New("secrets: a keys directory is required unless both keys are configured")
	default:
		kf, err = loadOrCreateKeyFile(cfg.Dir, rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	k := &Keeper{macKeys: map[string][]byte{}, sealKeys: map[string]cipher.AEAD{}, random: rand.Reader}
	if kf != nil {
		for id, raw := range kf.mac {
			k.macKeys[id] = raw
		}
		for id, raw := range kf.seal {
			if err := k.addSealKey(id, raw); err != nil {
				return nil, err
			}
		}
		k.curMAC, k.curSeal = kf.CurrentMAC, kf.CurrentSeal
	}
	if macCfg != nil {
		id := deriveKeyID(kindMAC, macCfg)
		if old, ok := k.macKeys[id]; ok && !hmac.Equal(old, macCfg) {
			return nil, fmt.Errorf("secrets: configured mac key ID %s is already used by another key in the keys file", id)
		}
		k.macKeys[id], k.curMAC = macCfg, id
	}
	if sealCfg != nil {
		id := deriveKeyID(kindSeal, sealCfg)
		if _, ok := k.sealKeys[id]; !ok {
			if err := k.addSealKey(id, sealCfg); err != nil {
				return nil, err
			}
		}
		k.curSeal = id
	}
	k.eventKeys = make(map[string][]byte, len(k.macKeys))
	for id, key := range k.macKeys {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(eventMACLabel))
		k.eventKeys[id] = m.Sum(nil)
	}
	return k, nil
}

func (k *Keeper) addSealKey(id string, raw []byte) error {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return fmt.Errorf("secrets: seal key %s: %w", id, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("secrets: seal key %s: %w", id, err)
	}
	k.sealKeys[id] = aead
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
func (k *Keeper) MACKeyID() string { return k.curMAC }

// SealKeyID names the key Seal uses.
func (k *Keeper) SealKeyID() string { return k.curSeal }

// MAC implements handlers.SecretKeeper: HMAC-SHA256 of the passcode.
func (k *Keeper) MAC(keyID string, passcode handlers.Secret) ([]byte, error) {
	key, ok := k.macKeys[keyID]
	if !ok {
		return nil, fmt.Errorf("mac key %q: %w", truncate(keyID), ErrUnknownKey)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(passcode.Plain()))
	return m.Sum(nil), nil
}

// EventMACKeyID names the key new events are authenticated with: the
// event-MAC key derived from the current MAC key, under that key's ID.
func (k *Keeper) EventMACKeyID() string { return k.curMAC }

// NewEventMAC returns an HMAC-SHA256 under the event-MAC key keyID (derived
// as HMAC-SHA256(MAC key, "enrollgate event MAC v1")); false when no MAC key
// has that ID. Every key the keeper knows verifies, so that events signed
// before a rotation stay authentic.
func (k *Keeper) NewEventMAC(keyID string) (hash.Hash, bool) {
	key, ok := k.eventKeys[keyID]
	if !ok {
		return nil, false
	}
	return hmac.New(sha256.New, key), true
}

// Seal implements handlers.SecretKeeper: AES-256-GCM under the current seal
// key, as nonce||ciphertext, with the key ID bound as additional data.
func (k *Keeper) Seal(passcode handlers.Secret) ([]byte, string, error) {
	aead := k.sealKeys[k.curSeal]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(passcode.Plain())+aead.Overhead())
	if _, err := io.ReadFull(k.random, nonce); err != nil {
		return nil, "", fmt.Errorf("seal passcode: read nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, []byte(passcode.Plain()), additionalData(k.curSeal)), k.curSeal, nil
}

// Open implements handlers.SecretKeeper.
func (k *Keeper) Open(keyID string, sealed []byte) (handlers.Secret, error) {
	aead, ok := k.sealKeys[keyID]
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
