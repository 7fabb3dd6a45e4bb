package handlers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// Config tunes the command handlers.
type Config struct {
	// Policy is the default lockout policy; a site's LockoutPolicyChanged
	// events override its threshold and window.
	Policy domain.Policy
	// MaxCachedSites bounds the aggregates kept in memory; an evicted site is
	// loaded again from the stream on its next command.
	MaxCachedSites int
	// MaxConflictRetries bounds the re-decisions of one command after append
	// conflicts with another replica.
	MaxConflictRetries int
}

// DefaultConfig returns the defaults of DESIGN.md.
func DefaultConfig() Config {
	return Config{Policy: domain.DefaultPolicy(), MaxCachedSites: 100_000, MaxConflictRetries: 50}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxCachedSites < 1 {
		errs = append(errs, fmt.Errorf("max cached sites must be at least 1, got %d", c.MaxCachedSites))
	}
	if c.MaxConflictRetries < 1 {
		errs = append(errs, fmt.Errorf("max conflict retries must be at least 1, got %d", c.MaxConflictRetries))
	}
	return errors.Join(errs...)
}

// Service runs the commands. Safe for concurrent use; several Services (in
// one process or many) may share one event store.
type Service struct {
	cfg    Config
	store  EventStore
	keeper SecretKeeper
	clock  Clock
	ids    IDGenerator
	cache  *aggregateCache
}

// NewService returns a Service.
func NewService(cfg Config, store EventStore, keeper SecretKeeper, clock Clock, ids IDGenerator) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("handlers config: %w", err)
	}
	if store == nil || keeper == nil || clock == nil || ids == nil {
		return nil, errors.New("handlers: store, keeper, clock and ids are required")
	}
	return &Service{cfg: cfg, store: store, keeper: keeper, clock: clock, ids: ids,
		cache: newAggregateCache(cfg.MaxCachedSites)}, nil
}

// Policy returns the default lockout policy.
func (s *Service) Policy() domain.Policy { return s.cfg.Policy }

// decideFunc decides a command on the aggregate at now; a nil payload means
// nothing to store.
type decideFunc func(p *domain.Passcode, now time.Time) (events.Payload, error)

// outcome is what execute stored, if anything, and the state after it.
type outcome struct {
	Seq   uint64 // the stored event's sequence; 0 when nothing was stored
	Event events.Event
	State domain.State
}

// execute runs one command on a site: serialised with the site's other
// commands in this process, decided on the cached aggregate, appended with the
// aggregate's sequence as the expectation, and decided again after catching up
// when another replica got there first. A decision that stores nothing, or
// that fails with ErrNotGenerated or ErrNotActive, is confirmed against the
// stream's last sequence, so that a replica never answers from a stale cache.
func (s *Service) execute(ctx context.Context, site events.Site, actor events.Actor, decide decideFunc) (outcome, error) {
	// A Site is parsed at its edge; only the zero value can be wrong here.
	if site == "" {
		return outcome{}, fmt.Errorf("%w: no site", domain.ErrInvalid)
	}
	e, arrival, err := s.cache.acquire(ctx, site)
	if err != nil {
		return outcome{}, err
	}
	defer s.cache.release(e)
	if e.agg == nil {
		p := domain.New(site, s.cfg.Policy)
		if err := s.catchUp(ctx, p); err != nil {
			return outcome{}, err
		}
		e.agg = p
	}
	p := e.agg
	for attempt := 0; ; attempt++ {
		if attempt > s.cfg.MaxConflictRetries {
			return outcome{}, fmt.Errorf("site %s: %w", site, ErrBusy)
		}
		now := s.clock.Now()
		payload, decideErr := decide(p, now)
		// A refusal that depends on the state (nothing generated, nothing
		// active) may come from a stale cache just like a decision that
		// stores nothing: both are confirmed against the stream.
		stateErr := errors.Is(decideErr, domain.ErrNotGenerated) || errors.Is(decideErr, domain.ErrNotActive)
		if decideErr != nil && !stateErr {
			return outcome{}, fmt.Errorf("site %s: %w", site, decideErr)
		}
		if payload == nil {
			last, err := s.confirmLast(ctx, e, arrival, site)
			if err != nil {
				return outcome{}, err
			}
			if last <= p.Seq() {
				if decideErr != nil {
					return outcome{}, fmt.Errorf("site %s: %w", site, decideErr)
				}
				return outcome{State: p.State(now)}, nil
			}
			if err := s.catchUp(ctx, p); err != nil {
				return outcome{}, err
			}
			continue
		}
		ev := events.Event{ID: s.ids.NewID(), Site: site, OccurredAt: now, Actor: actor, Data: payload}
		seq, err := s.store.Append(ctx, ev, p.Seq())
		switch {
		case errors.Is(err, ErrConflict):
			if err := s.catchUp(ctx, p); err != nil {
				return outcome{}, err
			}
			if err := sleepJitter(ctx, attempt); err != nil {
				return outcome{}, err
			}
			continue
		case err != nil:
			// The outcome is unknown (a timeout, a lost connection): forget the
			// cached aggregate so that the next command starts from the stream.
			e.agg = nil
			return outcome{}, fmt.Errorf("site %s: append %s: %w", site, ev.Type(), err)
		}
		p.Replay(events.Record{Seq: seq, Event: ev})
		return outcome{Seq: seq, Event: ev, State: p.State(now)}, nil
	}
}

// confirmLast returns the site's last sequence as read after the command
// arrived. Commands that waited for the hold share the read of the one
// before them when it began after they arrived, so that a flood of refusals
// on one site costs a read per turn of the queue, not one per command.
func (s *Service) confirmLast(ctx context.Context, e *cacheEntry, arrival uint32, site events.Site) (uint64, error) {
	if last, ok := e.confirmedSince(arrival); ok {
		return last, nil
	}
	n := s.cache.beginRead(e)
	last, err := s.store.LastSeq(ctx, site)
	if err != nil {
		return 0, fmt.Errorf("site %s: check last sequence: %w", site, err)
	}
	e.confirmed, e.confirmedRead = last, n
	return last, nil
}

// catchUp folds the site's events after the aggregate's sequence into it.
func (s *Service) catchUp(ctx context.Context, p *domain.Passcode) error {
	recs, err := s.store.Load(ctx, p.Site(), p.Seq())
	if err != nil {
		return fmt.Errorf("site %s: load events after %d: %w", p.Site(), p.Seq(), err)
	}
	p.Replay(recs...)
	return nil
}

// sleepJitter waits a random time that grows with the attempt, so that
// replicas contending for one site spread out instead of colliding again.
func sleepJitter(ctx context.Context, attempt int) error {
	ceiling := min(time.Millisecond<<min(attempt, 6), 50*time.Millisecond)
	t := time.NewTimer(rand.N(ceiling) + 100*time.Microsecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
