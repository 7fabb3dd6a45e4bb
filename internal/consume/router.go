package consume

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/startup"
)

// Handler processes one stored event. nil acknowledges it; an error has it
// delivered again later, never skipped. Handlers must be idempotent and
// independent of order: an event can be delivered more than once, and after
// later ones.
type Handler func(ctx context.Context, rec events.Record) error

// Authenticator tells the messages the service stored on the event stream
// from anything else there. eventstore.Authenticator implements it.
type Authenticator interface {
	// Authenticate returns nil for a message the service wrote, and an
	// error saying why not otherwise (naming no secret).
	Authenticate(subject string, seq uint64, header nats.Header, data []byte) error
}

// Forged is a message on the event stream that the service did not write:
// without a valid MAC, or unsigned and not an event. Its header values are
// given as found, and are not to be trusted.
type Forged struct {
	Subject  string
	Stream   string
	Seq      uint64
	StoredAt time.Time // when the stream stored it
	// MsgID and Type are what its Nats-Msg-Id and Enrollgate-Event-Type
	// headers claim.
	MsgID, Type string
	// Reason says why it is not authentic.
	Reason string
	// DeadLetterSubject is where this durable moves it.
	DeadLetterSubject string
}

// ErrRunning is returned by AddHandler once the router runs, and by Run when
// it runs already or was closed.
var ErrRunning = errors.New("consume: router already running or closed")

// adminTimeout bounds the JetStream API calls made outside a handler.
const adminTimeout = 10 * time.Second

// closeMargin is how long after CloseTimeout a closing subscriber may take
// to give back what its cancelled handlers leave.
const closeMargin = 5 * time.Second

// Router runs Handlers on durable JetStream consumers of the event stream.
type Router struct {
	cfg     Config
	log     zerolog.Logger
	connect func() (*nats.Conn, error)
	auth    Authenticator

	admin *nats.Conn // consumer management, Pending and dead letters
	js    jetstream.JetStream
	wm    *message.Router

	mu       sync.Mutex
	durables map[string]bool
	subs     []*subscriber
	goes     []func(context.Context)
	state    routerState
	// stopGoes ends the contexts of the Go functions; goWG waits for them.
	stopGoes context.CancelFunc
	goWG     sync.WaitGroup
}

type routerState int

const (
	stateNew routerState = iota
	stateRunning
	stateClosed
)

// NewRouter returns a Router on cfg.Stream. connect is called once for the
// router's own use (and the dead letters) and once per handler,
// so that every subscriber and publisher has its own connection (their Close
// closes it). auth tells the service's events from forgeries: a message it
// refuses never reaches a handler (see OnForged). When cfg.DeadLetterStream
// is set, it is created if missing.
func NewRouter(cfg Config, connect func() (*nats.Conn, error), auth Authenticator, log zerolog.Logger) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("consume config: %w", err)
	}
	if connect == nil || auth == nil {
		return nil, errors.New("consume: connect and an authenticator are required")
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
		err := cfg.retryAtStart(log, "ensure dead-letter stream "+cfg.DeadLetterStream, func(ctx context.Context) error {
			return EnsureDeadLetterStream(ctx, js, cfg)
		})
		if err != nil {
			admin.Close()
			return nil, err
		}
	}
	wlog := newWMLogger(log)
	// The subscribers end the handlers' contexts after CloseTimeout; the
	// margin lets those handlers return and their messages be given back.
	wm, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout + closeMargin}, wlog)
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("consume: watermill router: %w", err)
	}
	return &Router{cfg: cfg, log: log, connect: connect, auth: auth, admin: admin, js: js, wm: wm,
		durables: make(map[string]bool)}, nil
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

// retryAtStart runs fn, a creation at start, retrying until StartTimeout
// on a cluster that does not answer yet; each try is bounded by
// adminTimeout.
func (c Config) retryAtStart(log zerolog.Logger, what string, fn func(context.Context) error) error {
	if c.StartTimeout <= 0 {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		return fn(ctx)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.StartTimeout)
	defer cancel()
	return startup.Retry(ctx, log, what, fn)
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
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
		FilterSubject: c.FilterSubject,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
}

