package app

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/secrets"
	"github.com/enrollgate/enrollgate/internal/startup"
)

// keyReload is how often a replica rereads its keys file, so that a
// rotation reaches every replica well before its keys become current
// (keys rotate --activate-after, 1m by default).
const keyReload = 5 * time.Second

// keyWatch rereads the keys file and watches the key registry for keys
// another replica recorded that this one lacks.
type keyWatch struct {
	stopc chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	missing []secrets.KeyRef
}

// missingKeyError is the refusal to start without a key the log names.
func missingKeyError(r secrets.KeyRef, why string) error {
	return fmt.Errorf("key %s named by the event log is not in this replica's keys (%s key, %s): give every replica the same keys file (--keys-file) holding it",
		r.ID, r.Kind, why)
}

// checkKeys makes sure that this replica holds every key the event log
// names, before anything is appended: the keys recorded in the key registry
// (and, the first time on a log written before the registry, the keys
// found by a scan of the log). Then it records its own keys there and starts
// rereading the keys file.
func (a *App) checkKeys(ctx, sctx context.Context, cfg Config, keeper *secrets.Keeper, instance string) error {
	var reg *secrets.Registry
	if err := startup.Retry(sctx, a.log, "open key registry "+secrets.RegistryBucket, func(ctx context.Context) (err error) {
		reg, err = secrets.OpenRegistry(ctx, a.js, cfg.Replicas)
		return err
	}); err != nil {
		return err
	}
	var scanned bool
	if err := startup.Retry(sctx, a.log, "read key registry", func(ctx context.Context) (err error) {
		scanned, err = reg.Scanned(ctx)
		return err
	}); err != nil {
		return err
	}
	if !scanned {
		if err := a.scanLogForKeys(ctx, sctx, reg, keeper, instance); err != nil {
			return err
		}
	}
	var missing, again []secrets.KeyRef
	var created []secrets.KeyRef
	if err := startup.Retry(sctx, a.log, "check key registry", func(ctx context.Context) (err error) {
		if missing, err = reg.Missing(ctx, keeper.Has); err != nil || len(missing) > 0 {
			return err
		}
		// Recorded before use; and checked again, since a replica with
		// other keys may have recorded them meanwhile.
		c, err := reg.Register(ctx, keeper.InUse(), instance)
		created = append(created, c...)
		if err != nil {
			return err
		}
		again, err = reg.Missing(ctx, keeper.Has)
		return err
	}); err != nil {
		return err
	}
	if len(missing) == 0 && len(again) > 0 {
		// Neither start goes on; each forgets what it recorded, unused.
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := reg.Forget(fctx, created); err != nil {
			a.log.Error().Err(err).Msg("forget the keys recorded by this failed start")
		}
		cancel()
		missing = again
	}
	if len(missing) > 0 {
		return missingKeyError(missing[0], "recorded in use in the KV bucket "+secrets.RegistryBucket)
	}
	a.keys = keyWatch{stopc: make(chan struct{}), done: make(chan struct{})}
	go a.keys.run(a, keeper, reg, instance)
	return nil
}

// scanLogForKeys reads the log written before the key registry existed
// once, and records the keys it names.
func (a *App) scanLogForKeys(ctx, sctx context.Context, reg *secrets.Registry, keeper *secrets.Keeper, instance string) error {
	var last uint64
	if err := startup.Retry(sctx, a.log, "stream info "+eventstore.StreamName, func(ctx context.Context) error {
		s, err := a.js.Stream(ctx, eventstore.StreamName)
		if err == nil {
			last = s.CachedInfo().State.LastSeq
		}
		return err
	}); err != nil {
		return err
	}
	t0 := time.Now()
	// Not bounded by the start deadline: it reads the whole log once.
	scan, err := secrets.ScanLog(ctx, a.js, eventstore.StreamName, last, a.auth, keeper.Has)
	if err != nil {
		return err
	}
	if len(scan.Missing) > 0 {
		var first secrets.KeyRef
		for r, n := range scan.Missing {
			if first.ID == "" || n.FirstSeq < scan.Missing[first].FirstSeq {
				first = r
			}
		}
		n := scan.Missing[first]
		return missingKeyError(first, fmt.Sprintf("named by %d messages from stream sequence %d", n.Count, n.FirstSeq))
	}
	if err := startup.Retry(sctx, a.log, "record the keys of the event log", func(ctx context.Context) error {
		if _, err := reg.Register(ctx, scan.Found, instance+" (scan)"); err != nil {
			return err
		}
		return reg.MarkScanned(ctx, last)
	}); err != nil {
		return err
	}
	ids := make([]string, 0, len(scan.Found))
	for _, r := range scan.Found {
		ids = append(ids, r.Kind+":"+r.ID)
	}
	a.log.Info().Uint64("messages", scan.Messages).Uint64("to_seq", last).Strs("keys", ids).
		Str("elapsed", time.Since(t0).Round(time.Millisecond).String()).Msg("scanned the event log for the keys it names (once)")
	return nil
}

func (w *keyWatch) run(a *App, keeper *secrets.Keeper, reg *secrets.Registry, instance string) {
	defer close(w.done)
	tick := time.NewTicker(keyReload)
	defer tick.Stop()
	for {
		select {
		case <-w.stopc:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		changed, kept, err := keeper.Reload(func(refs []secrets.KeyRef) error {
			_, err := reg.Register(ctx, refs, instance)
			return err
		})
		switch {
		case err != nil:
			a.log.Error().Err(err).Msg("reload keys; keeping the keys loaded before")
		case changed:
			a.log.Info().Str("mac_key_id", keeper.MACKeyID()).Str("seal_key_id", keeper.SealKeyID()).
				Strs("in_use", refStrings(keeper.InUse())).Msg("keys reloaded")
		}
		if len(kept) > 0 {
			a.log.Warn().Strs("keys", refStrings(kept)).Msg("the keys file no longer holds keys loaded before; keeping them")
		}
		missing, err := reg.Missing(ctx, keeper.Has)
		cancel()
		if err != nil {
			a.log.Warn().Err(err).Msg("check key registry")
			continue
		}
		w.mu.Lock()
		if len(missing) > 0 && len(w.missing) == 0 {
			a.log.Error().Strs("keys", refStrings(missing)).Msg("keys recorded in use by another replica are not in this replica's keys: its events look forged here; give every replica the same keys file")
		}
		w.missing = missing
		w.mu.Unlock()
	}
}

// ready fails while a key recorded in use is missing here.
func (w *keyWatch) ready() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.missing) > 0 {
		return fmt.Errorf("key %s recorded in use by another replica is not in this replica's keys", w.missing[0].ID)
	}
	return nil
}

func (w *keyWatch) stop() {
	if w.stopc != nil {
		close(w.stopc)
		<-w.done
		w.stopc = nil
	}
}

func refStrings(refs []secrets.KeyRef) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.Kind + ":" + r.ID
	}
	return out
}
