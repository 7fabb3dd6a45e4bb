package projector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/readstore"
)

// Projector applies live events to the current read store and lets a rebuilt
// store replace it.
type Projector struct {
	applyMu sync.Mutex // serialises live applies and commits with Swap
	staged  []readstore.Prepared
	mu      sync.RWMutex
	store   *readstore.Store
}

// New returns a projector over store (usually from OpenStore).
func New(store *readstore.Store) *Projector { return &Projector{store: store} }

// Store returns the current read store, for queries.
func (p *Projector) Store() *readstore.Store {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.store
}

// InactiveAfter is how long the server keeps an instance's durable
// (Durable(instance)) once no process pulls from it: an instance whose data
// dir is gone for good leaves nothing behind, and one that comes back later
// continues from its read model's checkpoint (Register).
const InactiveAfter = 7 * 24 * time.Hour

// Register adds the live durable consumer of this instance's read model
// (Durable(instance)) to the router. Events are staged (Stage) and written
// together, with the checkpoint, in one read-store transaction (Commit)
// whenever the consumer has nothing more waiting, or after
// consume.Config.CommitMax events: under load many events share one
// transaction, when idle each event is written at once. The router
// acknowledges the events after that transaction committed. The durable is
// created (the first time, or after InactiveAfter without a pull) to start
// after the read model's checkpoint, not at the first event.
func (p *Projector) Register(r *consume.Router, durable string) error {
	if err := r.AddHandler(durable, p.Stage, consume.WithCommit(p.Commit),
		consume.StartAfter(func() uint64 { return p.Store().LastApplied() }), consume.InactiveAfter(InactiveAfter)); err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	return nil
}

// Stage prepares one live event for the next Commit. A record that cannot
// be applied is refused here, so that it is retried (and held) alone.
func (p *Projector) Stage(_ context.Context, rec events.Record) error {
	prep := readstore.Prepare(rec)
	if err := prep.Err(); err != nil {
		return fmt.Errorf("project event %s (seq %d): %w", rec.Event.ID, rec.Seq, err)
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	p.staged = append(p.staged, prep)
	return nil
}

// Commit applies what was staged, with the checkpoint, in one transaction.
// On error nothing is applied and everything stays staged for the next
// Commit; events at or below the checkpoint (a redelivery staged twice) are
// skipped.
func (p *Projector) Commit(_ context.Context) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if len(p.staged) == 0 {
		return nil
	}
	if err := p.Store().ApplyPrepared(p.staged...); err != nil {
		return fmt.Errorf("project %d events: %w", len(p.staged), err)
	}
	clear(p.staged) // let the applied records go
	p.staged = p.staged[:0]
	return nil
}

// WaitFor blocks until the current store has applied seq (read-your-writes),
// following a swap.
func (p *Projector) WaitFor(ctx context.Context, seq uint64) error {
	for {
		st := p.Store()
		err := st.WaitFor(ctx, seq)
		if errors.Is(err, readstore.ErrClosed) && p.Store() != st {
			continue
		}
		return err
	}
}

// Swap catches next up with the stream and makes it the current store, with
// live applies held meanwhile, so that no event the live consumer delivers
// is missed by next. It returns the previous store, which the caller closes
// once its readers are done (waiters move to next by themselves).
func (p *Projector) Swap(ctx context.Context, js jetstream.JetStream, next *readstore.Store, cfg Config) (*readstore.Store, Report, error) {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	rep, err := CatchUp(ctx, js, next, cfg)
	if err != nil {
		return nil, rep, fmt.Errorf("swap: %w", err)
	}
	p.mu.Lock()
	old := p.store
	p.store = next
	p.mu.Unlock()
	return old, rep, nil
}
