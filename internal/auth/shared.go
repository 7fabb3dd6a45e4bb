package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Bucket is the JetStream KV bucket of the API tokens. Only the service
// reads it: on the embedded server only the service's account has
// JetStream, on a cluster only the service's user exists.
//
// Renaming it loses every token of a running cluster.
const Bucket = "ENROLLGATE_TOKENS"

// Keys of the bucket. Token IDs match tokenIDPattern, so a key is always
// valid and never a wildcard.
const (
	// keyToken + <token ID> holds a record.
	keyToken = "tok."
	// keyUsed + <token ID> holds the token's last use as a replica last
	// wrote it (usedRecord).
	keyUsed = "used."
	// keyFirst is created once per bucket, by whichever first gave the
	// cluster its tokens: the first start's admin token, or an import.
	keyFirst = "first-admin"
)

// ImportedSuffix is appended to a tokens file's name once it is imported.
const ImportedSuffix = ".imported"

// ShareConfig configures Share.
type ShareConfig struct {
	// Replicas of the bucket: 1 alone, 3 in a cluster.
	Replicas int
	// UsedInterval is how often the process writes the tokens' last uses to
	// the bucket: at most one write per token per interval, none for a
	// token not used since. Default one minute.
	UsedInterval time.Duration
	// WaitView bounds how long a change waits until this process's view
	// shows it. Default 5 s.
	WaitView time.Duration
	// Log receives the watch's problems; never a token.
	Log zerolog.Logger
}

func (c ShareConfig) withDefaults() ShareConfig {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.UsedInterval == 0 {
		c.UsedInterval = time.Minute
	}
	if c.WaitView == 0 {
		c.WaitView = 5 * time.Second
	}
	return c
}

// shared is the bucket behind a Store.
type shared struct {
	s   *Store
	kv  jetstream.KeyValue
	cfg ShareConfig

	// used is the last use of each token in the bucket (under s.mu).
	used map[string]usedValue

	stop      context.CancelFunc
	done      sync.WaitGroup
	closeOnce sync.Once
}

type usedValue struct {
	at  time.Time
	rev uint64
}

// usedRecord is the value of a used.<id> key.
type usedRecord struct {
	LastUsedAt time.Time `json:"last_used_at"`
}

// firstClaim is the value of keyFirst.
type firstClaim struct {
	By      string    `json:"by"`
	TokenID string    `json:"token_id,omitempty"`
	At      time.Time `json:"at"`
	// Claim tells this claim from another, so that a re-sent write is
	// recognised as its own.
	Claim string `json:"claim"`
}

// Share keeps the stored tokens in the cluster's token bucket (created when
// missing) from now on: it loads the bucket and watches it, so that a token
// created or revoked by any replica holds here within moments, and it
// writes the tokens' last uses at most once per ShareConfig.UsedInterval.
// Call it before the store is used for anything but Identify; Close stops
// it. A failed Share leaves the store as it was, so that it can be called
// again (a cluster that is still forming answers late).
func (s *Store) Share(ctx context.Context, js jetstream.JetStream, cfg ShareConfig) error {
	if s.file != "" {
		return errors.New("auth: a store with a tokens file cannot share a bucket")
	}
	if s.kv != nil {
		return errors.New("auth: the store shares a bucket already")
	}
	cfg = cfg.withDefaults()
	kv, err := ensureBucket(ctx, js, cfg.Replicas)
	if err != nil {
		return err
	}
	sh := &shared{s: s, kv: kv, cfg: cfg}
	run, stop := context.WithCancel(context.Background())
	w, recs, used, err := sh.watch(ctx, run)
	if err != nil {
		stop()
		return fmt.Errorf("load tokens from %s: %w", Bucket, err)
	}
	sh.stop = stop
	s.mu.Lock()
	s.kv = sh
	sh.replaceLocked(recs, used)
	s.mu.Unlock()
	sh.done.Add(2)
	go sh.follow(run, w, recs, used)
	go sh.flushLoop(run)
	return nil
}

// Close writes the last uses not yet in the bucket and stops the watch.
func (s *Store) Close() error {
	if s.kv == nil {
		return nil
	}
	sh := s.kv
	sh.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		sh.flushUsed(ctx)
		cancel()
		sh.stop()
		sh.done.Wait()
	})
	return nil
}

