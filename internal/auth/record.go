package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// record is a stored token: the value of a tok.<id> key in the bucket, and
// an element of a tokens file. It holds the SHA-256 of the token, never the
// token. Fields only grow: replicas of different versions read each other's.
type record struct {
	ID        string    `json:"id"`
	SHA256    string    `json:"sha256"`
	Principal Principal `json:"principal"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

// entry checks the record and makes its entry.
func (r record) entry() (entry, error) {
	if !ValidTokenID(r.ID) {
		return entry{}, errors.New("token id must match [a-z0-9][a-z0-9_-]{0,63}")
	}
	h, err := hex.DecodeString(r.SHA256)
	if err != nil || len(h) != sha256.Size {
		return entry{}, fmt.Errorf("token %s: sha256 must be 64 hex digits", r.ID)
	}
	if err := r.Principal.Validate(); err != nil {
		return entry{}, fmt.Errorf("token %s: %w", r.ID, err)
	}
	e := entry{info: TokenInfo{ID: r.ID, Principal: r.Principal, CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy},
		used: new(atomic.Int64)}
	copy(e.hash[:], h)
	return e, nil
}

func recordOf(e entry) record {
	return record{ID: e.info.ID, SHA256: hex.EncodeToString(e.hash[:]), Principal: e.info.Principal,
		CreatedAt: e.info.CreatedAt, CreatedBy: e.info.CreatedBy}
}

func recordsOf(entries []entry) []record {
	out := make([]record, 0, len(entries))
	for _, e := range entries {
		out = append(out, recordOf(e))
	}
	return out
}

// fileVersion is the format of the tokens file.
const fileVersion = 1

type fileDoc struct {
	Version int      `json:"version"`
	Tokens  []record `json:"tokens"`
}

// loadFile reads a tokens file; a missing file holds no token.
func loadFile(path string) ([]record, error) {
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
	seen := make(map[string]bool)
	for i, t := range doc.Tokens {
		if _, err := t.entry(); err != nil {
			return nil, fmt.Errorf("tokens file %s: token %d: %w", path, i, err)
		}
		if seen[t.ID] {
			return nil, fmt.Errorf("tokens file %s: token %d: duplicate id", path, i)
		}
		seen[t.ID] = true
	}
	return doc.Tokens, nil
}

// saveFile replaces the tokens file atomically: a temporary file in the same
// directory, created 0600, synced, renamed over the old one, and the
// directory synced, so that a crash leaves the old file or the new one.
func saveFile(path string, recs []record) error {
	b, err := json.MarshalIndent(fileDoc{Version: fileVersion, Tokens: recs}, "", "  ")
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
