package consume

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/enrollgate/enrollgate/events"
)

// Headers of a dead letter. The payload is the original message's, unchanged.
const (
	HeaderDeadLetterReason  = "Enrollgate-Deadletter-Reason"
	HeaderDeadLetterDurable = "Enrollgate-Deadletter-Durable"
	HeaderOriginalSubject   = "Enrollgate-Original-Subject"
	HeaderOriginalStream    = "Enrollgate-Original-Stream"
	HeaderOriginalSeq       = "Enrollgate-Original-Seq"
	HeaderNumDelivered      = "Enrollgate-Num-Delivered"
)

// DeadLetterSubject returns the subject durable's poison messages go to.
func (c Config) DeadLetterSubject(durable string) string { return c.DeadLetterPrefix + "." + durable }

// DeadLetter is a stored message that a consumer moves aside: poison, or not
// written by the service.
type DeadLetter struct {
	Subject      string // the original subject
	Stream       string
	Seq          uint64 // 0 when the delivery had no JetStream metadata
	NumDelivered uint64
	Reason       string
	Forged       bool
	Data         []byte
}

// DeadLetter publishes d to durable's dead-letter subject and waits for the
// stream to store it. Its Nats-Msg-Id is derived from the durable, the
// stream and the sequence, so that a redelivery stores no second copy. The
// consumer moves on past d only after this returned nil: a failed publish
// has d tried again, never dropped.
func (r *Router) DeadLetter(ctx context.Context, durable string, d DeadLetter) error {
	subject := r.cfg.DeadLetterSubject(durable)
	seq := ""
	if d.Seq != 0 {
		seq = strconv.FormatUint(d.Seq, 10)
	}
	msg := &nats.Msg{Subject: subject, Data: d.Data, Header: nats.Header{}}
	id := fmt.Sprintf("%s-%s-%s", durable, d.Stream, seq)
	if d.Seq == 0 {
		id = durable + "-" + d.Subject
	}
	msg.Header.Set(nats.MsgIdHdr, id)
	msg.Header.Set(HeaderDeadLetterReason, d.Reason)
	msg.Header.Set(HeaderDeadLetterDurable, durable)
	msg.Header.Set(HeaderOriginalSubject, d.Subject)
	msg.Header.Set(HeaderOriginalStream, d.Stream)
	msg.Header.Set(HeaderOriginalSeq, seq)
	msg.Header.Set(HeaderNumDelivered, strconv.FormatUint(d.NumDelivered, 10))
	if _, err := r.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("%s: dead-letter seq %s to %s: %w (poison: %s)", durable, seq, subject, err, d.Reason)
	}
	what := "undecodable event moved to the dead-letter subject"
	if d.Forged {
		what = "message not written by the service (not authentic) ignored, moved to the dead-letter subject"
	}
	r.log.Error().Str("durable", durable).Str("subject", d.Subject).Str("seq", seq).
		Str("dead_letter_subject", subject).Str("reason", d.Reason).Msg(what)
	return nil
}

// deadLetter is the outermost middleware (watermill's PoisonQueue sets no
// Nats-Msg-Id): a poison message is moved to the dead-letter subject and
// then acknowledged; any other error is logged and passed on, to be Nak'd
// and redelivered.
func (r *Router) deadLetter(durable string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			var pe *poisonError
			if !errors.As(err, &pe) {
				if err != nil {
					r.logFailure(durable, msg, err)
				}
				return out, err
			}
			seq, _ := strconv.ParseUint(msg.Metadata.Get(MetaStreamSeq), 10, 64)
			n, _ := strconv.ParseUint(msg.Metadata.Get(MetaNumDelivered), 10, 64)
			d := DeadLetter{Subject: msg.Metadata.Get(MetaSubject), Stream: msg.Metadata.Get(MetaStream), Seq: seq,
				NumDelivered: n, Reason: pe.reason, Forged: pe.forged, Data: msg.Payload}
			if err := r.DeadLetter(msg.Context(), durable, d); err != nil {
				return nil, err
			}
			return nil, nil
		}
	}
}

// logFailure logs a delivery that failed after its in-process retries: at
// warn level the first time, at error level when it keeps failing.
func (r *Router) logFailure(durable string, msg *message.Message, err error) {
	n, _ := strconv.ParseUint(msg.Metadata.Get(MetaNumDelivered), 10, 64)
	ev := r.log.Warn()
	if n > 1 {
		ev = r.log.Error()
	}
	what := "handler failed after its in-process retries; the event is delivered again after a delay"
	if errors.Is(err, events.ErrUnknownType) {
		what = "event of a type this version does not know; delivered again until a process that knows it handles it"
	}
	ev.Err(err).Str("durable", durable).Str("seq", msg.Metadata.Get(MetaStreamSeq)).Uint64("delivery", n).Msg(what)
}
