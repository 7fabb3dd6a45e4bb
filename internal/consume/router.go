package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
)

// Handler processes one stored event. nil acknowledges it; an error has it
// tried again later, with the events after it held back, never skipped.
// Handlers must be idempotent: an event can be delivered more than once.
type Handler func(ctx context.Context, rec events.Record) error

// BatchHandler processes consecutive stored events of one durable at once,
// in stream order: those that had arrived when the previous call returned,
// up to the batch size. nil acknowledges all of them; an error must mean that
// none of them took effect (one transaction), and the router then hands them
// over again one at a time, so that the failing one is found and those before
// it are acknowledged. Like a Handler it must be idempotent.
type BatchHandler func(ctx context.Context, recs []events.Record) error

// ErrRunning is returned by AddHandler once the router runs, and by Run when
// it runs already or was closed.
var ErrRunning = errors.New("consume: router already running or closed")

// adminTimeout bounds the JetStream API calls made outside a handler.
const adminTimeout = 10 * time.Second

// Router runs Handlers on durable JetStream consumers of the event stream.
type Router struct {
	cfg     Config
	log     zerolog.Logger
	connect func() (*nats.Conn, error)

	admin *nats.Conn // consumer management and Pending
	js    jetstream.JetStream
	dlPub *wmjs.Publisher // dead letters, on its own connection

	mu       sync.Mutex
	durables map[string]bool
	subs     []*subscriber
	state    routerState
	stop     chan struct{} // closed by Close or when Run's context ends
	running  chan struct{} // closed once every subscriber has bound
	wg       sync.WaitGroup
}

type routerState int

const (
	stateNew routerState = iota
	stateRunning
	stateClosed
)

// NewRouter returns a Router on cfg.Stream. connect is called once for the
// router's own use, once for the dead-letter publisher and once per handler,
// so that every subscriber and publisher has its own connection (their Close
// closes it). When cfg.DeadLetterStream is set, it is created if missing.
func NewRouter(cfg Config, connect func() (*nats.Conn, error), log zerolog.Logger) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("consume config: %w", err)
	}
	if connect == nil {
		return nil, errors.New("consume: connect is required")
	}
	admin, err := connect()
	if err != nil {
		return nil, fmt.Errorf("consume: connect: %w", err)
	}
	js, err := jetstream.New(admin)
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("consume: jetstream: %w", err)
	}
	if cfg.DeadLetterStream != "" {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		err := EnsureDeadLetterStream(ctx, js, cfg)
		cancel()
		if err != nil {
			admin.Close()
			return nil, err
		}
	}
	pubConn, err := connect()
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("consume: connect dead-letter publisher: %w", err)
	}
	wlog := newWMLogger(log)
	dlPub, err := wmjs.NewPublisher(wmjs.PublisherConfig{Conn: pubConn, Logger: wlog})
	if err != nil {
		pubConn.Close()
		admin.Close()
		return nil, fmt.Errorf("consume: dead-letter publisher: %w", err)
	}
	return &Router{cfg: cfg, log: log, connect: connect, admin: admin, js: js, dlPub: dlPub,
		durables: make(map[string]bool), stop: make(chan struct{}), running: make(chan struct{})}, nil
}

// EnsureDeadLetterStream creates cfg.DeadLetterStream on
// <cfg.DeadLetterPrefix>.> if it does not exist, or updates it.
func EnsureDeadLetterStream(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.DeadLetterStream,
		Description: "enrollgate: events a consumer could not decode, one subject per durable consumer",
		Subjects:    []string{cfg.DeadLetterPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.DeadLetterReplicas,
		MaxAge:      cfg.DeadLetterMaxAge,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("consume: ensure dead-letter stream %s: %w", cfg.DeadLetterStream, err)
	}
	return nil
}

// ConsumerConfig returns the configuration of durable's consumer.
func (c Config) ConsumerConfig(durable string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "enrollgate consumer " + durable,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		// Unbounded: an exhausted MaxDeliver makes the server skip the
		// message silently. Redelivery is paced with NakWithDelay instead.
		MaxDeliver: -1,
		// Several messages in flight so that the next ones are on their way
		// while one is handled; the subscriber keeps their order (doc.go).
		MaxAckPending: c.MaxAckPending,
		FilterSubject: c.FilterSubject,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		// One process at a time receives a durable's messages: the pinned
		// one, until it stops pulling for PinnedTTL or gives the pin up.
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{PriorityGroup},
		PinnedTTL:      c.AckWait,
	}
}

