package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
)

var _ handlers.EventStore = (*Store)(nil)

// ErrOutcomeUnknown is wrapped when Append cannot tell whether the event was
// stored: the publish went unanswered after all its re-sends, or finding out
// failed. The caller must reload the site before deciding again. It wraps
// handlers.ErrUnavailable, which the edges answer as "try again later".
var ErrOutcomeUnknown = fmt.Errorf("append outcome unknown: %w", handlers.ErrUnavailable)

// publishFunc sends one message and waits for its answer: js.PublishMsg.
// A test wraps it to lose an answer.
type publishFunc func(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)

// Store is the JetStream event store. Safe for concurrent use.
type Store struct {
	stream  jetstream.Stream
	cfg     Config
	auth    *Authenticator // signs every append, and tells events from forgeries on load
	publish publishFunc
	noRetry jetstream.PublishOpt // WithRetryAttempts(0), made once
}

// New returns a Store on the stream that EnsureStream returned, which signs
// and authenticates events with auth. js and stream may share one
// connection with other users. On a stream with one replica, reads are
// direct gets; on a replicated one they go to the stream leader (see
// StreamConfig), so that a read sees every acknowledged append.
func New(js jetstream.JetStream, stream jetstream.Stream, cfg Config, auth *Authenticator) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("event store config: %w", err)
	}
	if js == nil || stream == nil || auth == nil {
		return nil, errors.New("event store: js, stream and authenticator are required")
	}
	if stream.CachedInfo() == nil { // what tells nats.go whether a get is direct
		return nil, errors.New("event store: stream has no cached info; pass the stream EnsureStream returned")
	}
	return &Store{stream: stream, cfg: cfg, auth: auth, publish: js.PublishMsg, noRetry: jetstream.WithRetryAttempts(0)}, nil
}

// Append implements handlers.EventStore.
func (s *Store) Append(ctx context.Context, e events.Event, expectedSeq uint64) (uint64, error) {
	if e.ID == "" {
		return 0, fmt.Errorf("append %s to site %s: event has no ID", e.Type(), e.Site)
	}
	data, err := events.Encode(e)
	if err != nil {
		return 0, fmt.Errorf("append to site %s: %w", e.Site, err)
	}
	subj := events.Subject(e.Site)
	// Formatted only for an error: an append that succeeds allocates
	// nothing for it.
	what := func() string {
		return fmt.Sprintf("append %s %s to site %s after seq %d", e.Type(), e.ID, e.Site, expectedSeq)
	}
	expected := strconv.FormatUint(expectedSeq, 10)
	// Every send of this append is the same message, so one MAC serves all.
	mac, err := s.auth.sign(subj, e.ID, string(e.Type()), expected, data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what(), err)
	}
	uncertain := false // an earlier send of this call may have been stored
	var lastErr error
	for attempt := 0; attempt <= s.cfg.PublishRetries; attempt++ {
		if attempt > 0 {
			if err := sleep(ctx, s.cfg.RetryWait); err != nil {
				return 0, fmt.Errorf("%s: %w: %w", what(), ErrOutcomeUnknown, err)
			}
		}
		ack, err := s.publishOnce(ctx, subj, data, e, expected, mac)
		switch {
		case err == nil:
			if ack.Stream != events.StreamName {
				return 0, fmt.Errorf("%s: stored in stream %q, not %s", what(), ack.Stream, events.StreamName)
			}
			// A duplicate carries the sequence of the stored original
			// (nats-server answers dde.seq): the event is stored once, there.
			return ack.Sequence, nil
		case isConflict(err):
			seq, found, rerr := s.findStored(ctx, subj, e.ID, expectedSeq, uncertain)
			if rerr != nil {
				return 0, fmt.Errorf("%s: %w: after %w: %w", what(), ErrOutcomeUnknown, err, rerr)
			}
			if found {
				return seq, nil
			}
			return 0, fmt.Errorf("%s: %w: %w", what(), handlers.ErrConflict, err)
		case ctx.Err() != nil:
			// The caller gave up; the event may or may not be stored.
			return 0, fmt.Errorf("%s: %w: %w", what(), ErrOutcomeUnknown, ctx.Err())
		case isUnanswered(err):
			uncertain, lastErr = true, err
		default:
			return 0, fmt.Errorf("%s: %w", what(), err)
		}
	}
	return 0, fmt.Errorf("%s: %w: no answer after %d sends: %w", what(), ErrOutcomeUnknown, s.cfg.PublishRetries+1, lastErr)
}

// publishOnce sends the event once, bounded by PublishTimeout. Every send of
// one Append is identical: same message ID, same expectation, same MAC. The
// headers are the ones jetstream.WithMsgID and
// WithExpectLastSequencePerSubject write, set here so that a send costs no
// option closures.
func (s *Store) publishOnce(ctx context.Context, subj string, data []byte, e events.Event, expectedSeq, mac string) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{
		events.HeaderEventType:              {string(e.Type())},
		jetstream.MsgIDHeader:               {e.ID},
		jetstream.ExpectedLastSubjSeqHeader: {expectedSeq},
		events.HeaderMAC:                    {mac},
	}}
	// Append re-sends itself, with its own bound; the client's own
	// no-responders retry would only stretch one attempt.
	return s.publish(ctx, msg, s.noRetry)
}

