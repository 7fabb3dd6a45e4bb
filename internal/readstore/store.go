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
	berrors "go.etcd.io/bbolt/errors"

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
	bucketMeta  = []byte("meta")
	bucketSites = []byte("sites")
	bucketLog   = []byte("log")
	bucketIndex = []byte("site_idx")

	keyLastApplied = []byte("last_applied")
	keyFormat      = []byte("format")
	keyOpenBoot    = []byte("open_boot_id")
)

// formatVersion names the layout of the buckets and of the site states in
// them (projections.SiteState's encoding): a file of another is rebuilt.
const formatVersion = "4"

// Config configures a Store.
type Config struct {
	// Path of the bbolt file, usually <data-dir>/readmodel.db.
	Path string
	// Defaults is the configured lockout policy (threshold, window, per-source
	// limit and window); a site's LockoutPolicyChanged overrides threshold and
	// window.
	Defaults domain.Policy
	// AttemptsScanLimit bounds how many of a site's newest audit entries an
	// attempts query looks through for attempts, so that its cost stays
	// bounded whatever the history. Default 10,000.
	AttemptsScanLimit int
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
	if c.AttemptsScanLimit == 0 {
		c.AttemptsScanLimit = 10_000
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
	if c.AttemptsScanLimit < 1 {
		errs = append(errs, fmt.Errorf("readstore: attempts scan limit must be at least 1, got %d", c.AttemptsScanLimit))
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

// Store is the read model. Its methods are safe for concurrent use; Apply
// calls are serialised.
type Store struct {
	cfg Config
	db  *bbolt.DB

	applyMu sync.Mutex // one writer at a time

	mu sync.RWMutex
	// sites caches every site's state. A cached state is never mutated:
	// Apply works on clones and swaps them in after the commit, so readers
	// need the lock only to fetch the pointer.
	sites   map[string]*projections.SiteState
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
		// Only a file bbolt cannot read is corrupt; a lock held by another
		// process (timeout) or a permission problem must not make the caller
		// move the file aside.
		if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrVersionMismatch) ||
			errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrInvalidMapping) {
			return nil, fmt.Errorf("open read model %s: %w: %w", cfg.Path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open read model %s: %w", cfg.Path, err)
	}
	s := &Store{cfg: cfg, db: db, sites: make(map[string]*projections.SiteState), changed: make(chan struct{})}
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
		for _, b := range [][]byte{bucketMeta, bucketSites, bucketLog, bucketIndex} {
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
		// The marker says which boot has the file open and whether without
		// fsync; Close removes it. Left by an unsynced opener of another
		// boot, it means the OS went down with writes maybe not on disk,
		// whatever this opener's mode.
		if prev := meta.Get(keyOpenBoot); prev != nil {
			prevBoot, mode, _ := strings.Cut(string(prev), "|")
			if mode == "nosync" && (boot == "" || prevBoot != boot) {
				return ErrUnclean
			}
		}
		mode := "sync"
		if s.cfg.NoSync {
			mode = "nosync"
		}
		return meta.Put(keyOpenBoot, []byte(boot+"|"+mode))
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
			st, err := projections.DecodeSiteState(v, s.cfg.Defaults)
			if err != nil {
				return fmt.Errorf("%w: site %q: %w", ErrCorrupt, k, err)
			}
			s.sites[string(k)] = st
			return nil
		})
	})
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
func key(site string, seq uint64) []byte { return putKey(make([]byte, len(site)+9), site, seq) }

// putKey writes the key into k, which has len(site)+9 bytes.
func putKey(k []byte, site string, seq uint64) []byte {
	copy(k, site)
	k[len(site)] = 0
	binary.BigEndian.PutUint64(k[len(site)+1:], seq)
	return k
}

func prefix(site string) []byte {
	p := make([]byte, len(site)+1)
	copy(p, site)
	return p
}

// Prepared is a record with its audit entry encoded: the part of applying
// that needs no order, so that a replay can prepare records on several
// goroutines and apply them in one.
type Prepared struct {
	Rec   events.Record
	audit []byte
	kind  []byte
	err   error
}

// Err is why the record cannot be applied, or nil.
func (p Prepared) Err() error { return p.err }

// Prepare checks a record and encodes its audit entry. It is safe for
// concurrent use.
func Prepare(r events.Record) Prepared {
	if r.Event.Data == nil {
		return Prepared{Rec: r, err: fmt.Errorf("record %d (%s): no payload", r.Seq, r.Event.ID)}
	}
	entry := projections.NewAuditEntry(r)
	kind := kindOther
	switch entry.Type {
	case events.TypeEnrollmentAttemptFailed:
		kind = kindFailed
	case events.TypeEnrollmentAttemptSucceeded:
		kind = kindSucceeded
	case events.TypeEnrollmentAttemptExcused:
		kind = kindMistyped
		if x, ok := r.Event.Data.(events.EnrollmentAttemptExcused); ok && x.Outcome == events.OutcomeOutdated {
			kind = kindOutdated
		}
	}
	return Prepared{Rec: r, audit: entry.AppendJSON(make([]byte, 0, 512)), kind: kind}
}

// Apply applies records in stream order in one transaction, with the
// checkpoint. Records at or below LastApplied are skipped, so re-applying is
// harmless. On error nothing of the batch is applied.
func (s *Store) Apply(recs ...events.Record) error {
	ps := make([]Prepared, len(recs))
	for i, r := range recs {
		ps[i] = Prepare(r)
	}
	return s.ApplyPrepared(ps...)
}