// ensureBucket creates the bucket, or updates it to this configuration.
func ensureBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "enrollgate API tokens: SHA-256 hashes and principals, read by the service only",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// watch starts a watch of the whole bucket that lives as long as run, and
// reads the current values (until ctx ends).
func (sh *shared) watch(ctx, run context.Context) (jetstream.KeyWatcher, map[string]entry, map[string]usedValue, error) {
	w, err := sh.kv.WatchAll(run)
	if err != nil {
		return nil, nil, nil, err
	}
	recs, used := make(map[string]entry), make(map[string]usedValue)
	for {
		select {
		case kve, ok := <-w.Updates():
			if !ok {
				return nil, nil, nil, errors.New("the watch ended")
			}
			if kve == nil { // every current value delivered
				return w, recs, used, nil
			}
			sh.collect(kve, recs, used)
		case <-ctx.Done():
			_ = w.Stop()
			return nil, nil, nil, ctx.Err()
		}
	}
}

// collect applies one value of the bucket to recs and used.
func (sh *shared) collect(kve jetstream.KeyValueEntry, recs map[string]entry, used map[string]usedValue) {
	key, put := kve.Key(), kve.Operation() == jetstream.KeyValuePut
	switch {
	case strings.HasPrefix(key, keyToken):
		id := strings.TrimPrefix(key, keyToken)
		delete(recs, id)
		if !put {
			return
		}
		var r record
		err := json.Unmarshal(kve.Value(), &r)
		if err == nil && r.ID != id {
			err = errors.New("the record's id differs from its key")
		}
		var e entry
		if err == nil {
			e, err = r.entry()
		}
		if err != nil {
			// Left out, so that it authenticates nobody; the others stay.
			sh.cfg.Log.Error().Err(err).Str("key", key).Uint64("revision", kve.Revision()).Msg("token record in the bucket is not valid; ignored")
			return
		}
		recs[id] = e
	case strings.HasPrefix(key, keyUsed):
		id := strings.TrimPrefix(key, keyUsed)
		delete(used, id)
		var u usedRecord
		if put && json.Unmarshal(kve.Value(), &u) == nil {
			used[id] = usedValue{at: u.LastUsedAt.UTC(), rev: kve.Revision()}
		}
	}
}

// replaceLocked makes recs and used the store's view.
func (sh *shared) replaceLocked(recs map[string]entry, used map[string]usedValue) {
	next := make([]entry, 0, len(recs))
	for _, e := range recs {
		next = append(next, e)
	}
	sh.s.setStoredLocked(next)
	sh.used = make(map[string]usedValue, len(used))
	for id, u := range used {
		sh.used[id] = u
	}
}

func (sh *shared) usedLocked(id string) time.Time { return sh.used[id].at }

// follow applies the watch's updates until run ends; a watch that ends
// otherwise (the stream lost, say) is started again and its current values
// replace the view, so that nothing missed meanwhile stays wrong.
func (sh *shared) follow(run context.Context, w jetstream.KeyWatcher, recs map[string]entry, used map[string]usedValue) {
	defer sh.done.Done()
	wait := 100 * time.Millisecond
	for {
		sh.apply(run, w, recs, used)
		_ = w.Stop()
		if run.Err() != nil {
			return
		}
		for {
			sh.cfg.Log.Warn().Str("bucket", Bucket).Msg("token watch ended; watching again")
			select {
			case <-run.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, 5*time.Second)
			ctx, cancel := context.WithTimeout(run, 10*time.Second)
			var err error
			w, recs, used, err = sh.watch(ctx, run)
			cancel()
			if err == nil {
				break
			}
			sh.cfg.Log.Error().Err(err).Str("bucket", Bucket).Msg("watch tokens")
		}
		wait = 100 * time.Millisecond
		sh.s.mu.Lock()
		sh.replaceLocked(recs, used)
		sh.s.mu.Unlock()
	}
}

