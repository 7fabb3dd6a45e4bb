package readstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/projections"
)

// FileName is the read model's file name inside the data directory.
const FileName = "readmodel.db"

// Errors.
var (
	// ErrClosed is returned by operations on a closed store.
	ErrClosed = errors.New("read store closed")
	// ErrUnclean is returned by Open when a store opened with NoSync was not
	// closed before the machine restarted: its file may be corrupt. Delete it
	// and rebuild from the stream.
	ErrUnclean = errors.New("read model was not closed cleanly before an OS restart")
	// ErrCorrupt is returned by Open when the file cannot be read back.
	ErrCorrupt = errors.New("read model file is corrupt")
)

var (
	bucketMeta     = []byte("meta")
	bucketSites    = []byte("sites")
	bucketAudit    = []byte("audit")
	bucketAttempts = []byte("attempts")

	keyLastApplied = []byte("last_applied")
	keyFormat      = []byte("format")
	keyOpenBoot    = []byte("open_boot_id")
)

const formatVersion = "1"

// Config configures a Store.
type Config struct {
	// Path of the bbolt file, usually <data-dir>/readmodel.db.
	Path string
	// Defaults is the configured lockout policy (threshold, window, per-source
	// limit and window); a site's LockoutPolicyChanged overrides threshold and
	// window.
	Defaults domain.Policy
	// MaxAttemptsPerSite bounds the attempts kept per site; older ones are
	// pruned (the audit trail keeps them all). Default 1000.
	MaxAttemptsPerSite int
	// NoSync skips fsync on commit. A process crash loses nothing (the writes
	// are in the OS page cache and bbolt's meta page switch is atomic); an OS
	// crash or power loss can lose or corrupt the file. Open detects that case
	// (an open marker with another boot ID) and returns ErrUnclean, and the
	// caller rebuilds from the stream. Without NoSync each Apply costs an
	// fsync (measured in BenchmarkApplyOne).
	NoSync bool
	// BootID returns an ID of the running OS boot; default: the content of
	// /proc/sys/kernel/random/boot_id. With NoSync, an open marker left by
	// another boot means ErrUnclean; when no boot ID is available, any
	// leftover marker does.
	BootID func() string
}

func (c *Config) setDefaults() {
	if c.MaxAttemptsPerSite == 0 {
		c.MaxAttemptsPerSite = 1000
	}
	if c.BootID == nil {
		c.BootID = linuxBootID
	}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("readstore: path is empty"))
	}
	if c.MaxAttemptsPerSite < 1 {
		errs = append(errs, fmt.Errorf("readstore: max attempts per site must be at least 1, got %d", c.MaxAttemptsPerSite))
	}
	if err := c.Defaults.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("readstore: defaults: %w", err))
	}
	return errors.Join(errs...)
}

func linuxBootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// siteEntry is the cached state of a site. Entries are never mutated once
// installed in the cache: Apply works on clones and swaps them in after the
// commit, so readers need the lock only to fetch the pointer.
type siteEntry struct {
	state     *projections.SiteState
	nAttempts uint32
}

// Store is the read model. Its methods are safe for concurrent use; Apply
// calls are serialised.
type Store struct {
	cfg Config
	db  *bbolt.DB

	applyMu sync.Mutex // one writer at a time

	mu      sync.RWMutex
	sites   map[string]*siteEntry
	last    uint64
	changed chan struct{} // closed and replaced after every commit
	closed  bool
}

// Open opens or creates the read model at cfg.Path and loads the per-site
// states into memory.
func Open(cfg Config) (st *Store, err error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	db, err := bbolt.Open(cfg.Path, 0o600, &bbolt.Options{Timeout: 2 * time.Second, NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("open read model %s: %w: %w", cfg.Path, ErrCorrupt, err)
	}
	s := &Store{cfg: cfg, db: db, sites: make(map[string]*siteEntry), changed: make(chan struct{})}
	defer func() {
		// bbolt panics on some corrupt pages; an unreadable read model is to
		// be rebuilt, not a crash.
		if r := recover(); r != nil {
			err = fmt.Errorf("load read model %s: %w: %v", cfg.Path, ErrCorrupt, r)
		}
		if err != nil {
			_ = db.Close()
			st = nil
		}
	}()
	if err := s.init(); err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// init creates the buckets, checks the format and the open marker, and sets
// the marker for this boot.
func (s *Store) init() error {
	boot := s.cfg.BootID()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketSites, bucketAudit, bucketAttempts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch f := meta.Get(keyFormat); {
		case f == nil:
			if err := meta.Put(keyFormat, []byte(formatVersion)); err != nil {
				return err
			}
		case string(f) != formatVersion:
			return fmt.Errorf("%w: format %q, want %q", ErrCorrupt, f, formatVersion)
		}
		if prev := meta.Get(keyOpenBoot); prev != nil && s.cfg.NoSync && (boot == "" || string(prev) != boot) {
			return ErrUnclean
		}
		// The marker is written even without NoSync so that a later NoSync
		// open knows the file's history; it is removed by Close.
		return meta.Put(keyOpenBoot, []byte(boot))
	})
	if err != nil {
		return fmt.Errorf("open read model %s: %w", s.cfg.Path, err)
	}
	if s.cfg.NoSync {
		// The marker must be on disk before any unsynced write can be.
		if err := s.db.Sync(); err != nil {
			return fmt.Errorf("sync read model %s: %w", s.cfg.Path, err)
		}
	}
	return nil
}