// Option tunes one handler (AddHandler).
type Option func(*handlerOptions)

type handlerOptions struct {
	types    map[events.Type]bool // nil: every event
	onForged func(context.Context, Forged) error
}

// OnlyTypes hands the handler only the events of types. An authentic event
// whose Enrollgate-Event-Type header names another known type is
// acknowledged without being decoded or handed over (the header is covered
// by the event's MAC, checked first); one without the header, or with a
// type this build does not know, is handed over as usual, so that the
// handler wrapper decodes it, and so is every message that is not
// authentic, whatever type it claims, to be dead-lettered. It is the
// client-side counterpart of a filter subject, for a stream whose subjects
// name the site, not the type.
func OnlyTypes(types ...events.Type) Option {
	return func(o *handlerOptions) {
		o.types = make(map[events.Type]bool, len(types))
		for _, t := range types {
			o.types[t] = true
		}
	}
}

// OnForged calls fn for every message on the stream that the service did
// not write (see Forged), before it is moved to the dead-letter subject and
// acknowledged; the handler itself never sees it. An error has it tried
// again like a failed event, so fn must be idempotent. For the one durable
// that raises the alert, so that N replicas do not raise N alerts.
func OnForged(fn func(ctx context.Context, f Forged) error) Option {
	return func(o *handlerOptions) { o.onForged = fn }
}

// ensureConsumer creates durable's consumer, or updates the one that exists
// in place, keeping its position. A durable of an older version has a
// pinned priority group: it is unpinned first, as the server keeps a pin
// through the update and would deliver nothing to pulls without the group.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, cfg Config, durable string) (jetstream.Consumer, error) {
	if c, err := js.Consumer(ctx, cfg.Stream, durable); err == nil {
		cur := c.CachedInfo().Config
		for _, g := range cur.PriorityGroups {
			if st, err := js.Stream(ctx, cfg.Stream); err == nil {
				_ = st.UnpinConsumer(ctx, durable, g) // not pinned at the moment: nothing to undo
			}
		}
	}
	c, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, cfg.ConsumerConfig(durable))
	if err != nil {
		return nil, fmt.Errorf("consume: ensure consumer %s on %s: %w", durable, cfg.Stream, err)
	}
	return c, nil
}

// AddHandler registers h on the durable consumer durable, creating or updating
// the consumer now. Call it before Run. Durable names are constants of the
// callers: a renamed durable starts again from the first event.
func (r *Router) AddHandler(durable string, h Handler, opts ...Option) error {
	if h == nil {
		return errors.New("consume: handler is required")
	}
	var o handlerOptions
	for _, opt := range opts {
		opt(&o)
	}
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
	if err := r.cfg.retryAtStart(r.log, "ensure consumer "+durable, func(ctx context.Context) error {
		_, err := ensureConsumer(ctx, r.js, r.cfg, durable)
		return err
	}); err != nil {
		return err
	}
	nc, err := r.connect()
	if err != nil {
		return fmt.Errorf("consume: connect subscriber %s: %w", durable, err)
	}
	sub, err := newSubscriber(durable, nc, r.cfg, o, r.auth, r.log.With().Str("durable", durable).Logger())
	if err != nil {
		nc.Close()
		return fmt.Errorf("consume: subscriber %s: %w", durable, err)
	}
	// The topic is only a label: the subscriber is bound to the durable.
	wh := r.wm.AddConsumerHandler(durable, durable, sub, r.decode(durable, h, o))
	// The first added runs outermost. Recoverer innermost, so that a panic
	// is an error that Retry retries (and that is never taken for poison);
	// the dead-letter middleware outermost, so that a poison message is not
	// retried and is acknowledged once moved aside.
	wh.AddMiddleware(
		r.deadLetter(durable),
		middleware.Retry{
			MaxRetries:          r.cfg.InProcessRetries,
			InitialInterval:     r.cfg.RetryInitialInterval,
			MaxInterval:         r.cfg.RetryMaxInterval,
			Multiplier:          2,
			RandomizationFactor: 0.2,
			// The message's context ends after HandlerTimeout (set by the
			// subscriber), which bounds the retries of one delivery too.
			MaxElapsedTime: r.cfg.HandlerTimeout,
			ShouldRetry: func(p middleware.RetryParams) bool {
				return !isPoison(p.Err) && !errors.Is(p.Err, events.ErrUnknownType) && !errors.Is(p.Err, context.Canceled)
			},
		}.Middleware,
		middleware.Recoverer,
	)
	r.durables[durable] = true
	r.subs = append(r.subs, sub)
	return nil
}

