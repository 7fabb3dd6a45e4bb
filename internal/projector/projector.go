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

// Register adds the live durable consumer of this instance's read model
// (Durable(instance)) to the router: each event is applied in its own
// read-store transaction, with the checkpoint, and the router acknowledges it
// after that transaction committed.
func (p *Projector) Register(r *consume.Router, durable string) error {
	if err := r.AddHandler(durable, p.Handle); err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	return nil
}

// Handle applies one live event, with the checkpoint, in one transaction;
// the router acknowledges it once Handle returns nil. An event at or below
// the checkpoint is skipped, so redeliveries are harmless.
func (p *Projector) Handle(_ context.Context, rec events.Record) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if err := p.Store().Apply(rec); err != nil {
		return fmt.Errorf("project event %s (seq %d): %w", rec.Event.ID, rec.Seq, err)
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
