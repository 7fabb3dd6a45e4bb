package events

import (
	"errors"
	"fmt"
)

// ErrForged is wrapped by DecodeStored for an unsigned message that is not
// an event of its subject's site: it was not written by the service (nor by
// an earlier version, whose events are trusted without a MAC only when they
// are events of their subject). Its error does not wrap the decoding error,
// so that no caller takes a forgery for an event of an unknown type.
var ErrForged = errors.New("unsigned message that is not an event of its subject")

// DecodeStored turns a message of the events stream into a Record: the one
// decoder of a stored message, for the store's loads, the consumers and the
// replays. The caller has authenticated the message first
// (eventstore.Authenticator); header is the message's NATS header
// (nats.Header). The message is an event when its payload decodes, the
// event's site is the one its subject names, its type header (when present)
// names the payload's type, and it has a stream sequence.
//
// An error wraps ErrForged when the message is unsigned (no HeaderMAC);
// otherwise, since the service wrote it, ErrUnknownType for a type this
// version does not know (written by a newer one), else ErrMalformed.
func DecodeStored(subject string, seq uint64, header map[string][]string, data []byte) (Record, error) {
	signed := len(header[HeaderMAC]) > 0 && header[HeaderMAC][0] != ""
	fail := func(err error) (Record, error) {
		if !signed {
			return Record{}, fmt.Errorf("%w: seq %d: %v", ErrForged, seq, err)
		}
		return Record{}, fmt.Errorf("event at seq %d: %w", seq, err)
	}
	if seq == 0 {
		return fail(fmt.Errorf("%w: no stream sequence", ErrMalformed))
	}
	e, err := Decode(data)
	if err != nil {
		return fail(err)
	}
	if subject != Subject(e.Site) {
		return fail(fmt.Errorf("%w: event %s of site %q stored on subject %q", ErrMalformed, e.ID, e.Site, truncate(subject, 100)))
	}
	if t := header[HeaderEventType]; len(t) > 0 && t[0] != string(e.Type()) {
		return fail(fmt.Errorf("%w: event %s of type %s has header %s %q", ErrMalformed, e.ID, e.Type(), HeaderEventType, truncate(t[0], 100)))
	}
	return Record{Seq: seq, Event: e}, nil
}