// isConflict reports a failed expectation: 10071 on one replica, 10164 when
// a replicated stream refuses a concurrent expectation.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// errCodeDuplicateInProcess is nats-server's JSStreamDuplicateMessageConflict:
// a message with this ID is being replicated right now; asking again gets the
// duplicate's sequence (or stores it, if that proposal failed).
const errCodeDuplicateInProcess jetstream.ErrorCode = 10158

// isUnanswered reports a send whose outcome is unknown and that is safe to
// repeat: a timeout, no responder, a duplicate still in flight, or a
// connection lost with the answer pending.
func isUnanswered(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == errCodeDuplicateInProcess
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrDisconnected)
}

// findStored looks for the event id on subj after afterSeq, and returns its
// sequence. The last event of the subject is checked first: a lost answer is
// almost always for the event just stored. Only when an earlier send of this
// call is unaccounted for (scan) are the events after afterSeq read, bounded
// by ResolveScanMax: without a lost answer the event cannot be stored further
// back, and a stale cache could otherwise make every conflict read a long
// history.
func (s *Store) findStored(ctx context.Context, subj, id string, afterSeq uint64, scan bool) (uint64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LoadTimeout)
	defer cancel()
	last, err := s.lastMsg(ctx, subj)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("read last event of %s: %w", subj, err)
	case last.Sequence <= afterSeq:
		return 0, false, nil
	case s.isStored(last, id):
		return last.Sequence, true, nil
	case !scan:
		return 0, false, nil
	}
	next := afterSeq + 1
	for range s.cfg.ResolveScanMax {
		m, err := s.nextMsg(ctx, subj, next)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return 0, false, nil
		case err != nil:
			return 0, false, fmt.Errorf("read %s from seq %d: %w", subj, next, err)
		case s.isStored(m, id):
			return m.Sequence, true, nil
		case m.Sequence >= last.Sequence:
			return 0, false, nil
		}
		next = m.Sequence + 1
	}
	return 0, false, fmt.Errorf("event %s not among the first %d events of %s after seq %d", id, s.cfg.ResolveScanMax, subj, afterSeq)
}

// isStored reports whether m is the event id as the service stored it: a
// message that merely claims its ID is not.
func (s *Store) isStored(m *jetstream.RawStreamMsg, id string) bool {
	return m.Header.Get(jetstream.MsgIDHeader) == id && Signed(m.Header) &&
		s.auth.Authenticate(m.Subject, m.Sequence, m.Header, m.Data) == nil
}

// LastSeq implements handlers.EventStore: the last message of the site,
// authentic or not, since that is what the next append's expectation is
// checked against.
func (s *Store) LastSeq(ctx context.Context, site events.Site) (uint64, error) {
	m, err := s.lastMsg(ctx, events.Subject(site))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("last seq of site %s: %w", site, err)
	}
	return m.Sequence, nil
}

// Load implements handlers.EventStore. It first reads the site's last event,
// so that an empty or caught-up site costs one direct get and never a
// consumer that would wait for messages that do not exist.
func (s *Store) Load(ctx context.Context, site events.Site, afterSeq uint64) ([]events.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LoadTimeout)
	defer cancel()
	subj := events.Subject(site)
	last, err := s.lastMsg(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load site %s: read last event: %w", site, err)
	}
	if last.Sequence <= afterSeq {
		return nil, nil
	}
	if last.Sequence-afterSeq <= uint64(s.cfg.DirectReadMax) {
		recs, complete, err := s.loadDirect(ctx, site, afterSeq, last)
		if err != nil || complete {
			return recs, err
		}
		// A replica answered from behind the one that gave the last event:
		// read it all from the stream leader's consumer instead.
	}
	return s.loadConsumer(ctx, site, afterSeq, last.Sequence)
}

// loaded collects what a Load read: the site's events, and the sequence of
// the last message read when it was not one of them (a gap).
type loaded struct {
	recs []events.Record
	last uint64 // the last sequence read, event or not
	gap  bool   // the message at last is not an event
}

// add classifies one stored message of site and keeps it if it is an event.
func (l *loaded) add(s *Store, site events.Site, m *jetstream.RawStreamMsg) error {
	rec, ok, err := s.record(site, m)
	if err != nil {
		return err
	}
	l.last, l.gap = m.Sequence, !ok
	if ok {
		l.recs = append(l.recs, rec)
	}
	return nil
}

// result returns the events, ending with a gap record when the last
// messages read were not events (see handlers.EventStore.Load).
func (l *loaded) result() []events.Record {
	if l.gap {
		return append(l.recs, events.Record{Seq: l.last})
	}
	return l.recs
}