// Go has the router run fn alongside the handlers, from Run until Close: for
// a consumer of the stream that needs no durable (the projector's ordered
// consumer). fn's context ends when the router closes or Run's context
// ends, and Close waits for fn to return. Call it before Run.
func (r *Router) Go(fn func(ctx context.Context)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != stateNew {
		return ErrRunning
	}
	r.goes = append(r.goes, fn)
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
	gctx, stop := context.WithCancel(ctx)
	r.stopGoes = stop
	for _, fn := range r.goes {
		r.goWG.Add(1)
		go func() {
			defer r.goWG.Done()
			fn(gctx)
		}()
	}
	r.mu.Unlock()
	if err := r.wm.Run(ctx); err != nil {
		return fmt.Errorf("consume: run: %w", err)
	}
	return nil
}

// Start runs the router in the background and returns once it is running.
// done is closed when Run has returned; an error of Run is logged.
func (r *Router) Start(ctx context.Context, timeout time.Duration) (done <-chan struct{}, err error) {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := r.Run(ctx); err != nil {
			r.log.Error().Err(err).Msg("consumers stopped")
		}
	}()
	select {
	case <-r.Running():
		return stopped, nil
	case <-stopped:
		return stopped, errors.New("consume: the router stopped while starting")
	case <-time.After(timeout):
		return stopped, fmt.Errorf("consume: the router did not start in %s", timeout)
	}
}

// Running is closed once every handler has subscribed (bound to its
// consumer, or failed to and retries in the background).
func (r *Router) Running() <-chan struct{} { return r.wm.Running() }

