package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
)

// pinHeader is the header the server sets on a message delivered to the
// pinned client of a priority group.
const pinHeader = "Nats-Pin-Id"

// held is a message delivered to this process and not settled yet.
type held struct {
	jm     jetstream.Msg
	seq    uint64    // stream sequence; 0 when the metadata could not be read
	stream string    // from the metadata
	n      uint64    // delivery count
	stored time.Time // when the stream stored it, from the metadata
	lease  time.Time // until when the server surely leaves it to this process
	// forged says why the message is not authentic; empty when it is.
	// Nothing of a message's headers is trusted before this is known.
	forged string
	signed bool // it carries a MAC
}

// subscriber is the watermill message.Subscriber of one durable consumer:
// it pulls with a request always outstanding (up to MaxAckPending messages
// ahead), keeps what arrived in stream order, hands the router one message at
// a time and waits for its Ack or Nack before the next, acknowledges it on
// JetStream after the watermill Ack, and on a Nack holds it and the later
// ones and hands it over again after a growing delay. See doc.go for the
// guarantees.
type subscriber struct {
	durable string
	nc      *nats.Conn
	js      jetstream.JetStream
	cfg     Config
	opts    handlerOptions
	auth    Authenticator
	log     zerolog.Logger

	in   chan jetstream.Msg // from nats.go's callback; capacity above MaxAckPending
	quit chan struct{}      // closed when run returns: the callback stops waiting on in

	closing chan struct{} // closed by Close
	stopped chan struct{} // closed when run has given back what it held
	stateMu sync.Mutex
	subbed  bool // Subscribe was called
	closed  bool // Close was called

	mu     sync.Mutex // guards hold and staged (read by the keep-alive ticker)
	hold   []held     // delivered, not handled yet, in stream order
	staged []held     // handled, waiting for the handler's commit (WithCommit), in stream order

	lastDone uint64 // highest stream sequence handled and acked this session
	pinID    string // pin of the last message received
}

var _ message.Subscriber = (*subscriber)(nil)

func newSubscriber(durable string, nc *nats.Conn, cfg Config, opts handlerOptions, auth Authenticator, log zerolog.Logger) (*subscriber, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &subscriber{durable: durable, nc: nc, js: js, cfg: cfg, opts: opts, auth: auth, log: log,
		in: make(chan jetstream.Msg, 2*pullMax(cfg)+16), quit: make(chan struct{}),
		closing: make(chan struct{}), stopped: make(chan struct{})}, nil
}

func pullMax(cfg Config) int { return max(cfg.MaxAckPending, 128) }

// Subscribe binds to the durable consumer and returns the channel the
// router reads. The topic is only a label: the subscriber is bound to its
// durable. It may be called once. The first bind happens before it returns
// (so that the router's Running means bound); should it fail, the
// subscriber keeps trying in the background instead of failing the router.
func (s *subscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	s.stateMu.Lock()
	if s.subbed || s.closed {
		s.stateMu.Unlock()
		return nil, fmt.Errorf("consume: subscriber %s subscribed twice or after Close", s.durable)
	}
	s.subbed = true
	s.stateMu.Unlock()
	out := make(chan *message.Message)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	cc, err := s.start(ctx)
	go s.run(ctx, cancel, cc, err, out)
	return out, nil
}

// Close stops the subscription: the message being handled is waited for
// (up to CloseTimeout), what is held is given back in order, the output
// channel is closed, and the subscriber's connection is closed.
func (s *subscriber) Close() error {
	s.stateMu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	subbed := s.subbed
	s.stateMu.Unlock()
	if subbed {
		select {
		case <-s.stopped:
		case <-time.After(s.cfg.CloseTimeout + 5*time.Second):
			s.nc.Close()
			return fmt.Errorf("consume: subscriber %s did not stop in time", s.durable)
		}
	}
	s.nc.Close()
	return nil
}