// loadDirect reads the events of site after afterSeq up to last with one
// direct get each. It reports complete=false when a get finds nothing before
// last.
func (s *Store) loadDirect(ctx context.Context, site events.Site, afterSeq uint64, last *jetstream.RawStreamMsg) ([]events.Record, bool, error) {
	subj := events.Subject(site)
	var l loaded
	for next := afterSeq + 1; ; {
		m := last
		if next < last.Sequence {
			var err error
			m, err = s.nextMsg(ctx, subj, next)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil, false, nil
			}
			if err != nil {
				return nil, false, fmt.Errorf("load site %s: read from seq %d: %w", site, next, err)
			}
		}
		if err := l.add(s, site, m); err != nil {
			return nil, false, err
		}
		if m.Sequence >= last.Sequence {
			return l.result(), true, nil
		}
		next = m.Sequence + 1
	}
}

// loadConsumer reads the events of site after afterSeq with ordered
// consumers, until the server says none is pending and the last event seen
// before (lastSeq) is read: the consumer may live on a replica that is a few
// milliseconds behind. On a cluster, the first pull of a consumer just
// created on another server is sometimes lost (measured: the consumer shows
// NumPending 2, NumWaiting 0, and nothing arrives until the pull expires), so
// a consumer that delivers nothing for LoadIdleTimeout is replaced by a new
// one that starts after the last event read.
func (s *Store) loadConsumer(ctx context.Context, site events.Site, afterSeq, lastSeq uint64) ([]events.Record, error) {
	l := loaded{last: afterSeq}
	for round := 0; ; round++ {
		more, err := s.consumeRound(ctx, site, l.last+1, lastSeq, &l)
		if err != nil {
			return nil, err
		}
		if !more {
			return l.result(), nil
		}
		if round >= s.cfg.LoadRestarts {
			return nil, fmt.Errorf("load site %s after seq %d (read %d): no message for %s, %d times", site, afterSeq, len(l.recs), s.cfg.LoadIdleTimeout, round+1)
		}
	}
}

// consumeRound adds to l the messages from seq next with one ordered
// consumer; more reports that it went idle before the end.
func (s *Store) consumeRound(ctx context.Context, site events.Site, next, lastSeq uint64, l *loaded) (more bool, err error) {
	subj := events.Subject(site)
	cons, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{subj},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       next,
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return false, fmt.Errorf("load site %s: create consumer: %w", site, err)
	}
	defer s.deleteConsumer(cons)
	it, err := cons.Messages(jetstream.PullMaxMessages(s.cfg.LoadBatch))
	if err != nil {
		return false, fmt.Errorf("load site %s: consume: %w", site, err)
	}
	defer it.Stop()
	for {
		idle, cancel := context.WithTimeout(ctx, s.cfg.LoadIdleTimeout)
		msg, err := it.Next(jetstream.NextContext(idle))
		cancel()
		if err != nil && ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("load site %s from seq %d (read %d): %w", site, next, len(l.recs), err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return false, fmt.Errorf("load site %s: message metadata: %w", site, err)
		}
		raw := &jetstream.RawStreamMsg{Subject: msg.Subject(), Sequence: md.Sequence.Stream, Header: msg.Headers(), Data: msg.Data()}
		if err := l.add(s, site, raw); err != nil {
			return false, err
		}
		if md.NumPending == 0 && raw.Sequence >= lastSeq {
			return false, nil
		}
	}
}

// deleteConsumer removes a finished load's consumer now instead of leaving it
// to the inactivity threshold, so that a burst of cold loads does not leave
// consumers behind on the server. Best effort: the threshold is the backstop.
func (s *Store) deleteConsumer(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PublishTimeout)
	defer cancel()
	_ = s.stream.DeleteConsumer(ctx, info.Name)
}

// record decodes a stored message of site (events.DecodeStored); ok is false
// when it is not one of the site's events. A message without a valid MAC, or
// an unsigned (legacy) one that is not an event of its subject, was not
// written by the service: it is left out, never an error, so that no message
// anyone else puts on the subject can break the site (the consumers
// dead-letter it and alert). An authentic event that does not decode is an
// error naming its sequence, since skipping it would silently change the
// state folded from the log: ErrUpgradeRequired for a type this build does
// not know.
func (s *Store) record(site events.Site, m *jetstream.RawStreamMsg) (rec events.Record, ok bool, err error) {
	if s.auth.Authenticate(m.Subject, m.Sequence, m.Header, m.Data) != nil {
		return events.Record{}, false, nil
	}
	rec, err = events.DecodeStored(m.Subject, m.Sequence, m.Header, m.Data)
	switch {
	case err == nil:
		return rec, true, nil
	case errors.Is(err, events.ErrForged):
		return events.Record{}, false, nil
	case errors.Is(err, events.ErrUnknownType):
		return events.Record{}, false, fmt.Errorf("load site %s: %w: %w", site, handlers.ErrUpgradeRequired, err)
	default:
		return events.Record{}, false, fmt.Errorf("load site %s: %w", site, err)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// lastMsg returns the last message on subj.
func (s *Store) lastMsg(ctx context.Context, subj string) (*jetstream.RawStreamMsg, error) {
	return s.stream.GetLastMsgForSubject(ctx, subj)
}

// nextMsg returns the first message on subj at or after seq.
func (s *Store) nextMsg(ctx context.Context, subj string, seq uint64) (*jetstream.RawStreamMsg, error) {
	return s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
}