func (s *Store) load() error {
	return s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyLastApplied); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("%w: last_applied has %d bytes", ErrCorrupt, len(v))
			}
			s.last = binary.BigEndian.Uint64(v)
		}
		return tx.Bucket(bucketSites).ForEach(func(k, v []byte) error {
			e, err := s.decodeSite(v)
			if err != nil {
				return fmt.Errorf("%w: site %q: %w", ErrCorrupt, k, err)
			}
			s.sites[string(k)] = e
			return nil
		})
	})
}

func (s *Store) decodeSite(v []byte) (*siteEntry, error) {
	if len(v) < 4 {
		return nil, errors.New("short site record")
	}
	st, err := projections.DecodeSiteState(v[4:], s.cfg.Defaults)
	if err != nil {
		return nil, err
	}
	return &siteEntry{state: st, nAttempts: binary.BigEndian.Uint32(v[:4])}, nil
}

func encodeSite(e *siteEntry) ([]byte, error) {
	b, err := e.state.MarshalBinary()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(out, e.nAttempts)
	return append(out, b...), nil
}

// Close syncs and closes the file and removes the open marker. Waiters get
// ErrClosed.
func (s *Store) Close() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.changed)
	s.mu.Unlock()
	err := s.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyOpenBoot) })
	if err == nil && s.cfg.NoSync {
		err = s.db.Sync()
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close read model %s: %w", s.cfg.Path, err)
	}
	return nil
}

// Sync flushes the file to disk (useful after a bulk load with NoSync).
func (s *Store) Sync() error {
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("sync read model %s: %w", s.cfg.Path, err)
	}
	return nil
}

// Path returns the file path.
func (s *Store) Path() string { return s.cfg.Path }

// key returns site 0x00 seq: the site's entries are contiguous and ordered by
// sequence, and no site's prefix is a prefix of another's (0x00 is not a
// site character).
func key(site string, seq uint64) []byte {
	k := make([]byte, len(site)+9)
	copy(k, site)
	binary.BigEndian.PutUint64(k[len(site)+1:], seq)
	return k
}

func prefix(site string) []byte {
	p := make([]byte, len(site)+1)
	copy(p, site)
	return p
}

// Apply applies records in stream order in one transaction, with the
// checkpoint. Records at or below LastApplied are skipped, so re-applying is
// harmless. On error nothing of the batch is applied.
func (s *Store) Apply(recs ...events.Record) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	last, closed := s.last, s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	start := last
	dirty := make(map[string]*siteEntry)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		audit, attempts := tx.Bucket(bucketAudit), tx.Bucket(bucketAttempts)
		for _, r := range recs {
			if r.Seq <= last {
				continue
			}
			if r.Event.Data == nil {
				return fmt.Errorf("record %d (%s): no payload", r.Seq, r.Event.ID)
			}
			site := r.Event.Site
			if err := events.ValidateSite(site); err != nil {
				return fmt.Errorf("record %d: %w", r.Seq, err)
			}
			e := dirty[site]
			if e == nil {
				// s.sites is only written by Apply, which holds applyMu.
				if cur := s.sites[site]; cur != nil {
					e = &siteEntry{state: cur.state.Clone(), nAttempts: cur.nAttempts}
				} else {
					e = &siteEntry{state: projections.NewSiteState(site, s.cfg.Defaults)}
				}
				dirty[site] = e
			}
			e.state.Apply(r)
			ab, err := json.Marshal(projections.NewAuditEntry(r))
			if err != nil {
				return fmt.Errorf("encode audit entry %d: %w", r.Seq, err)
			}
			if err := audit.Put(key(site, r.Seq), ab); err != nil {
				return fmt.Errorf("put audit entry %d: %w", r.Seq, err)
			}
			if a, ok := projections.NewAttemptEntry(r); ok {
				if err := s.putAttempt(attempts, e, site, a); err != nil {
					return err
				}
			}
			last = r.Seq
		}
		if last == start {
			return nil
		}
		for site, e := range dirty {
			v, err := encodeSite(e)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketSites).Put([]byte(site), v); err != nil {
				return fmt.Errorf("put site %s: %w", site, err)
			}
		}
		var lb [8]byte
		binary.BigEndian.PutUint64(lb[:], last)
		return tx.Bucket(bucketMeta).Put(keyLastApplied, lb[:])
	})
	if err != nil {
		return fmt.Errorf("apply %d records after seq %d: %w", len(recs), start, err)
	}
	if last == start {
		return nil
	}
	s.mu.Lock()
	for site, e := range dirty {
		s.sites[site] = e
	}
	s.last = last
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

