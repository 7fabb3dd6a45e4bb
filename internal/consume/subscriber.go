package consume

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
)

// subscriber is the watermill message.Subscriber of one durable pull
// consumer: it emits the messages as they come (up to MaxAckPending in
// flight), sends the JetStream Ack of each after the Router's Ack, a
// NakWithDelay after its Nack, and InProgress while the handler runs.
type subscriber struct {
	durable string
	nc      *nats.Conn
	js      jetstream.JetStream
	cfg     Config
	opts    handlerOptions
	auth    Authenticator
	log     zerolog.Logger

	closing  chan struct{} // closed by Close: nothing more is handed over
	stopped  chan struct{} // closed once the output channel is closed
	inflight sync.WaitGroup
	// msgCtx is the parent of every message's context; cancelled when
	// Close has waited CloseTimeout for the handlers.
	msgCtx    context.Context
	cancelMsg context.CancelFunc

	mu     sync.Mutex
	subbed bool
	closed bool
}

var _ message.Subscriber = (*subscriber)(nil)

func newSubscriber(durable string, nc *nats.Conn, cfg Config, opts handlerOptions, auth Authenticator, log zerolog.Logger) (*subscriber, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	msgCtx, cancel := context.WithCancel(context.Background())
	return &subscriber{durable: durable, nc: nc, js: js, cfg: cfg, opts: opts, auth: auth, log: log,
		closing: make(chan struct{}), stopped: make(chan struct{}), msgCtx: msgCtx, cancelMsg: cancel}, nil
}

// Subscribe binds to the durable consumer and returns the channel the
// router reads; the topic is only a label. It may be called once. A bind
// that fails (or a consumer deleted later) is retried in the background.
func (s *subscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subbed || s.closed {
		return nil, fmt.Errorf("consume: subscriber %s subscribed twice or after Close", s.durable)
	}
	s.subbed = true
	out := make(chan *message.Message)
	go s.run(ctx, out)
	return out, nil
}

// run keeps a Consume session on the durable until Close or ctx, binding
// again when the consumer is lost (deleted), then waits for what is in
// flight and closes out.
func (s *subscriber) run(ctx context.Context, out chan<- *message.Message) {
	defer close(s.stopped)
	defer close(out)
	for attempt := uint64(1); ; attempt++ {
		lost := make(chan struct{})
		var once sync.Once
		cc, err := s.consume(ctx, out, func() { once.Do(func() { close(lost) }) })
		if err == nil {
			attempt = 1
			select {
			case <-lost:
				err = errors.New("consumer lost or changed")
				cc.Stop()
				<-cc.Closed()
			case <-cc.Closed():
				err = errors.New("pulling stopped")
			case <-s.closing:
			case <-ctx.Done():
			}
			if err == nil {
				// The callback gives back (Naks) what nats.go still buffers.
				cc.Drain()
				<-cc.Closed()
				s.finish()
				return
			}
		}
		s.log.Warn().Err(err).Msg("not bound to the consumer; binding again")
		select {
		case <-time.After(retryDelay(attempt, s.cfg.RetryInitialInterval, s.cfg.RetryMaxInterval)):
		case <-s.closing:
			s.finish()
			return
		case <-ctx.Done():
			s.finish()
			return
		}
	}
}

// consume ensures the durable (it may have been deleted) and starts pulling.
func (s *subscriber) consume(ctx context.Context, out chan<- *message.Message, lost func()) (jetstream.ConsumeContext, error) {
	actx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	c, err := ensureConsumer(actx, s.js, s.cfg, s.durable)
	if err != nil {
		return nil, err
	}
	return c.Consume(func(jm jetstream.Msg) { s.receive(jm, out) },
		jetstream.PullMaxMessages(s.cfg.MaxAckPending),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// A bad request: an older version made the durable pinned again.
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
				errors.Is(err, jetstream.ErrBadRequest) {
				lost()
			}
		}))
}

// finish waits up to CloseTimeout for the messages handed over, then ends
// their contexts, so that the handlers return and those messages are Nak'd.
func (s *subscriber) finish() {
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.CloseTimeout):
		s.cancelMsg()
		<-done
	}
}

// receive is nats.go's callback: it authenticates the message, acknowledges
// one of a type the handler does not want, and hands the rest over.
func (s *subscriber) receive(jm jetstream.Msg, out chan<- *message.Message) {
	select {
	case <-s.closing:
		s.settle(jm, jm.Nak(), "give back")
		return
	default:
	}
	m := received{jm: jm}
	if md, err := jm.Metadata(); err == nil {
		m.seq, m.n, m.stream, m.stored = md.Sequence.Stream, md.NumDelivered, md.Stream, md.Timestamp
		hdr := jm.Headers()
		if err := s.auth.Authenticate(jm.Subject(), m.seq, hdr, jm.Data()); err != nil {
			m.forged = err.Error()
		}
		m.signed = hdr.Get(events.HeaderMAC) != ""
	}
	if !s.wanted(m) {
		s.settle(jm, jm.Ack(), "ack")
		return
	}
	msg := toMessage(m)
	ctx, cancel := context.WithTimeout(s.msgCtx, s.cfg.HandlerTimeout)
	msg.SetContext(ctx)
	s.inflight.Add(1)
	select {
	case out <- msg:
	case <-s.closing:
		cancel()
		s.inflight.Done()
		s.settle(jm, jm.Nak(), "give back")
		return
	}
	go func() {
		defer s.inflight.Done()
		defer cancel()
		s.await(msg, m)
	}()
}

// wanted reports whether the handler takes m (OnlyTypes). The type header
// is trusted only once the message is known to be authentic: a forged one
// is handed over to be dead-lettered, whatever it claims.
func (s *subscriber) wanted(m received) bool {
	if s.opts.types == nil || m.forged != "" || m.seq == 0 {
		return true
	}
	t := events.Type(m.jm.Headers().Get(events.HeaderEventType))
	return s.opts.types[t] || !t.Known()
}

// await reports the message in progress until the Router settles it, then
// settles it on JetStream: Ack after the Router's Ack, NakWithDelay (growing
// with the delivery count) after its Nack.
func (s *subscriber) await(msg *message.Message, m received) {
	t := time.NewTicker(max(s.cfg.AckWait/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-msg.Acked():
			s.settle(m.jm, m.jm.Ack(), "ack")
			return
		case <-msg.Nacked():
			s.settle(m.jm, m.jm.NakWithDelay(retryDelay(m.n, s.cfg.RetryInitialInterval, s.cfg.RetryMaxInterval)), "nak")
			return
		case <-t.C:
			_ = m.jm.InProgress()
		}
	}
}

// settle logs a failed Ack or Nak: the server then redelivers the message
// after AckWait, which the idempotent handlers absorb.
func (s *subscriber) settle(jm jetstream.Msg, err error, what string) {
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		s.log.Warn().Err(err).Str("subject", jm.Subject()).Msg(what + " failed; the event will be delivered again")
	}
}

// Close stops handing messages over, waits for those handed over (their
// contexts end after CloseTimeout), gives back what nats.go still buffers,
// closes the output channel and the subscriber's connection.
func (s *subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	subbed := s.subbed
	s.mu.Unlock()
	var err error
	if subbed {
		select {
		case <-s.stopped:
		case <-time.After(s.cfg.CloseTimeout + closeMargin):
			err = fmt.Errorf("consume: subscriber %s did not stop in time", s.durable)
		}
	}
	s.cancelMsg()
	s.nc.Close()
	return err
}
