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
)

// subscriber is a watermill message.Subscriber on one durable JetStream pull
// consumer, with its own connection. It replaces watermill-nats'
// pkg/jetstream subscriber (see doc.go for why): one goroutine per
// subscription fetches a message, hands it to the router, waits until the
// router acks or nacks it, settles it with the server, and only then fetches
// the next, so the output channel is sent on and closed by that goroutine
// alone.
type subscriber struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	stream   string
	consumer jetstream.ConsumerConfig
	ackWait  time.Duration
	nakDelay nakDelay
	log      zerolog.Logger

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
	timeout time.Duration // how long Close waits for the in-flight message
}

var _ message.Subscriber = (*subscriber)(nil)

func newSubscriber(nc *nats.Conn, stream string, consumer jetstream.ConsumerConfig, cfg Config, log zerolog.Logger) (*subscriber, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &subscriber{nc: nc, js: js, stream: stream, consumer: consumer, ackWait: cfg.AckWait,
		nakDelay: nakDelay{cfg: cfg}, log: log, closing: make(chan struct{}), timeout: cfg.CloseTimeout}, nil
}

// Subscribe starts delivering the durable consumer's messages. The topic is
// ignored: the subscriber is bound to its consumer.
func (s *subscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("subscriber closed")
	}
	it, err := s.messages(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		s.run(ctx, it, out)
	}()
	return out, nil
}

// messages binds to the consumer, creating it again should it have been
// deleted, and starts a pull iterator (the server sends one message at a time: MaxAckPending 1).
func (s *subscriber) messages(ctx context.Context) (jetstream.MessagesContext, error) {
	c, err := s.js.Consumer(ctx, s.stream, s.consumer.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = s.js.CreateOrUpdateConsumer(ctx, s.stream, s.consumer)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", s.consumer.Durable, s.stream, err)
	}
	it, err := c.Messages()
	if err != nil {
		return nil, fmt.Errorf("consumer %s: start pulling: %w", s.consumer.Durable, err)
	}
	return it, nil
}

func (s *subscriber) stopping(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-s.closing:
		return true
	default:
		return false
	}
}

func (s *subscriber) run(ctx context.Context, it jetstream.MessagesContext, out chan<- *message.Message) {
	var itMu sync.Mutex // it is replaced after an error; the stopper stops the current one
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-s.closing:
		case <-stopped:
		}
		itMu.Lock()
		it.Stop()
		itMu.Unlock()
	}()
	backoff := 100 * time.Millisecond
	for {
		itMu.Lock()
		cur := it
		itMu.Unlock()
		jm, err := cur.Next()
		if err != nil {
			if s.stopping(ctx) || s.nc.IsClosed() {
				return
			}
			// A missed heartbeat, a deleted consumer, a server restart: bind
			// again after a pause rather than stop consuming.
			s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("consumer interrupted; pulling again")
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			case <-s.closing:
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			next, err := s.messages(ctx)
			if err != nil {
				s.log.Warn().Err(err).Msg("consumer not available yet")
				continue
			}
			itMu.Lock()
			cur.Stop()
			it = next
			itMu.Unlock()
			if s.stopping(ctx) {
				next.Stop()
				return
			}
			continue
		}
		backoff = 100 * time.Millisecond
		s.deliver(ctx, jm, out)
	}
}

// deliver hands one message to the router and settles it with the server
// once the router has acked or nacked it.
func (s *subscriber) deliver(ctx context.Context, jm jetstream.Msg, out chan<- *message.Message) {
	m, _ := unmarshaler{}.Unmarshal(jm) // never fails
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.SetContext(mctx)
	// Closing cancels the handler, which then fails and has the event
	// redelivered, so that Close does not wait for HandlerTimeout.
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-mctx.Done():
		}
	}()
	select {
	case out <- m:
	case <-ctx.Done():
		s.release(jm)
		return
	case <-s.closing:
		s.release(jm)
		return
	}
	timer := time.NewTimer(s.ackWait)
	defer timer.Stop()
	// A closing subscriber still waits for the in-flight message to be
	// settled: its handler's context was cancelled above.
	select {
	case <-m.Acked():
		// Synchronous: the next message is fetched only once the server has
		// recorded this ack.
		actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer acancel()
		if err := jm.DoubleAck(actx); err != nil {
			s.log.Warn().Err(err).Str("msg", m.UUID).Msg("ack not confirmed; the event may be delivered again")
		}
	case <-m.Nacked():
		n := uint64(1)
		if meta, err := jm.Metadata(); err == nil {
			n = meta.NumDelivered
		}
		if err := jm.NakWithDelay(s.nakDelay.WaitTime(n)); err != nil {
			s.log.Warn().Err(err).Str("msg", m.UUID).Msg("nak failed; the event is redelivered after AckWait")
		}
	case <-timer.C:
		s.log.Warn().Str("msg", m.UUID).Dur("ack_wait", s.ackWait).
			Msg("event not settled within AckWait; the server redelivers it")
	case <-ctx.Done():
		s.release(jm)
	}
}

// release gives a message back at once, so that the next consumer instance
// need not wait for AckWait to get it.
func (s *subscriber) release(jm jetstream.Msg) {
	if err := jm.Nak(); err != nil && !s.nc.IsClosed() {
		s.log.Debug().Err(err).Msg("release of an undelivered event failed; it is redelivered after AckWait")
	}
}

// Close stops the subscriptions, waits up to CloseTimeout for the message in
// flight to be settled, and closes the connection.
func (s *subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-time.After(s.timeout):
		err = fmt.Errorf("consumer %s: in-flight event not settled within %s", s.consumer.Durable, s.timeout)
	}
	s.nc.Close()
	return err
}