func (s *Store) putAttempt(b *bbolt.Bucket, e *siteEntry, site string, a projections.AttemptEntry) error {
	v, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode attempt %d: %w", a.Seq, err)
	}
	if err := b.Put(key(site, a.Seq), v); err != nil {
		return fmt.Errorf("put attempt %d: %w", a.Seq, err)
	}
	e.nAttempts++
	p := prefix(site)
	c := b.Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p) && int(e.nAttempts) > s.cfg.MaxAttemptsPerSite; k, _ = c.Seek(p) {
		if err := c.Delete(); err != nil {
			return fmt.Errorf("prune attempts of %s: %w", site, err)
		}
		e.nAttempts--
	}
	return nil
}

// LastApplied returns the last stream sequence applied.
func (s *Store) LastApplied() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.last
}

// WaitFor blocks until LastApplied() >= seq, the context is done (its error
// is returned, wrapped) or the store is closed (ErrClosed).
func (s *Store) WaitFor(ctx context.Context, seq uint64) error {
	for {
		s.mu.RLock()
		last, ch, closed := s.last, s.changed, s.closed
		s.mu.RUnlock()
		if last >= seq {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for seq %d (applied %d): %w", seq, last, ctx.Err())
		}
	}
}

// State returns the state document of site at now, and false when the site
// has no events (the document then says status none under the defaults).
func (s *Store) State(site string, now time.Time) (projections.StateDoc, bool) {
	s.mu.RLock()
	e := s.sites[site]
	s.mu.RUnlock()
	if e == nil {
		return projections.NewSiteState(site, s.cfg.Defaults).Doc(now), false
	}
	return e.state.Doc(now), true
}

// Sites returns the IDs of the sites that have events, sorted.
func (s *Store) Sites() []string {
	s.mu.RLock()
	out := make([]string, 0, len(s.sites))
	for k := range s.sites {
		out = append(out, k)
	}
	s.mu.RUnlock()
	sort.Strings(out)
	return out
}

// States returns the state documents at now of the sites that have events and
// that keep accepts (nil: all), sorted by site.
func (s *Store) States(now time.Time, keep func(site string) bool) []projections.StateDoc {
	var out []projections.StateDoc
	for _, site := range s.Sites() {
		if keep != nil && !keep(site) {
			continue
		}
		if d, ok := s.State(site, now); ok {
			out = append(out, d)
		}
	}
	return out
}

// Audit returns up to limit audit entries of site with a sequence below
// before (0: from the newest), newest first, and the cursor of the next page
// (0 when there is none). It reads O(limit) entries.
func (s *Store) Audit(site string, before uint64, limit int) ([]projections.AuditEntry, uint64, error) {
	var out []projections.AuditEntry
	next, err := s.scan(bucketAudit, site, before, limit, func(v []byte) (bool, error) {
		var a projections.AuditEntry
		if err := json.Unmarshal(v, &a); err != nil {
			return false, err
		}
		out = append(out, a)
		return true, nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("audit of %s: %w", site, err)
	}
	return out, next, nil
}

// Attempts returns up to limit recent attempts of site, newest first, only
// those with the given outcome unless it is empty.
func (s *Store) Attempts(site string, outcome projections.Outcome, limit int) ([]projections.AttemptEntry, error) {
	var out []projections.AttemptEntry
	_, err := s.scan(bucketAttempts, site, 0, limit, func(v []byte) (bool, error) {
		var a projections.AttemptEntry
		if err := json.Unmarshal(v, &a); err != nil {
			return false, err
		}
		if outcome != "" && a.Outcome != outcome {
			return false, nil
		}
		out = append(out, a)
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("attempts of %s: %w", site, err)
	}
	return out, nil
}

// scan walks site's entries in bucket newest first from below before, calling
// take until it has accepted limit of them; it returns the sequence of the
// last accepted entry when older entries remain, else 0.
func (s *Store) scan(bucket []byte, site string, before uint64, limit int, take func(v []byte) (bool, error)) (uint64, error) {
	if limit <= 0 {
		return 0, nil
	}
	if before == 0 {
		before = math.MaxUint64
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return 0, ErrClosed
	}
	p := prefix(site)
	var next uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		k, v := c.Seek(key(site, before))
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		n := 0
		for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Prev() {
			if n == limit {
				// One more exists: the page has a successor.
				return nil
			}
			ok, err := take(v)
			if err != nil {
				return fmt.Errorf("decode entry %x: %w", k, err)
			}
			if ok {
				n++
				next = binary.BigEndian.Uint64(k[len(p):])
			}
		}
		next = 0
		return nil
	})
	return next, err
}