// run consumes until ctx ends, then gives back what it holds and closes out.
func (s *subscriber) run(ctx context.Context, cancel context.CancelFunc, cc jetstream.ConsumeContext, err error, out chan<- *message.Message) {
	defer close(s.stopped)
	defer close(out)
	defer cancel()
	defer close(s.quit)
	// Until run returns, not until ctx ends: a handler that is still
	// running at close keeps its events this process's while it is waited
	// for.
	go s.keepAlive(s.quit)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if cc == nil {
			if err == nil {
				cc, err = s.start(ctx)
			}
			if err != nil {
				s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("consumer not available; binding again")
				err = nil
				if !sleep(ctx, backoff) {
					break
				}
				backoff = min(backoff*2, 5*time.Second)
				continue
			}
		}
		backoff = 100 * time.Millisecond
		s.session(ctx, cc, out)
		if ctx.Err() != nil {
			s.stopPulling(cc)
			break
		}
		cc.Stop()
		cc = nil
	}
	s.release()
}

// stopPulling ends the subscription so that the server sends nothing more
// here (not even what release gives back), keeping what was on its way.
func (s *subscriber) stopPulling(cc jetstream.ConsumeContext) {
	closed := cc.Closed()
	cc.Drain()
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case m := <-s.in:
			s.add(m)
		case <-closed:
			return
		case <-t.C:
			return
		}
	}
}

// start binds to the consumer, creating it again should it have been
// deleted, and starts pulling into s.in.
func (s *subscriber) start(ctx context.Context) (jetstream.ConsumeContext, error) {
	actx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	c, err := s.js.Consumer(actx, s.cfg.Stream, s.durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = ensureConsumer(actx, s.js, s.cfg, s.durable, s.opts)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", s.durable, s.cfg.Stream, err)
	}
	// A pull request stays outstanding for as many messages as the server
	// may have unacknowledged: the next message is on its way as soon as an
	// ack frees a slot. Requests expire well within PinnedTTL (each new one
	// renews the pin), so that a live process keeps its pin.
	expiry := max(time.Second, min(30*time.Second, s.cfg.AckWait/3))
	opts := []jetstream.PullConsumeOpt{
		// Above MaxAckPending, so that nats.go need not send a new request
		// for every message when MaxAckPending is small; the server sends no
		// more than MaxAckPending anyway.
		jetstream.PullMaxMessages(pullMax(s.cfg)),
		jetstream.PullExpiry(expiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.log.Debug().Err(err).Msg("pull consumer")
		}),
	}
	if len(c.CachedInfo().Config.PriorityGroups) > 0 {
		opts = append(opts, jetstream.PullPriorityGroup(PriorityGroup))
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		select {
		case s.in <- m:
		case <-s.quit: // not acked: the server redelivers it
		}
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: start pulling: %w", s.durable, err)
	}
	return cc, nil
}

