package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// KeyFileName is the name of the keys file in the keys directory.
const KeyFileName = "keys.json"

const keyFileVersion = 1

var errNoKeyFile = errors.New("no keys file")

// keyFile is the JSON form of keys.json and of a shared keys file. Keys are
// base64 (standard encoding) by ID; the current ones are named. Older keys
// stay to verify and open the generations made with them. A pending
// rotation names the next keys and when they become current (NextFrom), so
// that every replica has loaded them before any replica uses them.
type keyFile struct {
	Version     int               `json:"version"`
	CurrentMAC  string            `json:"current_mac"`
	CurrentSeal string            `json:"current_seal"`
	NextMAC     string            `json:"next_mac,omitempty"`
	NextSeal    string            `json:"next_seal,omitempty"`
	NextFrom    *time.Time        `json:"next_from,omitempty"`
	MACKeys     map[string]string `json:"mac_keys"`
	SealKeys    map[string]string `json:"seal_keys"`

	mac, seal map[string][]byte // decoded
}

// promote makes a pending rotation whose time has come the current keys.
func (kf *keyFile) promote(now time.Time) {
	if kf.NextFrom != nil && !now.Before(*kf.NextFrom) {
		kf.CurrentMAC, kf.CurrentSeal = kf.NextMAC, kf.NextSeal
		kf.NextMAC, kf.NextSeal, kf.NextFrom = "", "", nil
	}
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

// Rotation says what RotateFile did.
type Rotation struct {
	// MAC and Seal are the IDs of the new keys.
	MAC, Seal string
	// From is when they become current.
	From time.Time
}

// RotateFile adds a new MAC key and a new sealing key to the keys file at
// path, which become current after activateAfter (at once when it is 0);
// the older keys stay. activateAfter must be longer than it takes every
// replica to reread the file, or a replica that has not yet read it would
// take the events signed with the new key for forgeries. A rotation still
// pending is refused: only one can be pending at a time.
func RotateFile(path string, activateAfter time.Duration, now time.Time) (Rotation, error) {
	if activateAfter < 0 {
		return Rotation{}, fmt.Errorf("secrets: activation delay must not be negative, got %s", activateAfter)
	}
	kf, err := loadKeyFilePath(path)
	if err != nil {
		return Rotation{}, err
	}
	kf.promote(now)
	if kf.NextFrom != nil {
		return Rotation{}, fmt.Errorf("secrets: keys file %s has a rotation pending until %s (keys %s, %s); rotate again after it",
			path, kf.NextFrom.UTC().Format(time.RFC3339), kf.NextMAC, kf.NextSeal)
	}
	prevMAC, prevSeal := kf.CurrentMAC, kf.CurrentSeal
	if err := kf.addNew(rand.Reader); err != nil {
		return Rotation{}, err
	}
	r := Rotation{MAC: kf.CurrentMAC, Seal: kf.CurrentSeal, From: now}
	if activateAfter > 0 {
		from := now.Add(activateAfter).UTC()
		r.From = from
		kf.NextMAC, kf.NextSeal, kf.NextFrom = kf.CurrentMAC, kf.CurrentSeal, &from
		kf.CurrentMAC, kf.CurrentSeal = prevMAC, prevSeal
	}
	if err := writeKeyFilePath(path, kf, true); err != nil {
		return Rotation{}, err
	}
	return r, nil
}

// InitFile creates a keys file at path (it must not exist) with new current
// keys or, given from, with the keys of those files (a data dir's keys.json,
// say): the first one's current keys stay current, and every other key stays
// to verify and open what it made. It returns the current key IDs.
func InitFile(path string, from ...string) (macKeyID, sealKeyID string, err error) {
	kf := &keyFile{Version: keyFileVersion, MACKeys: map[string]string{}, SealKeys: map[string]string{}}
	for i, src := range from {
		in, err := loadKeyFilePath(src)
		if err != nil {
			return "", "", err
		}
		in.promote(time.Now())
		for _, m := range []struct{ dst, src map[string]string }{{kf.MACKeys, in.MACKeys}, {kf.SealKeys, in.SealKeys}} {
			for id, enc := range m.src {
				if old, ok := m.dst[id]; ok && old != enc {
					return "", "", fmt.Errorf("secrets: key ID %s stands for two different keys in %s and an earlier file", id, src)
				}
				m.dst[id] = enc
			}
		}
		if i == 0 {
			kf.CurrentMAC, kf.CurrentSeal = in.CurrentMAC, in.CurrentSeal
		}
	}
	if len(from) == 0 {
		if err := kf.addNew(rand.Reader); err != nil {
			return "", "", err
		}
	}
	if err := writeKeyFilePath(path, kf, false); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", "", fmt.Errorf("secrets: keys file %s exists already", path)
		}
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
	return loadKeyFilePath(filepath.Join(dir, KeyFileName))
}

// loadKeyFilePath loads the keys file at path: errNoKeyFile when there is
// none; a file readable or writable by group or others is refused.
func loadKeyFilePath(path string) (*keyFile, error) {
	kf, _, err := readKeyFile(path)
	return kf, err
}

// readKeyFile is loadKeyFilePath that also returns the file's bytes, so
// that a reread can tell whether anything changed.
func readKeyFile(path string) (*keyFile, []byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, errNoKeyFile
	}
	if err != nil {
		return nil, nil, fmt.Errorf("secrets: open keys file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("secrets: stat keys file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("secrets: keys file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, nil, fmt.Errorf("secrets: keys file %s has mode %04o: it must not be readable or writable by group or others (chmod 600 it)", path, perm)
	}
	raw, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("secrets: read keys file %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var kf keyFile
	if err := dec.Decode(&kf); err != nil {
		// json's syntax errors quote no values; type errors may quote a
		// number, which is never key material (keys are strings).
		return nil, nil, fmt.Errorf("secrets: keys file %s is malformed: %w", path, err)
	}
	if err := kf.decode(); err != nil {
		return nil, nil, fmt.Errorf("secrets: keys file %s: %w", path, err)
	}
	return &kf, raw, nil
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
	if kf.seal, err = decodeKeys(kindSeal, kf.SealKeys, kf.CurrentSeal); err != nil {
		return err
	}
	if (kf.NextMAC == "") != (kf.NextFrom == nil) || (kf.NextSeal == "") != (kf.NextFrom == nil) {
		return errors.New("next_mac, next_seal and next_from go together: give all three or none")
	}
	if kf.NextFrom != nil {
		if _, ok := kf.mac[kf.NextMAC]; !ok {
			return fmt.Errorf("next mac key %q is not among the mac keys", truncate(kf.NextMAC))
		}
		if _, ok := kf.seal[kf.NextSeal]; !ok {
			return fmt.Errorf("next seal key %q is not among the seal keys", truncate(kf.NextSeal))
		}
	}
	return nil
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
	return writeKeyFilePath(filepath.Join(dir, KeyFileName), kf, replace)
}

// writeKeyFilePath writes kf to path as writeKeyFile does.
func writeKeyFilePath(path string, kf *keyFile, replace bool) error {
	dir := filepath.Dir(path)
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
