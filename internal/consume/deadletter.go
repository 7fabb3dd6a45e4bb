package consume

import (
	"context"
	"fmt"
	"strconv"

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

// DeadLetterSubject returns the subject durable's poison messages go to.
func (c Config) DeadLetterSubject(durable string) string { return c.DeadLetterPrefix + "." + durable }

// deadLetter moves a poison message to the durable's dead-letter subject;
// the subscriber acknowledges it once this returns nil, so that the handler
// goes on with the next event. The dead letter's Nats-Msg-Id is derived from
// the durable and the stream sequence, so that a redelivery after a lost ack
// stores no second copy. A failed publish is an error: the poison message is
// then tried again, never dropped.
func (r *Router) deadLetter(durable string) func(ctx context.Context, h held, reason string) error {
	subject := r.cfg.DeadLetterSubject(durable)
	return func(_ context.Context, h held, reason string) error {
		jm := h.jm
		seq, stream := "", ""
		if md, err := jm.Metadata(); err == nil {
			seq, stream = strconv.FormatUint(md.Sequence.Stream, 10), md.Stream
		}
		id := fmt.Sprintf("%s-%s-%s", durable, stream, seq)
		if seq == "" {
			id = durable + "-" + jm.Subject() + "-" + jm.Reply()
		}
		dl := message.NewMessage(id, jm.Data())
		dl.Metadata.Set(nats.MsgIdHdr, id)
		dl.Metadata.Set(HeaderDeadLetterReason, reason)
		dl.Metadata.Set(HeaderDeadLetterDurable, durable)
		dl.Metadata.Set(HeaderOriginalSubject, jm.Subject())
		dl.Metadata.Set(HeaderOriginalStream, stream)
		dl.Metadata.Set(HeaderOriginalSeq, seq)
		dl.Metadata.Set(HeaderNumDelivered, strconv.FormatUint(h.n, 10))
		if err := r.dlPub.Publish(subject, dl); err != nil {
			return fmt.Errorf("%s: dead-letter seq %s to %s: %w (poison: %s)", durable, seq, subject, err, reason)
		}
		r.log.Error().Str("durable", durable).Str("subject", jm.Subject()).Str("seq", seq).
			Str("dead_letter_subject", subject).Str("reason", reason).
			Msg("undecodable event moved to the dead-letter subject and acknowledged")
		return nil
	}
}