// session handles messages until ctx is done or the pull stops. It starts
// in recovery when the server has messages of this durable unacknowledged
// (a previous process died or gave them back, or another holds them): then
// nothing is handled until every one of them is in this process's hands, so
// that they are handled before anything later.
func (s *subscriber) session(ctx context.Context, cc jetstream.ConsumeContext, out chan<- *message.Message) {
	s.lastDone = 0
	recovering := true
	defer func() { s.endStaged(ctx.Err() != nil) }()
	var tick <-chan time.Time
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if recovering {
			ok, other, err := s.allPendingHeld(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("consumer info")
			}
			if !ok && other && s.holding() > 0 {
				// Another process is pinned and, recovering too, waits
				// for what this one holds: give it back, in order, so
				// that the pinned one handles it first.
				s.log.Info().Int("events", s.holding()).Msg("another process is pinned; giving back the held events")
				s.release()
			}
			if ok {
				recovering = false
				tick = nil
				s.mu.Lock()
				slices.SortFunc(s.hold, func(a, b held) int { return cmpSeq(a.seq, b.seq) })
				s.mu.Unlock()
			} else {
				tick = t.C
			}
		}
		if !recovering && s.holding() > 0 {
			if s.drain() {
				recovering = true
				continue
			}
			if !s.wanted() {
				s.settle()
				continue
			}
			if !s.deliver(ctx, out) {
				// Closing, or the held events were abandoned: bind again,
				// and recover first.
				return
			}
			if s.stagedCount() >= s.cfg.CommitMax && !s.commitStaged(ctx) {
				return
			}
			continue
		}
		if s.stagedCount() > 0 {
			// Nothing more has arrived: make what was handled durable now.
			if !s.commitStaged(ctx) {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-cc.Closed():
			return
		case m := <-s.in:
			if s.add(m) {
				recovering = true
			}
		case <-tick:
		}
	}
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// add keeps a received message; it reports whether the message shows that
// others may have been delivered before it which this process does not hold
// (a redelivery of something not handled here, or the first message after
// this process was pinned: what the previous pinned process held comes back
// only when its AckWait runs out), which calls for recovery.
func (s *subscriber) add(jm jetstream.Msg) bool {
	h := held{jm: jm, n: 1, lease: time.Now().Add(s.leaseFor())}
	if md, err := jm.Metadata(); err == nil {
		h.seq, h.n, h.stream, h.stored = md.Sequence.Stream, md.NumDelivered, md.Stream, md.Timestamp
	}
	if h.seq != 0 {
		hdr := jm.Headers()
		if err := s.auth.Authenticate(jm.Subject(), h.seq, hdr, jm.Data()); err != nil {
			h.forged = err.Error()
		}
		h.signed = hdr.Get(events.HeaderMAC) != ""
	}
	pinned := false
	if p := jm.Headers().Get(pinHeader); p != "" && p != s.pinID {
		// Which replica handles a shared durable is what an operator looks
		// for after a failover.
		s.pinID, pinned = p, true
		s.log.Info().Str("pin_id", p).Msg("pinned: this process now receives the durable's events")
	}
	if h.seq != 0 && h.seq <= s.lastDone {
		// Handled and acked here already: the ack was lost or came late.
		s.ack(h)
		return pinned
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.hold {
		if s.hold[i].seq == h.seq && h.seq != 0 {
			s.hold[i] = h // the same event again; keep the latest delivery
			return pinned
		}
	}
	s.hold = append(s.hold, h)
	return pinned || h.n > 1
}

// drain takes what has arrived without waiting; it reports whether that
// calls for recovery (see add).
func (s *subscriber) drain() (again bool) {
	for {
		select {
		case m := <-s.in:
			if s.add(m) {
				again = true
			}
		default:
			return again
		}
	}
}

func (s *subscriber) holding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hold)
}

// allPendingHeld reports whether every message the server has delivered
// and not seen acknowledged for this durable is held here, and whether
// another process is pinned (the server gives it what it delivers next).
func (s *subscriber) allPendingHeld(ctx context.Context) (all, otherPinned bool, _ error) {
	actx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	c, err := s.js.Consumer(actx, s.cfg.Stream, s.durable)
	if err != nil {
		return false, false, err
	}
	ci := c.CachedInfo()
	for _, g := range ci.PriorityGroups {
		if g.Group == PriorityGroup && g.PinnedClientID != "" && g.PinnedClientID != s.pinID {
			otherPinned = true
		}
	}
	s.mu.Lock()
	n := len(s.hold) + len(s.staged)
	s.mu.Unlock()
	return ci.NumAckPending <= n, otherPinned, nil
}