// apply reads updates until the watch ends, applying what arrived together
// at once.
func (sh *shared) apply(run context.Context, w jetstream.KeyWatcher, recs map[string]entry, used map[string]usedValue) {
	for {
		select {
		case <-run.Done():
			return
		case kve, ok := <-w.Updates():
			if !ok {
				return
			}
			if kve != nil {
				sh.collect(kve, recs, used)
			}
		more:
			for {
				select {
				case kve, ok := <-w.Updates():
					if !ok {
						break more
					}
					if kve != nil {
						sh.collect(kve, recs, used)
					}
				default:
					break more
				}
			}
			sh.s.mu.Lock()
			sh.replaceLocked(recs, used)
			sh.s.mu.Unlock()
		}
	}
}

// errTaken: a key written only once holds another value already.
var errTaken = errors.New("key taken")

// putNew writes value to a key that was never written (a key deleted once
// stays taken, so that a revoked token is never brought back). A write
// whose answer was lost is recognised on the retry as its own. It reports
// whether this call stored the value (false: the key held it already).
func (sh *shared) putNew(ctx context.Context, key string, value []byte) (stored bool, err error) {
	var lastErr error
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return false, fmt.Errorf("write %s: %w: %w", key, ErrUnavailable, errors.Join(lastErr, ctx.Err()))
			case <-time.After(time.Duration(attempt*attempt) * 20 * time.Millisecond):
			}
		}
		_, err := sh.kv.Update(ctx, key, value, 0)
		if err == nil {
			return true, nil
		}
		lastErr = err
		refused := apiCode(err) == jetstream.JSErrCodeStreamWrongLastSequence
		got, gerr := sh.kv.Get(ctx, key)
		switch {
		case gerr == nil:
			if bytes.Equal(got.Value(), value) {
				// Refused at the first try: it was there before this call.
				return !(attempt == 0 && refused), nil
			}
			return false, errTaken
		case errors.Is(gerr, jetstream.ErrKeyNotFound) && refused:
			// The key holds a message but no value: it was deleted.
			return false, errTaken
		}
		// Not stored, or refused while another write of the key was in
		// flight (10164 on a replicated bucket): ask again.
	}
	return false, fmt.Errorf("write %s: %w: %w", key, ErrUnavailable, lastErr)
}

func apiCode(err error) jetstream.ErrorCode {
	var ae *jetstream.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode
	}
	return 0
}

// create stores a new token and waits until the view holds it.
func (sh *shared) create(ctx context.Context, e entry) error {
	b, err := json.Marshal(recordOf(e))
	if err != nil {
		return err
	}
	if _, err := sh.putNew(ctx, keyToken+e.info.ID, b); err != nil {
		if errors.Is(err, errTaken) { // 64 random bits collided
			return fmt.Errorf("create token %s: the ID is taken: %w", e.info.ID, ErrUnavailable)
		}
		return fmt.Errorf("create token: %w", err)
	}
	return sh.waitView(ctx, hasToken(e.info.ID))
}

// delete revokes a stored token and waits until the view has dropped it.
func (sh *shared) delete(ctx context.Context, id string) error {
	key := keyToken + id
	if _, err := sh.kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return fmt.Errorf("revoke %s: %w", id, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("revoke %s: %w: %w", id, ErrUnavailable, err)
	}
	if err := sh.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("revoke %s: %w: %w", id, ErrUnavailable, err)
	}
	sh.s.mu.RLock()
	_, hasUse := sh.used[id]
	sh.s.mu.RUnlock()
	if hasUse {
		// Only tidiness: a last use of a token that is gone is never shown.
		if err := sh.kv.Delete(ctx, keyUsed+id); err != nil {
			sh.cfg.Log.Warn().Err(err).Str("token_id", id).Msg("delete the last use of a revoked token")
		}
	}
	return sh.waitView(ctx, func(stored []entry) bool { return !hasToken(id)(stored) })
}

// waitView waits, at most WaitView, until cond holds for the view. The
// write it follows is stored either way: a view that lags only delays when
// it takes effect here, so a timeout is no error.
func (sh *shared) waitView(ctx context.Context, cond func([]entry) bool) error {
	ctx, cancel := context.WithTimeout(ctx, sh.cfg.WaitView)
	defer cancel()
	if err := sh.s.waitView(ctx, cond); err != nil {
		sh.cfg.Log.Warn().Err(err).Msg("the token watch has not shown a change yet; it takes effect when it does")
	}
	return nil
}

