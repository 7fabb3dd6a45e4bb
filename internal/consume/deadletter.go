package consume

import (
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
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

// metaHandlerError carries the error of a failed hand-over back to the
// subscriber, which logs it once; metaHold marks a failure that retrying
// soon cannot cure (an event of an unknown type).
const (
	metaHandlerError = "enrollgate_handler_error"
	metaHold         = "enrollgate_hold"
)

// DeadLetterSubject returns the subject durable's poison messages go to.
func (c Config) DeadLetterSubject(durable string) string { return c.DeadLetterPrefix + "." + durable }

// deadLetter is the PoisonQueue of this package (watermill's PoisonQueue
// sets neither a Nats-Msg-Id nor the original stream and sequence): it moves a
// poison message to the durable's dead-letter subject and
// acknowledges it, so that the handler goes on with the next event. Any other
// error passes through to be retried. The dead letter's Nats-Msg-Id is derived
// from the durable and the stream sequence, so that a redelivery after a lost
// ack stores no second copy. A failed publish is an error: the poison message
// is then redelivered, never dropped.
func (r *Router) deadLetter(durable string) message.HandlerMiddleware {
	subject := r.cfg.DeadLetterSubject(durable)
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			var pe *poisonError
			if !errors.As(err, &pe) {
				if err != nil {
					// For the subscriber's log line about the Nack.
					msg.Metadata.Set(metaHandlerError, err.Error())
					if isHold(err) {
						msg.Metadata.Set(metaHold, "1")
					}
				}
				return out, err
			}
			seq := msg.Metadata.Get(MetaStreamSeq)
			id := fmt.Sprintf("%s-%s-%s", durable, msg.Metadata.Get(MetaStream), seq)
			if seq == "" {
				id = durable + "-" + msg.UUID
			}
			dl := message.NewMessage(id, msg.Payload)
			dl.Metadata.Set(nats.MsgIdHdr, id)
			dl.Metadata.Set(HeaderDeadLetterReason, pe.reason)
			dl.Metadata.Set(HeaderDeadLetterDurable, durable)
			dl.Metadata.Set(HeaderOriginalSubject, msg.Metadata.Get(MetaSubject))
			dl.Metadata.Set(HeaderOriginalStream, msg.Metadata.Get(MetaStream))
			dl.Metadata.Set(HeaderOriginalSeq, seq)
			dl.Metadata.Set(HeaderNumDelivered, msg.Metadata.Get(MetaNumDelivered))
			if err := r.dlPub.Publish(subject, dl); err != nil {
				return nil, fmt.Errorf("%s: dead-letter seq %s to %s: %w (poison: %s)", durable, seq, subject, err, pe.reason)
			}
			what := "undecodable event moved to the dead-letter subject and acknowledged"
			if pe.forged {
				what = "message not written by the service (not authentic) ignored, moved to the dead-letter subject and acknowledged"
			}
			r.log.Error().Str("durable", durable).Str("subject", msg.Metadata.Get(MetaSubject)).Str("seq", seq).
				Str("dead_letter_subject", subject).Str("reason", pe.reason).Msg(what)
			return nil, nil
		}
	}
}