// deliver hands the first held message to the router and waits for its
// Ack or Nack. A Nack keeps it (and everything after it) held and hands the
// same event over again after a delay doubling from RetryInitialInterval up
// to RetryMaxInterval, for as long as it takes. It returns true when the
// message was acknowledged, false when the subscriber stops or the held
// messages were abandoned (their lease was lost).
func (s *subscriber) deliver(ctx context.Context, out chan<- *message.Message) bool {
	for attempt := uint64(1); ; attempt++ {
		s.mu.Lock()
		h := s.hold[0] // the latest delivery of the event, should it have come again
		s.mu.Unlock()
		if !s.owned(1) {
			s.abandon()
			return false
		}
		res, failure, slow := s.emit(ctx, out, h)
		switch res {
		case acked:
			s.settle()
			return true
		case stopped:
			return false
		case stuck:
			// The handler outlived CloseTimeout after close: leave the
			// events to the server (after AckWait) rather than give them
			// back while it may still run.
			s.abandon()
			return false
		}
		d := retryDelay(attempt, s.cfg.RetryInitialInterval, s.cfg.RetryMaxInterval)
		ev := s.log.Warn()
		if attempt > 1 {
			ev = s.log.Error()
		}
		msg := "handler failed after its in-process retries; holding the later events and retrying"
		if slow {
			// Nothing this process does will change it: try again at the
			// slowest pace, in case the event turns out to be handled by
			// an upgraded process meanwhile.
			d, ev = s.cfg.RetryMaxInterval, s.log.Error()
			msg = "event of a type this version does not know: holding it and the later events until this process is upgraded"
		}
		ev.Str("error", failure).Uint64("seq", h.seq).Uint64("attempt", attempt).Dur("retry_in", d).Msg(msg)
		// What was handled before the failed event need not wait for it.
		if err := s.tryCommit(ctx); err != nil {
			s.log.Warn().Err(err).Int("events", s.stagedCount()).Msg("commit failed; retrying")
		}
		if !sleep(ctx, d) {
			return false
		}
	}
}

// outcome of one hand-over to the router.
type outcome int

const (
	acked   outcome = iota // the handler succeeded
	nacked                 // it failed: hand the event over again later
	stopped                // closing; the message was not handled
	stuck                  // closing, and the handler did not return in CloseTimeout
)

// emit sends h to the router as a watermill message whose context ends
// after HandlerTimeout, on close, or when h's lease runs out without being
// renewed (see watchLease), and waits for its Ack or Nack. While
// it waits, nothing else of this durable is handed over: that is what keeps
// stream order although the router runs every message on its own goroutine.
// A nacked outcome says whether the failure is a hold (slow): one that
// retrying soon cannot cure.
func (s *subscriber) emit(ctx context.Context, out chan<- *message.Message, h held) (_ outcome, failure string, slow bool) {
	msg := toMessage(h)
	hctx, cancel := context.WithTimeout(ctx, s.cfg.HandlerTimeout)
	defer cancel()
	go s.watchLease(hctx, cancel, h)
	msg.SetContext(hctx)
	select {
	case out <- msg:
	case <-ctx.Done():
		return stopped, "", false
	}
	select {
	case <-msg.Acked():
		return acked, "", false
	case <-msg.Nacked():
		if ctx.Err() != nil {
			return stopped, "", false
		}
		// The Nack happened after the middleware returned: reading the
		// metadata it set is ordered after that write.
		return nacked, msg.Metadata.Get(metaHandlerError), msg.Metadata.Get(metaHold) != ""
	case <-ctx.Done():
	}
	// Closing: the handler's context is cancelled; wait for it to return
	// before giving anything back, so that no other process handles the
	// event while it still runs here.
	t := time.NewTimer(s.cfg.CloseTimeout)
	defer t.Stop()
	select {
	case <-msg.Acked():
		return acked, "", false
	case <-msg.Nacked():
		return stopped, "", false
	case <-t.C:
		return stuck, "", false
	}
}

// wanted reports whether the first held message is for the handler
// (OnlyTypes). Its type header is read only once the message is known to be
// authentic: a forged one could claim any type, and is handed over to be
// dead-lettered whatever it claims.
func (s *subscriber) wanted() bool {
	if s.opts.types == nil {
		return true
	}
	s.mu.Lock()
	h := s.hold[0]
	s.mu.Unlock()
	if h.forged != "" || h.seq == 0 {
		return true
	}
	t := events.Type(h.jm.Headers().Get(events.HeaderEventType))
	return s.opts.types[t] || !t.Known()
}

