package projector

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/readstore"
)

// Projector applies live events to the current read store and lets a rebuilt
// store replace it.
type Projector struct {
	applyMu sync.Mutex // serialises live applies with Swap
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

// Register adds the live durable consumer "projections" to the router, as a
// batch handler: the events that have arrived are applied in one read-store
// transaction, and the router acknowledges them after it committed.
func (p *Projector) Register(r *consume.Router) error {
	if err := r.AddBatchHandler(Durable, p.HandleBatch); err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	return nil
}

// Handle applies one live event; the router acknowledges it once Handle
// returns nil. Redeliveries are skipped by the store's checkpoint.
func (p *Projector) Handle(ctx context.Context, rec events.Record) error {
	return p.HandleBatch(ctx, []events.Record{rec})
}

// HandleBatch applies consecutive live events in one transaction with the
// checkpoint: all of them or, on error, none (the router then hands them over
// one at a time). Events at or below the checkpoint are skipped, so
// redeliveries are harmless.
func (p *Projector) HandleBatch(_ context.Context, recs []events.Record) error {
	if len(recs) == 0 {
		return nil
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if err := p.Store().Apply(recs...); err != nil {
		if len(recs) == 1 {
			return fmt.Errorf("project event %s (seq %d): %w", recs[0].Event.ID, recs[0].Seq, err)
		}
		return fmt.Errorf("project %d events from seq %d: %w", len(recs), recs[0].Seq, err)
	}
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