// ApplyPrepared is Apply for prepared records.
func (s *Store) ApplyPrepared(recs ...Prepared) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	last, closed := s.last, s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	start := last
	dirty := make(map[string]*projections.SiteState)
	// One arena, sized to the batch, for its keys: bbolt needs them to stay
	// valid until the commit, and one allocation beats thousands. (A fixed
	// 64 KiB arena cost the live path, one record per call, more than
	// bbolt's own work.)
	size := 0
	for _, p := range recs {
		size += 8 + len(p.Rec.Event.Site) + 9
	}
	arena := make([]byte, 0, size)
	take := func(n int) []byte {
		start := len(arena)
		arena = arena[:start+n]
		return arena[start : start+n : start+n]
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		log, index := tx.Bucket(bucketLog), tx.Bucket(bucketIndex)
		// The log is appended to in sequence order: full pages waste no space.
		log.FillPercent = 1.0
		for _, p := range recs {
			r := p.Rec
			if r.Seq <= last {
				continue
			}
			if p.err != nil {
				return p.err
			}
			site := string(r.Event.Site)
			st := dirty[site]
			if st == nil {
				// s.sites is only written here, under applyMu.
				if cur := s.sites[site]; cur != nil {
					st = cur.Clone()
				} else {
					st = projections.NewSiteState(site, s.cfg.Defaults)
				}
				dirty[site] = st
			}
			st.Apply(r)
			seqKey := take(8)
			binary.BigEndian.PutUint64(seqKey, r.Seq)
			if err := log.Put(seqKey, p.audit); err != nil {
				return fmt.Errorf("put audit entry %d: %w", r.Seq, err)
			}
			if err := index.Put(putKey(take(len(site)+9), site, r.Seq), p.kind); err != nil {
				return fmt.Errorf("index audit entry %d: %w", r.Seq, err)
			}
			last = r.Seq
		}
		if last == start {
			return nil
		}
		for site, st := range dirty {
			v, err := st.MarshalBinary()
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
	for site, st := range dirty {
		s.sites[site] = st
	}
	s.last = last
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// Index values: what kind of event an entry is, so that an attempts query
// skips the others without reading their audit entries.
var (
	kindOther     = []byte{'e'}
	kindFailed    = []byte{'f'}
	kindSucceeded = []byte{'s'}
	kindOutdated  = []byte{'o'}
	kindMistyped  = []byte{'m'}
)

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
	st := s.sites[site]
	s.mu.RUnlock()
	if st == nil {
		return projections.NewSiteState(site, s.cfg.Defaults).Doc(now), false
	}
	return st.Doc(now), true
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
	next, err := s.scan(site, before, limit, 0, nil, func(a projections.AuditEntry) (bool, error) {
		out = append(out, a)
		return true, nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("audit of %s: %w", site, err)
	}
	return out, next, nil
}

// Attempts returns up to limit recent attempts of site, newest first, only
// those with the given outcome unless it is empty. It looks through at most
// Config.AttemptsScanLimit of the site's newest events.
func (s *Store) Attempts(site string, outcome projections.Outcome, limit int) ([]projections.AttemptEntry, error) {
	var want []byte
	switch outcome {
	case projections.OutcomeFailed:
		want = kindFailed
	case projections.OutcomeSucceeded:
		want = kindSucceeded
	case projections.OutcomeOutdated:
		want = kindOutdated
	case projections.OutcomeMistyped:
		want = kindMistyped
	}
	var out []projections.AttemptEntry
	_, err := s.scan(site, 0, limit, s.cfg.AttemptsScanLimit, func(v []byte) bool {
		if want == nil {
			return !bytes.Equal(v, kindOther)
		}
		return bytes.Equal(v, want)
	}, func(a projections.AuditEntry) (bool, error) {
		e, err := projections.AttemptFromAudit(a)
		if err != nil {
			return false, err
		}
		out = append(out, e)
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("attempts of %s: %w", site, err)
	}
	return out, nil
}

// scan walks site's index entries newest first from below before (0: the
// newest), looking at most at maxScan of them (0: no bound). For each whose
// index value match accepts (nil: all), it reads the audit entry from the log
// and passes it to take, until take has accepted limit entries. It returns
// the sequence of the last accepted entry when older index entries remain,
// else 0.
func (s *Store) scan(site string, before uint64, limit, maxScan int, match func(v []byte) bool,
	take func(a projections.AuditEntry) (bool, error)) (uint64, error) {
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
		log := tx.Bucket(bucketLog)
		c := tx.Bucket(bucketIndex).Cursor()
		// The newest entry below before: the one preceding the first key at
		// or after it, else the last key of all.
		var k, v []byte
		if at, _ := c.Seek(key(site, before)); at == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		n, scanned := 0, 0
		for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Prev() {
			if n == limit {
				return nil // one more exists: the page has a successor
			}
			if scanned++; maxScan > 0 && scanned > maxScan {
				next = 0
				return nil
			}
			if match != nil && !match(v) {
				continue
			}
			seq := k[len(p):]
			raw := log.Get(seq)
			if raw == nil {
				return fmt.Errorf("%w: index entry %x has no audit entry", ErrCorrupt, k)
			}
			var a projections.AuditEntry
			if err := json.Unmarshal(raw, &a); err != nil {
				return fmt.Errorf("%w: audit entry %x: %w", ErrCorrupt, seq, err)
			}
			ok, err := take(a)
			if err != nil {
				return err
			}
			if ok {
				n++
				next = binary.BigEndian.Uint64(seq)
			}
		}
		next = 0
		return nil
	})
	return next, err
}