// settle takes the first held message off the hold once it is handled (or
// not wanted): acknowledged at once, or, for a handler WithCommit, staged
// until its next commit. The acks are not confirmed (a lost one only
// redelivers an event, which the handlers absorb); they leave on the
// connection in order.
func (s *subscriber) settle() {
	s.mu.Lock()
	h := s.hold[0]
	s.hold = slices.Delete(s.hold, 0, 1)
	if s.opts.commit != nil {
		s.staged = append(s.staged, h)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.ack(h)
	s.lastDone = max(s.lastDone, h.seq)
}

func (s *subscriber) stagedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.staged)
}

// tryCommit calls the handler's commit once for what is staged and, when
// it succeeded, acknowledges the staged messages in order.
func (s *subscriber) tryCommit(ctx context.Context) error {
	if s.stagedCount() == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.HandlerTimeout)
	err := s.opts.commit(cctx)
	cancel()
	if err != nil {
		return err
	}
	s.mu.Lock()
	staged := s.staged
	s.staged = nil
	s.mu.Unlock()
	for _, h := range staged {
		s.ack(h)
		s.lastDone = max(s.lastDone, h.seq)
	}
	return nil
}

// commitStaged commits what is staged, trying again after a delay doubling
// from RetryInitialInterval up to RetryMaxInterval for as long as it takes,
// with nothing further handed over meanwhile. false means the subscriber
// stops.
func (s *subscriber) commitStaged(ctx context.Context) bool {
	for attempt := uint64(1); ; attempt++ {
		err := s.tryCommit(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d := retryDelay(attempt, s.cfg.RetryInitialInterval, s.cfg.RetryMaxInterval)
		ev := s.log.Warn()
		if attempt > 1 {
			ev = s.log.Error()
		}
		ev.Err(err).Int("events", s.stagedCount()).Uint64("attempt", attempt).Dur("retry_in", d).
			Msg("commit failed; holding the handled events unacknowledged and retrying")
		if !sleep(ctx, d) {
			return false
		}
	}
}

// endStaged settles what is staged when a session ends: committed and
// acknowledged if the commit succeeds now (within CloseTimeout), otherwise
// given back in order when closing (before release gives back the later,
// held ones) or left to the server when the lease was lost.
func (s *subscriber) endStaged(closing bool) {
	if s.stagedCount() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
	defer cancel()
	err := s.tryCommit(ctx)
	if err == nil {
		return
	}
	s.mu.Lock()
	staged := s.staged
	s.staged = nil
	s.mu.Unlock()
	s.log.Warn().Err(err).Int("events", len(staged)).Msg("commit failed while stopping; the events are delivered again")
	if !closing {
		return
	}
	for _, h := range staged {
		if err := h.jm.Nak(); err != nil && !s.nc.IsClosed() {
			s.log.Debug().Err(err).Uint64("seq", h.seq).Msg("give back failed; the event is redelivered after AckWait")
		}
	}
}

func (s *subscriber) ack(h held) {
	if err := h.jm.Ack(); err != nil {
		s.log.Warn().Err(err).Uint64("seq", h.seq).Msg("ack failed; the event may be delivered again")
	}
}

// keepAlive tells the server that held messages are still being worked on,
// so that none is redelivered (and reordered) while an earlier one is
// retried or a long handler runs, until done is closed.
func (s *subscriber) keepAlive(done <-chan struct{}) {
	t := time.NewTicker(s.heartbeat())
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		_ = s.touch()
	}
}

// heartbeat is how often held messages are reported in progress.
func (s *subscriber) heartbeat() time.Duration { return max(s.cfg.AckWait/4, 10*time.Millisecond) }

// leaseFor is how long after a delivery or a confirmed InProgress a held
// message is surely still this process's: AckWait less a margin for the
// time the message or the InProgress spent on the way, and for a handler
// whose context ends with the lease to return.
func (s *subscriber) leaseFor() time.Duration { return s.cfg.AckWait - s.cfg.AckWait/4 }

// leaseOf returns the current lease of the held message h; ok is false once
// it is no longer held.
func (s *subscriber) leaseOf(h held) (_ time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.hold {
		if x.jm == h.jm || (h.seq != 0 && x.seq == h.seq) {
			return x.lease, true
		}
	}
	return time.Time{}, false
}