// AddHandler registers h on the durable consumer durable, creating or updating
// the consumer now. Call it before Run. Durable names are constants of the
// callers: a renamed durable starts again from the first event.
func (r *Router) AddHandler(durable string, h Handler) error {
	if h == nil {
		return errors.New("consume: handler is required")
	}
	return r.add(durable, func(ctx context.Context, recs []events.Record) error {
		for _, rec := range recs { // always one: batch size 1
			if err := h(ctx, rec); err != nil {
				return err
			}
		}
		return nil
	}, 1)
}

// AddBatchHandler is AddHandler for a handler that applies several events at
// once (up to Config.MaxBatch), for example in one transaction.
func (r *Router) AddBatchHandler(durable string, h BatchHandler) error {
	if h == nil {
		return errors.New("consume: handler is required")
	}
	return r.add(durable, h, r.cfg.MaxBatch)
}

func (r *Router) add(durable string, h BatchHandler, batch int) error {
	if err := ValidateDurable(durable); err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != stateNew {
		return ErrRunning
	}
	if r.durables[durable] {
		return fmt.Errorf("consume: durable %q added twice", durable)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if _, err := r.js.CreateOrUpdateConsumer(ctx, r.cfg.Stream, r.cfg.ConsumerConfig(durable)); err != nil {
		return fmt.Errorf("consume: create consumer %s on %s: %w", durable, r.cfg.Stream, err)
	}
	nc, err := r.connect()
	if err != nil {
		return fmt.Errorf("consume: connect subscriber %s: %w", durable, err)
	}
	sub, err := newSubscriber(durable, nc, r.cfg, h, batch, r.deadLetter(durable), r.log.With().Str("durable", durable).Logger())
	if err != nil {
		nc.Close()
		return fmt.Errorf("consume: subscriber %s: %w", durable, err)
	}
	r.durables[durable] = true
	r.subs = append(r.subs, sub)
	return nil
}

// Run consumes until ctx is done or Close is called. It blocks. Call Close
// after it returns, whatever stopped it, to close the connections.
func (r *Router) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.state != stateNew {
		r.mu.Unlock()
		return ErrRunning
	}
	r.state = stateRunning
	subs := slices.Clone(r.subs)
	r.wg.Add(len(subs))
	r.mu.Unlock()
	var bound sync.WaitGroup
	bound.Add(len(subs))
	for _, s := range subs {
		go func() {
			defer r.wg.Done()
			s.run(r.stop, bound.Done)
		}()
	}
	go func() { bound.Wait(); close(r.running) }()
	select {
	case <-ctx.Done():
		r.halt()
	case <-r.stop:
	}
	return nil
}

// halt stops the subscribers once.
func (r *Router) halt() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
}

// Running is closed once every handler has subscribed.
func (r *Router) Running() <-chan struct{} { return r.running }

// Close stops the handlers (waiting up to CloseTimeout for running ones) and
// closes every connection. Events held and not yet acknowledged are given
// back at once, in order, to the next process.
func (r *Router) Close() error {
	r.mu.Lock()
	prev := r.state
	r.state = stateClosed
	r.mu.Unlock()
	if prev == stateClosed {
		return nil
	}
	r.halt()
	var errs []error
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.cfg.CloseTimeout):
		errs = append(errs, fmt.Errorf("consume: handlers still running after %s", r.cfg.CloseTimeout))
	}
	for _, s := range r.subs {
		s.nc.Close()
	}
	if prev == stateRunning {
		for _, s := range r.subs {
			s.unpin(r.js)
		}
	}
	if err := r.dlPub.Close(); err != nil {
		errs = append(errs, fmt.Errorf("consume: close dead-letter publisher: %w", err))
	}
	r.admin.Close()
	return errors.Join(errs...)
}

// Pending returns how many events durable has not acknowledged yet: those not
// delivered and those delivered but not acked. 0 means caught up.
func (r *Router) Pending(ctx context.Context, durable string) (uint64, error) {
	c, err := r.js.Consumer(ctx, r.cfg.Stream, durable)
	if err != nil {
		return 0, fmt.Errorf("consume: consumer %s: %w", durable, err)
	}
	info := c.CachedInfo()
	return info.NumPending + uint64(info.NumAckPending), nil
}