// claimFirst takes keyFirst for c, and reports whether this call did.
func (sh *shared) claimFirst(ctx context.Context, c firstClaim) (bool, error) {
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return false, err
	}
	c.Claim = hex.EncodeToString(raw[:])
	b, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	switch stored, err := sh.putNew(ctx, keyFirst, b); {
	case err == nil:
		return stored, nil
	case errors.Is(err, errTaken):
		return false, nil
	default:
		return false, fmt.Errorf("claim the first token: %w", err)
	}
}

// ImportReport says what Import did.
type ImportReport struct {
	// Imported tokens are in the bucket now; Kept were there already (or
	// were revoked since an earlier import) and were left alone.
	Imported, Kept int
	// RenamedTo is where the file is now; empty when there was none.
	RenamedTo string
}

// Import copies the tokens of a tokens file (path; a missing file is no
// error) into the bucket, leaving every key that exists or existed alone,
// then renames the file to path+ImportedSuffix so that the next start does
// not import it again. A file that cannot be read stops it before anything
// is written.
func (s *Store) Import(ctx context.Context, path string) (ImportReport, error) {
	if s.kv == nil {
		return ImportReport{}, errors.New("auth: import needs a shared bucket")
	}
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return ImportReport{}, nil
	}
	recs, err := loadFile(path)
	if err != nil {
		return ImportReport{}, err
	}
	var rep ImportReport
	if len(recs) > 0 {
		// A replica starting on a fresh data dir meanwhile makes no admin
		// token of its own.
		if _, err := s.kv.claimFirst(ctx, firstClaim{By: CreatedByImport, At: s.now().UTC().Truncate(time.Second)}); err != nil {
			return rep, fmt.Errorf("import %s: %w", path, err)
		}
	}
	for _, r := range recs {
		if r.CreatedBy == "" {
			r.CreatedBy = CreatedByImport
		}
		b, err := json.Marshal(r)
		if err != nil {
			return rep, err
		}
		switch stored, err := s.kv.putNew(ctx, keyToken+r.ID, b); {
		case err == nil && !stored:
			rep.Kept++
		case err == nil:
			rep.Imported++
			if err := s.kv.waitView(ctx, hasToken(r.ID)); err != nil {
				return rep, err
			}
		case errors.Is(err, errTaken):
			rep.Kept++
		default:
			return rep, fmt.Errorf("import %s: %w", path, err)
		}
	}
	rep.RenamedTo = path + ImportedSuffix
	if err := os.Rename(path, rep.RenamedTo); err != nil {
		return rep, fmt.Errorf("imported %s, but could not rename it: %w", path, err)
	}
	return rep, nil
}

// flushLoop writes the last uses every UsedInterval until run ends.
func (sh *shared) flushLoop(run context.Context) {
	defer sh.done.Done()
	tick := time.NewTicker(sh.cfg.UsedInterval)
	defer tick.Stop()
	for {
		select {
		case <-run.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(run, sh.cfg.UsedInterval)
		sh.flushUsed(ctx)
		cancel()
	}
}

// flushUsed writes the last use of each token used here since the bucket's
// last use of it. Each write expects the revision this process saw: when
// another replica wrote meanwhile, this one skips the round, and the next
// compares with what the other wrote.
func (sh *shared) flushUsed(ctx context.Context) {
	type pending struct {
		id  string
		at  time.Time
		rev uint64
	}
	var todo []pending
	sh.s.mu.RLock()
	for _, e := range sh.s.stored {
		n := e.used.Load()
		if n == 0 {
			continue
		}
		at := time.Unix(0, n).UTC().Truncate(time.Second)
		if known := sh.used[e.info.ID]; at.After(known.at) {
			todo = append(todo, pending{id: e.info.ID, at: at, rev: known.rev})
		}
	}
	sh.s.mu.RUnlock()
	for _, p := range todo {
		b, err := json.Marshal(usedRecord{LastUsedAt: p.at})
		if err != nil {
			continue
		}
		key := keyUsed + p.id
		if p.rev == 0 {
			_, err = sh.kv.Create(ctx, key, b)
		} else {
			_, err = sh.kv.Update(ctx, key, b, p.rev)
		}
		if err != nil && !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			sh.cfg.Log.Warn().Err(err).Str("token_id", p.id).Msg("write a token's last use")
		}
	}
}