// Close stops the handlers and the Go functions, waiting up to CloseTimeout
// for running handlers, and closes every connection. Events received and not
// handed over yet are given back at once (Nak), for another process.
func (r *Router) Close() error {
	r.mu.Lock()
	prev := r.state
	r.state = stateClosed
	r.mu.Unlock()
	if prev == stateClosed {
		return nil
	}
	var errs []error
	if prev == stateRunning {
		// watermill's Close closes the subscribers and waits for the
		// handlers; it would wait for handlers that never started
		// otherwise.
		if err := r.wm.Close(); err != nil {
			errs = append(errs, fmt.Errorf("consume: close router: %w", err))
		}
	}
	for _, s := range r.subs {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if prev == stateRunning {
		r.stopGoes()
		r.goWG.Wait()
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

// Backlog is how far a durable is behind the stream.
type Backlog struct {
	// Pending counts the events it has not acknowledged: those not
	// delivered and those delivered but not acknowledged.
	Pending uint64
	// Age is how long ago the oldest of them was stored, by the server's
	// clock; 0 when Pending is 0.
	Age time.Duration
}

// Backlog returns how many events durable has not acknowledged and how old
// the oldest of them is: the first after the consumer's ack floor (every
// event up to it is acknowledged, whatever the order of the acks).
func (r *Router) Backlog(ctx context.Context, durable string) (Backlog, error) {
	c, err := r.js.Consumer(ctx, r.cfg.Stream, durable)
	if err != nil {
		return Backlog{}, fmt.Errorf("consume: consumer %s: %w", durable, err)
	}
	info := c.CachedInfo()
	b := Backlog{Pending: info.NumPending + uint64(info.NumAckPending)}
	if b.Pending == 0 {
		return b, nil
	}
	st, err := r.js.Stream(ctx, r.cfg.Stream)
	if err != nil {
		return Backlog{}, fmt.Errorf("consume: stream %s: %w", r.cfg.Stream, err)
	}
	m, err := st.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(r.cfg.FilterSubject))
	if err != nil {
		return Backlog{}, fmt.Errorf("consume: oldest event pending for %s: %w", durable, err)
	}
	b.Age = max(info.TimeStamp.Sub(m.Time), 0)
	return b, nil
}

// poisonError marks a message that no retry can make decodable; forged,
// one that the service did not write.
type poisonError struct {
	reason string
	forged bool
}

func (e *poisonError) Error() string { return "poison message: " + e.reason }

func isPoison(err error) bool {
	var pe *poisonError
	return errors.As(err, &pe)
}

// decode is the innermost wrapper: it turns the watermill message into an
// events.Record and calls h. A message that cannot be a record of this
// stream is a poisonError, which the dead-letter middleware acts on; one the
// service did not write (the subscriber authenticated it) is first reported
// to the handler's OnForged.
func (r *Router) decode(durable string, h Handler, o handlerOptions) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		if e := msg.Metadata.Get(MetaError); e != "" {
			return &poisonError{reason: e}
		}
		seq, err := strconv.ParseUint(msg.Metadata.Get(MetaStreamSeq), 10, 64)
		if err != nil || seq == 0 {
			return &poisonError{reason: "no stream sequence"}
		}
		if reason := msg.Metadata.Get(MetaForged); reason != "" {
			return r.forged(durable, msg, seq, reason, o)
		}
		// The subscriber authenticated the message and kept what the decoder
		// reads of its headers.
		header := map[string][]string{}
		if t := msg.Metadata.Get(MetaEventType); t != "" {
			header[events.HeaderEventType] = []string{t}
		}
		if msg.Metadata.Get(MetaSigned) != "" {
			header[events.HeaderMAC] = []string{"authenticated"}
		}
		rec, err := events.DecodeStored(msg.Metadata.Get(MetaSubject), seq, header, msg.Payload)
		switch {
		case errors.Is(err, events.ErrForged):
			return r.forged(durable, msg, seq, err.Error(), o)
		case errors.Is(err, events.ErrUnknownType):
			// Neither skipped nor dead-lettered: delivered again until a
			// process that knows the type handles it.
			return fmt.Errorf("%s: seq %d: upgrade required: %w", durable, seq, err)
		case err != nil:
			return &poisonError{reason: err.Error()}
		}
		if err := h(msg.Context(), rec); err != nil {
			return fmt.Errorf("%s: event %s (seq %d, %s): %w", durable, rec.Event.ID, seq, rec.Event.Type(), err)
		}
		return nil
	}
}

// forged reports a message the service did not write to the handler's
// OnForged, then has it dead-lettered.
func (r *Router) forged(durable string, msg *message.Message, seq uint64, reason string, o handlerOptions) error {
	if o.onForged != nil {
		f := Forged{Subject: msg.Metadata.Get(MetaSubject), Stream: msg.Metadata.Get(MetaStream), Seq: seq,
			MsgID: msg.Metadata.Get(MetaMsgID), Type: msg.Metadata.Get(MetaEventType), Reason: reason,
			DeadLetterSubject: r.cfg.DeadLetterSubject(durable)}
		if ts := msg.Metadata.Get(MetaTimestamp); ts != "" {
			f.StoredAt, _ = time.Parse(time.RFC3339Nano, ts)
		}
		if err := o.onForged(msg.Context(), f); err != nil {
			return fmt.Errorf("%s: report message at seq %d that is not authentic (%s): %w", durable, seq, reason, err)
		}
	}
	return &poisonError{reason: "not authentic: " + reason, forged: true}
}
