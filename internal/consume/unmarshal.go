package consume

import (
	"strconv"
	"strings"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Metadata keys the unmarshaler sets on every watermill message, from the
// JetStream delivery.
const (
	MetaSubject      = "nats_subject"
	MetaStream       = "nats_stream"
	MetaStreamSeq    = "nats_stream_seq"
	MetaNumDelivered = "nats_num_delivered"
	MetaMsgID        = "nats_msg_id"
	// MetaError is set when the delivery's JetStream metadata could not be
	// read; the handler wrapper then dead-letters the message.
	MetaError = "nats_metadata_error"
)

// unmarshaler turns a JetStream message into a watermill message. It never
// fails (its error result only matches watermill-nats' Unmarshaler, whose
// subscriber dereferences the nil message an error comes with): whatever is
// wrong with a message is left to the handler wrapper, which can dead-letter
// it.
type unmarshaler struct{}

func (unmarshaler) Unmarshal(msg jetstream.Msg) (*message.Message, error) {
	md := make(message.Metadata)
	for k, v := range msg.Headers() {
		switch k {
		case wmnats.WatermillUUIDHdr, nats.MsgIdHdr, nats.ExpectedLastMsgIdHdr, nats.ExpectedStreamHdr,
			nats.ExpectedLastSubjSeqHdr, nats.ExpectedLastSeqHdr:
			continue
		}
		// Several values are joined rather than refused: refusing would
		// mean returning an error.
		md.Set(k, strings.Join(v, ","))
	}
	md.Set(MetaSubject, msg.Subject())
	if id := msg.Headers().Get(nats.MsgIdHdr); id != "" {
		md.Set(MetaMsgID, id)
	}
	uuid := ""
	if meta, err := msg.Metadata(); err != nil {
		md.Set(MetaError, err.Error())
	} else {
		seq := strconv.FormatUint(meta.Sequence.Stream, 10)
		md.Set(MetaStream, meta.Stream)
		md.Set(MetaStreamSeq, seq)
		md.Set(MetaNumDelivered, strconv.FormatUint(meta.NumDelivered, 10))
		uuid = meta.Stream + ":" + seq
	}
	if uuid == "" {
		uuid = msg.Subject()
	}
	m := message.NewMessage(uuid, msg.Data())
	m.Metadata = md
	return m, nil
}
