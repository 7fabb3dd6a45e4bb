package projector

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/readstore"
)

// Projector follows the event stream into one read store, from its
// checkpoint, with the same ordered replay as CatchUp and Rebuild.
type Projector struct {
	store *readstore.Store
	// pos is the last stream sequence the projection has passed: applied,
	// or dead-lettered as poison.
	pos    atomic.Uint64
	js     jetstream.JetStream
	stream string
}

// New returns a projector over store (usually from OpenStore).
func New(store *readstore.Store) *Projector { return &Projector{store: store} }

// Store returns the read store, for queries.
func (p *Projector) Store() *readstore.Store { return p.store }

// Register has the router run the live projection (consume.Router.Go): an
// ordered consumer from the read model's checkpoint that keeps following
// the stream, writing what arrived together, with the checkpoint, in one
// read-store transaction (group commit: one event at a time when idle, up
// to cfg.BatchSize under load). Poison and forged messages are moved to
// the dead-letter subject of name (Durable), as the router does for its
// handlers, before the projection passes them. At an authentic event of a
// type this build does not know it applies what came before and holds
// there, trying again every cfg.RetryMaxInterval. A
// failed write or dead letter is tried again from the checkpoint.
func (p *Projector) Register(r *consume.Router, js jetstream.JetStream, name string, cfg Config) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	p.js, p.stream = js, cfg.Stream
	p.pos.Store(p.store.LastApplied())
	deadLetter := func(ctx context.Context, m Poison) error {
		return r.DeadLetter(ctx, name, consume.DeadLetter{Subject: m.Subject, Stream: cfg.Stream, Seq: m.Seq,
			NumDelivered: 1, Reason: m.Reason, Forged: m.Forged, Data: m.data})
	}
	if err := r.Go(func(ctx context.Context) { p.follow(ctx, cfg, deadLetter) }); err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	return nil
}

// follow replays from the checkpoint without end, starting again after an
// error or a stop at an unknown type, until ctx ends.
func (p *Projector) follow(ctx context.Context, cfg Config, deadLetter func(context.Context, Poison) error) {
	apply := func(b batch) error {
		if len(b.recs) > 0 {
			if err := p.store.ApplyPrepared(b.recs...); err != nil {
				return err
			}
		}
		p.pos.Store(max(p.pos.Load(), b.upTo))
		return nil
	}
	for failures := uint64(0); ctx.Err() == nil; {
		before := p.pos.Load()
		from := max(p.store.LastApplied(), before) + 1
		stopped, err := p.followFrom(ctx, from, cfg, apply, deadLetter)
		if ctx.Err() != nil {
			return
		}
		if p.pos.Load() > before {
			failures = 0
		}
		failures++
		delay := retryDelay(failures, cfg.RetryInitialInterval, cfg.RetryMaxInterval)
		if stopped != nil {
			delay = cfg.RetryMaxInterval
			cfg.Log.Error().Uint64("seq", stopped.Seq).Str("reason", stopped.Reason).
				Msg("projections hold at an event of a type this version does not know; upgrade this replica")
		} else {
			cfg.Log.Warn().Err(err).Uint64("from_seq", from).Str("retry_in", delay.String()).Msg("projections interrupted; following again from the checkpoint")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

func (p *Projector) followFrom(ctx context.Context, from uint64, cfg Config, apply func(batch) error,
	deadLetter func(context.Context, Poison) error) (*Poison, error) {
	stream, err := p.js.Stream(ctx, cfg.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Stream, err)
	}
	return replay(ctx, stream, from, 0, cfg, apply, func(m Poison) error { return deadLetter(ctx, m) })
}

// Lag returns how many events of the stream the projection has not passed
// yet: 0 means caught up (ready).
func (p *Projector) Lag(ctx context.Context) (uint64, error) {
	if p.js == nil {
		return 0, errors.New("projector: not registered")
	}
	st, err := p.js.Stream(ctx, p.stream)
	if err != nil {
		return 0, fmt.Errorf("projector: stream %s: %w", p.stream, err)
	}
	last := st.CachedInfo().State.LastSeq
	pos := max(p.pos.Load(), p.store.LastApplied())
	if pos >= last {
		return 0, nil
	}
	return last - pos, nil
}

// retryDelay is the delay after the n-th failure in a row (n from 1):
// doubling from initial, capped at max.
func retryDelay(n uint64, initial, max time.Duration) time.Duration {
	d := initial
	for i := uint64(1); i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