// watchLease cancels the hand-over of h (cancel ends ctx) once h's lease
// runs out: the heartbeats could not renew it (this process is cut off),
// so the server may give the event to another process soon, and the
// handler must stop first. While the heartbeats work, a handler may run
// for its whole HandlerTimeout, however short AckWait is.
func (s *subscriber) watchLease(ctx context.Context, cancel context.CancelFunc, h held) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lease, ok := s.leaseOf(h)
		if !ok {
			return
		}
		left := time.Until(lease)
		if left <= 0 {
			s.log.Warn().Uint64("seq", h.seq).Msg("lease of the event being handled ran out; cancelling its handler")
			cancel()
			return
		}
		t.Reset(left)
	}
}

// touch reports every held message in progress and, once the server has
// confirmed receiving that (a flush), extends their leases.
func (s *subscriber) touch() error {
	sent := time.Now()
	s.mu.Lock()
	hs := slices.Concat(s.staged, s.hold)
	s.mu.Unlock()
	if len(hs) == 0 {
		return nil
	}
	for _, h := range hs {
		if err := h.jm.InProgress(); err != nil {
			return err
		}
	}
	if err := s.nc.FlushTimeout(max(s.cfg.AckWait/4, 100*time.Millisecond)); err != nil {
		return err
	}
	lease := sent.Add(s.leaseFor())
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.hold {
		for _, h := range hs {
			if s.hold[i].jm == h.jm && s.hold[i].lease.Before(lease) {
				s.hold[i].lease = lease
			}
		}
	}
	return nil
}

// owned makes sure that the first n held messages stay this process's at
// least until the next heartbeat can renew their leases, renewing them now
// if needed. false means that the server may have given them to another
// process already (this one was cut off): they must not be handled here.
func (s *subscriber) owned(n int) bool {
	need := time.Now().Add(s.heartbeat())
	ok := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, h := range s.hold[:min(n, len(s.hold))] {
			if h.lease.Before(need) {
				return false
			}
		}
		return true
	}
	if ok() {
		return true
	}
	if err := s.touch(); err != nil {
		s.log.Warn().Err(err).Msg("cannot renew the lease of held events")
	}
	return ok()
}

// abandon forgets every held message without settling it: the server
// redelivers them, perhaps to another process, after AckWait.
func (s *subscriber) abandon() {
	s.mu.Lock()
	n := len(s.hold)
	s.hold = nil
	s.mu.Unlock()
	s.log.Warn().Int("events", n).Msg("held events may belong to another process by now; leaving them to the server")
}

// release gives every held message back, in stream order and at once, so
// that the next process gets them (first) without waiting for AckWait.
func (s *subscriber) release() {
	for {
		select {
		case m := <-s.in:
			s.add(m)
			continue
		default:
		}
		break
	}
	s.mu.Lock()
	hs := s.hold
	s.hold = nil
	s.mu.Unlock()
	slices.SortFunc(hs, func(a, b held) int { return cmpSeq(a.seq, b.seq) })
	for _, h := range hs {
		if err := h.jm.Nak(); err != nil && !s.nc.IsClosed() {
			s.log.Debug().Err(err).Uint64("seq", h.seq).Msg("give back failed; the event is redelivered after AckWait")
		}
	}
	if err := s.nc.FlushTimeout(2 * time.Second); err != nil && !s.nc.IsClosed() {
		s.log.Debug().Err(err).Msg("flush acks")
	}
}

// unpin gives up the pin, on another connection once this subscriber's is
// closed: while it is open, the server could pin its last pull request again.
// Only a process that was pinned unpins; were the pin another's by now, that
// one would merely have to recover what it holds.
func (s *subscriber) unpin(js jetstream.JetStream) {
	if s.pinID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, s.cfg.Stream)
	if err == nil {
		err = st.UnpinConsumer(ctx, s.durable, PriorityGroup)
	}
	if err != nil {
		s.log.Debug().Err(err).Msg("unpin")
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
