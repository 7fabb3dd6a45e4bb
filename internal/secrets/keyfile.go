package secrets

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyFileName is the name of the keys file in the keys directory.
const KeyFileName = "keys.json"

const keyFileVersion = 1

var errNoKeyFile = errors.New("no keys file")

// keyFile is the JSON form of keys.json. Keys are base64 (standard encoding)
// by ID; the current ones are named. Older keys stay to verify and open the
// generations made with them.
type keyFile struct {
	Version     int               `json:"version"`
	CurrentMAC  string            `json:"current_mac"`
	CurrentSeal string            `json:"current_seal"`
	MACKeys     map[string]string `json:"mac_keys"`
	SealKeys    map[string]string `json:"seal_keys"`

	mac, seal map[string][]byte // decoded
}

// loadOrCreateKeyFile loads dir/keys.json or, when there is none, generates
// one. Creation is atomic and exclusive (temp file, then link), so that two
// processes starting at once on one directory end up with the same keys.
func loadOrCreateKeyFile(dir string, random io.Reader) (*keyFile, error) {
	kf, err := loadKeyFile(dir)
	if !errors.Is(err, errNoKeyFile) {
		return kf, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets: create keys directory: %w", err)
	}
	kf = &keyFile{Version: keyFileVersion, MACKeys: map[string]string{}, SealKeys: map[string]string{}}
	if err := kf.addNew(random); err != nil {
		return nil, err
	}
	if err := writeKeyFile(dir, kf, false); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadKeyFile(dir) // another process won the race
		}
		return nil, err
	}
	return loadKeyFile(dir)
}

// Rotate adds a new MAC key and a new sealing key to dir/keys.json and makes
// them current; the older keys stay. A running process sees the new keys on
// its next start.
func Rotate(dir string) (macKeyID, sealKeyID string, err error) {
	kf, err := loadKeyFile(dir)
	if err != nil {
		return "", "", err
	}
	if err := kf.addNew(rand.Reader); err != nil {
		return "", "", err
	}
	if err := writeKeyFile(dir, kf, true); err != nil {
		return "", "", err
	}
	return kf.CurrentMAC, kf.CurrentSeal, nil
}

func (kf *keyFile) addNew(random io.Reader) error {
	for _, kind := range []string{kindMAC, kindSeal} {
		key := make([]byte, KeySize)
		if _, err := io.ReadFull(random, key); err != nil {
			return fmt.Errorf("secrets: generate %s key: %w", kind, err)
		}
		id := deriveKeyID(kind, key)
		enc := base64.StdEncoding.EncodeToString(key)
		if kind == kindMAC {
			kf.MACKeys[id], kf.CurrentMAC = enc, id
		} else {
			kf.SealKeys[id], kf.CurrentSeal = enc, id
		}
	}
	return nil
}

func loadKeyFile(dir string) (*keyFile, error) {
	path := filepath.Join(dir, KeyFileName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNoKeyFile
	}
	if err != nil {
		return nil, fmt.Errorf("secrets: open keys file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secrets: stat keys file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secrets: keys file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secrets: keys file %s has mode %04o: it must not be readable or writable by group or others (chmod 600 it)", path, perm)
	}
	dec := json.NewDecoder(io.LimitReader(f, 1<<20))
	dec.DisallowUnknownFields()
	var kf keyFile
	if err := dec.Decode(&kf); err != nil {
		// json's syntax errors quote no values; type errors may quote a
		// number, which is never key material (keys are strings).
		return nil, fmt.Errorf("secrets: keys file %s is malformed: %w", path, err)
	}
	if err := kf.decode(); err != nil {
		return nil, fmt.Errorf("secrets: keys file %s: %w", path, err)
	}
	return &kf, nil
}

// decode checks the file and decodes its keys; errors name key IDs only.
func (kf *keyFile) decode() error {
	if kf.Version != keyFileVersion {
		return fmt.Errorf("unsupported version %d", kf.Version)
	}
	var err error
	if kf.mac, err = decodeKeys(kindMAC, kf.MACKeys, kf.CurrentMAC); err != nil {
		return err
	}
	kf.seal, err = decodeKeys(kindSeal, kf.SealKeys, kf.CurrentSeal)
	return err
}

func decodeKeys(kind string, enc map[string]string, current string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(enc))
	for id, s := range enc {
		if !keyIDPattern.MatchString(id) {
			return nil, fmt.Errorf("%s key ID %q is invalid: want 1-64 of [A-Za-z0-9_-]", kind, truncate(id))
		}
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) != KeySize {
			return nil, fmt.Errorf("%s key %s must be standard base64 of %d bytes", kind, id, KeySize)
		}
		out[id] = raw
	}
	if _, ok := out[current]; !ok {
		return nil, fmt.Errorf("current %s key %q is not among the %s keys", kind, truncate(current), kind)
	}
	return out, nil
}

// writeKeyFile writes kf to dir/keys.json with mode 0600 through a synced
// temp file: replace renames over an existing file, otherwise the temp file
// is linked into place, which fails with fs.ErrExist if the file appeared.
func writeKeyFile(dir string, kf *keyFile, replace bool) error {
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return fmt.Errorf("secrets: encode keys file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".keys-*.tmp") // created with mode 0600
	if err != nil {
		return fmt.Errorf("secrets: create temp keys file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("secrets: chmod temp keys file: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("secrets: write temp keys file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("secrets: sync temp keys file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("secrets: close temp keys file: %w", err)
	}
	path := filepath.Join(dir, KeyFileName)
	if replace {
		err = os.Rename(tmp.Name(), path)
	} else {
		err = os.Link(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("secrets: install keys file: %w", err)
	}
	// Make the new directory entry durable too.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
