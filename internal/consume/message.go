package consume

import (
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
)

// Metadata keys the subscriber sets on every watermill message, from the
// JetStream delivery.
const (
	MetaSubject      = "nats_subject"
	MetaStream       = "nats_stream"
	MetaStreamSeq    = "nats_stream_seq"
	MetaNumDelivered = "nats_num_delivered"
	MetaMsgID        = "nats_msg_id"
	MetaTimestamp    = "nats_timestamp"
	// MetaError is set when the delivery's JetStream metadata could not be
	// read; the handler wrapper then dead-letters the message.
	MetaError = "nats_metadata_error"
	// MetaForged holds why a message is not authentic (the Authenticator's
	// error); the handler wrapper then treats it as forged.
	MetaForged = "enrollgate_forged"
	// MetaSigned is set when the message carries a MAC (and, without
	// MetaForged, a valid one); MetaEventType is its type header, as
	// claimed.
	MetaSigned    = "enrollgate_signed"
	MetaEventType = "enrollgate_event_type"
)

// received is a message delivered by the server, with what the subscriber
// found of it.
type received struct {
	jm     jetstream.Msg
	seq    uint64    // stream sequence; 0 when the metadata could not be read
	stream string    // from the metadata
	n      uint64    // delivery count
	stored time.Time // when the stream stored it
	// forged says why the message is not authentic; empty when it is.
	// Nothing of a message's headers is trusted before this is known.
	forged string
	signed bool // it carries a MAC
}

// toMessage turns a delivery into a watermill message. It never fails
// (DESIGN.md: an unmarshaler never returns an error): whatever is wrong with
// a message is left to the innermost handler wrapper, whose poison error the
// dead-letter middleware acts on. Only what the wrapper and the dead letter
// need is copied.
func toMessage(h received) *message.Message {
	jm := h.jm
	md := make(message.Metadata, 8)
	md.Set(MetaSubject, jm.Subject())
	if id := jm.Headers().Get(nats.MsgIdHdr); id != "" {
		md.Set(MetaMsgID, id)
	}
	if t := jm.Headers().Get(events.HeaderEventType); t != "" {
		md.Set(MetaEventType, t)
	}
	if h.forged != "" {
		md.Set(MetaForged, h.forged)
	}
	if h.signed {
		md.Set(MetaSigned, "1")
	}
	if !h.stored.IsZero() {
		md.Set(MetaTimestamp, h.stored.UTC().Format(time.RFC3339Nano))
	}
	uuid := jm.Subject()
	if h.seq == 0 {
		md.Set(MetaError, "no JetStream metadata")
	} else {
		seq := strconv.FormatUint(h.seq, 10)
		md.Set(MetaStream, h.stream)
		md.Set(MetaStreamSeq, seq)
		md.Set(MetaNumDelivered, strconv.FormatUint(h.n, 10))
		uuid = h.stream + ":" + seq
	}
	m := message.NewMessage(uuid, jm.Data())
	m.Metadata = md
	return m
}
